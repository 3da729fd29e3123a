//! Deliveries: what each Harbor delivery asked for and how far it got, so
//! that Harbor's retry of it (the byte-identical body, same CloudEvents
//! `id`) joins the work still running or reuses the work done, and redoes
//! only what failed — never the whole fan-out again.
//!
//! A delivery is keyed by its receiver and the SHA-256 of its body. Its
//! entry keeps the *original* arrival and the result of each Warehouse; a
//! retry refreshes the Warehouses that have no result yet or failed, with
//! that original arrival, so "2xx ⇒ every matching Warehouse got a refresh
//! value set after the delivery first arrived" still holds.
//!
//! Only an attempt answered 5xx (failures, or the answer deadline) is
//! retried by Harbor, and never while it is still waiting for the answer.
//! So a body seen again after a 2xx, or while its first attempt is still
//! unanswered, is a new push that happens to look the same (Harbor's
//! Default format has a one-second `occur_at`): it starts a new delivery
//! with its own arrival.
//!
//! Bounds: entries live [`DELIVERY_TTL`] (covering Harbor's three attempts,
//! 16–118 s apart), at most [`MAX_DELIVERIES`] at once (the oldest idle one
//! gives way); each delivery runs at most one job at a time, and at most
//! [`MAX_RUNNING_JOBS`] jobs run at once (the others wait for a turn).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::RefreshSummary;
use crate::index::{ReceiverEntry, WarehouseMatch, WarehouseRef};
use crate::metrics::RefreshOutcome;

/// How long a delivery is remembered: Harbor's retries come within about
/// 4 minutes of the first attempt.
pub const DELIVERY_TTL: Duration = Duration::from_secs(300);

/// Deliveries remembered at once.
pub const MAX_DELIVERIES: usize = 1024;

/// Delivery jobs running at once (each at most `--refresh-concurrency`
/// patches); more wait for a turn.
pub const MAX_RUNNING_JOBS: usize = 64;

/// Identifies a delivery: its receiver and the SHA-256 of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey([u8; 32]);

