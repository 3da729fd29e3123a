//! Wiring: builds the shared state, starts the controller, the webhook
//! server and the metrics server, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::controller::{self, ControllerError};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::server::{self, ServerError};

/// Why the program stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// No usable Kubernetes configuration (KUBECONFIG or in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Kubeconfig(#[source] kube::Error),
    /// The webhook or metrics server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The controller failed for good.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// A task panicked or was aborted.
    #[error("a task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// `/readyz`: true once the initial lists are synced and the index is built.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What every part shares.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The index (controller writes, server reads).
    pub index: Arc<Index>,
    /// All metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness flag.
    pub ready: Arc<Readiness>,
}

impl Shared {
    /// Fresh shared state: an empty index, new metrics, not ready.
    pub fn new(config: Config, client: kube::Client) -> Self {
        Self {
            config,
            client,
            index: Arc::new(Index::new()),
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(Readiness::default()),
        }
    }
}

/// A started program, for `run` and for in-process end-to-end tests.
pub struct Running {
    /// The shared state (index, metrics, readiness).
    pub shared: Arc<Shared>,
    /// Where the webhook server listens.
    pub listen_addr: SocketAddr,
    /// Where the metrics server listens.
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), ServerError>>,
    metrics_server: JoinHandle<Result<(), ServerError>>,
    controller: JoinHandle<Result<(), ControllerError>>,
}

/// Binds the listeners and starts every part.
pub async fn start(config: Config, client: kube::Client) -> Result<Running, RunError> {
    // One rustls provider for the whole process (kube's client and our TLS
    // listener): ring.
    crate::tls::provider();
    let shared = Arc::new(Shared::new(config, client));
    let shutdown = CancellationToken::new();
    let web = server::WebhookServer::bind(shared.clone()).await?;
    let metrics = server::MetricsServer::bind(shared.clone()).await?;
    let listen_addr = web.local_addr();
    let metrics_addr = metrics.local_addr();
    let server = tokio::spawn(web.serve(shutdown.clone()));
    let metrics_server = tokio::spawn(metrics.serve(shutdown.clone()));
    let controller = tokio::spawn(controller::run(shared.clone(), shutdown.clone()));
    Ok(Running {
        shared,
        listen_addr,
        metrics_addr,
        shutdown,
        server,
        metrics_server,
        controller,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `--shutdown-timeout`), releases the Lease, and waits for every part.
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        let server = self.server.await;
        let metrics = self.metrics_server.await;
        let controller = self.controller.await;
        server??;
        metrics??;
        controller??;
        Ok(())
    }

    /// Waits until some part stops by itself (an error) or `stop` resolves,
    /// then shuts everything down.
    pub async fn until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), RunError> {
        tokio::select! {
            () = stop => {}
            r = &mut self.server => { self.shutdown.cancel(); r??; }
            r = &mut self.controller => { self.shutdown.cancel(); r??; }
        }
        self.shutdown().await
    }
}

/// The `User-Agent` of every request the program makes to the API server:
/// `kargo-harbor-receiver/<version>`. It names the program in the API
/// server's audit log and lets tests tell its requests from their own.
pub const USER_AGENT: &str = concat!("kargo-harbor-receiver/", env!("CARGO_PKG_VERSION"));

/// The program's client configuration: `config` (from KUBECONFIG, in-cluster,
/// or a test's kubeconfig) with [`USER_AGENT`] set on every request. Used by
/// [`run`] and by the end-to-end tests for the client they hand to [`start`].
pub fn client_config(mut config: kube::Config) -> kube::Config {
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    config
}

/// Runs until SIGTERM or SIGINT, with the client from KUBECONFIG or the
/// in-cluster configuration.
pub async fn run(config: Config) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Kubeconfig(kube::Error::InferConfig(e)))?;
    let client =
        kube::Client::try_from(client_config(kube_config)).map_err(RunError::Kubeconfig)?;
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let running = start(config, client).await?;
    tracing::info!(listen = %running.listen_addr, metrics = %running.metrics_addr, "started");
    running
        .until(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_sets_one_user_agent() {
        let mut config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("someone-else/1"),
        ));
        let config = client_config(config);
        let agents: Vec<_> = config
            .headers
            .iter()
            .filter(|(name, _)| name == http::header::USER_AGENT)
            .map(|(_, value)| value.to_str().unwrap())
            .collect();
        assert_eq!(
            agents,
            [format!(
                "kargo-harbor-receiver/{}",
                env!("CARGO_PKG_VERSION")
            )]
        );
    }
}
