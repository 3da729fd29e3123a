#![forbid(unsafe_code)]
//! Memory and readiness at scale: for each size and Warehouse shape, seeds a
//! fresh kube-emulator, starts the release receiver binary as its own
//! process, waits for `/readyz`, and prints
//!
//! - time from process start to ready;
//! - RSS at ready and its peak during the initial list (`VmHWM`);
//! - net bytes per Warehouse: (RSS − RSS of the same binary ready with no
//!   seeded Warehouse) / Warehouses, and the same for the peak;
//! - p50/p99 of a push matching one Warehouse (one refresh PATCH each, sent
//!   one after another) beside p50/p99 of the same merge PATCH sent straight
//!   to the emulator, by a bare hyper client and by a kube-rs client (what
//!   the receiver uses).
//!
//! With `--after-ready` the Warehouses are created once the receiver is
//! ready instead, so each arrives as a watch event (one index update each),
//! and the time is from the first creation until all are indexed.
//!
//! `bash hack/bench/memory.sh [--sizes 1000,10000,100000] [--shapes plain,shared-allow,unique-ignore]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::cluster::{push_matching_one, Cluster, Shape};
use bench::http::{client, quantile, send, wait_for_status, Client};
use bench::process::{free_port, sibling_binary, Memory, Program};
use clap::Parser;
use http::{Method, StatusCode};

/// Memory and readiness of the receiver at scale.
#[derive(Parser, Debug)]
struct Args {
    /// The receiver binary (default: the release build beside this one).
    #[arg(long)]
    receiver: Option<PathBuf>,
    /// Numbers of seeded Warehouses.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Warehouse shapes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plain,shared-allow,unique-ignore"
    )]
    shapes: Vec<Shape>,
    /// Matched pushes (and direct PATCHes) timed per run.
    #[arg(long, default_value_t = 200)]
    pushes: usize,
    /// Create the Warehouses after the receiver is ready (watch events)
    /// instead of before it starts (the initial list).
    #[arg(long)]
    after_ready: bool,
    /// Longest wait for `/readyz` (or, with `--after-ready`, for the index).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    ready_deadline: Duration,
}

/// One receiver run against one seeded cluster.
struct Run {
    ready: Duration,
    memory: Memory,
    push: Latencies,
    patch: Latencies,
    kube_patch: Latencies,
}

#[derive(Clone, Copy)]
struct Latencies {
    p50: Duration,
    p99: Duration,
}

impl Latencies {
    fn of(mut samples: Vec<Duration>) -> Latencies {
        Latencies {
            p50: quantile(&mut samples, 0.5),
            p99: quantile(&mut samples, 0.99),
        }
    }
}

/// `p50/p99` in milliseconds.
impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(f, "{:.2}/{:.2}", ms(self.p50), ms(self.p99))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// What to create once the receiver is ready (`--after-ready`).
struct Later {
    shape: Shape,
    count: usize,
}