impl DeliveryKey {
    /// The key of `body` delivered to `receiver`.
    pub fn of(receiver: &ReceiverEntry, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(receiver.scope.project().as_bytes());
        hasher.update([0]);
        hasher.update(receiver.name.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        Self(hasher.finalize().into())
    }
}

/// One delivery and its results so far.
pub(super) struct Delivery {
    /// When it first arrived: the instant of the 2xx promise.
    pub arrival: Instant,
    state: Mutex<State>,
    /// Bumped whenever a job of it ends.
    ended: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    results: HashMap<WarehouseRef, RefreshOutcome>,
    running: bool,
    /// An attempt was answered 5xx: Harbor will retry it.
    retried: bool,
}

/// What to do next for a request of a delivery.
pub(super) enum Step {
    /// Every Warehouse has a result: answer with these.
    Answer(RefreshSummary),
    /// Start a job for these Warehouses (the caller now owns the running
    /// flag and must call [`Delivery::finish`]); the receiver sees it end.
    Start(Vec<WarehouseMatch>, watch::Receiver<u64>),
    /// A job is running: wait for it to end.
    Wait(watch::Receiver<u64>),
}

impl Delivery {
    fn new(arrival: Instant) -> Arc<Self> {
        Arc::new(Self {
            arrival,
            state: Mutex::new(State::default()),
            ended: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next step for a request matching `matches`; `own_job_ended`
    /// says whether a job it started itself has ended (then failures are
    /// final for it; a failure left by an earlier attempt's job is redone).
    pub fn step(&self, matches: &[WarehouseMatch], own_job_ended: bool) -> Step {
        let mut state = self.lock();
        let todo: Vec<WarehouseMatch> = matches
            .iter()
            .filter(|m| match state.results.get(&m.warehouse) {
                None => true,
                Some(RefreshOutcome::Failed) => !own_job_ended,
                Some(_) => false,
            })
            .cloned()
            .collect();
        if todo.is_empty() {
            return Step::Answer(tally(&state.results, matches));
        }
        if state.running {
            return Step::Wait(self.ended.subscribe());
        }
        state.running = true;
        Step::Start(todo, self.ended.subscribe())
    }

    /// Records a job's results and clears the running flag.
    pub fn finish(&self, results: impl IntoIterator<Item = (WarehouseRef, RefreshOutcome)>) {
        {
            let mut state = self.lock();
            state.results.extend(results);
            state.running = false;
        }
        self.ended.send_modify(|n| *n += 1);
    }

    /// Records how an attempt was answered: `failed` (5xx) means Harbor
    /// retries it, and the retry is to join this delivery.
    pub fn answered(&self, failed: bool) {
        self.lock().retried = failed;
    }

    fn idle(&self) -> bool {
        !self.lock().running
    }

    fn awaits_retry(&self) -> bool {
        self.lock().retried
    }
}

fn tally(
    results: &HashMap<WarehouseRef, RefreshOutcome>,
    matches: &[WarehouseMatch],
) -> RefreshSummary {
    let mut t = RefreshSummary {
        total: matches.len(),
        ..RefreshSummary::default()
    };
    for m in matches {
        // No result yet counts as failed: the answer promises nothing for it.
        t.count(
            results
                .get(&m.warehouse)
                .copied()
                .unwrap_or(RefreshOutcome::Failed),
        );
    }
    t
}

/// Every delivery remembered; one per process.
pub(super) struct Deliveries {
    map: Mutex<HashMap<DeliveryKey, Arc<Delivery>>>,
    /// Turns of the delivery jobs.
    pub jobs: Arc<Semaphore>,
}

impl Deliveries {
    pub fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            jobs: Arc::new(Semaphore::new(MAX_RUNNING_JOBS)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeliveryKey, Arc<Delivery>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The delivery of `key`, created with `arrival` if new (or expired).
    /// `None` when the table is full of deliveries with jobs running.
    pub fn get_or_insert(&self, key: DeliveryKey, arrival: Instant) -> Option<Arc<Delivery>> {
        let mut map = self.lock();
        if let Some(d) = map.get(&key) {
            if d.awaits_retry() && arrival.saturating_duration_since(d.arrival) < DELIVERY_TTL {
                return Some(d.clone());
            }
            map.remove(&key);
        }
        if map.len() >= MAX_DELIVERIES {
            map.retain(|_, d| arrival.saturating_duration_since(d.arrival) < DELIVERY_TTL);
        }
        if map.len() >= MAX_DELIVERIES {
            let oldest_idle = map
                .iter()
                .filter(|(_, d)| d.idle())
                .min_by_key(|(_, d)| d.arrival)
                .map(|(k, _)| *k);
            map.remove(&oldest_idle?);
        }
        let delivery = Delivery::new(arrival);
        map.insert(key, delivery.clone());
        Some(delivery)
    }

    /// Deliveries remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wh(name: &str) -> WarehouseMatch {
        WarehouseMatch {
            warehouse: WarehouseRef::new("p", name),
            artifact: "h/app:1".into(),
        }
    }

    #[test]
    fn keys_differ_by_receiver_and_body() {
        let entry = |name: &str| crate::testing::receiver_entry("p", name, b"t");
        let a = DeliveryKey::of(&entry("a"), b"{}");
        assert_eq!(a, DeliveryKey::of(&entry("a"), b"{}"));
        assert_ne!(a, DeliveryKey::of(&entry("b"), b"{}"));
        assert_ne!(a, DeliveryKey::of(&entry("a"), b"{} "));
    }

    #[test]
    fn a_retry_redoes_only_what_failed_or_never_ran() {
        let d = Delivery::new(Instant::now());
        let all = [wh("a"), wh("b"), wh("c")];
        let Step::Start(first, _) = d.step(&all[..2], false) else {
            panic!("the first request starts")
        };
        assert_eq!(first.len(), 2);
        // A concurrent request waits for that job.
        assert!(matches!(d.step(&all, false), Step::Wait(_)));
        d.finish([
            (wh("a").warehouse, RefreshOutcome::Patched),
            (wh("b").warehouse, RefreshOutcome::Failed),
        ]);
        // For a request whose own job has ended, b's failure is final,
        // but c never ran, so it starts c only.
        let Step::Start(next, _) = d.step(&all, true) else {
            panic!("c never ran")
        };
        assert_eq!(next, [wh("c")]);
        d.finish([(wh("c").warehouse, RefreshOutcome::NotFound)]);
        let Step::Answer(t) = d.step(&all, true) else {
            panic!("all have results")
        };
        assert_eq!(
            t,
            RefreshSummary {
                total: 3,
                patched: 1,
                not_found: 1,
                failed: 1,
                shared: 0
            }
        );
        // A later retry redoes b only.
        let Step::Start(redo, _) = d.step(&all, false) else {
            panic!("b failed")
        };
        assert_eq!(redo, [wh("b")]);
        d.finish([(wh("b").warehouse, RefreshOutcome::Patched)]);
        let Step::Answer(t) = d.step(&all, false) else {
            panic!("done")
        };
        assert_eq!((t.patched, t.failed), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_the_table_is_bounded() {
        let deliveries = Deliveries::new();
        let key = |i: usize| DeliveryKey(Sha256::digest(i.to_le_bytes()).into());
        let first = deliveries.get_or_insert(key(0), Instant::now()).unwrap();
        // Not answered yet: the same body again is a new push.
        let same = deliveries.get_or_insert(key(0), Instant::now()).unwrap();
        assert!(!Arc::ptr_eq(&first, &same));
        same.answered(true);
        let again = deliveries.get_or_insert(key(0), Instant::now()).unwrap();
        assert!(Arc::ptr_eq(&same, &again), "a retry of a 5xx");
        again.answered(false);
        let after_ok = deliveries.get_or_insert(key(0), Instant::now()).unwrap();
        assert!(!Arc::ptr_eq(&again, &after_ok), "after a 2xx: a new push");
        after_ok.answered(true);
        let first = after_ok;
        tokio::time::advance(DELIVERY_TTL).await;
        let renewed = deliveries.get_or_insert(key(0), Instant::now()).unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed), "expired");
        for i in 1..MAX_DELIVERIES + 10 {
            assert!(deliveries.get_or_insert(key(i), Instant::now()).is_some());
        }
        assert_eq!(deliveries.len(), MAX_DELIVERIES);
    }
}
