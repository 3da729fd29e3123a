//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Every replica builds the index and serves webhooks; only the leader writes
//! status and Events. The algorithm is client-go's: the holder renews the
//! Lease every `duration / 4`; another replica takes over once it has seen
//! no renewal for `duration` (measured on its own clock from when it last saw
//! the Lease change, so clock skew between nodes does not matter). Writes are
//! conditional on `resourceVersion`, so two candidates never both win.
//!
//! Leadership is *fenced in time*: [`Leadership::is_leader`] is true only
//! until `renewal start + 2/3 · duration` unless a later renewal succeeded.
//! A leader cut off from the API server therefore stops writing status before
//! anyone else may take over, even if it cannot learn that it lost the Lease.
//! On shutdown the holder releases the Lease (empty holder) so that another
//! replica takes over at its next poll instead of after `duration`.
//!
//! RBAC: `get`, `create`, `update` on `leases` in `--lease-namespace`.
//!
//! (`kube-lease-manager` works too, but it reports losing the lock only
//! when it notices, not when its renewal deadline passes; this module is
//! small enough to own that guarantee.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::api_errors::{ApiErrors, Failure};
use tokio_util::sync::CancellationToken;

/// Where and as whom to take part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease duration (whole seconds in the Lease; at least 1 s).
    pub duration: Duration,
}

impl LeaseConfig {
    fn duration_seconds(&self) -> i32 {
        let secs = self.duration.as_secs_f64().ceil();
        (secs as i32).max(1)
    }

    fn retry_period(&self) -> Duration {
        (self.duration / 4).max(Duration::from_millis(100))
    }

    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Bound of each Lease API call.
    fn call_timeout(&self) -> Duration {
        self.renew_deadline().max(Duration::from_millis(500))
    }
}

/// The identity to use when none is configured (`--identity`/`POD_NAME`):
/// the host name plus a random suffix. The host name alone is not unique:
/// two processes on one host, or `hostNetwork` pods on one node, share it,
/// and two replicas with one identity would both believe they lead.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| crate::NAME.to_owned());
    with_random_suffix(&host)
}

/// `base` plus `-` and 8 random lowercase letters and digits.
fn with_random_suffix(base: &str) -> String {
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
        .filter(char::is_ascii)
        .map(|c| c.to_ascii_lowercase())
        .take(8)
        .collect();
    format!("{base}-{suffix}")
}

/// This replica's view of the election, shared with the controller.
#[derive(Debug)]
pub struct Leadership {
    valid_until: Mutex<Option<Instant>>,
    changes: watch::Sender<bool>,
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new()
    }
}

impl Leadership {
    /// Not leader.
    pub fn new() -> Self {
        Self {
            valid_until: Mutex::new(None),
            changes: watch::channel(false).0,
        }
    }

    /// Whether this replica may write status right now.
    pub fn is_leader(&self) -> bool {
        self.lock().is_some_and(|until| Instant::now() < until)
    }

    /// Notified with `true` on becoming leader and `false` on losing it.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leads until `until` (`None`: not leader). The election loop's, and
    /// tests' of the reconcile.
    pub(super) fn set(&self, until: Option<Instant>) {
        *self.lock() = until;
        let leading = until.is_some();
        self.changes.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        });
    }
}

/// What the candidate remembers between attempts.
#[derive(Default)]
struct Observation {
    /// (holder, renewTime, resourceVersion) last seen, and when we saw it change.
    record: Option<(Option<String>, Option<MicroTime>, Option<String>)>,
    observed_at: Option<Instant>,
}

enum Attempt {
    /// We hold the Lease as of the attempt's start.
    Held,
    /// Someone else holds a live Lease.
    Other(String),
}

