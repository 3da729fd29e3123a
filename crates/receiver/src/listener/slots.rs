//! The connection table of one listener: who holds which slot, and which
//! connection gives way when a new one needs a slot.
//!
//! Every connection is accepted (none waits in the kernel's backlog, where
//! it could not be told apart from the ones holding slots). A new
//! connection is admitted under two caps:
//!
//! - **per client address** (`--max-connections-per-client`): when its
//!   address already holds its share, the one of that address's
//!   connections that has waited longest without a request in progress
//!   gives way;
//! - **global** (`--max-connections`): when every slot is taken, the
//!   connection of any address that has waited longest without a request
//!   in progress gives way.
//!
//! A connection with a request in progress never gives way: if every
//! candidate is busy, the *new* connection is refused (closed at once). So
//! silent or idle connections can delay nobody: each new connection
//! displaces the stalest of them, and they all close at their deadline
//! anyway (see `connection`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a connection is doing, as its requests report it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Activity {
    /// Requests (HTTP/1) or streams (HTTP/2) being handled now.
    pub active: usize,
    /// Requests or streams handled so far.
    pub served: u64,
    /// Since when it has had no request in progress (accept, or the end
    /// of its last request).
    pub idle_since: Instant,
}

/// A connection's [`Activity`] as its requests update it: plain atomics, so
/// that a request starting or ending costs two atomic operations and wakes
/// nobody. The connection's task reads it when one of its deadlines falls
/// due (see `connection`), and the table when it picks whom to evict.
#[derive(Debug)]
pub(crate) struct ActivityState {
    active: AtomicUsize,
    served: AtomicU64,
    /// Nanoseconds from `origin` to the start of the current idle period.
    idle_since: AtomicU64,
    origin: Instant,
}

impl ActivityState {
    fn new(origin: Instant) -> Self {
        Self {
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            origin,
        }
    }

    /// The activity now. `active` is read first: once it reads 0, the
    /// `idle_since` stored before the decrement that made it 0 is visible.
    pub fn now(&self) -> Activity {
        let active = self.active.load(Ordering::Acquire);
        let served = self.served.load(Ordering::Acquire);
        let idle_since = self.idle_since.load(Ordering::Acquire);
        Activity {
            active,
            served,
            idle_since: self.origin + std::time::Duration::from_nanos(idle_since),
        }
    }
}

/// Shared between a connection's task, its requests and the table.
pub(crate) type ActivityCell = Arc<ActivityState>;

/// Why a connection gave way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Its address held its full share.
    PerClient,
    /// Every slot of the listener was taken.
    Global,
}

/// A slot held by an admitted connection; released on drop.
pub(crate) struct Admitted {
    /// The connection's activity.
    pub activity: ActivityCell,
    /// Cancelled when the connection must give way.
    pub evicted: CancellationToken,
    id: u64,
    table: Arc<Slots>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

struct Entry {
    client: IpAddr,
    activity: ActivityCell,
    evicted: CancellationToken,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    connections: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.connections.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.client);
            }
        }
        Some(entry)
    }

    /// The connection (of `client`, or of anyone) that has waited longest
    /// with no request in progress.
    fn stalest_idle(&self, client: Option<IpAddr>) -> Option<u64> {
        self.connections
            .iter()
            .filter(|(_, e)| client.is_none_or(|c| e.client == c))
            .filter_map(|(id, e)| {
                let a = e.activity.now();
                (a.active == 0).then_some((a.idle_since, *id))
            })
            .min()
            .map(|(_, id)| id)
    }
}

/// The connection table of one listener.
pub(crate) struct Slots {
    table: Mutex<Table>,
    max_total: usize,
    max_per_client: usize,
}

