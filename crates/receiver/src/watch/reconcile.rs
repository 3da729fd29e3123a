//! The reconcile of one ProjectConfig or the ClusterConfig, in three steps:
//!
//! 1. **resolve**: each Harbor receiver's Secret → path and token digest
//!    (one GET only when the Secret may have changed), every receiver's
//!    outcome;
//! 2. **publish**: the ready receivers' routes into the route table (every
//!    replica);
//! 3. **report**: on the leader, the status (only when it changes) and the
//!    transition Events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kargo_api::ReceiverKind;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use thiserror::Error;

use super::configs::{ConfigResource, Context};
use super::report;
use super::secrets::Wanted;
use crate::core::status::{
    desired_status, status_patch, transition_events, Observed, ReceiverOutcome,
    REASON_INVALID_RECEIVER,
};
use crate::index::Route;
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

    /// What the Reconciling condition says is being retried: no error
    /// detail, so that it is stable across retries.
    fn retrying(&self) -> String {
        match self {
            ReconcileError::SecretRead { secret, .. } => {
                format!("reading Secret {secret:?} failed")
            }
            ReconcileError::StatusWrite(_) => "writing status failed".to_owned(),
        }
    }
}

/// What resolving the receivers found.
struct Resolved {
    outcomes: Vec<ReceiverOutcome>,
    routes: Vec<Route>,
    /// The first transient error; the reconcile is retried with backoff.
    error: Option<ReconcileError>,
    /// Some Secret is re-read periodically rather than watched.
    polled: bool,
    /// Secret GETs made.
    reads: usize,
}

/// Step 1: every receiver's outcome, and the routes of the ready ones.
async fn resolve<K: ConfigResource>(obj: &K, ctx: &Context<K>) -> Resolved {
    let mut resolved = Resolved {
        outcomes: Vec::new(),
        routes: Vec::new(),
        error: None,
        polled: false,
        reads: 0,
    };
    if let Some(why) = obj.invalid() {
        resolved.outcomes.push(ReceiverOutcome::NotReady {
            name: obj.name_any(),
            reason: REASON_INVALID_RECEIVER,
            message: why,
        });
        return resolved;
    }
    let shared = &ctx.shared;
    let scope = obj.scope();
    let secret_ns = obj.secret_namespace(&shared.settings.system_resources_namespace);
    for r in obj.receivers() {
        let outcome = match r.kind() {
            ReceiverKind::Harbor(h) if h.secret_ref.name.is_empty() => ReceiverOutcome::NotReady {
                name: r.name.clone(),
                reason: REASON_INVALID_RECEIVER,
                message: format!("receiver {:?}: harbor.secretRef.name is empty", r.name),
            },
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
                found.outcome
            }
            ReceiverKind::Other(kind) => ReceiverOutcome::Skipped {
                name: r.name.clone(),
                kind: kind.to_owned(),
            },
            ReceiverKind::Missing => ReceiverOutcome::Skipped {
                name: r.name.clone(),
                kind: "no kind".to_owned(),
            },
            ReceiverKind::Ambiguous(kinds) => ReceiverOutcome::NotReady {
                name: r.name.clone(),
                reason: REASON_INVALID_RECEIVER,
                message: format!(
                    "receiver {:?}: exactly one receiver kind expected, got {}",
                    r.name,
                    kinds.join(", ")
                ),
            },
        };
        resolved.outcomes.push(outcome);
    }
    let names: Vec<&str> = obj.receivers().iter().map(|r| r.name.as_str()).collect();
    shared.secrets.retain(&scope, &names);
    resolved
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

