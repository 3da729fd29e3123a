//! Change events: the bounded history that watches resume from, and their broadcast to
//! open watches.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A stored change, kept in the history and broadcast to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Event type.
    pub etype: EventType,
    /// API group of the resource.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// The object after the change (the last state for deletions), shared with the store.
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions).
    pub old: Option<Arc<Value>>,
}

/// Replayed events plus a receiver for later ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Capacity of the broadcast channel: a watcher that falls this far behind is ended and
/// resumes from its last resourceVersion.
const BROADCAST_CAPACITY: usize = 4096;

/// The last `retention` events and the channel to open watches.
pub(super) struct History {
    events: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion before this one get 410 Expired.
    compacted_rv: u64,
    retention: usize,
    tx: broadcast::Sender<Arc<Event>>,
}

impl History {
    pub(super) fn new(retention: usize) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        History {
            events: VecDeque::new(),
            compacted_rv: 0,
            retention: retention.max(1),
            tx,
        }
    }

    /// An empty history with no watchers, for a dry-run copy of the store.
    pub(super) fn detached(&self) -> Self {
        let (tx, _) = broadcast::channel(1);
        History {
            events: VecDeque::new(),
            compacted_rv: self.compacted_rv,
            retention: 1,
            tx,
        }
    }

    /// Keep and broadcast a change; the oldest event goes once `retention` are kept.
    pub(super) fn record(
        &mut self,
        rv: u64,
        rt: &ResourceType,
        ns: &str,
        etype: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let (group, plural) = rt.key();
        let ev = Arc::new(Event {
            rv,
            etype,
            group,
            plural,
            namespace: ns.to_string(),
            object,
            old,
        });
        self.events.push_back(ev.clone());
        while self.events.len() > self.retention {
            if let Some(e) = self.events.pop_front() {
                self.compacted_rv = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// The retained events of `group/plural` strictly after `from`, and a receiver for
    /// later ones; 410 Expired when `from` is older than the history.
    pub(super) fn since(&self, group: &str, plural: &str, from: u64) -> ApiResult<WatchStart> {
        if from < self.compacted_rv {
            return Err(ApiError::expired(format!(
                "too old resource version: {from} ({})",
                self.compacted_rv + 1
            )));
        }
        // Events are in resourceVersion order: skip the older ones by binary search.
        let first = self.events.partition_point(|e| e.rv <= from);
        let evs = self
            .events
            .range(first..)
            .filter(|e| e.group == group && e.plural == plural)
            .cloned()
            .collect();
        Ok((evs, self.tx.subscribe()))
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Forget every event: resuming from before `rv` is 410 Expired.
    pub(super) fn compact(&mut self, rv: u64) {
        self.events.clear();
        self.compacted_rv = rv;
    }
}
