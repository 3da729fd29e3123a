//! The refresher: sets `kargo.akuity.io/refresh` on Warehouses with a JSON
//! merge patch, coalescing concurrent requests for the same Warehouse.
//!
//! # The promise
//! A request that arrived at instant `A` is answered 2xx only if every
//! matching Warehouse got a refresh value whose timestamp was taken after
//! `A`. A request may therefore share ("join") a patch only if that patch
//! took its timestamp after the request arrived:
//!
//! - no patch running for the Warehouse → start one;
//! - a patch running whose timestamp is not taken yet or was taken after `A`
//!   → join it;
//! - a patch running that took its timestamp before `A` → join the queued
//!   patch (creating it if needed), which starts when the running one ends.
//!
//! So at most one running and one queued patch exist per Warehouse, however
//! many requests name it. Timestamps are taken under the slot lock, so
//! "not taken yet" observed under the lock really means "taken later".
//!
//! Patches run in their own tasks: a request that gives up (its answer
//! deadline, client gone) does not cancel a patch others wait for. Every
//! API call, kube's own retries of 429/503/504 included, is bounded by
//! `--api-timeout`. A Warehouse deleted meanwhile (404) is neither
//! refreshed nor failed: it is reported as deleted.
//!
//! # Deliveries and the answer deadline
//! A request hands its matches to [`Refresher::deliver`], which waits at
//! most until the answer deadline. The delivery's job (see [`deliveries`])
//! goes on in the background past it, bounded by `--api-timeout` per patch
//! and by the job cap, and visible in `refresh_deliveries_running`;
//! Harbor's retry of the same delivery joins or reuses it. Every task is
//! tracked: [`Refresher::shutdown`] waits for them, then stops them.
//!
//! After each applied patch an Event is queued on the Warehouse ([`events`]),
//! off the response path.

pub mod deliveries;
pub mod events;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Resource};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
// Tokio's clock (std's when not paused), as the request path's arrival.
use tokio::time::Instant;

use thiserror::Error;

use crate::index::{WarehouseMatch, WarehouseRef};
use crate::metrics::{ErrorLabels, GaugeGuard, RefreshLabels, RefreshMetrics, RefreshOutcome};
use deliveries::{Deliveries, Delivery, DeliveryKey, Step};
use events::{EventSink, RefreshEvent};

static LAST_NANOS: AtomicI64 = AtomicI64::new(i64::MIN);

/// The next refresh value: RFC 3339 UTC with nanoseconds, strictly
/// increasing within the process (`max(now, last + 1ns)`), e.g.
/// `2026-11-29T03:30:00.123456789Z`. Fixed width, so the strings also sort
/// in time order.
pub fn next_refresh_value() -> String {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX - 1);
    let mut last = LAST_NANOS.load(Ordering::Relaxed);
    let next = loop {
        let candidate = now.max(last.saturating_add(1));
        match LAST_NANOS.compare_exchange_weak(last, candidate, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break candidate,
            Err(actual) => last = actual,
        }
    };
    DateTime::<Utc>::from_timestamp_nanos(next).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The merge patch setting the refresh annotation.
pub fn refresh_patch(value: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"annotations": {kargo_api::REFRESH_ANNOTATION: value}}
    })
}

/// Why a patch did not apply. Never shown to clients.
#[derive(Debug, Error)]
pub enum PatchError {
    /// The Warehouse does not exist (any more).
    #[error("the Warehouse does not exist")]
    NotFound,
    /// The API server (or the way to it) failed.
    #[error("API request failed: {0}")]
    Api(#[source] kube::Error),
    /// No answer within `--api-timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The patch future panicked.
    #[error("the patch panicked")]
    Panicked,
    /// Stopped at shutdown.
    #[error("stopped at shutdown")]
    Shutdown,
}

impl PatchError {
    /// The label of `warehouse_refresh_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PatchError::NotFound => "not_found",
            PatchError::Api(_) => "api",
            PatchError::Timeout(_) => "timeout",
            PatchError::Panicked => "panicked",
            PatchError::Shutdown => "shutdown",
        }
    }

    /// How the Warehouse's refresh ended for the request that started it.
    fn outcome(&self) -> RefreshOutcome {
        match self {
            PatchError::NotFound => RefreshOutcome::NotFound,
            _ => RefreshOutcome::Failed,
        }
    }
}