impl Slots {
    /// A table of `max_total` slots, at most `max_per_client` per address.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every critical section leaves the table consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.lock().connections.len()
    }

    /// Admits a connection from `client`, making room as the module docs
    /// say; the evictions made for it are returned. `None`: no room
    /// (every candidate has a request in progress), close it.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> (Option<Admitted>, Vec<Eviction>) {
        let mut evictions = Vec::new();
        let mut table = self.lock();
        if table.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            match table.stalest_idle(Some(client)) {
                Some(id) => {
                    if let Some(e) = table.remove(id) {
                        e.evicted.cancel();
                    }
                    evictions.push(Eviction::PerClient);
                }
                None => return (None, evictions),
            }
        }
        if table.connections.len() >= self.max_total {
            match table.stalest_idle(None) {
                Some(id) => {
                    if let Some(e) = table.remove(id) {
                        e.evicted.cancel();
                    }
                    evictions.push(Eviction::Global);
                }
                None => return (None, evictions),
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let activity = Arc::new(ActivityState::new(Instant::now()));
        let evicted = CancellationToken::new();
        table.connections.insert(
            id,
            Entry {
                client,
                activity: activity.clone(),
                evicted: evicted.clone(),
            },
        );
        *table.per_client.entry(client).or_default() += 1;
        drop(table);
        (
            Some(Admitted {
                activity,
                evicted,
                id,
                table: self.clone(),
            }),
            evictions,
        )
    }

    fn release(&self, id: u64) {
        self.lock().remove(id);
    }
}

/// Marks a request in progress on a connection until dropped.
pub(crate) struct InProgress(ActivityCell);

impl InProgress {
    /// A request (or stream) starts on the connection of `activity`.
    pub fn start(activity: &ActivityCell) -> Self {
        activity.served.fetch_add(1, Ordering::AcqRel);
        activity.active.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let a = &self.0;
        // Stored before the decrement (see `ActivityState::now`); the
        // latest end wins when streams of one connection end together.
        let ended = Instant::now().saturating_duration_since(a.origin);
        let ended = u64::try_from(ended.as_nanos()).unwrap_or(u64::MAX);
        a.idle_since.fetch_max(ended, Ordering::AcqRel);
        a.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn the_caps_evict_the_stalest_idle_connection_and_never_a_busy_one() {
        let slots = Slots::new(3, 2);
        let (a1, e) = slots.admit(ip(1));
        let a1 = a1.unwrap();
        assert!(e.is_empty());
        tokio::time::advance(Duration::from_millis(10)).await;
        let a2 = slots.admit(ip(1)).0.unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        // Client 1 is at its share: its stalest idle connection (a1) goes.
        let (a3, e) = slots.admit(ip(1));
        let a3 = a3.unwrap();
        assert_eq!(e, [Eviction::PerClient]);
        assert!(a1.evicted.is_cancelled() && !a2.evicted.is_cancelled());
        assert_eq!(slots.len(), 2);
        drop(a1); // its task ends; the slot was already free
        assert_eq!(slots.len(), 2);
        // Busy connections never give way: with both of client 1's busy,
        // a third connection of client 1 is refused.
        let busy2 = InProgress::start(&a2.activity);
        let busy3 = InProgress::start(&a3.activity);
        let (refused, e) = slots.admit(ip(1));
        assert!(refused.is_none() && e.is_empty());
        // Another client takes the last free slot; then the table is full
        // and every connection busy: refused.
        let b1 = slots.admit(ip(2)).0.unwrap();
        let _busy_b1 = InProgress::start(&b1.activity);
        assert!(slots.admit(ip(3)).0.is_none());
        // A request ends on a3: a3 is now the only idle one and gives way
        // to a new client (global cap).
        drop(busy3);
        let (c1, e) = slots.admit(ip(3));
        assert!(c1.is_some());
        assert_eq!(e, [Eviction::Global]);
        assert!(a3.evicted.is_cancelled() && !a2.evicted.is_cancelled());
        drop(busy2);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_counts_requests_and_marks_the_idle_start() {
        let slots = Slots::new(4, 4);
        let a = slots.admit(ip(1)).0.unwrap();
        let r1 = InProgress::start(&a.activity);
        let r2 = InProgress::start(&a.activity);
        assert_eq!(a.activity.now().active, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(r1);
        drop(r2);
        let now = a.activity.now();
        assert_eq!((now.active, now.served), (0, 2));
        assert_eq!(now.idle_since, Instant::now());
    }
}
