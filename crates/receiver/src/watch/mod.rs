//! Cluster state → the index (every replica) and → status (the leader).
//!
//! - [`warehouses`]: Warehouse watch → repository index (no Warehouse cache).
//! - [`secrets`]: Secret access modes (RBAC and rotation delay of each are
//!   documented there) and the one-GET-per-change Secret reads.
//! - [`configs`]: one kube-runtime `Controller` per config kind
//!   (ProjectConfig, the ClusterConfig `cluster`), set up by one generic
//!   function, with its triggers (Secret changes, leadership) and its
//!   readiness bookkeeping.
//! - [`reconcile`]: the reconcile of one config: resolve its receivers →
//!   publish their routes → report status and Events.
//! - [`report`]: status patches and Events (leader only).
//! - [`rotations`]: previous paths of rotated receivers, accepted for the
//!   grace period.
//! - [`registrations`]: HarborWebhookRegistrations → webhook policies in
//!   Harbor (leader only).
//! - [`leader`]: the Lease; becoming leader triggers every config, so a new
//!   leader rewrites whatever status is out of date.
//!
//! `--resync-interval` (or `--secret-resync` where Secrets are polled)
//! requeues every config. The process is ready once the Warehouses are
//! indexed, every watch has listed, and every config present then was
//! reconciled once: each part raises its own flag, nothing polls.

pub mod api_errors;
pub mod configs;
pub mod leader;
pub mod published;
pub mod reconcile;
pub mod registrations;
pub mod report;
pub mod rotations;
pub mod secrets;
pub mod warehouses;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kargo_api::{ClusterConfig, ProjectConfig};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
// The tasks end with `run`'s future, also when the app aborts it at the
// shutdown bound (kube-runtime's controllers do not end while the API
// server is unreachable).
use tokio_util::task::AbortOnDropHandle;

use crate::config::SecretAccess;
use crate::core::receiver_path::BaseUrl;
use crate::health::Health;
use crate::index::{RepositoryIndex, RouteTable};
use crate::metrics::{ControllerMetrics, RegistrationMetrics};
use api_errors::{ApiErrors, Failure};
use leader::{Leadership, LeaseConfig};
use registrations::{RegistrationParts, RegistrationSettings};
use rotations::Rotations;
use secrets::{SecretReader, SecretStores};

/// Errors that stop the controller for good.
#[derive(Debug, Error)]
pub enum WatchError {
    /// One of the controller's tasks panicked.
    #[error("a controller task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the controller is configured with.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// Base URL receiver URLs are derived from.
    pub base_url: BaseUrl,
    /// Where ClusterConfig receivers' Secrets live.
    pub system_resources_namespace: String,
    /// How Secrets are observed.
    pub secret_access: SecretAccess,
    /// Namespaces of the Secret watch (empty: cluster-wide).
    pub watch_namespaces: Vec<String>,
    /// Re-read interval of polled Secrets.
    pub secret_resync: Duration,
    /// Periodic full reconcile.
    pub resync_interval: Duration,
    /// The API server's URL, named in the log when it cannot be reached.
    pub api_server: String,
    /// How long a rotated receiver's previous path stays accepted.
    pub rotation_grace_period: Duration,
    /// The registration controller's settings; `None`: not run.
    pub registrations: Option<RegistrationSettings>,
    /// Leader election.
    pub lease: LeaseConfig,
}

/// What the controller works with.
pub struct WatchParts {
    /// The API server.
    pub client: kube::Client,
    /// Settings.
    pub settings: WatchSettings,
    /// Written by the config reconciles.
    pub routes: Arc<RouteTable>,
    /// Written by the Warehouse watch.
    pub repositories: Arc<RepositoryIndex>,
    /// Controller metrics.
    pub metrics: ControllerMetrics,
    /// Registration controller metrics.
    pub registration_metrics: RegistrationMetrics,
    /// Raised once ready.
    pub health: Arc<Health>,
}

/// A Secret that changed: `(namespace, name)`.
pub type SecretKey = (String, String);