/// Applies one refresh patch. The Kubernetes implementation is
/// [`KubePatcher`]; tests substitute their own.
pub trait Patcher: Send + Sync + 'static {
    /// Sets the refresh annotation of `warehouse` to `value`; on success
    /// returns a reference to the patched object (for its Event).
    fn patch(
        &self,
        warehouse: &WarehouseRef,
        value: &str,
    ) -> BoxFuture<'static, Result<ObjectReference, PatchError>>;
}

/// Patches through the API server.
pub struct KubePatcher {
    client: kube::Client,
    resource: ApiResource,
}

impl KubePatcher {
    /// A patcher using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            resource: ApiResource::erase::<kargo_api::Warehouse>(&()),
        }
    }
}

impl Patcher for KubePatcher {
    fn patch(
        &self,
        warehouse: &WarehouseRef,
        value: &str,
    ) -> BoxFuture<'static, Result<ObjectReference, PatchError>> {
        // DynamicObject: the answer is only needed for its metadata, and a
        // Warehouse whose spec we cannot model must not turn a successful
        // patch into a failure.
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &warehouse.namespace, &self.resource);
        let name = warehouse.name.clone();
        let patch = refresh_patch(value);
        let resource = self.resource.clone();
        async move {
            let params = PatchParams {
                field_manager: Some(crate::NAME.to_owned()),
                ..PatchParams::default()
            };
            match api.patch(&name, &params, &Patch::Merge(&patch)).await {
                Ok(obj) => {
                    let mut reference = obj.object_ref(&resource);
                    reference.field_path = None;
                    Ok(reference)
                }
                Err(kube::Error::Api(status)) if status.code == 404 => Err(PatchError::NotFound),
                Err(e) => Err(PatchError::Api(e)),
            }
        }
        .boxed()
    }
}

/// One patch, shared by every request that joined it.
struct Flight {
    /// When its timestamp was taken (set under the slot lock).
    taken_at: OnceLock<Instant>,
    /// How it ended, for whoever started it (`Patched`, `NotFound` or
    /// `Failed`); joiners read `Patched` as `Shared`.
    done: watch::Sender<Option<RefreshOutcome>>,
    /// Who asked first, for the Warehouse's Event.
    receiver: String,
    artifact: String,
}

impl Flight {
    fn new(receiver: &str, artifact: &str) -> Arc<Self> {
        Arc::new(Self {
            taken_at: OnceLock::new(),
            done: watch::Sender::new(None),
            receiver: receiver.to_owned(),
            artifact: artifact.to_owned(),
        })
    }
}

#[derive(Default)]
struct Slot {
    running: Option<Arc<Flight>>,
    queued: Option<Arc<Flight>>,
}

struct Inner {
    patcher: Arc<dyn Patcher>,
    settings: RefreshSettings,
    metrics: RefreshMetrics,
    events: Option<EventSink>,
    slots: Mutex<HashMap<WarehouseRef, Slot>>,
    deliveries: Deliveries,
    /// Every task the refresher spawns (patches and delivery jobs).
    tasks: TaskTracker,
    /// Cancelled when the shutdown's wait is over: patches stop.
    stop: CancellationToken,
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<WarehouseRef, Slot>> {
        // Every critical section leaves the map consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What happened to the Warehouses of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Warehouses that matched.
    pub total: usize,
    /// Patched by a patch this delivery started.
    pub patched: usize,
    /// Satisfied by a patch shared with another delivery.
    pub shared: usize,
    /// Gone (deleted meanwhile): neither refreshed nor failed.
    pub not_found: usize,
    /// Not refreshed: API error or timeout.
    pub failed: usize,
}

impl RefreshSummary {
    /// Counts one Warehouse's result (`total` is set by the caller).
    pub(crate) fn count(&mut self, result: RefreshOutcome) {
        match result {
            RefreshOutcome::Patched => self.patched += 1,
            RefreshOutcome::Shared => self.shared += 1,
            RefreshOutcome::NotFound => self.not_found += 1,
            RefreshOutcome::Failed => self.failed += 1,
        }
    }

