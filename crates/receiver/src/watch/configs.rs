//! One kube-runtime `Controller` per config kind, set up by one generic
//! function over [`ConfigResource`]: the watch (managed fields stripped,
//! deletions dropping routes at once), the triggers (a changed Secret the
//! config references; becoming leader), and the readiness bookkeeping.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{self, BoxStream};
use futures::{FutureExt, Stream, StreamExt};
use kargo_api::{ClusterConfig, ConfigStatus, ProjectConfig, ReceiverKind, WebhookReceiverConfig};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::api_errors::{ApiErrors, Failure};
use super::leader::Leadership;
use super::published::PublishedBases;
use super::reconcile::{error_policy, reconcile};
use super::rotations::Rotations;
use super::secrets::SecretReader;
use super::{SecretKey, WatchSettings};
use crate::core::status::{owns_receiver_list, Wording};
use crate::index::{RouteTable, Scope};
use crate::metrics::{ConfigKind, ControllerMetrics};

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
    /// For metrics and logs.
    const KIND: ConfigKind;
    /// Whose words the conditions are in (Kargo's two reconcilers differ).
    const WORDING: Wording;
    /// Plural resource name (watch restart metrics).
    const PLURAL: &'static str;
    /// `spec.webhookReceivers`.
    fn receivers(&self) -> &[WebhookReceiverConfig];
    /// `status`.
    fn config_status(&self) -> Option<&ConfigStatus>;
    /// The route table owner of its receivers.
    fn scope(&self) -> Scope;
    /// Where its receivers' Secrets live.
    fn secret_namespace(&self, system_namespace: &str) -> String;
    /// Why this object is not served (wrong name), if so.
    fn invalid(&self) -> Option<String>;
    /// The API for its status writes.
    fn api(client: kube::Client, obj: &Self) -> Api<Self>;
    /// Which objects of the kind are watched.
    fn watcher_config() -> watcher::Config;
}

