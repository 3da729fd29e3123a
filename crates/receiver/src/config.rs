//! Command line and environment: one [`Config`] passed down, no globals.
//! Every flag has an environment variable so that the Helm chart can set it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::receiver_path::BaseUrl;

/// Harbor webhook receiver for Kargo.
#[derive(Debug, Parser)]
#[command(name = "kargo-harbor-receiver", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller and the webhook server.
    Run(Box<Config>),
    /// Print the CRDs as YAML: HarborWebhookRegistration (always needed
    /// with --registrations) and Kargo's three (for clusters without Kargo).
    Crds,
    /// Explain a Harbor push: which Warehouses it refreshes and why the
    /// others are not, with the receiver's own matching code.
    Explain(crate::explain::ExplainArgs),
    /// Send a test Harbor push to a receiver, as Harbor would (Harbor has
    /// no test button since v2.3), and print the answer.
    SendTest(crate::send_test::SendTestArgs),
    /// Show the last webhook deliveries Harbor recorded for a
    /// HarborWebhookRegistration's policies (uses KUBECONFIG).
    Deliveries(crate::deliveries::DeliveriesArgs),
}

/// How Secrets referenced by receivers are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SecretAccess {
    /// Metadata-only list/watch (cluster-wide, or in --watch-namespaces);
    /// rotations propagate in about a second. Needs list/watch on Secrets.
    Watch,
    /// No list/watch: referenced Secrets are re-read every --secret-resync.
    /// Needs only get on Secrets; rotations take up to that interval.
    Get,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Settings of `run`.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Externally visible base URL of the webhook server; receiver URLs are
    /// derived from it exactly as Kargo does (absolute http(s) URL).
    #[arg(long, env = "EXTERNAL_WEBHOOK_SERVER_BASE_URL", value_parser = parse_base_url)]
    pub base_url: BaseUrl,

    /// Address for receiver paths, /healthz and /readyz.
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address for /metrics (Prometheus text format).
    #[arg(long, env = "METRICS_LISTEN_ADDRESS", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Namespace holding the Secrets of ClusterConfig receivers.
    #[arg(
        long,
        env = "SYSTEM_RESOURCES_NAMESPACE",
        default_value = "kargo-system-resources"
    )]
    pub system_resources_namespace: String,

    /// PEM certificate chain; serves HTTPS when given (with --tls-key).
    /// The files are re-read when they change.
    #[arg(long, env = "TLS_CERT_PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TLS_KEY_PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How referenced Secrets are observed: `watch` (metadata-only watch,
    /// fast rotation) or `get` (periodic re-read, no list/watch permission).
    #[arg(long, env = "SECRET_ACCESS", value_enum, default_value = "watch")]
    pub secret_access: SecretAccess,

    /// Limit the Secret watch to these namespaces (comma-separated); empty
    /// means cluster-wide. Include the system resources namespace if you use
    /// a ClusterConfig.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// With --secret-access=get, how often referenced Secrets are re-read
    /// (at least 1s).
    #[arg(long, env = "SECRET_RESYNC", default_value = "60s", value_parser = at_least_one_second)]
    pub secret_resync: Duration,

    /// Periodic full reconcile, bounding drift (at least 1s).
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = at_least_one_second)]
    pub resync_interval: Duration,

    /// After a receiver's auth header changes, how long its previous path
    /// and token stay accepted (Harbor's queued retries come up to ~3 min
    /// after an event); 0 disables.
    #[arg(long, env = "ROTATION_GRACE_PERIOD", default_value = "5m", value_parser = humantime::parse_duration)]
    pub rotation_grace_period: Duration,

    /// Run the HarborWebhookRegistration controller (needs its CRD; see
    /// `kargo-harbor-receiver crds`).
    #[arg(long, env = "REGISTRATIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub registrations: bool,

    /// How often each registration is compared with Harbor, repairing
    /// edits made there (drift).
    #[arg(long, env = "REGISTRATION_RESYNC", default_value = "5m", value_parser = humantime::parse_duration)]
    pub registration_resync: Duration,

    /// Timeout of each Harbor API request of the registration controller.
    #[arg(long, env = "HARBOR_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub harbor_timeout: Duration,

    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "kargo-harbor-receiver")]
    pub lease_name: String,

    /// Namespace of the Lease (the pod's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Lease duration; a new leader takes over within it (at least 1s: the
    /// Lease holds whole seconds).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = at_least_one_second)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease and in its Events (default:
    /// the host name plus a random suffix, unique even when host names
    /// collide).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Connections held at once on each listener's port (webhook); when
    /// all are taken, the one idle longest gives way to a new one (at
    /// least 1).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = at_least_one)]
    pub max_connections: usize,

    /// Connections held at once by one client address (webhook listener);
    /// beyond it, that address's connection idle longest gives way. Behind
    /// a proxy every client has the proxy's address: raise it to
    /// --max-connections there. At least 1.
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = 128, value_parser = at_least_one)]
    pub max_connections_per_client: usize,

    /// Time from a connection's accept for its TLS handshake, protocol
    /// detection and first request head (and for each later HTTP/1 head);
    /// above zero.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = above_zero)]
    pub header_read_timeout: Duration,

    /// A connection with no request (HTTP/1) or stream (HTTP/2) in progress
    /// for this long is closed; pings do not count. Above zero.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "30s", value_parser = above_zero)]
    pub idle_timeout: Duration,

    /// Every webhook answer goes out within this time of its request head,
    /// body and refreshes included; keep it below Harbor's 3 s. Refreshes
    /// still running then go on in the background and the answer is 503
    /// (Harbor retries; the retry joins that work). Above zero.
    #[arg(long, env = "ANSWER_DEADLINE", default_value = "2500ms", value_parser = above_zero)]
    pub answer_deadline: Duration,

    /// Bound of each API call (a refresh PATCH with kube's own retries);
    /// work past the answer deadline is bounded by it. Above zero.
    #[arg(long, env = "API_TIMEOUT", default_value = "10s", value_parser = above_zero)]
    pub api_timeout: Duration,

    /// Maximum concurrent Warehouse patches for one delivery (at least 1).
    #[arg(long, env = "REFRESH_CONCURRENCY", default_value_t = 64, value_parser = at_least_one)]
    pub refresh_concurrency: usize,

    /// On SIGTERM, how long /readyz answers 503 while serving goes on, so
    /// that Kubernetes removes the endpoint before the port closes (0s: no
    /// drain).
    #[arg(long, env = "DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the drain delay, the bound of everything left: requests in
    /// progress, background refreshes, the controller and the Lease
    /// release. Whatever is left then is aborted and the process exits 0.
    /// Must exceed --answer-deadline.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format; RUST_LOG filters.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,

    /// The API server's URL, for log lines: from the kubeconfig, not a flag.
    #[arg(skip)]
    pub api_server: Option<String>,
}