async fn measure(
    args: &Args,
    receiver: &std::path::Path,
    cluster: &Cluster,
    later: Option<Later>,
) -> anyhow::Result<Run> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let http = client();
    let started = Instant::now();
    let mut program = Program::receiver(receiver, cluster.kubeconfig(), listen, metrics, &[])?;
    let ready_at = wait_for_status(
        &http,
        &format!("http://{listen}/readyz"),
        StatusCode::OK,
        &mut program,
        args.ready_deadline,
    )
    .await?;
    let mut ready = ready_at - started;
    if let Some(later) = later {
        let started = Instant::now();
        cluster.seed(later.shape, later.count)?;
        wait_indexed(
            &http,
            metrics,
            later.count + 1,
            &mut program,
            args.ready_deadline,
        )
        .await?;
        ready = started.elapsed();
    }
    let memory = program.memory()?;

    let url = format!("http://{listen}{}", Cluster::receiver_path()?);
    let body = push_matching_one();
    let mut pushes = Vec::with_capacity(args.pushes);
    for _ in 0..args.pushes {
        let sent = Instant::now();
        let (status, answer) = send(
            &http,
            Method::POST,
            &url,
            &[
                ("Authorization", bench::cluster::TOKEN),
                ("Content-Type", "application/json"),
            ],
            body.clone(),
        )
        .await?;
        pushes.push(sent.elapsed());
        anyhow::ensure!(
            status == StatusCode::OK && answer.starts_with(b"{\"msg\":\"refreshed 1 "),
            "matched push answered {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let patch = patch_round_trips(&http, cluster, args.pushes).await?;
    let kube_patch = kube_patch_round_trips(cluster, args.pushes).await?;
    Ok(Run {
        ready,
        memory,
        push: Latencies::of(pushes),
        patch,
        kube_patch,
    })
}

/// Waits until the receiver's index holds `count` Warehouses.
async fn wait_indexed(
    http: &Client,
    metrics: SocketAddr,
    count: usize,
    program: &mut Program,
    deadline: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = format!("http://{metrics}/metrics");
    loop {
        program.check_running()?;
        let (_, text) = send(http, Method::GET, &url, &[], bytes::Bytes::new()).await?;
        let indexed = String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix("kargo_harbor_receiver_index_warehouses "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if indexed >= count {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "{indexed} of {count} Warehouses indexed after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The refresh PATCH sent straight to the emulator, one after another.
async fn patch_round_trips(
    http: &Client,
    cluster: &Cluster,
    count: usize,
) -> anyhow::Result<Latencies> {
    let url = format!("{}{}", cluster.url(), Cluster::target_path());
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let body = format!(r#"{{"metadata":{{"annotations":{{"bench.example.com/n":"{i}"}}}}}}"#);
        let sent = Instant::now();
        let (status, _) = send(
            http,
            Method::PATCH,
            &url,
            &[("Content-Type", "application/merge-patch+json")],
            body,
        )
        .await?;
        samples.push(sent.elapsed());
        anyhow::ensure!(status == StatusCode::OK, "direct PATCH answered {status}");
    }
    Ok(Latencies::of(samples))
}

/// The refresh PATCH through kube-rs (`Api::patch`, merge patch, the
/// answer deserialised), one after another.
async fn kube_patch_round_trips(cluster: &Cluster, count: usize) -> anyhow::Result<Latencies> {
    use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let resource = ApiResource {
        group: "kargo.akuity.io".into(),
        version: "v1alpha1".into(),
        api_version: "kargo.akuity.io/v1alpha1".into(),
        kind: "Warehouse".into(),
        plural: "warehouses".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube::Client::try_from(config)?,
        bench::cluster::PROJECT,
        &resource,
    );
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let patch = serde_json::json!({"metadata": {"annotations": {"bench.example.com/kube": i.to_string()}}});
        let sent = Instant::now();
        api.patch(
            bench::cluster::TARGET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        samples.push(sent.elapsed());
    }
    Ok(Latencies::of(samples))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let receiver = sibling_binary(args.receiver.clone(), "kargo-harbor-receiver")?;
    println!("receiver: {}", receiver.display());

    let cluster = Cluster::start().await?;
    let idle = measure(&args, &receiver, &cluster, None)
        .await
        .context("idle run")?;
    drop(cluster);
    println!(
        "idle (1 Warehouse): ready {:.2} s, RSS {} MiB, peak {} MiB; matched push p50/p99 {} ms, direct PATCH {} ms (kube-rs {} ms)",
        idle.ready.as_secs_f64(),
        mib(idle.memory.rss),
        mib(idle.memory.peak),
        idle.push,
        idle.patch,
        idle.kube_patch,
    );
    println!();
    let ready = if args.after_ready {
        "indexed (s)"
    } else {
        "ready (s)"
    };
    println!("| Warehouses | shape | {ready} | RSS (MiB) | net B/Warehouse | peak RSS (MiB) | net peak B/Warehouse | matched push p50/p99 (ms) | PATCH p50/p99 (ms): hyper, kube-rs |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &size in &args.sizes {
        for &shape in &args.shapes {
            let cluster = Cluster::start().await?;
            let later = if args.after_ready {
                Some(Later { shape, count: size })
            } else {
                cluster.seed(shape, size)?;
                None
            };
            let run = measure(&args, &receiver, &cluster, later)
                .await
                .with_context(|| format!("{size} {shape}"))?;
            drop(cluster);
            let net = |now: u64, idle: u64| (now as f64 - idle as f64) / size as f64;
            println!(
                "| {size} | {shape} | {:.2} | {} | {:.0} | {} | {:.0} | {} | {}, {} |",
                run.ready.as_secs_f64(),
                mib(run.memory.rss),
                net(run.memory.rss, idle.memory.rss),
                mib(run.memory.peak),
                net(run.memory.peak, idle.memory.peak),
                run.push,
                run.patch,
                run.kube_patch,
            );
        }
    }
    Ok(())
}
