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
        routes,
        mut error,
        polled,
        reads,
    } = resolve(obj.as_ref(), &ctx).await;

    if obj.invalid().is_none() && ctx.publish(obj.as_ref(), routes) {
        tracing::info!("routes updated");
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
    let interval = if polled {
        settings.secret_resync.min(settings.resync_interval)
    } else {
        settings.resync_interval
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
    let n = ctx.failed(obj.as_ref());
    let delay = Duration::from_millis(200)
        .saturating_mul(1u32 << n.saturating_sub(1).min(8))
        .min(Duration::from_secs(30));
    tracing::warn!(config = %key, error = %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}