impl ConfigResource for ProjectConfig {
    const KIND: ConfigKind = ConfigKind::ProjectConfig;
    const WORDING: Wording = Wording::ProjectConfig;
    const PLURAL: &'static str = "projectconfigs";
    fn receivers(&self) -> &[WebhookReceiverConfig] {
        &self.spec.webhook_receivers
    }
    fn config_status(&self) -> Option<&ConfigStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> Scope {
        Scope::project_of(self.namespace().as_deref().unwrap_or_default())
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
    fn watcher_config() -> watcher::Config {
        watcher::Config::default()
    }
}

impl ConfigResource for ClusterConfig {
    const KIND: ConfigKind = ConfigKind::ClusterConfig;
    const WORDING: Wording = Wording::ClusterConfig;
    const PLURAL: &'static str = "clusterconfigs";
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
    fn watcher_config() -> watcher::Config {
        watcher::Config::default()
            .fields(&format!("metadata.name={}", kargo_api::CLUSTER_CONFIG_NAME))
    }
}

/// What the reconciles of both kinds share.
#[derive(Clone)]
pub struct Shared {
    /// The API server.
    pub client: kube::Client,
    /// Settings.
    pub settings: Arc<WatchSettings>,
    /// Secret reads.
    pub secrets: Arc<SecretReader>,
    /// Whether this replica may write status.
    pub leadership: Arc<Leadership>,
    /// Where the receivers' routes go.
    pub routes: Arc<RouteTable>,
    /// Grace periods of rotated receivers.
    pub rotations: Arc<Rotations>,
    /// Metrics.
    pub metrics: ControllerMetrics,
    /// Events on configs.
    pub recorder: Recorder,
    /// Outages of the API server, reported once.
    pub api_errors: Arc<ApiErrors>,
    /// Where Kargo publishes our receivers, as learned.
    pub published: Arc<PublishedBases>,
}

/// Readiness bookkeeping of one kind: every object present at the first
/// full list must have been reconciled once.
enum Startup<K: Resource> {
    /// The first list is not complete; these were reconciled already.
    Listing(HashSet<ObjectRef<K>>),
    /// Listed; these are still to be reconciled once.
    Awaiting(HashSet<ObjectRef<K>>),
    /// Every initial object was reconciled.
    Done,
}

/// What one kind's reconciles remember, under one lock.
struct State<K: Resource> {
    /// Which object owns each scope we put routes in the table for.
    owners: HashMap<Scope, ObjectRef<K>>,
    /// Consecutive failures per object (error backoff).
    failures: HashMap<ObjectRef<K>, u32>,
    startup: Startup<K>,
}

/// One kind's reconcile context.
///
/// Invariant: the route table holds routes for a scope only while the
/// store holds the object owning it. Publishing (after a liveness check)
/// and forgetting (on deletion) both happen under the `state` lock, so a
/// reconcile that raced a deletion can never put routes back afterwards.
pub struct Context<K: ConfigResource> {
    /// Shared by both kinds.
    pub shared: Shared,
    store: Store<K>,
    state: Mutex<State<K>>,
    ready: watch::Sender<bool>,
}

impl<K: ConfigResource> Context<K> {
    pub(super) fn new(shared: Shared, store: Store<K>) -> Self {
        Self {
            shared,
            store,
            state: Mutex::new(State {
                owners: HashMap::new(),
                failures: HashMap::new(),
                startup: Startup::Listing(HashSet::new()),
            }),
            ready: watch::Sender::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K>> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `routes` in the table for `obj`'s scope, unless `obj` was
    /// deleted meanwhile. Returns whether the table changed.
    pub fn publish(&self, obj: &K, routes: Vec<crate::index::Route>) -> bool {
        let mut state = self.state();
        let key = ObjectRef::from_obj(obj);
        let live = self.store.get(&key).is_some_and(|o| o.uid() == obj.uid());
        if !live {
            return false;
        }
        let scope = obj.scope();
        let changed = self.shared.routes.replace(&scope, routes);
        state.owners.insert(scope, key);
        changed
    }

    /// Notes that `obj` was reconciled (readiness).
    pub fn reconciled(&self, obj: &K) {
        let key = ObjectRef::from_obj(obj);
        let mut state = self.state();
        match &mut state.startup {
            Startup::Listing(done) => {
                done.insert(key);
            }
            Startup::Awaiting(awaited) => {
                awaited.remove(&key);
            }
            Startup::Done => {}
        }
        self.settle(&mut state);
    }

    /// Raises the ready flag once nothing is awaited any more.
    fn settle(&self, state: &mut State<K>) {
        if matches!(&state.startup, Startup::Awaiting(awaited) if awaited.is_empty()) {
            state.startup = Startup::Done;
            self.ready.send_replace(true);
            tracing::info!(
                kind = K::KIND.metric_label(),
                "every listed config reconciled once"
            );
        }
    }

    /// The watch's (re)list completed: drops the routes of objects that
    /// disappeared while the watch was down; at the first one, starts
    /// waiting for every listed object to be reconciled once.
    fn relisted(&self) {
        let mut state = self.state();
        let State { owners, .. } = &mut *state;
        owners.retain(|scope, owner| {
            let live = self.store.get(owner).is_some();
            if !live {
                self.drop_routes(scope);
                tracing::info!(object = %owner, "config gone after relist: receivers removed");
            }
            live
        });
        if let Startup::Listing(done) = &state.startup {
            let awaited: HashSet<ObjectRef<K>> = self
                .store
                .state()
                .iter()
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .filter(|r| !done.contains(r))
                .collect();
            state.startup = Startup::Awaiting(awaited);
            self.settle(&mut state);
        }
    }

    /// Drops the routes of a deleted object (if the store no longer has it).
    fn forget(&self, obj: &K) {
        let key = ObjectRef::from_obj(obj);
        let mut state = self.state();
        if self.store.get(&key).is_some() {
            return;
        }
        if obj.invalid().is_none() {
            let scope = obj.scope();
            state.owners.remove(&scope);
            self.drop_routes(&scope);
            tracing::info!(config = %key, "config deleted: receivers removed");
        }
        state.failures.remove(&key);
        if let Startup::Awaiting(awaited) = &mut state.startup {
            awaited.remove(&key);
        }
        self.settle(&mut state);
    }

    /// Takes `scope`'s routes out of the table and forgets what was derived
    /// from their Secrets.
    fn drop_routes(&self, scope: &Scope) {
        self.shared.routes.replace(scope, Vec::new());
        self.shared.secrets.retain(scope, &[]);
        self.shared.published.retain(scope, &[]);
        self.shared.rotations.forget(scope);
    }

    /// Counts a failure of `obj`; returns how many in a row.
    pub fn failed(&self, obj: &K) -> u32 {
        let mut state = self.state();
        let n = state.failures.entry(ObjectRef::from_obj(obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Resets `obj`'s failure count.
    pub fn succeeded(&self, obj: &K) {
        self.state().failures.remove(&ObjectRef::from_obj(obj));
    }
}

/// The controller of kind `K`: runs until `shutdown`. The flag turns true
/// once every object of the first list was reconciled once.
pub fn controller<K: ConfigResource>(
    shared: &Shared,
    secret_changes: mpsc::UnboundedReceiver<SecretKey>,
    shutdown: &CancellationToken,
) -> (impl Future<Output = ()> + Send, watch::Receiver<bool>) {
    let (store, writer) = reflector::store::<K>();
    let ctx = Arc::new(Context::new(shared.clone(), store.clone()));
    let ready = ctx.ready.subscribe();
    let restarts = shared.metrics.watch_restarts(K::PLURAL);
    let stream = config_stream(
        Api::<K>::all(shared.client.clone()),
        writer,
        ctx.clone(),
        restarts,
    );
    let system_ns = shared.settings.system_resources_namespace.clone();
    let triggers = secret_triggers(secret_changes, store.clone(), system_ns);
    let listed = store.clone();
    let run = Controller::for_stream(stream, store)
        .reconcile_on(triggers)
        .reconcile_all_on(became_leader(&shared.leadership))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(log_result);
    let run = stops_even_if_never_listed(run, listed, shutdown, K::KIND.metric_label());
    (run, ready)
}

/// `run` (a kube-runtime `Controller` over `store`), ending at `shutdown`
/// also when the first list never came: kube's controller holds its
/// reconciles until the first list is in, and its graceful shutdown waits
/// for them, so with the API server unreachable from the start it would
/// never stop. Nothing can have been reconciled then, so it is dropped.
pub(super) fn stops_even_if_never_listed<K>(
    run: impl Future<Output = ()> + Send,
    store: Store<K>,
    shutdown: &CancellationToken,
    kind: &'static str,
) -> impl Future<Output = ()> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    let shutdown = shutdown.clone();
    let never_listed = async move {
        shutdown.cancelled().await;
        // Polled only once shutting down: readiness no longer matters, so
        // taking the store's one readiness waker from the controller is
        // harmless here.
        if let Some(Ok(())) = store.wait_until_ready().now_or_never() {
            std::future::pending::<()>().await;
        }
        tracing::debug!(kind, "stopped before the first list");
    };
    async move {
        tokio::select! {
            () = run => {}
            () = never_listed => {}
        }
    }
}

/// Whether any Harbor receiver references Secret `name`.
fn references(receivers: &[WebhookReceiverConfig], name: &str) -> bool {
    receivers
        .iter()
        .any(|r| matches!(r.kind(), ReceiverKind::Harbor(h) if h.secret_ref.name == name))
}

/// A config watch: managed fields stripped but for the entry naming who
/// last set `status.webhookReceivers` (the attribution of a path under
/// another base), reflected into the controller's store; deletions (and
/// objects missing after a relist) drop their routes at once.
fn config_stream<K: ConfigResource>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Context<K>>,
    restarts: Counter,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    watcher(api, K::watcher_config())
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().retain(owns_receiver_list))
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Delete(obj)) => ctx.forget(obj),
            Ok(watcher::Event::InitDone) => {
                ctx.shared.api_errors.succeeded();
                ctx.relisted();
            }
            Err(e) => {
                restarts.inc();
                let what = K::KIND.metric_label();
                if ctx.shared.api_errors.failed(what, e) == Failure::Other {
                    tracing::warn!(kind = what, error = %e, "watch failed; retrying");
                }
            }
            _ => {}
        })
        .applied_objects()
}

