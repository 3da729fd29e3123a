#![forbid(unsafe_code)]
//! Request throughput of the release receiver against a bare hyper server
//! (`bare-hyper`, answering 401 as the receiver answers a wrong token) on
//! loopback, under wrk (`-t1 -c32` by default), in alternating rounds:
//! baseline, wrong-token rejects, authorised pushes matching nothing,
//! baseline again. Each round's ratios are taken against the mean of its
//! two baseline runs, so a machine that slows down or speeds up during the
//! benchmark affects both sides alike. Finally pushes matching one
//! Warehouse (one refresh PATCH to the emulator each, coalesced) are driven
//! once, for their latency.
//!
//! With `--log-volume` it only measures what the receiver logs for
//! wrong-token rejections with the chart's log settings (`RUST_LOG=info`,
//! JSON): one wrk run, then the log bytes per 10,000 rejected requests.
//!
//! Beside throughput, each run reports the server's CPU time per request
//! (all its threads, from `/proc`): on a machine shared with other work
//! throughput swings from run to run, CPU per request much less, so its
//! ratio tells whether a change made the request path cheaper.
//!
//! `bash hack/bench/load.sh [--rounds 5] [--duration 5s] [--connections 32]`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use bench::cluster::{push_matching_nothing, push_matching_one, Cluster, TOKEN};
use bench::http::{client, send, wait_for_status};
use bench::process::{free_port, sibling_binary, Program};
use clap::Parser;
use http::{Method, StatusCode};

/// Receiver vs bare hyper under wrk.
#[derive(Parser, Debug)]
struct Args {
    /// The receiver binary (default: the release build beside this one).
    #[arg(long)]
    receiver: Option<PathBuf>,
    /// The baseline binary (default: `bare-hyper` beside this one).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The load generator.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// Alternating rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of each wrk run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Skip the matched-push run.
    #[arg(long)]
    no_matched: bool,
    /// Only measure the log volume of wrong-token rejections (see above).
    #[arg(long)]
    log_volume: bool,
}

/// What wrk measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    requests_per_second: f64,
    requests: u64,
    p50: f64,
    p99: f64,
    /// Server CPU microseconds per request.
    cpu_us: f64,
}

/// wrk's script: POST with the body and Authorization header from the
/// environment.
const SCRIPT: &str = r#"
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("WRK_TOKEN")
"#;

struct Wrk<'a> {
    args: &'a Args,
    script: PathBuf,
}

impl Wrk<'_> {
    /// Runs wrk against `server` at `url`.
    fn run(
        &self,
        server: &Program,
        url: &str,
        token: &str,
        body: &str,
    ) -> anyhow::Result<Measured> {
        let cpu_before = server.cpu_time()?;
        let mut measured = self.run_wrk(url, token, body)?;
        let cpu = server.cpu_time()?.saturating_sub(cpu_before);
        measured.cpu_us = cpu.as_secs_f64() * 1e6 / measured.requests.max(1) as f64;
        Ok(measured)
    }

    fn run_wrk(&self, url: &str, token: &str, body: &str) -> anyhow::Result<Measured> {
        let duration = format!("{}s", self.args.duration.as_secs().max(1));
        let output = Command::new(&self.args.wrk)
            .arg(format!("-t{}", self.args.threads))
            .arg(format!("-c{}", self.args.connections))
            .arg(format!("-d{duration}"))
            .arg("--latency")
            .arg("-s")
            .arg(&self.script)
            .arg(url)
            .env("WRK_TOKEN", token)
            .env("WRK_BODY", body)
            .output()
            .with_context(|| {
                format!(
                    "running {} (hack/bench/load.sh installs it)",
                    self.args.wrk.display()
                )
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
    }
}

/// Requests/sec and the 50 % and 99 % latencies (in ms) of wrk's output.
fn parse_wrk(text: &str) -> Option<Measured> {
    let value_after = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second = value_after("Requests/sec:")?.parse().ok()?;
    let requests = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())?;
    Some(Measured {
        requests_per_second,
        requests,
        cpu_us: 0.0,
        p50: latency_ms(value_after("50%")?)?,
        p99: latency_ms(value_after("99%")?)?,
    })
}

/// wrk's latency (`84.00us`, `1.20ms`, `2.00s`) in milliseconds.
fn latency_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn line(what: &str, m: Measured) -> String {
    format!(
        "{what:<28} {:>9.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  {:>5.1} µs CPU/req",
        m.requests_per_second, m.p50, m.p99, m.cpu_us
    )
}

async fn check_answer(
    url: &str,
    token: &str,
    body: String,
    want: StatusCode,
    text: &str,
) -> anyhow::Result<()> {
    let headers = [
        ("Authorization", token),
        ("Content-Type", "application/json"),
    ];
    let (status, answer) = send(&client(), Method::POST, url, &headers, body).await?;
    let answer = String::from_utf8_lossy(&answer);
    anyhow::ensure!(
        status == want && answer.contains(text),
        "{url} answered {status} {answer}, expected {want} with {text:?}"
    );
    Ok(())
}