    /// Warehouses that carry a refresh value set for this delivery
    /// (patched, or satisfied by a shared patch).
    pub fn refreshed(&self) -> usize {
        self.patched + self.shared
    }
}

/// Records, however [`Refresher::deliver`] ends, whether Harbor will retry
/// the attempt.
struct Attempt<'a> {
    delivery: &'a Delivery,
    retried: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.delivery.answered(self.retried);
    }
}

/// How [`Refresher::deliver`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Every matching Warehouse has a result.
    Done(RefreshSummary),
    /// The answer deadline came first; the work goes on in the background.
    Pending,
    /// Too many deliveries with work running: none was started.
    Busy,
}

/// Refreshes Warehouses; cheap to clone, one per process.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

/// Settings of a [`Refresher`].
#[derive(Clone, Copy, Debug)]
pub struct RefreshSettings {
    /// Bound of each API call.
    pub api_timeout: Duration,
    /// Concurrent Warehouses per request (at least 1).
    pub concurrency: usize,
}

impl Refresher {
    /// A refresher using `patcher`; after each applied patch an Event is
    /// queued on `events`, if given.
    pub fn new(
        patcher: Arc<dyn Patcher>,
        metrics: RefreshMetrics,
        settings: RefreshSettings,
        events: Option<EventSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                patcher,
                settings: RefreshSettings {
                    concurrency: settings.concurrency.max(1),
                    ..settings
                },
                metrics,
                events,
                slots: Mutex::new(HashMap::new()),
                deliveries: Deliveries::new(),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Refreshes the Warehouses of delivery `key` (receiver `receiver`,
    /// arrived at `arrival`) that have no result yet or failed before,
    /// joining a job of the same delivery that is still running; waits
    /// until every one has a result or until `deadline` (see the module
    /// docs).
    pub async fn deliver(
        &self,
        key: DeliveryKey,
        receiver: &Arc<str>,
        matches: &[WarehouseMatch],
        arrival: Instant,
        deadline: Instant,
    ) -> Delivered {
        let Some(delivery) = self.inner.deliveries.get_or_insert(key, arrival) else {
            return Delivered::Busy;
        };
        // Unless it ends with a 2xx, this attempt is one Harbor retries —
        // also when the request is dropped (the client hung up).
        let mut attempt = Attempt {
            delivery: &delivery,
            retried: true,
        };
        // Failures become final for this attempt only once a job it
        // started itself has ended: a job of an earlier attempt may have
        // failed during an outage this attempt no longer sees.
        let mut own_job_ended = false;
        loop {
            let (mut ended, own) = match delivery.step(matches, own_job_ended) {
                Step::Answer(summary) => {
                    attempt.retried = summary.failed > 0;
                    return Delivered::Done(summary);
                }
                Step::Start(todo, ended) => {
                    self.start_job(delivery.clone(), receiver.clone(), todo);
                    (ended, true)
                }
                Step::Wait(ended) => (ended, false),
            };
            tokio::select! {
                _ = ended.changed() => own_job_ended |= own,
                () = tokio::time::sleep_until(deadline) => return Delivered::Pending,
            }
        }
    }

    /// Runs one job of `delivery` in the background.
    fn start_job(&self, delivery: Arc<Delivery>, receiver: Arc<str>, todo: Vec<WarehouseMatch>) {
        let this = self.clone();
        let running = GaugeGuard::inc(&self.inner.metrics.deliveries_running);
        self.inner.tasks.spawn(async move {
            let _running = running;
            let _turn = this.inner.deliveries.jobs.clone().acquire_owned().await;
            let results = this.refresh_each(&receiver, &todo, delivery.arrival).await;
            delivery.finish(results);
        });
    }

    /// Waits up to `timeout` for every patch and delivery job to end, then
    /// stops the rest (they end as failed) and waits for them.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.tasks.close();
        if tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "shutdown: stopping the refreshes still running"
            );
        }
        self.inner.stop.cancel();
        self.inner.tasks.wait().await;
    }

    /// Refreshes every matched Warehouse for a request that arrived at
    /// `arrival` on receiver `receiver`; at most `--refresh-concurrency` at
    /// once. Returns once each Warehouse is done or failed.
    #[cfg(test)]
    pub async fn refresh(
        &self,
        receiver: &str,
        matches: &[WarehouseMatch],
        arrival: Instant,
    ) -> RefreshSummary {
        let results = self
            .refresh_each(&Arc::from(receiver), matches, arrival)
            .await;
        let mut summary = RefreshSummary {
            total: matches.len(),
            ..RefreshSummary::default()
        };
        for (_, result) in results {
            summary.count(result);
        }
        summary
    }

    /// The result of each of `matches`, refreshed at most
    /// `--refresh-concurrency` at once (and counted in the metrics).
    async fn refresh_each(
        &self,
        receiver: &Arc<str>,
        matches: &[WarehouseMatch],
        arrival: Instant,
    ) -> Vec<(WarehouseRef, RefreshOutcome)> {
        // Owned futures: borrowed ones trip the compiler's higher-ranked
        // Send inference once this runs inside a hyper service.
        let jobs: Vec<_> = matches
            .iter()
            .cloned()
            .map(|m| {
                let this = self.clone();
                let receiver = receiver.clone();
                async move {
                    let result = this.refresh_one(&receiver, &m, arrival).await;
                    (m.warehouse, result)
                }
            })
            .collect();
        let mut results =
            futures::stream::iter(jobs).buffer_unordered(self.inner.settings.concurrency);
        let mut all = Vec::with_capacity(matches.len());
        while let Some((warehouse, result)) = results.next().await {
            self.inner
                .metrics
                .refreshes
                .get_or_create(&RefreshLabels { result })
                .inc();
            all.push((warehouse, result));
        }
        all
    }

    async fn refresh_one(
        &self,
        receiver: &str,
        m: &WarehouseMatch,
        arrival: Instant,
    ) -> RefreshOutcome {
        let (flight, started_here) = {
            let mut slots = self.inner.slots();
            let slot = slots.entry(m.warehouse.clone()).or_default();
            match &slot.running {
                None => {
                    let flight = Flight::new(receiver, &m.artifact);
                    slot.running = Some(flight.clone());
                    self.inner.tasks.spawn(drive(
                        self.inner.clone(),
                        m.warehouse.clone(),
                        flight.clone(),
                    ));
                    (flight, true)
                }
                Some(running) if running.taken_at.get().is_none_or(|t| *t > arrival) => {
                    (running.clone(), false)
                }
                Some(_) => match &slot.queued {
                    Some(queued) => (queued.clone(), false),
                    None => {
                        let flight = Flight::new(receiver, &m.artifact);
                        slot.queued = Some(flight.clone());
                        (flight, true)
                    }
                },
            }
        };
        let mut done = flight.done.subscribe();
        let result = match done.wait_for(Option::is_some).await {
            Ok(r) => r.unwrap_or(RefreshOutcome::Failed),
            // The driver vanished without an answer: not applied.
            Err(_) => RefreshOutcome::Failed,
        };
        match result {
            RefreshOutcome::Patched if !started_here => RefreshOutcome::Shared,
            other => other,
        }
    }

    /// Warehouses with a running or queued patch (tests, diagnostics).
    pub fn pending(&self) -> usize {
        self.inner.slots().len()
    }
}

