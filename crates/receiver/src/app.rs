//! Assembly: the one place that builds the parts, hands each exactly what
//! it needs, starts them, and stops them in order.
//!
//! The data flow, part by part:
//!
//! ```text
//! watch (ProjectConfig, ClusterConfig, Secret metadata, Warehouse)
//!   ├─ config reconciles ──► index::routes        (path → receiver)
//!   │                    └─► status (leader only)
//!   └─ Warehouse watch ────► index::repositories  (repository → Warehouses)
//! listener ─► request (route lookup, token, payload, matching) ─► refresh ─► PATCH
//!                                                                   └─► Events
//! ```
//!
//! Shutdown: the listeners stop accepting and drain within
//! `--shutdown-timeout`, the controller stops and releases the Lease, then
//! the Warehouse Event sender and the certificate reloader stop; every task
//! is joined.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::Health;
use crate::index::Index;
use crate::listener::{Limits, ListenError, Listener, METRICS_MAX_CONNECTIONS};
use crate::metrics::{Metrics, MetricsService};
use crate::refresh::events::{self, EventSettings};
use crate::refresh::{KubePatcher, RefreshSettings, Refresher};
use crate::request::{Handler, RequestContext, WebhookService};
use crate::tls::{self, TlsError};
use crate::watch::leader::LeaseConfig;
use crate::watch::registrations::RegistrationSettings;
use crate::watch::{self, WatchError, WatchParts, WatchSettings};

/// Capacity of the Warehouse Event queue; Events beyond it are dropped.
const EVENT_QUEUE: usize = 1024;

/// Why the program stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// No usable Kubernetes configuration (KUBECONFIG or in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Kubeconfig(#[source] kube::Error),
    /// A listener could not start.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The controller failed for good.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// A task panicked or was aborted.
    #[error("a task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// The controller's settings, from the configuration.
pub(crate) fn watch_settings(config: &Config) -> WatchSettings {
    WatchSettings {
        base_url: config.base_url.clone(),
        system_resources_namespace: config.system_resources_namespace.clone(),
        secret_access: config.secret_access,
        watch_namespaces: config.watch_namespaces.clone(),
        secret_resync: config.secret_resync,
        resync_interval: config.resync_interval,
        rotation_grace_period: config.rotation_grace_period,
        registrations: config.registrations.then_some(RegistrationSettings {
            resync: config.registration_resync,
            harbor_timeout: config.harbor_timeout,
        }),
        lease: LeaseConfig {
            name: config.lease_name.clone(),
            namespace: config.lease_namespace.clone(),
            identity: config.replica_identity(),
            duration: config.lease_duration,
        },
    }
}

/// A started program, for `run` and for in-process end-to-end tests.
pub struct Running {
    /// Where the webhook server listens.
    pub listen_addr: SocketAddr,
    /// Where the metrics server listens.
    pub metrics_addr: SocketAddr,
    index: Index,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
    events_shutdown: CancellationToken,
    webhook: JoinHandle<()>,
    metrics_server: JoinHandle<()>,
    controller: JoinHandle<Result<(), WatchError>>,
    events: JoinHandle<()>,
    tls_reload: Option<JoinHandle<()>>,
}

/// Binds the listeners and starts every part.
pub async fn start(config: Config, client: kube::Client) -> Result<Running, RunError> {
    // One rustls provider for the whole process (kube's client and our TLS
    // listener): ring.
    tls::provider();
    let index = Index::new();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let shutdown = CancellationToken::new();
    let events_shutdown = CancellationToken::new();

    let (tls, tls_reload) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let (server_config, reload) = tls::reloading_server_config(
                cert,
                key,
                tls::DEFAULT_CHECK_INTERVAL,
                shutdown.clone(),
            )?;
            (
                Some(TlsAcceptor::from(Arc::new(server_config))),
                Some(reload),
            )
        }
        _ => (None, None),
    };
    let limits = Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        shutdown_timeout: config.shutdown_timeout,
    };
    let webhook_listener = Listener::bind("webhook", config.listen, tls, limits).await?;
    let metrics_listener = Listener::bind(
        "metrics",
        config.metrics_listen,
        None,
        Limits {
            max_connections: METRICS_MAX_CONNECTIONS,
            ..limits
        },
    )
    .await?;
    let listen_addr = webhook_listener.local_addr().unwrap_or(config.listen);
    let metrics_addr = metrics_listener
        .local_addr()
        .unwrap_or(config.metrics_listen);

    let (event_sink, events) = events::spawn(
        client.clone(),
        EventSettings {
            capacity: EVENT_QUEUE,
            instance: config.replica_identity(),
            api_timeout: config.api_timeout,
        },
        metrics.refresh.events_dropped.clone(),
        events_shutdown.clone(),
    );
    let refresher = Refresher::new(
        Arc::new(KubePatcher::new(client.clone())),
        metrics.refresh.clone(),
        RefreshSettings {
            api_timeout: config.api_timeout,
            concurrency: config.refresh_concurrency,
        },
        Some(event_sink),
    );
    let handler = Handler::new(RequestContext {
        index: index.clone(),
        refresher,
        metrics: metrics.requests.clone(),
        request_timeout: config.request_timeout,
    });
    let webhook = tokio::spawn(webhook_listener.serve(
        WebhookService::new(handler, health.clone()),
        shutdown.clone(),
    ));
    let metrics_server = tokio::spawn(metrics_listener.serve(
        MetricsService::new(metrics.clone(), index.clone()),
        shutdown.clone(),
    ));
    let controller = tokio::spawn(watch::run(
        WatchParts {
            client,
            settings: watch_settings(&config),
            routes: index.routes.clone(),
            repositories: index.repositories.clone(),
            metrics: metrics.controller.clone(),
            registration_metrics: metrics.registrations.clone(),
            health: health.clone(),
        },
        shutdown.clone(),
    ));
    Ok(Running {
        listen_addr,
        metrics_addr,
        index,
        metrics,
        health,
        shutdown,
        events_shutdown,
        webhook,
        metrics_server,
        controller,
        events,
        tls_reload,
    })
}

impl Running {
    /// The index (routes and repositories), as the request path reads it.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Every metric.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text `/metrics` would answer now.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(self.index.sizes())
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.health.is_ready()
    }

    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `--shutdown-timeout`), stops the controller (which releases the
    /// Lease), then the Event sender; waits for every part.
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        let webhook = self.webhook.await;
        let metrics = self.metrics_server.await;
        let controller = self.controller.await;
        self.events_shutdown.cancel();
        let events = self.events.await;
        if let Some(reload) = self.tls_reload {
            reload.await?;
        }
        webhook?;
        metrics?;
        controller??;
        events?;
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
            r = &mut self.controller => {
                self.shutdown.cancel();
                self.events_shutdown.cancel();
                let webhook = self.webhook.await;
                let metrics = self.metrics_server.await;
                let events = self.events.await;
                if let Some(reload) = self.tls_reload {
                    reload.await?;
                }
                r??;
                webhook?;
                metrics?;
                events?;
                return Ok(());
            }
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
pub fn client_config(config: kube::Config) -> kube::Config {
    client_config_as(config, USER_AGENT)
}

/// `config` with `user_agent` set on every request (the subcommands that
/// run as the user name themselves apart from the controller).
pub fn client_config_as(mut config: kube::Config, user_agent: &'static str) -> kube::Config {
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(user_agent),
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
