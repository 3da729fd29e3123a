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
//! Shutdown (see [`run`]): on SIGTERM or SIGINT `/readyz` answers 503 at
//! once and serving goes on for `--drain-delay` (a second signal skips the
//! rest of it), so that Kubernetes removes the endpoint before the port
//! closes. Then, all within `--shutdown-timeout`: the listeners stop
//! accepting and finish the requests in progress, the controller stops and
//! releases the Lease, background refreshes finish, then the Warehouse
//! Event sender and the certificate reloader stop. Every task is joined,
//! or aborted when the bound is reached: the process exits 0 in time even
//! when the API server never answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::Health;
use crate::index::Index;
use crate::listener::{
    Limits, ListenError, Listener, METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS_PER_CLIENT,
};
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
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::ClientError),
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
    /// The settings contradict each other.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The controller's settings, from the configuration; `identity` is the
/// replica's (see [`Config::replica_identity`]).
pub(crate) fn watch_settings(config: &Config, identity: &str) -> WatchSettings {
    WatchSettings {
        base_url: config.base_url.clone(),
        system_resources_namespace: config.system_resources_namespace.clone(),
        secret_access: config.secret_access,
        watch_namespaces: config.watch_namespaces.clone(),
        secret_resync: config.secret_resync,
        resync_interval: config.resync_interval,
        api_server: config
            .api_server
            .clone()
            .unwrap_or_else(|| "the API server".into()),
        rotation_grace_period: config.rotation_grace_period,
        registrations: config.registrations.then_some(RegistrationSettings {
            resync: config.registration_resync,
            harbor_timeout: config.harbor_timeout,
        }),
        lease: LeaseConfig {
            name: config.lease_name.clone(),
            namespace: config.lease_namespace.clone(),
            identity: identity.to_owned(),
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
    refresher: Refresher,
    shutdown_timeout: Duration,
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
    config.validate().map_err(RunError::Config)?;
    let identity = config.replica_identity();
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
        max_connections_per_client: config.max_connections_per_client,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        shutdown_timeout: config.shutdown_timeout,
    };
    let webhook_listener = Listener::bind(
        "webhook",
        config.listen,
        tls,
        limits,
        metrics.listeners.clone(),
    )
    .await?;
    let metrics_listener = Listener::bind(
        "metrics",
        config.metrics_listen,
        None,
        Limits {
            max_connections: METRICS_MAX_CONNECTIONS,
            max_connections_per_client: METRICS_MAX_CONNECTIONS_PER_CLIENT,
            ..limits
        },
        metrics.listeners.clone(),
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
            instance: identity.clone(),
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
        refresher: refresher.clone(),
        metrics: metrics.requests.clone(),
        answer_deadline: config.answer_deadline,
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
            settings: watch_settings(&config, &identity),
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
        refresher,
        shutdown_timeout: config.shutdown_timeout,
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

    /// Marks the process shutting down: `/readyz` answers 503 from now on
    /// while everything else goes on serving.
    pub fn drain(&self) {
        self.health.set_draining();
    }

    /// Stops everything within `--shutdown-timeout`: the listeners stop
    /// accepting and finish the requests in progress, the controller stops
    /// (releasing the Lease), background refreshes finish, then the Event
    /// sender stops. A part still running at the bound is aborted; that is
    /// logged, not an error.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.health.set_draining();
        self.shutdown.cancel();
        // The parts stop side by side, each by the one deadline: one that
        // hangs (the controller, when the API server never answers) takes
        // no time from the others.
        let refresher = self.refresher;
        let events_shutdown = self.events_shutdown;
        let events = self.events;
        let webhook = self.webhook;
        let requests_then_refreshes_then_events = async move {
            // No new refresh starts once the webhook listener is done.
            let webhook = join_by(deadline, "webhook listener", webhook).await;
            // Background refreshes queue Events: stop the sender after them,
            // leaving it a moment of the bound.
            let left = deadline.saturating_duration_since(Instant::now());
            refresher
                .shutdown(left.saturating_sub(Duration::from_millis(500)))
                .await;
            events_shutdown.cancel();
            (webhook, join_by(deadline, "Event sender", events).await)
        };
        let ((webhook, events), metrics, controller) = tokio::join!(
            requests_then_refreshes_then_events,
            join_by(deadline, "metrics listener", self.metrics_server),
            join_by(deadline, "controller", self.controller),
        );
        if let Some(reload) = self.tls_reload {
            join_by(deadline, "certificate reloader", reload)
                .await
                .transpose()?;
        }
        webhook.transpose()?;
        metrics.transpose()?;
        if let Some(controller) = controller {
            controller??;
        }
        events.transpose()?;
        Ok(())
    }

    /// Waits until the controller stops by itself (an error) or `stop`
    /// resolves, then shuts everything down.
    pub async fn until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), RunError> {
        tokio::select! {
            () = stop => self.shutdown().await,
            r = &mut self.controller => {
                tracing::error!("the controller stopped by itself: shutting down");
                // Joined already: shut the rest down around a finished task.
                self.controller = tokio::spawn(std::future::ready(Ok(())));
                let rest = self.shutdown().await;
                r??;
                rest
            }
        }
    }
}

/// Joins `task` by `deadline`, or aborts it then (`None`).
async fn join_by<T>(
    deadline: Instant,
    what: &'static str,
    mut task: JoinHandle<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(joined) => Some(joined),
        Err(_elapsed) => {
            tracing::warn!(
                part = what,
                "did not stop within --shutdown-timeout: aborted"
            );
            task.abort();
            let _ = task.await;
            None
        }
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
    crate::kubeconfig::with_user_agent(config, USER_AGENT)
}

/// Runs until SIGTERM or SIGINT, with the client from KUBECONFIG or the
/// in-cluster configuration.
pub async fn run(config: Config) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let cluster = crate::kubeconfig::infer(USER_AGENT).await?;
    let client = cluster.client;
    let config = Config {
        api_server: Some(cluster.server),
        ..config
    };
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let drain_delay = config.drain_delay;
    let running = start(config, client).await?;
    tracing::info!(listen = %running.listen_addr, metrics = %running.metrics_addr, "started");
    let health = running.health.clone();
    running
        .until(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
            health.set_draining();
            tokio::select! {
                () = tokio::time::sleep(drain_delay) => {}
                _ = term.recv() => tracing::info!("second signal: skipping the rest of the drain delay"),
                _ = int.recv() => tracing::info!("second signal: skipping the rest of the drain delay"),
            }
            tracing::info!("shutting down");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_stops_on_request_when_the_api_server_was_never_reached() {
        // Nothing listens at the offline client's address: every watch is in
        // backoff, kube's controllers wait for a first list that never comes.
        let client = crate::testing::offline_client();
        let config = crate::testing::config(&[
            "--base-url",
            "https://h",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        let running = start(config, client).await.unwrap();
        // Generous: a hang is what this catches, not a slow stop.
        tokio::time::timeout(std::time::Duration::from_secs(60), running.shutdown())
            .await
            .expect("stopped")
            .expect("cleanly");
    }

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