/// One bounded patch call: `--api-timeout` and a panic become errors.
async fn bounded_patch(
    inner: &Inner,
    warehouse: &WarehouseRef,
    value: &str,
) -> Result<ObjectReference, PatchError> {
    let timeout = inner.settings.api_timeout;
    let call = tokio::time::timeout(timeout, inner.patcher.patch(warehouse, value));
    tokio::select! {
        () = inner.stop.cancelled() => Err(PatchError::Shutdown),
        result = AssertUnwindSafe(call).catch_unwind() => match result {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(PatchError::Timeout(timeout)),
            Err(_panic) => Err(PatchError::Panicked),
        },
    }
}

/// Runs the flight, then the flight queued behind it, until none is left.
async fn drive(inner: Arc<Inner>, warehouse: WarehouseRef, mut flight: Arc<Flight>) {
    loop {
        let value = {
            let _slots = inner.slots();
            let _ = flight.taken_at.set(Instant::now());
            next_refresh_value()
        };
        let started = Instant::now();
        let outcome = bounded_patch(&inner, &warehouse, &value).await;
        inner
            .metrics
            .patch_duration
            .observe(started.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(reference) => {
                tracing::debug!(%warehouse, refresh = %value, "refreshed Warehouse");
                if let Some(events) = &inner.events {
                    events.send(RefreshEvent {
                        regarding: reference,
                        receiver: flight.receiver.clone(),
                        artifact: flight.artifact.clone(),
                    });
                }
                RefreshOutcome::Patched
            }
            Err(PatchError::NotFound) => {
                tracing::info!(%warehouse, "Warehouse gone before its refresh: reported as deleted");
                RefreshOutcome::NotFound
            }
            Err(error) => {
                inner
                    .metrics
                    .failures
                    .get_or_create(&ErrorLabels {
                        error: error.metric_label(),
                    })
                    .inc();
                tracing::warn!(%warehouse, %error, "refreshing Warehouse failed");
                error.outcome()
            }
        };
        let next = {
            let mut slots = inner.slots();
            let next = match slots.get_mut(&warehouse) {
                Some(slot) => {
                    slot.running = slot.queued.take();
                    slot.running.clone()
                }
                None => None,
            };
            if next.is_none() {
                slots.remove(&warehouse);
            }
            next
        };
        flight.done.send_replace(Some(result));
        match next {
            Some(queued) => flight = queued,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::testing::FakePatcher;
    use std::sync::atomic::Ordering;

    fn wh(name: &str) -> WarehouseMatch {
        WarehouseMatch {
            warehouse: WarehouseRef::new("p", name),
            artifact: "h/app:1.0.0".into(),
        }
    }

    fn refresher(patcher: &Arc<FakePatcher>, concurrency: usize) -> Refresher {
        refresher_with(
            patcher,
            RefreshSettings {
                // Virtual where it matters: the timeout test runs on a
                // paused clock.
                api_timeout: Duration::from_secs(10),
                concurrency,
            },
        )
    }

    fn refresher_with(patcher: &Arc<FakePatcher>, settings: RefreshSettings) -> Refresher {
        Refresher::new(
            Arc::new(patcher.clone()),
            Metrics::new().refresh,
            settings,
            None,
        )
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[test]
    fn refresh_values_strictly_increase_and_look_like_rfc3339() {
        let mut last = String::new();
        for _ in 0..10_000 {
            let v = next_refresh_value();
            assert_eq!(v.len(), "2026-11-29T03:30:00.123456789Z".len(), "{v}");
            assert!(v.ends_with('Z'));
            assert!(DateTime::parse_from_rfc3339(&v).is_ok(), "{v}");
            assert!(v > last, "{v} <= {last}");
            last = v;
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..2000).map(|_| next_refresh_value()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate refresh values across threads");
    }

    #[test]
    fn patch_body_is_a_merge_patch_of_the_annotation() {
        assert_eq!(
            refresh_patch("2026-11-29T03:30:00.123456789Z").to_string(),
            r#"{"metadata":{"annotations":{"kargo.akuity.io/refresh":"2026-11-29T03:30:00.123456789Z"}}}"#
        );
    }

    #[tokio::test]
    async fn every_match_is_patched_with_bounded_concurrency() {
        let patcher = FakePatcher::new(false);
        let r = refresher(&patcher, 2);
        let matches: Vec<_> = (0..6).map(|i| wh(&format!("w{i}"))).collect();
        let task = {
            let r = r.clone();
            let matches = matches.clone();
            tokio::spawn(async move { r.refresh("recv", &matches, Instant::now()).await })
        };
        wait_until("two patches in flight", || {
            patcher.in_flight.load(Ordering::SeqCst) == 2
        })
        .await;
        patcher.open();
        let summary = task.await.unwrap();
        assert_eq!(
            summary,
            RefreshSummary {
                total: 6,
                patched: 6,
                ..Default::default()
            }
        );
        assert_eq!(patcher.max_in_flight.load(Ordering::SeqCst), 2);
        for i in 0..6 {
            assert_eq!(patcher.values(&format!("w{i}")).len(), 1);
        }
        assert_eq!(r.pending(), 0, "slots are released");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_deleted_warehouses() {
        let patcher = FakePatcher::new(true);
        patcher.fail.lock().unwrap().insert("broken".into(), 500);
        patcher.fail.lock().unwrap().insert("gone".into(), 404);
        patcher.hang.lock().unwrap().insert("slow".into());
        let r = refresher(&patcher, 4);
        let summary = r
            .refresh(
                "recv",
                &[wh("ok"), wh("broken"), wh("gone"), wh("slow")],
                Instant::now(),
            )
            .await;
        assert_eq!(
            summary,
            RefreshSummary {
                total: 4,
                patched: 1,
                shared: 0,
                not_found: 1,
                failed: 2,
            }
        );
        assert_eq!(summary.refreshed(), 1, "the deleted one is not refreshed");
        // A failed Warehouse is retried by the next request, not remembered.
        patcher.fail.lock().unwrap().clear();
        patcher.hang.lock().unwrap().clear();
        let again = r
            .refresh("recv", &[wh("broken"), wh("slow")], Instant::now())
            .await;
        assert_eq!(again.patched, 2, "{again:?}");
        assert_eq!(patcher.values("broken").len(), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_share_patches_only_when_the_promise_holds() {
        let patcher = FakePatcher::new(false);
        let r = refresher(&patcher, 4);
        let spawn = |arrival: Instant| {
            let r = r.clone();
            tokio::spawn(async move { r.refresh("recv", &[wh("w")], arrival).await })
        };
        // First request starts a patch, which blocks at the gate with its
        // timestamp taken.
        let first = spawn(Instant::now());
        wait_until("first patch running", || patcher.values("w").len() == 1).await;
        // Requests arriving now must not join the running patch (its
        // timestamp predates them): they all queue behind it, on ONE patch.
        let arrival = Instant::now();
        let later: Vec<_> = (0..20).map(|_| spawn(Instant::now())).collect();
        tokio::task::yield_now().await;
        assert_eq!(patcher.values("w").len(), 1, "queued, not started");
        patcher.open();
        assert_eq!(first.await.unwrap().patched, 1);
        let mut patched = 0;
        let mut shared = 0;
        for t in later {
            let s = t.await.unwrap();
            assert_eq!(s.failed, 0);
            patched += s.patched;
            shared += s.shared;
        }
        assert_eq!((patched, shared), (1, 19));
        let values = patcher.values("w");
        assert_eq!(
            values.len(),
            2,
            "one running + one queued patch: {values:?}"
        );
        assert!(values[1] > values[0]);
        // The second patch took its timestamp after every later request arrived.
        assert!(patcher.call_instants("w")[1] > arrival);
        assert_eq!(r.pending(), 0);
    }

    #[tokio::test]
    async fn a_request_may_join_a_patch_that_has_not_taken_its_timestamp() {
        // Arrival in the past relative to the running patch's timestamp:
        // joining is allowed because the value is newer than the arrival.
        let patcher = FakePatcher::new(false);
        let r = refresher(&patcher, 4);
        let early = Instant::now();
        let a = {
            let r = r.clone();
            tokio::spawn(async move { r.refresh("recv", &[wh("w")], Instant::now()).await })
        };
        wait_until("patch running", || patcher.values("w").len() == 1).await;
        let b = {
            let r = r.clone();
            tokio::spawn(async move { r.refresh("recv", &[wh("w")], early).await })
        };
        tokio::task::yield_now().await;
        patcher.open();
        assert_eq!(a.await.unwrap().patched, 1);
        assert_eq!(b.await.unwrap().shared, 1);
        assert_eq!(patcher.values("w").len(), 1);
    }

    #[tokio::test]
    async fn a_failed_shared_patch_fails_every_joiner() {
        let patcher = FakePatcher::new(false);
        patcher.fail.lock().unwrap().insert("w".into(), 500);
        let r = refresher(&patcher, 4);
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.refresh("recv", &[wh("w")], Instant::now()).await })
            })
            .collect();
        wait_until("patch running", || !patcher.values("w").is_empty()).await;
        patcher.open();
        for t in tasks {
            assert_eq!(t.await.unwrap().failed, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_joining_a_job_that_fails_redoes_the_failures_itself() {
        // The first attempt's patch hangs (an outage) until --api-timeout.
        let patcher = FakePatcher::new(true);
        patcher.hang.lock().unwrap().insert("w".into());
        let r = refresher_with(
            &patcher,
            RefreshSettings {
                api_timeout: Duration::from_secs(2),
                concurrency: 4,
            },
        );
        let receiver: Arc<str> = Arc::from("recv");
        let entry = crate::testing::receiver_entry("p", "recv", b"t");
        let key = DeliveryKey::of(&entry, b"{}");
        let arrival = Instant::now();
        let first = r
            .deliver(
                key,
                &receiver,
                &[wh("w")],
                arrival,
                arrival + Duration::from_secs(1),
            )
            .await;
        assert_eq!(first, Delivered::Pending, "the deadline comes first");
        // The API server recovers; Harbor's retry arrives while the first
        // job still waits for its timeout, and joins it.
        patcher.hang.lock().unwrap().clear();
        let now = Instant::now();
        let retry = r
            .deliver(
                key,
                &receiver,
                &[wh("w")],
                now,
                now + Duration::from_millis(2500),
            )
            .await;
        let Delivered::Done(summary) = retry else {
            panic!("the retry ends within its deadline: {retry:?}")
        };
        assert_eq!((summary.patched, summary.failed), (1, 0), "{summary:?}");
        assert_eq!(
            patcher.values("w").len(),
            2,
            "the timed-out patch, then the redo"
        );
    }

    #[tokio::test]
    async fn a_cancelled_request_does_not_cancel_the_patch() {
        let patcher = FakePatcher::new(false);
        let r = refresher(&patcher, 4);
        let a = {
            let r = r.clone();
            tokio::spawn(async move { r.refresh("recv", &[wh("w")], Instant::now()).await })
        };
        wait_until("patch running", || patcher.values("w").len() == 1).await;
        a.abort();
        let _ = a.await;
        patcher.open();
        wait_until("slot released", || r.pending() == 0).await;
    }
}
