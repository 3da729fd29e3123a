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
    /// Print the project's own CRDs (for clusters without Kargo) as YAML.
    Crds,
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

    /// With --secret-access=get, how often referenced Secrets are re-read.
    #[arg(long, env = "SECRET_RESYNC", default_value = "60s", value_parser = humantime::parse_duration)]
    pub secret_resync: Duration,

    /// Periodic full reconcile, bounding drift.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,

    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "kargo-harbor-receiver")]
    pub lease_name: String,

    /// Namespace of the Lease (the pod's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Lease duration; a new leader takes over within it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease and in its Events (default:
    /// the host name plus a random suffix, unique even when host names
    /// collide).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Connections held at once on each listener's port (webhook); when
    /// all are taken, the one idle longest gives way to a new one.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Connections held at once by one client address (webhook listener);
    /// beyond it, that address's connection idle longest gives way. Behind
    /// a proxy every client has the proxy's address: raise it to
    /// --max-connections there.
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = 128)]
    pub max_connections_per_client: usize,

    /// Time from a connection's accept for its TLS handshake, protocol
    /// detection and first request head (and for each later HTTP/1 head).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no request (HTTP/1) or stream (HTTP/2) in progress
    /// for this long is closed; pings do not count.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Every webhook answer goes out within this time of its request head,
    /// body and refreshes included; keep it below Harbor's 3 s. Refreshes
    /// still running then go on in the background and the answer is 503
    /// (Harbor retries; the retry joins that work).
    #[arg(long, env = "ANSWER_DEADLINE", default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub answer_deadline: Duration,

    /// Bound of each API call (a refresh PATCH with kube's own retries);
    /// work past the answer deadline is bounded by it.
    #[arg(long, env = "API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,

    /// Maximum concurrent Warehouse patches for one delivery.
    #[arg(long, env = "REFRESH_CONCURRENCY", default_value_t = 64)]
    pub refresh_concurrency: usize,

    /// On SIGTERM, how long /readyz answers 503 while serving goes on, so
    /// that Kubernetes removes the endpoint before the port closes.
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