/// Runs watches, reconciles and leader election until `shutdown`; then
/// releases the Lease (last, once no reconcile can write any more).
pub async fn run(parts: WatchParts, shutdown: CancellationToken) -> Result<(), WatchError> {
    let WatchParts {
        client,
        settings,
        routes,
        repositories,
        metrics,
        registration_metrics,
        health,
    } = parts;
    let settings = Arc::new(settings);
    let api_errors = Arc::new(ApiErrors::new(settings.api_server.clone()));

    let leadership = Arc::new(Leadership::new());
    let leader_stop = CancellationToken::new();
    let leader_task = {
        let gauge = metrics.leader.clone();
        AbortOnDropHandle::new(tokio::spawn(leader::run(
            client.clone(),
            settings.lease.clone(),
            leadership.clone(),
            move |leading| {
                gauge.set(i64::from(leading));
            },
            api_errors.clone(),
            leader_stop.clone(),
        )))
    };

    let (warehouses_synced, warehouses_ready) = watch::channel(false);
    let warehouse_task = AbortOnDropHandle::new(tokio::spawn(warehouses::run(
        Api::all(client.clone()),
        repositories,
        metrics.watch_restarts("warehouses"),
        api_errors.clone(),
        warehouses_synced,
        shutdown.clone(),
    )));

    let (pc_secrets, pc_secret_rx) = mpsc::unbounded_channel::<SecretKey>();
    let (cc_secrets, cc_secret_rx) = mpsc::unbounded_channel::<SecretKey>();
    let (reg_secrets, reg_secret_rx) = mpsc::unbounded_channel::<SecretKey>();
    let (stores, secret_tasks) = start_secret_watches(
        &client,
        &settings,
        &[pc_secrets, cc_secrets, reg_secrets],
        metrics.watch_restarts("secrets"),
        &api_errors,
        &shutdown,
    );
    let secrets = Arc::new(SecretReader::new(
        client.clone(),
        settings.secret_access,
        settings.base_url.clone(),
        stores.clone(),
    ));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::NAME.into(),
            instance: Some(settings.lease.identity.clone()),
        },
    );
    let registrations = settings.registrations.clone().map(|registration_settings| {
        registrations::controller(
            RegistrationParts {
                client: client.clone(),
                base_url: settings.base_url.clone(),
                system_namespace: settings.system_resources_namespace.clone(),
                routes: routes.clone(),
                leadership: leadership.clone(),
                recorder: recorder.clone(),
                metrics: registration_metrics,
                settings: registration_settings,
            },
            reg_secret_rx,
            metrics.watch_restarts("harborwebhookregistrations"),
            api_errors.clone(),
            &shutdown,
        )
    });
    let shared = configs::Shared {
        client: client.clone(),
        settings: settings.clone(),
        secrets,
        leadership,
        routes,
        rotations: Arc::new(Rotations::new(settings.rotation_grace_period)),
        metrics,
        recorder,
        api_errors,
        published: Default::default(),
    };
    let (pc_controller, pc_ready) =
        configs::controller::<ProjectConfig>(&shared, pc_secret_rx, &shutdown);
    let (cc_controller, cc_ready) =
        configs::controller::<ClusterConfig>(&shared, cc_secret_rx, &shutdown);

    let mut ready = vec![warehouses_ready, pc_ready, cc_ready];
    ready.extend(stores.synced());
    let ready_task =
        AbortOnDropHandle::new(tokio::spawn(mark_ready(ready, health, shutdown.clone())));

    // Not part of readiness: the request path does not depend on it.
    let registrations = async {
        if let Some(controller) = registrations {
            controller.await;
        }
    };
    futures::join!(pc_controller, cc_controller, registrations);
    // The controllers stop on `shutdown`; so do the watches.
    warehouse_task.await?;
    for task in secret_tasks {
        task.await?;
    }
    ready_task.await?;
    leader_stop.cancel();
    leader_task.await?;
    Ok(())
}

/// Raises `health` once every flag is up (or gives up at `shutdown`).
async fn mark_ready(
    flags: Vec<watch::Receiver<bool>>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let all = futures::future::join_all(flags.into_iter().map(|mut flag| async move {
        // A sender gone before raising its flag is a part that stopped at
        // shutdown: then the select below ends first.
        let _ = flag.wait_for(|up| *up).await;
    }));
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = all => {
            health.set_ready();
            tracing::info!("initial sync done: ready");
        }
    }
}

/// The metadata-only Secret watches of mode `watch` (none in mode `get`).
fn start_secret_watches(
    client: &kube::Client,
    settings: &WatchSettings,
    senders: &[mpsc::UnboundedSender<SecretKey>],
    restarts: Counter,
    api_errors: &Arc<ApiErrors>,
    shutdown: &CancellationToken,
) -> (SecretStores, Vec<AbortOnDropHandle<()>>) {
    let mut stores = SecretStores::default();
    let mut tasks = Vec::new();
    if settings.secret_access != SecretAccess::Watch {
        return (stores, tasks);
    }
    let scopes: Vec<Option<String>> = if settings.watch_namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    for ns in scopes {
        let (reader, writer) = reflector::store::<PartialObjectMeta<Secret>>();
        let (synced_tx, synced_rx) = watch::channel(false);
        stores.add(ns.clone(), reader, synced_rx);
        let api: Api<PartialObjectMeta<Secret>> = match &ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tasks.push(AbortOnDropHandle::new(tokio::spawn(watch_secrets(
            api,
            writer,
            synced_tx,
            senders.to_vec(),
            restarts.clone(),
            api_errors.clone(),
            shutdown.clone(),
        ))));
    }
    (stores, tasks)
}

/// Metadata-only Secret watch: keeps `writer` (names and resourceVersions,
/// no data) and tells each channel which Secret changed.
async fn watch_secrets(
    api: Api<PartialObjectMeta<Secret>>,
    writer: reflector::store::Writer<PartialObjectMeta<Secret>>,
    synced: watch::Sender<bool>,
    senders: Vec<mpsc::UnboundedSender<SecretKey>>,
    restarts: Counter,
    api_errors: Arc<ApiErrors>,
    shutdown: CancellationToken,
) {
    use kube::runtime::WatchStreamExt;
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|m: &mut PartialObjectMeta<Secret>| m.metadata.managed_fields = None)
        .reflect(writer);
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        match next {
            None => return,
            Some(Ok(watcher::Event::InitDone)) => {
                api_errors.succeeded();
                synced.send_replace(true);
            }
            Some(Ok(watcher::Event::Init)) => {}
            Some(Ok(
                watcher::Event::Apply(meta)
                | watcher::Event::InitApply(meta)
                | watcher::Event::Delete(meta),
            )) => {
                let key = (meta.namespace().unwrap_or_default(), meta.name_any());
                for tx in &senders {
                    let _ = tx.send(key.clone());
                }
            }
            Some(Err(e)) => {
                restarts.inc();
                if api_errors.failed("Secret metadata watch", &e) == Failure::Other {
                    tracing::warn!(error = %e, "Secret metadata watch failed; retrying");
                }
            }
        }
    }
}
