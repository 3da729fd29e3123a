//! The reconcile of one ProjectConfig or the ClusterConfig, in three steps:
//!
//! 1. **resolve**: each Harbor receiver's Secret → path and token digest
//!    (one GET only when the Secret may have changed), every receiver's
//!    outcome; a path Kargo publishes under its own base path is adopted
//!    ([`crate::core::status::published_elsewhere`]);
//! 2. **publish**: the synced receivers' routes into the route table (every
//!    replica), the adopted paths beside the derived ones;
//! 3. **report**: on the leader, the status (only when something of ours
//!    changes; [`crate::core::status`] says what is ours) and the Events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kargo_api::ReceiverKind;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use thiserror::Error;

use super::api_errors::Failure;
use super::configs::{ConfigResource, Context};
use super::report;
use super::secrets::Wanted;
use crate::core::status::{
    base_differs_event, desired_status, display_base, kargo_bases, list_writer,
    published_elsewhere, status_patch, transition_events, HarborOutcome, Observed, SpecReceiver,
};
use crate::index::{Route, RouteReason};
use crate::metrics::{KindErrorLabels, KindLabels, ReconcileLabels, ReconcileResult};

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

impl ReconcileError {
    /// The label of `reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::SecretRead { .. } => "secret_read",
            ReconcileError::StatusWrite(kube::Error::Api(s)) if s.code == 409 => "status_conflict",
            ReconcileError::StatusWrite(_) => "status_write",
        }
    }
}

/// What resolving the receivers found.
struct Resolved {
    /// Every spec receiver, in spec order, with our Harbor outcomes.
    spec: Vec<SpecReceiver>,
    routes: Vec<Route>,
    /// Receivers published under Kargo's base path: (name, Kargo's base).
    adopted: Vec<(String, String)>,
    /// The first transient error; the reconcile is retried with backoff.
    error: Option<ReconcileError>,
    /// Some Secret is re-read periodically rather than watched.
    polled: bool,
    /// Secret GETs made.
    reads: usize,
}

/// Step 1: every receiver's outcome, and the routes of the synced ones.
async fn resolve<K: ConfigResource>(obj: &K, ctx: &Context<K>) -> Resolved {
    let mut resolved = Resolved {
        spec: Vec::new(),
        routes: Vec::new(),
        adopted: Vec::new(),
        error: None,
        polled: false,
        reads: 0,
    };
    let shared = &ctx.shared;
    let scope = obj.scope();
    let secret_ns = obj.secret_namespace(&shared.settings.system_resources_namespace);
    for r in obj.receivers() {
        let name = r.name.clone();
        let receiver = match r.kind() {
            ReceiverKind::Harbor(h) => {
                resolved.polled |= shared.secrets.polled(&secret_ns);
                let found = shared
                    .secrets
                    .resolve(&Wanted {
                        scope: &scope,
                        name: &r.name,
                        secret_namespace: &secret_ns,
                        secret_name: &h.secret_ref.name,
                    })
                    .await;
                resolved.reads += usize::from(found.read);
                if let (Some(e), None) = (found.error, resolved.error.as_ref()) {
                    resolved.error = Some(ReconcileError::SecretRead {
                        secret: format!("{secret_ns}/{}", h.secret_ref.name),
                        source: e,
                    });
                }
                resolved.routes.extend(found.route);
                SpecReceiver::Harbor {
                    name,
                    outcome: found.outcome,
                }
            }
            // Several types: Kargo picks one by its registration order.
            ReceiverKind::Other(_) | ReceiverKind::Ambiguous(_) => SpecReceiver::Other { name },
            ReceiverKind::Missing => SpecReceiver::Untyped { name },
        };
        resolved.spec.push(receiver);
    }
    let names: Vec<&str> = obj.receivers().iter().map(|r| r.name.as_str()).collect();
    shared.secrets.retain(&scope, &names);
    adopt_published(obj, ctx, &mut resolved);
    resolved
}

