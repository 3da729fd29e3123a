//! The built binary as an operator meets it at start: bad values, a bad
//! `RUST_LOG`, no kubeconfig, an API server that cannot be reached. Each
//! gets one clear line; logs off a terminal carry no escape codes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{binary_path, test_args, wait_until};
use tokio::io::AsyncBufReadExt;

const DEADLINE: Duration = Duration::from_secs(30);

/// `run` with the end-to-end tests' flags, `extra` (flag, value) pairs
/// replacing or adding to them.
fn local(extra: &[&str]) -> Vec<String> {
    let mut args = test_args(&[]).split_off(1);
    for pair in extra.chunks(2) {
        match args.iter().position(|a| a == pair[0]) {
            Some(i) => args[i + 1] = pair[1].to_owned(),
            None => args.extend(pair.iter().map(|s| s.to_string())),
        }
    }
    args
}

fn command<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary_path());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("EXTERNAL_WEBHOOK_SERVER_BASE_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs to the end; (exit code, stderr lines).
async fn finish<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
) -> (Option<i32>, Vec<String>) {
    let out = tokio::time::timeout(DEADLINE, command(args, env).output())
        .await
        .expect("the binary exits")
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        stderr.lines().map(str::to_owned).collect(),
    )
}

#[tokio::test]
async fn each_bad_value_gets_one_line_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--resync-interval", "0s"],
            "'--resync-interval <RESYNC_INTERVAL>': must be at least 1s",
        ),
        (
            &["--lease-duration", "0s"],
            "'--lease-duration <LEASE_DURATION>': must be at least 1s",
        ),
        (
            &["--max-connections", "0"],
            "'--max-connections <MAX_CONNECTIONS>': must be at least 1",
        ),
        (
            &["--refresh-concurrency", "0"],
            "'--refresh-concurrency <REFRESH_CONCURRENCY>': must be at least 1",
        ),
        (
            &["--answer-deadline", "0s"],
            "'--answer-deadline <ANSWER_DEADLINE>': must be above zero",
        ),
    ];
    for (extra, want) in cases {
        let (code, lines) = finish(&local(extra), &[]).await;
        assert_eq!(code, Some(2), "{extra:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{extra:?}: {lines:?}");
        assert!(
            lines[0].starts_with("error: invalid value") && lines[0].contains(want),
            "{lines:?}"
        );
    }
    // The same through the env var the chart sets.
    let (code, lines) = finish(&local(&[]), &[("RESYNC_INTERVAL", "0s")]).await;
    assert_eq!((code, lines.len()), (Some(2), 1), "{lines:?}");

    let (code, lines) = finish(&["run"], &[]).await;
    assert_eq!(code, Some(2));
    assert_eq!(
        lines,
        ["error: missing --base-url (or set EXTERNAL_WEBHOOK_SERVER_BASE_URL)"]
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_is_one_line() {
    let (code, lines) = finish(&local(&[]), &[("KUBECONFIG", "/nonexistent/kubeconfig")]).await;
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ERROR"), "{lines:?}");
    assert!(
        lines[0].contains("no Kubernetes configuration: cannot read kubeconfig /nonexistent/kubeconfig: No such file or directory"),
        "{lines:?}"
    );
    // The operator commands say it the same way, on stderr.
    let (code, lines) = finish(
        &["explain", "--project", "p", "/dev/null"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
}

/// A running binary whose stderr lines are collected as they come.
struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[String], env: &[(&str, &str)]) -> Running {
        let mut child = command(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    async fn wait_for_line(&self, needle: &str) {
        wait_until(DEADLINE, needle, || async {
            self.lines().iter().any(|l| l.contains(needle))
        })
        .await;
    }

    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit after SIGTERM:\n{}", self.lines().join("\n")))
            .expect("wait");
        // The reader task has the last lines once the pipe closes.
        wait_until(DEADLINE, "the last log line", || async {
            self.lines().iter().any(|l| l.contains("SIGTERM"))
        })
        .await;
        (status.code(), self.lines())
    }
}

#[tokio::test]
async fn an_unreachable_api_server_is_named_once_and_sigterm_still_stops_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let server = format!("http://127.0.0.1:{port}");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let bin = Running::start(&local(&[]), &[("KUBECONFIG", kubeconfig.to_str().unwrap())]);
    bin.wait_for_line("cannot reach the API server").await;
    // Every watch and the Lease fail several times meanwhile.
    let (code, lines) = bin.stop().await;
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{text}");
    let named: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("cannot reach the API server"))
        .collect();
    assert_eq!(named.len(), 1, "{text}");
    assert!(named[0].contains(&format!("server={server}/")), "{text}");
    assert!(named[0].contains("Connection refused"), "{text}");
    assert!(
        !text.contains("ERROR"),
        "kube's per-request ERROR lines:\n{text}"
    );
    assert!(!text.contains("watch failed; retrying"), "{text}");
    assert!(!text.contains("lease renewal failed"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log that is no terminal:\n{text}"
    );
}

#[tokio::test]
async fn a_rust_log_that_hides_everything_warns_and_logs_at_info() {
    // No API server either: the warning comes before the first log line,
    // and the line after it (the error, at ERROR) proves logging is on.
    for (value, warning) in [
        (
            "warning",
            "warning: RUST_LOG=\"warning\" hides every log line",
        ),
        (
            "info,x=loud",
            "warning: RUST_LOG=\"info,x=loud\" does not parse",
        ),
    ] {
        let env = [("RUST_LOG", value), ("KUBECONFIG", "/nonexistent")];
        let (_, lines) = finish(&local(&[]), &env).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(warning), "{lines:?}");
        assert!(lines[1].contains("ERROR"), "{lines:?}");
    }
}

#[tokio::test]
async fn crds_into_a_pipe_closed_early_is_no_error() {
    use tokio::io::AsyncReadExt;
    let mut child = command(&["crds"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 4];
    stdout.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"---\n");
    drop(stdout); // as `| head -1` does
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