async fn start(
    receiver_env: &[(&str, &str)],
    receiver: &Path,
    baseline: &Path,
    cluster: &Cluster,
) -> anyhow::Result<(Program, Program, String, String)> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let bare: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut receiver = Program::receiver(
        receiver,
        cluster.kubeconfig(),
        listen,
        metrics,
        receiver_env,
    )?;
    let mut baseline = Program::start("bare-hyper", baseline, &[bare.to_string()], &[])?;
    let http = client();
    let deadline = Duration::from_secs(60);
    wait_for_status(
        &http,
        &format!("http://{listen}/readyz"),
        StatusCode::OK,
        &mut receiver,
        deadline,
    )
    .await?;
    let bare_url = format!("http://{bare}/");
    wait_for_status(
        &http,
        &bare_url,
        StatusCode::UNAUTHORIZED,
        &mut baseline,
        deadline,
    )
    .await?;
    Ok((
        receiver,
        baseline,
        format!("http://{listen}{}", Cluster::receiver_path()?),
        bare_url,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let receiver_bin = sibling_binary(args.receiver.clone(), "kargo-harbor-receiver")?;
    let baseline_bin = sibling_binary(args.baseline.clone(), "bare-hyper")?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(&script, SCRIPT)?;
    let wrk = Wrk {
        args: &args,
        script,
    };

    let cluster = Cluster::start().await?;
    // The chart's log settings when measuring log volume.
    let receiver_env: &[(&str, &str)] = if args.log_volume {
        &[("RUST_LOG", "info"), ("LOG_FORMAT", "json")]
    } else {
        &[]
    };
    let (receiver, baseline, url, bare_url) =
        start(receiver_env, &receiver_bin, &baseline_bin, &cluster).await?;
    let wrong = format!("wrong-{TOKEN}");
    let nothing = push_matching_nothing();
    let one = push_matching_one();
    check_answer(&url, TOKEN, nothing.clone(), StatusCode::OK, "refreshed 0").await?;
    // The log volume counts every line the rejections cause, the first too.
    let log_before = receiver.log_len()?;
    check_answer(
        &url,
        &wrong,
        one.clone(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await?;
    check_answer(
        &bare_url,
        &wrong,
        one.clone(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await?;

    if args.log_volume {
        let before = log_before;
        let rejected = wrk.run(&receiver, &url, &wrong, &one)?;
        // Rejections are summarised per window: give the last line time to come.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let bytes = receiver.log_len()?.saturating_sub(before);
        println!(
            "log volume: {bytes} bytes for {} rejected requests: {} bytes per 10,000",
            rejected.requests + 1,
            bytes * 10_000 / (rejected.requests + 1)
        );
        return Ok(());
    }
    println!(
        "wrk -t{} -c{} -d{}s, {} rounds; ratios against the mean of the round's two baseline runs",
        args.threads,
        args.connections,
        args.duration.as_secs().max(1),
        args.rounds
    );
    let (mut reject_ratios, mut nothing_ratios) = (Vec::new(), Vec::new());
    let (mut reject_cpu, mut nothing_cpu) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let before = wrk.run(&baseline, &bare_url, &wrong, &one)?;
        let reject = wrk.run(&receiver, &url, &wrong, &one)?;
        let no_match = wrk.run(&receiver, &url, TOKEN, &nothing)?;
        let after = wrk.run(&baseline, &bare_url, &wrong, &one)?;
        let base = (before.requests_per_second + after.requests_per_second) / 2.0;
        let base_cpu = (before.cpu_us + after.cpu_us) / 2.0;
        let (r, n) = (
            reject.requests_per_second / base,
            no_match.requests_per_second / base,
        );
        println!("round {round}");
        println!("  {}", line("bare hyper (401)", before));
        println!("  {}   {r:.2}x", line("wrong token (401)", reject));
        println!(
            "  {}   {n:.2}x",
            line("push matching nothing (200)", no_match)
        );
        println!("  {}", line("bare hyper (401)", after));
        reject_ratios.push(r);
        nothing_ratios.push(n);
        reject_cpu.push(base_cpu / reject.cpu_us);
        nothing_cpu.push(base_cpu / no_match.cpu_us);
    }
    println!(
        "median ratio to bare hyper: wrong token {:.2}x, push matching nothing {:.2}x",
        median(reject_ratios),
        median(nothing_ratios)
    );
    println!(
        "median ratio of CPU per request (bare hyper's / the receiver's): wrong token {:.2}x, push matching nothing {:.2}x",
        median(reject_cpu),
        median(nothing_cpu)
    );
    if !args.no_matched {
        let matched = wrk.run(&receiver, &url, TOKEN, &one)?;
        println!("{}", line("push matching 1 Warehouse", matched));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  84.00us\n     75%  1.20ms\n     90%  2.00ms\n     99%    1.50s\n  1000 requests in 1.00s, 1.00MB read\nRequests/sec:  99999.50\n";
        let m = parse_wrk(text).unwrap();
        assert_eq!(m.requests_per_second, 99999.5);
        assert_eq!(m.requests, 1000);
        assert!((m.p50 - 0.084).abs() < 1e-9 && (m.p99 - 1500.0).abs() < 1e-9);
    }
}