/// Step 1, end: where status holds one of our receivers under Kargo's base
/// path, publish Kargo's (with our current hash) and serve it too.
fn adopt_published<K: ConfigResource>(obj: &K, ctx: &Context<K>, resolved: &mut Resolved) {
    let shared = &ctx.shared;
    let current = obj.config_status();
    let writer = list_writer(
        obj.meta().managed_fields.as_deref().unwrap_or_default(),
        crate::NAME,
    );
    shared.published.learn(kargo_bases(current));
    let known = shared.published.known();
    let our_base = shared.settings.base_url.base_path();
    for receiver in &mut resolved.spec {
        let SpecReceiver::Harbor {
            name,
            outcome: HarborOutcome::Synced(ours),
        } = receiver
        else {
            continue;
        };
        let Some(adoption) = published_elsewhere(current, name, ours, our_base, writer, &known)
        else {
            continue;
        };
        let extra = resolved
            .routes
            .iter()
            .find(|r| &r.entry.name == name)
            .map(|r| Route {
                path: adoption.published.path.clone(),
                entry: crate::index::ReceiverEntry {
                    why: RouteReason::PublishedByKargo,
                    ..r.entry.clone()
                },
            });
        resolved.routes.extend(extra);
        *ours = adoption.published;
        shared.published.learn([adoption.kargo_base.clone()]);
        resolved.adopted.push((name.clone(), adoption.kargo_base));
    }
    let keep: Vec<&str> = resolved.adopted.iter().map(|(n, _)| n.as_str()).collect();
    shared.published.retain(&obj.scope(), &keep);
}

/// After a grace period ends, the reconcile that drops its route runs this
/// much later (the request path refuses the route from the end on anyway).
const GRACE_END_SLACK: Duration = Duration::from_millis(50);

/// Step 2a: the previous paths of rotated receivers still in their grace
/// period join the routes ([`super::rotations`]). Returns when the first
/// of those grace periods ends, on tokio's clock (the request path's).
fn add_grace_routes<K: ConfigResource>(
    obj: &K,
    ctx: &Context<K>,
    routes: &mut Vec<Route>,
) -> Option<tokio::time::Instant> {
    let names: Vec<&str> = obj.receivers().iter().map(|r| r.name.as_str()).collect();
    let now = tokio::time::Instant::now();
    ctx.shared
        .rotations
        .add_grace_routes(&obj.scope(), &names, routes, now.into_std())
        .map(tokio::time::Instant::from_std)
}

