//! The controller: watches ProjectConfigs, the ClusterConfig, Warehouses and
//! Secret metadata; keeps the index on every replica; the elected leader
//! writes status and Events.
//!
//! - [`warehouses`]: Warehouse watch → index (no Warehouse cache).
//! - [`secrets`]: Secret access modes (RBAC and rotation delay of each are
//!   documented there) and the one-GET-per-change Secret reads.
//! - [`configs`]: the reconcile of a ProjectConfig/ClusterConfig.
//! - [`reconcile`]: the pure status computation, table-tested.
//! - [`status`]: status patches and Events.
//!
//! Two kube-runtime `Controller`s (ProjectConfig, ClusterConfig `cluster`)
//! run over our own reflectors (managed fields stripped). A Secret change
//! seen by the metadata watch triggers the configs referencing that Secret;
//! becoming leader triggers every config (the new leader rewrites whatever
//! status is out of date); `--resync-interval` (or `--secret-resync` where
//! Secrets are polled) requeues every config.

pub mod configs;
pub mod reconcile;
pub mod secrets;
pub mod status;
pub mod warehouses;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kargo_api::{ClusterConfig, ProjectConfig, ReceiverKind, WebhookReceiverConfig};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::config::SecretAccess;
use crate::leader::{self, Leadership, LeaseConfig};
use crate::metrics::ResourceLabels;

use configs::{ConfigResource, Context};
use secrets::{SecretReader, SecretStores};

/// Errors that stop the controller for good.
#[derive(Debug, Error)]
pub enum ControllerError {
    /// One of the controller's tasks panicked.
    #[error("a controller task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

type SecretKey = (String, String);

/// Runs watches, reconciles and leader election until `shutdown`; then
/// releases the Lease.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(), ControllerError> {
    let client = shared.client.clone();
    let config = &shared.config;
    let identity = config.replica_identity();

    // Leader election: stopped only after the controllers, so that the Lease
    // is released last.
    let leadership = Arc::new(Leadership::new());
    let leader_stop = CancellationToken::new();
    let leader_task = {
        let metrics = shared.metrics.clone();
        tokio::spawn(leader::run(
            client.clone(),
            LeaseConfig {
                name: config.lease_name.clone(),
                namespace: config.lease_namespace.clone(),
                identity: identity.clone(),
                duration: config.lease_duration,
            },
            leadership.clone(),
            move |leading| {
                metrics.leader.set(i64::from(leading));
            },
            leader_stop.clone(),
        ))
    };

    // Warehouses → index.
    let (wh_synced_tx, wh_synced) = watch::channel(false);
    let wh_task = tokio::spawn(warehouses::run(
        shared.clone(),
        wh_synced_tx,
        shutdown.clone(),
    ));