/// Takes part in the election until `shutdown`; then releases the Lease if
/// held. `on_change(true|false)` runs on each transition (metrics, logs).
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leadership: std::sync::Arc<Leadership>,
    on_change: impl Fn(bool) + Send,
    api_errors: std::sync::Arc<ApiErrors>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut seen = Observation::default();
    let mut leading = false;
    loop {
        let started = Instant::now();
        let result = try_acquire_or_renew(&api, &config, &mut seen).await;
        match result {
            Ok(Attempt::Held) => {
                api_errors.succeeded();
                leadership.set(Some(started + config.renew_deadline()));
                if !leading {
                    leading = true;
                    tracing::info!(identity = %config.identity, lease = %config.name, "became leader");
                    on_change(true);
                }
            }
            Ok(Attempt::Other(holder)) => {
                if leading {
                    leading = false;
                    leadership.set(None);
                    tracing::warn!(identity = %config.identity, %holder, "lost the lease");
                    on_change(false);
                }
            }
            Err(e) => {
                if api_errors.failed("Lease", &e) == Failure::Other {
                    tracing::warn!(identity = %config.identity, error = %e, "lease renewal failed");
                }
                if leading && !leadership.is_leader() {
                    leading = false;
                    leadership.set(None);
                    tracing::warn!(identity = %config.identity, "renewal deadline passed: no longer leader");
                    on_change(false);
                }
            }
        }
        // Step down exactly at the deadline if the next attempts hang.
        let wake = if leading {
            let deadline = (*leadership.lock()).unwrap_or_else(Instant::now);
            config
                .retry_period()
                .min(deadline.saturating_duration_since(Instant::now()))
        } else {
            config.retry_period()
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wake) => {}
        }
        if leading && !leadership.is_leader() {
            leading = false;
            leadership.set(None);
            tracing::warn!(identity = %config.identity, "renewal deadline passed: no longer leader");
            on_change(false);
        }
    }
    if leading {
        leadership.set(None);
        on_change(false);
        match release(&api, &config).await {
            Ok(()) => tracing::info!(identity = %config.identity, "released the lease"),
            Err(e) => {
                tracing::warn!(identity = %config.identity, error = %e, "releasing the lease failed")
            }
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    seen: &mut Observation,
) -> Result<Attempt, kube::Error> {
    let timeout = config.call_timeout();
    let params = PostParams::default();
    let current = bounded(timeout, "get", api.get_opt(&config.name)).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.duration_seconds()),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        let create = api.create(&params, &lease);
        return match bounded(timeout, "create", create).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Other(String::new())),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record = (
        holder.clone(),
        spec.renew_time.clone(),
        lease.metadata.resource_version.clone(),
    );
    if seen.record.as_ref() != Some(&record) {
        seen.record = Some(record);
        seen.observed_at = Some(Instant::now());
    }
    let we_hold = holder.as_deref() == Some(config.identity.as_str());
    if let Some(other) = holder.as_ref().filter(|_| !we_hold) {
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(1).max(1)).unwrap_or(1),
        );
        let expired = seen.observed_at.is_some_and(|at| at.elapsed() > duration);
        if !expired {
            return Ok(Attempt::Other(other.clone()));
        }
    }
    let mut next = spec;
    if !we_hold {
        next.acquire_time = Some(now_micro());
        next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
    }
    next.holder_identity = Some(config.identity.clone());
    next.lease_duration_seconds = Some(config.duration_seconds());
    next.renew_time = Some(now_micro());
    lease.spec = Some(next);
    lease.metadata.managed_fields = None;
    let replace = api.replace(&config.name, &params, &lease);
    match bounded(timeout, "update", replace).await {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Other(holder.unwrap_or_default())),
        Err(e) => Err(e),
    }
}

/// Every Lease call is bounded: kube's client waits as long as its read
/// timeout (minutes) allows, which would stall the election loop, or hold up
/// shutdown past the pod's grace period while releasing.
async fn bounded<T>(
    timeout: Duration,
    verb: &str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("lease {verb} timed out").into(),
            ))
        })
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let timeout = config.call_timeout();
    let params = PostParams::default();
    let Some(mut lease) = bounded(timeout, "get", api.get_opt(&config.name)).await? else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    lease.spec = Some(spec);
    lease.metadata.managed_fields = None;
    let replace = api.replace(&config.name, &params, &lease);
    match bounded(timeout, "update", replace).await {
        Ok(_) => Ok(()),
        // Someone else already took it over.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_the_duration() {
        let c = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration: Duration::from_millis(2500),
        };
        assert_eq!(c.duration_seconds(), 3);
        assert_eq!(c.retry_period(), Duration::from_millis(625));
        assert!(c.renew_deadline() < c.duration);
        let tiny = LeaseConfig {
            duration: Duration::from_millis(10),
            ..c
        };
        assert_eq!(tiny.duration_seconds(), 1);
        assert_eq!(tiny.retry_period(), Duration::from_millis(100));
    }

    #[test]
    fn default_identities_differ_even_on_one_host() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        let suffix = a.rsplit('-').next().unwrap();
        assert_eq!(suffix.len(), 8, "{a}");
        assert!(suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn leadership_is_fenced_in_time() {
        let l = Leadership::new();
        let mut rx = l.subscribe();
        assert!(!l.is_leader());
        l.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.is_leader());
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        // A renewal deadline in the past means not leader, even before the
        // election loop notices.
        l.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!l.is_leader());
        l.set(None);
        assert!(!*rx.borrow_and_update());
    }

    #[tokio::test]
    async fn releasing_against_a_silent_api_server_gives_up_in_time() {
        let (client, silent) = crate::testing::silent_api_server().await;
        let api: Api<Lease> = Api::namespaced(client, "n");
        let config = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration: Duration::from_millis(600),
        };
        let released = tokio::time::timeout(Duration::from_secs(5), release(&api, &config)).await;
        assert!(matches!(released, Ok(Err(_))), "{released:?}");
        silent.abort();
    }
}
