//! The reconcile of a ProjectConfig or the ClusterConfig: resolve each
//! Harbor receiver (Secret → path and digest), publish the receivers to the
//! index (every replica), and — on the leader — write the status and the
//! transition Events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kargo_api::{ClusterConfig, ConfigStatus, ProjectConfig, ReceiverKind, WebhookReceiverConfig};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use thiserror::Error;

use crate::app::Shared;
use crate::index::Scope;
use crate::leader::Leadership;
use crate::metrics::{ConfigKind, KindLabels, ReconcileLabels, ReconcileResult};

use super::reconcile::{
    desired_status, status_patch, transition_events, Observed, ReceiverOutcome,
    REASON_INVALID_RECEIVER,
};
use super::secrets::{SecretReader, Wanted};
use super::status;

/// Why a reconcile must be retried.
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// Reading a receiver's Secret failed (not a 404/403).
    #[error("reading Secret {secret}: {source}")]
    SecretRead {
        /// `namespace/name`.
        secret: String,
        /// The API error (carries no Secret data).
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed (409 conflicts included).
    #[error("writing status: {0}")]
    StatusWrite(#[source] kube::Error),
}

/// A Kargo config kind we reconcile.
pub trait ConfigResource:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// For metrics.
    const KIND: ConfigKind;
    /// `spec.webhookReceivers`.
    fn receivers(&self) -> &[WebhookReceiverConfig];
    /// `status`.
    fn config_status(&self) -> Option<&ConfigStatus>;
    /// The index owner of its receivers.
    fn scope(&self) -> Scope;
    /// Where its receivers' Secrets live.
    fn secret_namespace(&self, system_namespace: &str) -> String;
    /// Why this object is not served (wrong name), if so.
    fn invalid(&self) -> Option<String>;
    /// The API for status writes.
    fn api(client: kube::Client, obj: &Self) -> Api<Self>;
}

impl ConfigResource for ProjectConfig {
    const KIND: ConfigKind = ConfigKind::ProjectConfig;
    fn receivers(&self) -> &[WebhookReceiverConfig] {
        &self.spec.webhook_receivers
    }
    fn config_status(&self) -> Option<&ConfigStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> Scope {
        Scope::Project(self.namespace().unwrap_or_default())
    }
    fn secret_namespace(&self, _: &str) -> String {
        self.namespace().unwrap_or_default()
    }
    fn invalid(&self) -> Option<String> {
        let ns = self.namespace().unwrap_or_default();
        (self.name_any() != ns).then(|| {
            format!("a ProjectConfig must be named like its project namespace ({ns:?}); not served")
        })
    }
    fn api(client: kube::Client, obj: &Self) -> Api<Self> {
        Api::namespaced(client, &obj.namespace().unwrap_or_default())
    }
}

impl ConfigResource for ClusterConfig {
    const KIND: ConfigKind = ConfigKind::ClusterConfig;
    fn receivers(&self) -> &[WebhookReceiverConfig] {
        &self.spec.webhook_receivers
    }
    fn config_status(&self) -> Option<&ConfigStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn secret_namespace(&self, system_namespace: &str) -> String {
        system_namespace.to_owned()
    }
    fn invalid(&self) -> Option<String> {
        (self.name_any() != kargo_api::CLUSTER_CONFIG_NAME).then(|| {
            format!(
                "only the ClusterConfig named {:?} is honoured; not served",
                kargo_api::CLUSTER_CONFIG_NAME
            )
        })
    }
    fn api(client: kube::Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }
}