fn now() -> Time {
    let ts = Timestamp::now();
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// Step 3 (leader only): writes the status if something of ours changed,
/// then the transition Events. Returns whether it wrote.
async fn report<K: ConfigResource>(
    obj: &K,
    ctx: &Context<K>,
    spec: &[SpecReceiver],
) -> Result<bool, ReconcileError> {
    let shared = &ctx.shared;
    let current = obj.config_status();
    let observed = Observed {
        wording: K::WORDING,
        generation: obj.meta().generation,
        refresh: obj
            .annotations()
            .get(kargo_api::REFRESH_ANNOTATION)
            .map(String::as_str),
        current,
    };
    let Some(desired) = desired_status(&observed, spec, &now()) else {
        return Ok(false);
    };
    let Some(patch) = status_patch(
        current,
        &desired.status,
        obj.meta().resource_version.as_deref(),
    ) else {
        return Ok(false);
    };
    let events = transition_events(current, spec);
    let api = K::api(shared.client.clone(), obj);
    report::patch_status(&api, &obj.name_any(), &patch)
        .await
        .map_err(ReconcileError::StatusWrite)?;
    shared
        .metrics
        .status_writes
        .get_or_create(&KindLabels { kind: K::KIND })
        .inc();
    if !desired.judged {
        tracing::debug!("conditions left to Kargo: some receiver is not ours to judge");
    }
    report::publish_events(&shared.recorder, obj, events).await;
    Ok(true)
}

/// Says once per receiver and change that it is published under Kargo's
/// base path: a log line naming both base paths, the metric, and (leader)
/// a Warning Event.
async fn notice_adopted<K: ConfigResource>(
    obj: &K,
    ctx: &Context<K>,
    adopted: &[(String, String)],
) {
    let shared = &ctx.shared;
    let our_base = shared.settings.base_url.base_path();
    let leader = shared.leadership.is_leader();
    let mut events = Vec::new();
    for (name, kargo_base) in adopted {
        let notice = shared
            .published
            .notice(&obj.scope(), name, kargo_base, leader);
        if notice.report {
            shared
                .metrics
                .published_base_differs
                .get_or_create(&KindLabels { kind: K::KIND })
                .inc();
            tracing::warn!(
                receiver = %name,
                our_base_path = display_base(our_base),
                kargo_base_path = display_base(kargo_base),
                "Harbor receiver published under Kargo's base path (EXTERNAL_WEBHOOK_SERVER_BASE_URL differs from --base-url): keeping Kargo's, serving both"
            );
        }
        if notice.event {
            events.push(base_differs_event(name, our_base, kargo_base));
        }
    }
    report::publish_events(&shared.recorder, obj, events).await;
}

/// `Kind/namespace/name` of a config, for logs.
pub fn key_of<K: ConfigResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND.metric_label(),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Reconciles one config. Instrumented; the token never reaches a field.
#[tracing::instrument(skip_all, fields(config = %key_of(obj.as_ref())))]
pub async fn reconcile<K: ConfigResource>(
    obj: Arc<K>,
    ctx: Arc<Context<K>>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let shared = &ctx.shared;
    if let Some(why) = obj.invalid() {
        // Kargo never writes such a config either.
        tracing::warn!("{why}");
        ctx.reconciled(obj.as_ref());
        return Ok(Action::requeue(shared.settings.resync_interval));
    }
    let Resolved {
        spec,
        mut routes,
        adopted,
        mut error,
        polled,
        reads,
    } = resolve(obj.as_ref(), &ctx).await;

    let grace_ends = add_grace_routes(obj.as_ref(), &ctx, &mut routes);
    if ctx.publish(obj.as_ref(), routes) {
        tracing::info!("routes updated");
    }
    ctx.reconciled(obj.as_ref());
    notice_adopted(obj.as_ref(), &ctx, &adopted).await;

    let mut wrote = false;
    if shared.leadership.is_leader() {
        match report(obj.as_ref(), &ctx, &spec).await {
            Ok(w) => wrote = w,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }

    let not_ready = spec.iter().any(|r| {
        matches!(
            r,
            SpecReceiver::Harbor {
                outcome: HarborOutcome::Failed { .. },
                ..
            }
        )
    });
    let result = match (&error, not_ready) {
        (Some(_), _) => ReconcileResult::Error,
        (None, true) => ReconcileResult::NotReady,
        (None, false) => ReconcileResult::Ready,
    };
    let metrics = &shared.metrics;
    metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND,
            result,
        })
        .inc();
    metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: K::KIND })
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(secret_reads = reads, status_written = wrote, ?result, elapsed = ?started.elapsed(), "reconciled");

    if let Some(e) = error {
        metrics
            .reconcile_errors
            .get_or_create(&KindErrorLabels {
                kind: K::KIND,
                error: e.metric_label(),
            })
            .inc();
        return Err(e);
    }
    ctx.succeeded(obj.as_ref());
    let settings = &shared.settings;
    let mut interval = if polled {
        settings.secret_resync.min(settings.resync_interval)
    } else {
        settings.resync_interval
    };
    if let Some(end) = grace_ends {
        // Drop the route once its grace period is over.
        interval = interval
            .min(end.saturating_duration_since(tokio::time::Instant::now()) + GRACE_END_SLACK);
    }
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
    let n = ctx.failed(obj.as_ref());
    let delay = Duration::from_millis(200)
        .saturating_mul(1u32 << n.saturating_sub(1).min(8))
        .min(Duration::from_secs(30));
    if ctx.shared.api_errors.failed("reconcile", error) == Failure::Other {
        tracing::warn!(config = %key, error = %error, ?delay, "reconcile failed; retrying");
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    //! The reconcile against a scripted API server (kube-rs' `tower-test`
    //! mock, as controller-rs' `ApiServerVerifier`): each test lists the
    //! calls the reconcile must make, in order, with their answers, and
    //! fails on any other call.

    use super::*;
    use crate::index::RouteTable;
    use crate::watch::configs::tests::shared;
    use http::{Method, Request, Response};
    use kargo_api::ProjectConfig;
    use kube::client::Body;
    use kube::runtime::reflector;
    use kube::runtime::watcher;
    use serde_json::{json, Value};
    use std::time::Instant;

    const VECTOR_PATH: &str =
        "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";

    /// One expected call: method, path, and the answer (status, body). The
    /// request body is handed to `check`.
    struct Call {
        method: Method,
        path: String,
        status: u16,
        answer: Value,
        check: fn(&Value),
    }

    /// The status PATCH (its body handed to `check`), answered with `pc`.
    fn status_write(pc: &ProjectConfig, check: fn(&Value)) -> Call {
        Call {
            check,
            ..call(
                Method::PATCH,
                STATUS,
                200,
                serde_json::to_value(pc).unwrap(),
            )
        }
    }

    /// The spec of [`project_config`]: one Harbor receiver.
    fn harbor_receivers() -> Value {
        json!([{"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "harbor-wh-secret"}}}])
    }

    fn call(method: Method, path: &str, status: u16, answer: Value) -> Call {
        Call {
            method,
            path: path.to_owned(),
            status,
            answer,
            check: |_| {},
        }
    }

    /// Serves `script` in order, then answers 500 to anything else; returns
    /// the calls that were not in the script (as `METHOD path`).
    async fn serve(
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
        script: Vec<Call>,
    ) -> Vec<String> {
        use http_body_util::BodyExt;
        let mut script = script.into_iter();
        let mut unexpected = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let got = format!("{} {}", parts.method, parts.uri.path());
            let (status, answer) = match script.next() {
                Some(c) if c.method == parts.method && c.path == parts.uri.path() => {
                    let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    (c.check)(&sent);
                    (c.status, c.answer)
                }
                other => {
                    let wanted = other.map(|c| format!("{} {}", c.method, c.path));
                    unexpected.push(format!("{got} (expected {wanted:?})"));
                    (500, json!({"kind": "Status", "code": 500}))
                }
            };
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
        let missing: Vec<String> = script
            .map(|c| format!("{} {} (never made)", c.method, c.path))
            .collect();
        unexpected.extend(missing);
        unexpected
    }

    fn project_config(status: Value) -> ProjectConfig {
        config_with(harbor_receivers(), status, json!([]))
    }

    /// The ProjectConfig `kargo-demo` with `receivers`, `status` and
    /// `managedFields`.
    fn config_with(receivers: Value, status: Value, managed_fields: Value) -> ProjectConfig {
        serde_json::from_value(json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "ProjectConfig",
            "metadata": {"name": "kargo-demo", "namespace": "kargo-demo", "uid": "u1",
                         "generation": 1, "resourceVersion": "7",
                         "managedFields": managed_fields},
            "spec": {"webhookReceivers": receivers},
            "status": status,
        }))
        .unwrap()
    }

    fn secret(token: &str) -> Value {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("harbor-wh-secret".into()),
                namespace: Some("kargo-demo".into()),
                resource_version: Some("3".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "auth-header".to_owned(),
                    k8s_openapi::ByteString(token.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        serde_json::to_value(secret).unwrap()
    }

    fn not_found() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "NotFound", "code": 404,
               "message": "secrets \"harbor-wh-secret\" not found"})
    }

    const SECRET: &str = "/api/v1/namespaces/kargo-demo/secrets/harbor-wh-secret";
    const STATUS: &str =
        "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/projectconfigs/kargo-demo/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kargo-demo/events";

    /// Reconciles `pc` as the leader against `script`; returns the
    /// unexpected or missing calls and the route table.
    async fn reconcile_against(
        pc: ProjectConfig,
        script: Vec<Call>,
    ) -> (Vec<String>, Arc<RouteTable>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(serve(handle, script));
        let client = kube::Client::new(service, "default");
        let routes = Arc::new(RouteTable::new());
        let shared = shared(
            client,
            &["--base-url", "https://webhooks.example.com"],
            routes.clone(),
        );
        shared
            .leadership
            .set(Some(Instant::now() + Duration::from_secs(3600)));
        let (store, mut writer) = reflector::store::<ProjectConfig>();
        writer.apply_watcher_event(&watcher::Event::Apply(pc.clone()));
        let ctx = Arc::new(Context::new(shared, store));
        let result = reconcile(Arc::new(pc), ctx.clone()).await;
        assert!(result.is_ok(), "{result:?}");
        // Every call the reconcile made was awaited; dropping the client
        // ends the script.
        drop(ctx);
        (server.await.unwrap(), routes)
    }

    #[tokio::test]
    async fn a_harbor_receiver_gets_its_route_and_one_status_write() {
        let pc = project_config(Value::Null);
        let (wrong, routes) = reconcile_against(
            pc.clone(),
            vec![
                call(Method::GET, SECRET, 200, secret("test-auth-token-123")),
                status_write(&pc, |sent| {
                    let status = &sent["status"];
                    assert_eq!(status["webhookReceivers"][0]["path"], VECTOR_PATH);
                    assert_eq!(
                        status["webhookReceivers"][0]["url"],
                        format!("https://webhooks.example.com{VECTOR_PATH}")
                    );
                    // Kargo's words, byte for byte.
                    let ready = &status["conditions"][0];
                    assert_eq!(ready["type"], "Ready");
                    assert_eq!(ready["status"], "True");
                    assert_eq!(ready["reason"], "Synced");
                    assert_eq!(
                        ready["message"],
                        "ProjectConfig is synced and ready for use"
                    );
                    assert_eq!(ready["observedGeneration"], 1);
                    assert_eq!(status["conditions"].as_array().unwrap().len(), 1);
                    assert_eq!(status["observedGeneration"], 1);
                    // Conditional on what was read: a concurrent writer's
                    // change is never lost.
                    assert_eq!(sent["metadata"]["resourceVersion"], "7");
                }),
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        assert!(routes
            .lookup(VECTOR_PATH)
            .is_some_and(|e| e.token.verify(b"test-auth-token-123")));
    }

    /// What Kargo writes for the one-receiver config.
    fn kargo_status(receivers: Value) -> Value {
        json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced",
                "message": "ProjectConfig is synced and ready for use",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-11-29T00:00:00Z",
            }],
            "observedGeneration": 1,
            "webhookReceivers": receivers,
        })
    }

    fn vector_entry() -> Value {
        json!({"name": "harbor-wh-receiver", "path": VECTOR_PATH,
               "url": format!("https://webhooks.example.com{VECTOR_PATH}")})
    }

    #[tokio::test]
    async fn a_status_as_kargo_writes_it_is_not_written() {
        let (wrong, _) = reconcile_against(
            project_config(kargo_status(json!([vector_entry()]))),
            vec![call(
                Method::GET,
                SECRET,
                200,
                secret("test-auth-token-123"),
            )],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[tokio::test]
    async fn a_github_only_config_gets_no_request_at_all() {
        let gh = json!({"name": "gh", "path": "/github/abc", "url": "https://x/github/abc"});
        for status in [Value::Null, kargo_status(json!([gh]))] {
            let pc = config_with(
                json!([{"name": "gh", "github": {"secretRef": {"name": "gh-secret"}}}]),
                status,
                json!([]),
            );
            let (wrong, routes) = reconcile_against(pc, vec![]).await;
            assert!(wrong.is_empty(), "{wrong:?}");
            assert!(routes.load().is_empty());
        }
    }

    #[tokio::test]
    async fn a_github_entry_keeps_its_value_and_place() {
        let gh = json!({"name": "gh", "path": "/github/abc", "url": "https://x/github/abc"});
        let pc = config_with(
            json!([
                {"name": "gh", "github": {"secretRef": {"name": "gh-secret"}}},
                {"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "harbor-wh-secret"}}},
            ]),
            kargo_status(json!([gh])),
            json!([]),
        );
        let (wrong, _) = reconcile_against(
            pc.clone(),
            vec![
                call(Method::GET, SECRET, 200, secret("test-auth-token-123")),
                status_write(&pc, |sent| {
                    // Only the list changed; Kargo's entry first, as in the spec.
                    let keys: Vec<&String> = sent["status"].as_object().unwrap().keys().collect();
                    assert_eq!(keys, ["webhookReceivers"]);
                    let list = &sent["status"]["webhookReceivers"];
                    assert_eq!(
                        list[0],
                        json!({"name": "gh", "path": "/github/abc", "url": "https://x/github/abc"})
                    );
                    assert_eq!(list[1]["path"], VECTOR_PATH);
                    assert_eq!(list.as_array().unwrap().len(), 2);
                }),
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[tokio::test]
    async fn a_missing_secret_is_reported_in_kargos_words() {
        let (wrong, routes) = reconcile_against(
            project_config(Value::Null),
            vec![
                call(Method::GET, SECRET, 404, not_found()),
                status_write(&project_config(Value::Null), |sent| {
                    let status = &sent["status"];
                    let types: Vec<&str> = status["conditions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["type"].as_str().unwrap())
                        .collect();
                    assert_eq!(types, ["Reconciling", "Ready"]);
                    let reconciling = &status["conditions"][0];
                    assert_eq!(reconciling["reason"], "SyncingWebhooks");
                    assert_eq!(reconciling["message"], "Syncing WebhookReceivers");
                    let ready = &status["conditions"][1];
                    assert_eq!(ready["status"], "False");
                    assert_eq!(ready["reason"], "SyncWebhookReceiversFailed");
                    assert_eq!(
                        ready["message"],
                        "Failed to sync WebhookReceivers: error syncing WebhookReceiver \
                             \"harbor-wh-receiver\": error getting Secret \"harbor-wh-secret\" \
                             in namespace \"kargo-demo\": secrets \"harbor-wh-secret\" not found"
                    );
                    // Nothing synced: no list, no observedGeneration.
                    assert!(status.get("webhookReceivers").is_none());
                    assert!(status.get("observedGeneration").is_none());
                }),
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        assert!(routes.load().is_empty());
    }

    const KARGO_PATH: &str =
        "/kargo/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";

    fn kargo_entry() -> Value {
        json!({"name": "harbor-wh-receiver", "path": KARGO_PATH,
               "url": format!("https://kargo.example.com{KARGO_PATH}")})
    }

    fn list_owner(manager: &str) -> Value {
        json!([{"manager": manager, "operation": "Update", "subresource": "status",
                "apiVersion": "kargo.akuity.io/v1alpha1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {".": {}, "f:webhookReceivers": {}}}}])
    }

    #[tokio::test]
    async fn kargos_base_path_is_kept_served_and_warned_about() {
        let pc = config_with(
            harbor_receivers(),
            kargo_status(json!([kargo_entry()])),
            list_owner("kargo"),
        );
        let (wrong, routes) = reconcile_against(
            pc,
            vec![
                call(Method::GET, SECRET, 200, secret("test-auth-token-123")),
                // No status write: the Warning Event only.
                Call {
                    check: |sent| {
                        assert_eq!(sent["reason"], "PublishedBaseDiffers");
                        assert_eq!(sent["type"], "Warning");
                    },
                    ..call(Method::POST, EVENTS, 201, json!({}))
                },
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        let table = routes.load();
        assert_eq!(table.paths(), [KARGO_PATH, VECTOR_PATH].into());
        let kargo = routes.lookup(KARGO_PATH).unwrap();
        assert_eq!(kargo.why, RouteReason::PublishedByKargo);
        assert!(kargo.token.verify(b"test-auth-token-123") && !kargo.token.verify(b"x"));
    }

    #[tokio::test]
    async fn our_own_earlier_base_path_is_replaced() {
        // The list was last set by us, and nothing says `/kargo` is Kargo's:
        // it is what we published under an earlier --base-url.
        let pc = config_with(
            harbor_receivers(),
            kargo_status(json!([kargo_entry()])),
            list_owner(crate::NAME),
        );
        let (wrong, routes) = reconcile_against(
            pc.clone(),
            vec![
                call(Method::GET, SECRET, 200, secret("test-auth-token-123")),
                status_write(&pc, |sent| {
                    assert_eq!(sent["status"]["webhookReceivers"], json!([vector_entry()]));
                }),
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        assert_eq!(routes.load().paths(), [VECTOR_PATH].into());
    }
}