/// Step 3 (leader only): writes the status if it changed, then the
/// transition Events. Returns whether it wrote.
async fn report<K: ConfigResource>(
    obj: &K,
    ctx: &Context<K>,
    outcomes: &[ReceiverOutcome],
    retrying: Option<&str>,
) -> Result<bool, ReconcileError> {
    let shared = &ctx.shared;
    let current = obj.config_status();
    let observed = Observed {
        generation: obj.meta().generation,
        refresh: obj
            .annotations()
            .get(kargo_api::REFRESH_ANNOTATION)
            .map(String::as_str),
        current,
        retrying,
    };
    let desired = desired_status(&observed, outcomes, &now());
    let Some(patch) = status_patch(current, &desired, obj.meta().resource_version.as_deref())
    else {
        return Ok(false);
    };
    let events = transition_events(current, outcomes);
    let api = K::api(shared.client.clone(), obj);
    report::patch_status(&api, &obj.name_any(), &patch)
        .await
        .map_err(ReconcileError::StatusWrite)?;
    shared
        .metrics
        .status_writes
        .get_or_create(&KindLabels { kind: K::KIND })
        .inc();
    report::publish_events(&shared.recorder, obj, events).await;
    Ok(true)
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
    let Resolved {
        outcomes,
        mut routes,
        mut error,
        polled,
        reads,
    } = resolve(obj.as_ref(), &ctx).await;

    let mut grace_ends = None;
    if obj.invalid().is_none() {
        grace_ends = add_grace_routes(obj.as_ref(), &ctx, &mut routes);
        if ctx.publish(obj.as_ref(), routes) {
            tracing::info!("routes updated");
        }
    }
    ctx.reconciled(obj.as_ref());

    let mut wrote = false;
    if shared.leadership.is_leader() {
        let retrying = error.as_ref().map(ReconcileError::retrying);
        match report(obj.as_ref(), &ctx, &outcomes, retrying.as_deref()).await {
            Ok(w) => wrote = w,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }

    let not_ready = outcomes
        .iter()
        .any(|o| matches!(o, ReceiverOutcome::NotReady { .. }));
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
    tracing::warn!(config = %key, error = %error, ?delay, "reconcile failed; retrying");
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
        serde_json::from_value(json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "ProjectConfig",
            "metadata": {"name": "kargo-demo", "namespace": "kargo-demo", "uid": "u1",
                         "generation": 1, "resourceVersion": "7"},
            "spec": {"webhookReceivers": [
                {"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "harbor-wh-secret"}}}
            ]},
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
               "reason": "NotFound", "code": 404, "message": "not found"})
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
                Call {
                    check: |sent| {
                        let status = &sent["status"];
                        assert_eq!(status["webhookReceivers"][0]["path"], VECTOR_PATH);
                        assert_eq!(
                            status["webhookReceivers"][0]["url"],
                            format!("https://webhooks.example.com{VECTOR_PATH}")
                        );
                        assert_eq!(status["conditions"][0]["type"], "Ready");
                        assert_eq!(status["conditions"][0]["status"], "True");
                        assert_eq!(status["observedGeneration"], 1);
                        // Conditional on what was read: a concurrent writer's
                        // change is never lost.
                        assert_eq!(sent["metadata"]["resourceVersion"], "7");
                    },
                    ..call(
                        Method::PATCH,
                        STATUS,
                        200,
                        serde_json::to_value(&pc).unwrap(),
                    )
                },
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        assert!(routes
            .lookup(VECTOR_PATH)
            .is_some_and(|e| e.token.verify(b"test-auth-token-123")));
    }

    #[tokio::test]
    async fn a_status_that_already_says_so_is_not_written() {
        let desired = json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced",
                "message": "1 Harbor webhook receiver(s) ready",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-11-29T00:00:00Z",
            }],
            "observedGeneration": 1,
            "webhookReceivers": [{
                "name": "harbor-wh-receiver", "path": VECTOR_PATH,
                "url": format!("https://webhooks.example.com{VECTOR_PATH}"),
            }],
        });
        // Then with that status in place: one Secret read, no write.
        let (wrong, _) = reconcile_against(
            project_config(desired),
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
    async fn a_missing_secret_is_reported_and_routes_nothing() {
        let (wrong, routes) = reconcile_against(
            project_config(Value::Null),
            vec![
                call(Method::GET, SECRET, 404, not_found()),
                Call {
                    check: |sent| {
                        let ready = &sent["status"]["conditions"][0];
                        assert_eq!(ready["status"], "False");
                        assert_eq!(ready["reason"], "SecretNotFound");
                        assert_eq!(sent["status"]["webhookReceivers"], json!([]));
                    },
                    ..call(
                        Method::PATCH,
                        STATUS,
                        200,
                        serde_json::to_value(project_config(Value::Null)).unwrap(),
                    )
                },
                call(Method::POST, EVENTS, 201, json!({})),
            ],
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:?}");
        assert!(routes.load().is_empty());
    }
}