/// What one config's reconciles share.
pub struct Context<K: ConfigResource> {
    /// Everything.
    pub shared: Arc<Shared>,
    /// Secret access.
    pub secrets: Arc<SecretReader>,
    /// Leader election view.
    pub leadership: Arc<Leadership>,
    /// The controller's store (to drop receivers of deleted objects).
    pub store: Store<K>,
    /// Events.
    pub recorder: Recorder,
    /// Serialises index updates with deletions.
    pub index_lock: Arc<Mutex<()>>,
    /// Raised at the first `InitDone` of the watch (readiness).
    synced: watch::Sender<bool>,
    /// Keys reconciled into the index at least once (readiness).
    reconciled: Mutex<HashSet<String>>,
    /// Consecutive failures per object (error backoff).
    failures: Mutex<HashMap<String, u32>>,
    /// Which object owns each scope we put receivers in the index for.
    owners: Mutex<HashMap<Scope, ObjectRef<K>>>,
}

impl<K: ConfigResource> Context<K> {
    /// A context.
    pub fn new(
        shared: Arc<Shared>,
        secrets: Arc<SecretReader>,
        leadership: Arc<Leadership>,
        store: Store<K>,
        recorder: Recorder,
        index_lock: Arc<Mutex<()>>,
    ) -> Self {
        Self {
            shared,
            secrets,
            leadership,
            store,
            recorder,
            index_lock,
            reconciled: Mutex::new(HashSet::new()),
            failures: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            synced: watch::Sender::new(false),
        }
    }

    /// Turns true once the watch's initial list is in the store.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// After a relist: drops the receivers of objects that disappeared
    /// while the watch was down.
    pub fn sweep(&self) {
        self.synced.send_replace(true);
        let _guard = lock(&self.index_lock);
        let mut owners = lock(&self.owners);
        owners.retain(|scope, r| {
            let live = self.store.get(r).is_some();
            if !live {
                self.drop_receivers(scope);
                tracing::info!(object = %r, "config gone after relist: receivers removed");
            }
            live
        });
    }

    /// Whether the object `key` (see [`key_of`]) was reconciled once.
    pub fn was_reconciled(&self, key: &str) -> bool {
        lock(&self.reconciled).contains(key)
    }

    fn failed(&self, key: &str) -> u32 {
        let mut f = lock(&self.failures);
        let n = f.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &str) {
        lock(&self.failures).remove(key);
    }

    /// Drops the receivers of a deleted object from the index (if the store
    /// no longer has it).
    pub fn forget(&self, obj: &K) {
        let _guard = lock(&self.index_lock);
        if self.store.get(&ObjectRef::from_obj(obj)).is_none() {
            let scope = obj.scope();
            let key = key_of(obj);
            if obj.invalid().is_none() {
                lock(&self.owners).remove(&scope);
                self.drop_receivers(&scope);
                tracing::info!(config = %key, "config deleted: receivers removed");
            }
            lock(&self.failures).remove(&key);
            lock(&self.reconciled).remove(&key);
        }
    }