/// Changed Secrets → the configs referencing them.
fn secret_triggers<K: ConfigResource>(
    rx: mpsc::UnboundedReceiver<SecretKey>,
    store: Store<K>,
    system_namespace: String,
) -> BoxStream<'static, ObjectRef<K>> {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
        .flat_map(move |(ns, name)| {
            let affected: Vec<ObjectRef<K>> = store
                .state()
                .into_iter()
                .filter(|o| o.secret_namespace(&system_namespace) == ns)
                .filter(|o| references(o.receivers(), &name))
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect();
            stream::iter(affected)
        })
        .boxed()
}

/// `()` each time this replica becomes leader.
pub(super) fn became_leader(leadership: &Leadership) -> BoxStream<'static, ()> {
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

/// Logs what a controller's run yields (failures were logged already).
pub(super) async fn log_result<K, E1, E2>(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::core::token::TokenDigest;
    use crate::index::{ReceiverEntry, Route};
    use kargo_api::ProjectConfigSpec;
    use kube::runtime::events::Reporter;

    /// What the reconciles share, over `client` (never contacted when
    /// offline), for `run <args>`.
    pub(in crate::watch) fn shared(
        client: kube::Client,
        args: &[&str],
        routes: Arc<RouteTable>,
    ) -> Shared {
        let config = crate::testing::config(args);
        let settings = crate::app::watch_settings(&config, "test-replica");
        Shared {
            secrets: Arc::new(SecretReader::new(
                client.clone(),
                settings.secret_access,
                settings.base_url.clone(),
                Default::default(),
            )),
            rotations: Arc::new(Rotations::new(settings.rotation_grace_period)),
            settings: Arc::new(settings),
            leadership: Arc::new(Leadership::new()),
            routes,
            metrics: ControllerMetrics::default(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: crate::NAME.into(),
                    instance: None,
                },
            ),
            api_errors: Arc::new(ApiErrors::new("the test API server")),
            published: Default::default(),
            client,
        }
    }

    fn offline(routes: Arc<RouteTable>) -> Shared {
        shared(
            crate::testing::offline_client(),
            &["--base-url", "https://h"],
            routes,
        )
    }

    fn project_config(ns: &str) -> ProjectConfig {
        let mut pc = ProjectConfig::new(
            ns,
            ProjectConfigSpec {
                webhook_receivers: vec![],
            },
        );
        pc.metadata.namespace = Some(ns.into());
        pc.metadata.uid = Some(format!("uid-{ns}"));
        pc
    }

    fn route(scope: &Scope) -> Route {
        Route {
            path: "/harbor/x".into(),
            entry: ReceiverEntry {
                scope: scope.clone(),
                name: "r".into(),
                token: TokenDigest::of(b"t"),
                why: crate::index::RouteReason::Current,
                counters: Default::default(),
                grace_until: None,
            },
        }
    }

    #[tokio::test]
    async fn a_deleted_config_is_forgotten_entirely() {
        let routes = Arc::new(RouteTable::new());
        // An empty store: the object is gone.
        let (store, _writer) = reflector::store::<ProjectConfig>();
        let ctx = Context::new(offline(routes.clone()), store);
        let pc = project_config("p");
        let scope = pc.scope();
        routes.replace(&scope, vec![route(&scope)]);
        ctx.failed(&pc);

        ctx.forget(&pc);
        assert!(routes.lookup("/harbor/x").is_none());
        assert!(ctx.state().failures.is_empty());
        // A reconcile that raced the deletion cannot put the routes back.
        assert!(!ctx.publish(&pc, vec![route(&scope)]));
        assert!(routes.lookup("/harbor/x").is_none());
    }

    #[tokio::test]
    async fn readiness_waits_for_every_listed_object_once() {
        let (store, mut writer) = reflector::store::<ProjectConfig>();
        let ctx = Context::new(offline(Arc::new(RouteTable::new())), store);
        let ready = ctx.ready.subscribe();
        let (a, b, c) = (
            project_config("a"),
            project_config("b"),
            project_config("c"),
        );
        for pc in [&a, &b, &c] {
            writer.apply_watcher_event(&watcher::Event::Apply(pc.clone()));
        }
        // `a` was reconciled while listing; `b` and `c` are awaited.
        ctx.reconciled(&a);
        ctx.relisted();
        assert!(!*ready.borrow());
        ctx.reconciled(&b);
        assert!(!*ready.borrow());
        // `c` is deleted before its first reconcile: no longer awaited.
        writer.apply_watcher_event(&watcher::Event::Delete(c.clone()));
        ctx.forget(&c);
        assert!(*ready.borrow());
    }

    #[tokio::test]
    async fn an_empty_first_list_is_ready_at_once() {
        let (store, _writer) = reflector::store::<ProjectConfig>();
        let ctx = Context::new(offline(Arc::new(RouteTable::new())), store);
        ctx.relisted();
        assert!(*ctx.ready.borrow());
    }
}