    // Secret metadata watches (mode `watch`).
    let (pc_secret_tx, pc_secret_rx) = mpsc::unbounded_channel::<SecretKey>();
    let (cc_secret_tx, cc_secret_rx) = mpsc::unbounded_channel::<SecretKey>();
    let mut stores = SecretStores::default();
    let mut secret_tasks = Vec::new();
    if config.secret_access == SecretAccess::Watch {
        let scopes: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
            vec![None]
        } else {
            config.watch_namespaces.iter().cloned().map(Some).collect()
        };
        for ns in scopes {
            let (reader, writer) = reflector::store::<PartialObjectMeta<Secret>>();
            let (synced_tx, synced_rx) = watch::channel(false);
            stores.add(ns.clone(), reader, synced_rx);
            let api: Api<PartialObjectMeta<Secret>> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            secret_tasks.push(tokio::spawn(watch_secrets(
                api,
                writer,
                synced_tx,
                vec![pc_secret_tx.clone(), cc_secret_tx.clone()],
                shared
                    .metrics
                    .watch_restarts
                    .get_or_create(&ResourceLabels {
                        resource: "secrets",
                    })
                    .clone(),
                shutdown.clone(),
            )));
        }
    }
    drop((pc_secret_tx, cc_secret_tx));
    let secrets = Arc::new(SecretReader::new(client.clone(), config, stores.clone()));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::NAME.into(),
            instance: Some(identity),
        },
    );
    let index_lock = Arc::new(Mutex::new(()));

    // ProjectConfigs.
    let (pc_reader, pc_writer) = reflector::store::<ProjectConfig>();
    let pc_ctx = Arc::new(Context::new(
        shared.clone(),
        secrets.clone(),
        leadership.clone(),
        pc_reader.clone(),
        recorder.clone(),
        index_lock.clone(),
    ));
    let pc_stream = config_stream(
        Api::<ProjectConfig>::all(client.clone()),
        watcher::Config::default(),
        pc_writer,
        pc_ctx.clone(),
        restarts(&shared, "projectconfigs"),
    );
    let pc_trigger = {
        let store = pc_reader.clone();
        secret_triggers(pc_secret_rx, move |(ns, name)| {
            store
                .state()
                .into_iter()
                .filter(|pc| pc.namespace().as_deref() == Some(ns.as_str()))
                .filter(|pc| references(&pc.spec.webhook_receivers, name))
                .map(|pc| ObjectRef::from_obj(pc.as_ref()))
                .collect()
        })
    };
    let pc_controller = Controller::for_stream(pc_stream, pc_reader.clone())
        .reconcile_on(pc_trigger)
        .reconcile_all_on(became_leader(&leadership))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(configs::reconcile, configs::error_policy, pc_ctx.clone())
        .for_each(log_result);

    // The ClusterConfig `cluster`.
    let (cc_reader, cc_writer) = reflector::store::<ClusterConfig>();
    let cc_ctx = Arc::new(Context::new(
        shared.clone(),
        secrets.clone(),
        leadership.clone(),
        cc_reader.clone(),
        recorder,
        index_lock,
    ));
    let cc_stream = config_stream(
        Api::<ClusterConfig>::all(client.clone()),
        watcher::Config::default()
            .fields(&format!("metadata.name={}", kargo_api::CLUSTER_CONFIG_NAME)),
        cc_writer,
        cc_ctx.clone(),
        restarts(&shared, "clusterconfigs"),
    );
    let cc_trigger = {
        let store = cc_reader.clone();
        let system_ns = config.system_resources_namespace.clone();
        secret_triggers(cc_secret_rx, move |(ns, name)| {
            if *ns != system_ns {
                return Vec::new();
            }
            store
                .state()
                .into_iter()
                .filter(|cc| references(&cc.spec.webhook_receivers, name))
                .map(|cc| ObjectRef::from_obj(cc.as_ref()))
                .collect()
        })
    };
    let cc_controller = Controller::for_stream(cc_stream, cc_reader.clone())
        .reconcile_on(cc_trigger)
        .reconcile_all_on(became_leader(&leadership))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(configs::reconcile, configs::error_policy, cc_ctx.clone())
        .for_each(log_result);

    let ready_task = tokio::spawn(readiness(
        shared.clone(),
        wh_synced,
        pc_reader,
        cc_reader,
        stores,
        pc_ctx,
        cc_ctx,
        shutdown.clone(),
    ));

    futures::join!(pc_controller, cc_controller);
    // The controllers stop on `shutdown`; so do the watches.
    wh_task.await?;
    for t in secret_tasks {
        t.await?;
    }
    ready_task.await?;
    leader_stop.cancel();
    leader_task.await?;
    Ok(())
}

fn restarts(shared: &Shared, resource: &'static str) -> Counter {
    shared
        .metrics
        .watch_restarts
        .get_or_create(&ResourceLabels { resource })
        .clone()
}

/// Whether any Harbor receiver references Secret `name`.
fn references(receivers: &[WebhookReceiverConfig], name: &str) -> bool {
    receivers
        .iter()
        .any(|r| matches!(r.kind(), ReceiverKind::Harbor(h) if h.secret_ref.name == name))
}

/// A config watch: managed fields stripped, reflected into the controller's
/// store; deletions (and objects missing after a relist) drop their
/// receivers from the index at once.
fn config_stream<K: ConfigResource>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Context<K>>,
    restarts: Counter,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Delete(obj)) => ctx.forget(obj),
            Ok(watcher::Event::InitDone) => ctx.sweep(),
            Err(e) => {
                restarts.inc();
                tracing::warn!(kind = ?K::KIND, error = %e, "watch failed; retrying");
            }
            _ => {}
        })
        .applied_objects()
}