    /// Takes `scope`'s receivers out of the index and forgets what was
    /// derived from their Secrets.
    fn drop_receivers(&self, scope: &Scope) {
        self.shared.index.set_receivers(scope, Vec::new());
        self.secrets.retain(scope, &[]);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Kind/namespace/name` of a config.
pub fn key_of<K: ConfigResource>(obj: &K) -> String {
    format!(
        "{:?}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

fn now() -> Time {
    let ts = Timestamp::now();
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// Reconciles one config. Instrumented; the token never reaches a field.
#[tracing::instrument(skip_all, fields(config = %key_of(obj.as_ref())))]
pub async fn reconcile<K: ConfigResource>(
    obj: Arc<K>,
    ctx: Arc<Context<K>>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let shared = &ctx.shared;
    let key = key_of(obj.as_ref());
    let scope = obj.scope();
    let secret_ns = obj.secret_namespace(&shared.config.system_resources_namespace);

    let mut outcomes = Vec::new();
    let mut entries = Vec::new();
    let mut first_error: Option<ReconcileError> = None;
    let mut reads = 0usize;
    let mut polled = false;
    let invalid = obj.invalid();
    if let Some(why) = &invalid {
        outcomes.push(ReceiverOutcome::NotReady {
            name: obj.name_any(),
            reason: REASON_INVALID_RECEIVER,
            message: why.clone(),
        });
    } else {
        for r in obj.receivers() {
            match r.kind() {
                ReceiverKind::Harbor(h) if h.secret_ref.name.is_empty() => {
                    outcomes.push(ReceiverOutcome::NotReady {
                        name: r.name.clone(),
                        reason: REASON_INVALID_RECEIVER,
                        message: format!("receiver {:?}: harbor.secretRef.name is empty", r.name),
                    });
                }
                ReceiverKind::Harbor(h) => {
                    polled |= ctx.secrets.polled(&secret_ns);
                    let resolved = ctx
                        .secrets
                        .resolve(&Wanted {
                            scope: &scope,
                            name: &r.name,
                            secret_namespace: &secret_ns,
                            secret_name: &h.secret_ref.name,
                        })
                        .await;
                    reads += usize::from(resolved.read);
                    if let (Some(e), None) = (resolved.error, first_error.as_ref()) {
                        first_error = Some(ReconcileError::SecretRead {
                            secret: format!("{secret_ns}/{}", h.secret_ref.name),
                            source: e,
                        });
                    }
                    entries.extend(resolved.entry);
                    outcomes.push(resolved.outcome);
                }
                ReceiverKind::Other(kind) => outcomes.push(ReceiverOutcome::Skipped {
                    name: r.name.clone(),
                    kind: kind.to_owned(),
                }),
                ReceiverKind::Missing => outcomes.push(ReceiverOutcome::Skipped {
                    name: r.name.clone(),
                    kind: "no kind".to_owned(),
                }),
                ReceiverKind::Ambiguous(kinds) => outcomes.push(ReceiverOutcome::NotReady {
                    name: r.name.clone(),
                    reason: REASON_INVALID_RECEIVER,
                    message: format!(
                        "receiver {:?}: exactly one receiver kind expected, got {}",
                        r.name,
                        kinds.join(", ")
                    ),
                }),
            }
        }
        let names: Vec<&str> = obj.receivers().iter().map(|r| r.name.as_str()).collect();
        ctx.secrets.retain(&scope, &names);
    }

    // Index: every replica. Skip if the object was deleted meanwhile.
    if invalid.is_none() {
        let _guard = lock(&ctx.index_lock);
        let live = ctx
            .store
            .get(&ObjectRef::from_obj(obj.as_ref()))
            .is_some_and(|o| o.uid() == obj.uid());
        if live {
            let count = entries.len();
            if shared.index.set_receivers(&scope, entries) {
                tracing::info!(receivers = count, "index updated");
            }
            lock(&ctx.owners).insert(scope.clone(), ObjectRef::from_obj(obj.as_ref()));
        }
    }
    lock(&ctx.reconciled).insert(key.clone());

    // Status and Events: leader only, and only if something changed.
    let retrying = first_error.as_ref().map(|e| match e {
        ReconcileError::SecretRead { secret, .. } => format!("reading Secret {secret:?} failed"),
        ReconcileError::StatusWrite(_) => "writing status failed".to_owned(),
    });
    let mut wrote = false;
    if ctx.leadership.is_leader() {
        let current = obj.config_status();
        let observed = Observed {
            generation: obj.meta().generation,
            refresh: obj
                .annotations()
                .get(kargo_api::REFRESH_ANNOTATION)
                .map(String::as_str),
            current,
            retrying: retrying.as_deref(),
        };
        let desired = desired_status(&observed, &outcomes, &now());
        if let Some(patch) = status_patch(current, &desired, obj.meta().resource_version.as_deref())
        {
            let events = transition_events(current, &outcomes);
            let api = K::api(shared.client.clone(), obj.as_ref());
            match status::patch_status(&api, &obj.name_any(), &patch).await {
                Ok(()) => {
                    wrote = true;
                    shared
                        .metrics
                        .status_writes
                        .get_or_create(&KindLabels { kind: K::KIND })
                        .inc();
                    status::publish_events(&ctx.recorder, obj.as_ref(), events).await;
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(ReconcileError::StatusWrite(e));
                    }
                }
            }
        }
    }

    let not_ready = outcomes
        .iter()
        .any(|o| matches!(o, ReceiverOutcome::NotReady { .. }));
    let result = match (&first_error, not_ready) {
        (Some(_), _) => ReconcileResult::Error,
        (None, true) => ReconcileResult::NotReady,
        (None, false) => ReconcileResult::Ready,
    };
    shared
        .metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND,
            result,
        })
        .inc();
    shared
        .metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: K::KIND })
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(secret_reads = reads, status_written = wrote, ?result, elapsed = ?started.elapsed(), "reconciled");

    if let Some(e) = first_error {
        return Err(e);
    }
    ctx.succeeded(&key);
    let interval = if polled {
        shared
            .config
            .secret_resync
            .min(shared.config.resync_interval)
    } else {
        shared.config.resync_interval
    };
    Ok(Action::requeue(interval))
}

/// Backoff after a failed reconcile: 200 ms doubling up to 30 s per object
/// (status write conflicts: 100 ms, no backoff).
pub fn error_policy<K: ConfigResource>(
    obj: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context<K>>,
) -> Action {
    let key = key_of(obj.as_ref());
    let conflict = matches!(
        error,
        ReconcileError::StatusWrite(kube::Error::Api(s)) if s.code == 409
    );
    if conflict {
        // Our copy was stale (usually our own previous write): the watch
        // brings the fresh object at once; retry soon, without backoff.
        let delay = Duration::from_millis(100);
        tracing::debug!(config = %key, ?delay, "status write conflict; retrying");
        return Action::requeue(delay);
    }
    let n = ctx.failed(&key);
    let delay = Duration::from_millis(200)
        .saturating_mul(1u32 << n.saturating_sub(1).min(8))
        .min(Duration::from_secs(30));
    tracing::warn!(config = %key, error = %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ReceiverEntry;
    use crate::token::TokenDigest;
    use kargo_api::ProjectConfigSpec;
    use kube::runtime::events::Reporter;
    use kube::runtime::reflector;

    #[tokio::test]
    async fn a_deleted_config_is_forgotten_entirely() {
        let config = crate::testing::config(&["--base-url", "https://h"]);
        // Never contacted.
        let client = crate::testing::offline_client();
        let secrets = Arc::new(SecretReader::new(
            client.clone(),
            &config,
            Default::default(),
        ));
        let shared = Arc::new(Shared::new(config, client.clone()));
        // An empty store: the object is gone.
        let (store, _writer) = reflector::store::<ProjectConfig>();
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: crate::NAME.into(),
                instance: None,
            },
        );
        let ctx = Context::new(
            shared.clone(),
            secrets,
            Arc::new(Leadership::new()),
            store,
            recorder,
            Arc::new(Mutex::new(())),
        );
        let mut pc = ProjectConfig::new(
            "p",
            ProjectConfigSpec {
                webhook_receivers: vec![],
            },
        );
        pc.metadata.namespace = Some("p".into());
        let scope = pc.scope();
        shared.index.set_receivers(
            &scope,
            vec![(
                "/harbor/x".into(),
                ReceiverEntry {
                    scope: scope.clone(),
                    name: "r".into(),
                    token: TokenDigest::of(b"t"),
                },
            )],
        );
        lock(&ctx.reconciled).insert(key_of(&pc));
        ctx.failed(&key_of(&pc));

        ctx.forget(&pc);
        assert!(shared.index.snapshot().receiver("/harbor/x").is_none());
        assert!(!ctx.was_reconciled(&key_of(&pc)));
        assert!(lock(&ctx.failures).is_empty());
    }
}