impl Config {
    /// This replica's identity: `--identity` (`POD_NAME`), else the host
    /// name plus a random suffix. The Lease holder and the reporting
    /// instance of every Event we create, so that both name the same
    /// replica: call it once and pass the value on.
    pub fn replica_identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(crate::watch::leader::default_identity)
    }

    /// Checks what clap cannot: the shutdown bound must leave the answer
    /// deadline room, and the deadline must be positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.answer_deadline.is_zero() {
            return Err("--answer-deadline must be positive".into());
        }
        if self.shutdown_timeout <= self.answer_deadline {
            return Err(format!(
                "--shutdown-timeout ({:?}) must exceed --answer-deadline ({:?})",
                self.shutdown_timeout, self.answer_deadline
            ));
        }
        Ok(())
    }
}

fn parse_base_url(text: &str) -> Result<BaseUrl, String> {
    BaseUrl::parse(text).map_err(|e| e.to_string())
}

// Zero and near-zero values are refused where they break the program
// rather than tune it: a 0s resync reconciles in a busy loop, a 0s Lease
// flaps, zero connections or patches serve nothing, a 0s timeout fails
// every request.

fn at_least_one_second(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

fn above_zero(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(d)
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A command-line error in one line: which flag, its environment variable
/// where it has one, and what is wrong. `None` for errors better shown as
/// clap shows them (help, version, unknown flags with suggestions).
pub fn one_line_error(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    match err.kind() {
        ErrorKind::MissingRequiredArgument => {
            let missing = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(s)) => s.clone(),
                _ => return None,
            };
            let cmd = Cli::command();
            let args: Vec<&clap::Arg> = cmd
                .get_subcommands()
                .flat_map(|c| c.get_arguments())
                .collect();
            let described: Vec<String> = missing
                .iter()
                .map(|m| {
                    let long = m.split_whitespace().next().unwrap_or(m);
                    let env = args
                        .iter()
                        .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == long))
                        .and_then(|a| a.get_env())
                        .map(|e| format!(" (or set {})", e.to_string_lossy()))
                        .unwrap_or_default();
                    format!("{long}{env}")
                })
                .collect();
            Some(format!("error: missing {}", described.join(", ")))
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            err.to_string().lines().next().map(str::to_owned)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::parse as run;

    #[test]
    fn defaults() {
        let c = run(&["--base-url", "https://kargo.example.com/webhook/"]).unwrap();
        assert_eq!(c.base_url.base_path(), "/webhook");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.metrics_listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.system_resources_namespace, "kargo-system-resources");
        assert_eq!(c.secret_access, SecretAccess::Watch);
        assert_eq!(c.resync_interval, Duration::from_secs(300));
        assert!(c.tls_cert.is_none());
        // Harbor waits 3 s; shutdown outlasts the answer deadline.
        assert_eq!(c.answer_deadline, Duration::from_millis(2500));
        assert!(c.shutdown_timeout > c.answer_deadline);
        assert_eq!(c.drain_delay, Duration::from_secs(5));
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections_per_client, 128);
        assert_eq!(c.validate(), Ok(()));
        let short = run(&["--base-url", "https://x", "--shutdown-timeout", "2s"]).unwrap();
        assert!(short.validate().unwrap_err().contains("--shutdown-timeout"));
    }

    #[test]
    fn invalid_input_is_refused_with_a_clear_error() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--base-url"),
            (
                &["--base-url", "kargo.example.com"],
                "absolute http:// or https://",
            ),
            (&["--base-url", "ftp://x"], "absolute http:// or https://"),
            (
                &["--base-url", "https://x", "--listen", "nope"],
                "invalid socket address",
            ),
            (
                &["--base-url", "https://x", "--tls-cert", "/c.pem"],
                "--tls-key",
            ),
            (
                &["--base-url", "https://x", "--secret-resync", "soon"],
                "soon",
            ),
            (
                &["--base-url", "https://x", "--secret-access", "list"],
                "possible values",
            ),
        ];
        for (args, needle) in cases {
            let err = run(args).expect_err("must be refused").to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn values_that_break_the_program_get_one_line_each() {
        let cases: &[(&str, &str, &str)] = &[
            ("--resync-interval", "0s", "must be at least 1s"),
            ("--resync-interval", "10ms", "must be at least 1s"),
            ("--secret-resync", "0s", "must be at least 1s"),
            ("--lease-duration", "0s", "must be at least 1s"),
            ("--max-connections", "0", "must be at least 1"),
            ("--refresh-concurrency", "0", "must be at least 1"),
            ("--refresh-concurrency", "many", "invalid digit"),
            ("--header-read-timeout", "0s", "must be above zero"),
            ("--answer-deadline", "0s", "must be above zero"),
            ("--idle-timeout", "0s", "must be above zero"),
            ("--max-connections-per-client", "0", "must be at least 1"),
            ("--api-timeout", "0s", "must be above zero"),
        ];
        for (flag, value, why) in cases {
            let err = run(&["--base-url", "https://x", flag, value]).expect_err("refused");
            let line = one_line_error(&err).unwrap_or_else(|| panic!("{flag}: {err}"));
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("error: invalid value"), "{line}");
            assert!(
                line.contains(flag) && line.contains(why),
                "{flag} {value}: {line}"
            );
        }
        // Zero is meaningful here: no drain.
        let c = run(&["--base-url", "https://x", "--shutdown-timeout", "0s"]).unwrap();
        assert!(c.shutdown_timeout.is_zero());
    }

    #[test]
    fn a_missing_base_url_names_its_env_var() {
        let err = run(&[]).expect_err("refused");
        assert_eq!(
            one_line_error(&err).as_deref(),
            Some("error: missing --base-url (or set EXTERNAL_WEBHOOK_SERVER_BASE_URL)")
        );
        let help = Cli::try_parse_from(["kargo-harbor-receiver", "run", "--help"]).unwrap_err();
        assert_eq!(
            one_line_error(&help),
            None,
            "help is shown as clap shows it"
        );
    }

    #[test]
    fn every_flag_has_an_env_var() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        for arg in run.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_env().is_some(), "--{id} has no env var");
        }
    }
}