/// Secret keys from the watch → the configs to reconcile.
fn secret_triggers<K: ConfigResource>(
    rx: mpsc::UnboundedReceiver<SecretKey>,
    map: impl Fn(&SecretKey) -> Vec<ObjectRef<K>> + Send + 'static,
) -> BoxStream<'static, ObjectRef<K>> {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
        .flat_map(move |key| stream::iter(map(&key)))
        .boxed()
}

/// `()` each time this replica becomes leader.
fn became_leader(leadership: &Leadership) -> BoxStream<'static, ()> {
    stream::unfold(leadership.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                tracing::info!("leader: reconciling every config");
                return Some(((), rx));
            }
        }
    })
    .boxed()
}

async fn log_result<K, E1, E2>(
    result: Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E1, E2>,
    >,
) where
    K: kube::Resource,
    E1: std::error::Error,
    E2: std::error::Error,
{
    use kube::runtime::controller::Error;
    match result {
        Ok(_) => {}
        // Logged by the error policy / the watch stream already.
        Err(Error::ReconcilerFailed(..) | Error::QueueError(_)) => {}
        Err(Error::ObjectNotFound(r)) => {
            tracing::debug!(object = %r, "object gone before reconcile")
        }
        Err(e) => tracing::warn!(error = %e, "controller error"),
    }
}

/// Metadata-only Secret watch: keeps `writer` (names and resourceVersions,
/// no data) and tells each channel which Secret changed.
async fn watch_secrets(
    api: Api<PartialObjectMeta<Secret>>,
    writer: reflector::store::Writer<PartialObjectMeta<Secret>>,
    synced: watch::Sender<bool>,
    senders: Vec<mpsc::UnboundedSender<SecretKey>>,
    restarts: Counter,
    shutdown: CancellationToken,
) {
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
                tracing::warn!(error = %e, "Secret metadata watch failed; retrying");
            }
        }
    }
}

/// Marks the process ready once the Warehouses are indexed, every watch has
/// listed, and every config present then was reconciled once.
#[allow(clippy::too_many_arguments)]
async fn readiness(
    shared: Arc<Shared>,
    mut wh_synced: watch::Receiver<bool>,
    pcs: Store<ProjectConfig>,
    ccs: Store<ClusterConfig>,
    secret_stores: SecretStores,
    pc_ctx: Arc<Context<ProjectConfig>>,
    cc_ctx: Arc<Context<ClusterConfig>>,
    shutdown: CancellationToken,
) {
    // Readiness is tracked with our own flags rather than by awaiting the
    // stores' `wait_until_ready`: kube's store readiness is a oneshot that
    // keeps only the last waker, and the Controllers already wait on it, so a
    // second waiter could steal (or lose) the wake-up and hang either side.
    let synced = async {
        let _ = wh_synced.wait_for(|s| *s).await;
        let _ = pc_ctx.synced().wait_for(|s| *s).await;
        let _ = cc_ctx.synced().wait_for(|s| *s).await;
        for mut s in secret_stores.synced() {
            let _ = s.wait_for(|s| *s).await;
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = synced => {}
    }
    let initial_pcs: HashSet<ObjectRef<ProjectConfig>> = pcs
        .state()
        .iter()
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect();
    let initial_ccs: HashSet<ObjectRef<ClusterConfig>> = ccs
        .state()
        .iter()
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect();
    loop {
        let pending_pcs = pending(&initial_pcs, &pcs, &pc_ctx);
        let pending_ccs = pending(&initial_ccs, &ccs, &cc_ctx);
        if pending_pcs + pending_ccs == 0 {
            shared.ready.set_ready();
            tracing::info!(
                projectconfigs = initial_pcs.len(),
                clusterconfigs = initial_ccs.len(),
                "initial sync done: ready"
            );
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

fn pending<K: ConfigResource>(
    initial: &HashSet<ObjectRef<K>>,
    store: &Store<K>,
    ctx: &Context<K>,
) -> usize {
    initial
        .iter()
        .filter(|r| {
            store
                .get(r)
                .is_some_and(|o| !ctx.was_reconciled(&configs::key_of(o.as_ref())))
        })
        .count()
}
