//! Body memory: how many authorised bodies may be buffered at once, in all
//! and per receiver.
//!
//! The global bound keeps body memory under [`MAX_BUFFERED_BODIES`] × 2 MiB.
//! Each receiver may hold at most [`BODIES_PER_RECEIVER`] of those at once,
//! and takes its own share before a global slot, so one receiver's slow or
//! abusive uploads (even many streams on one HTTP/2 connection) wait in
//! that receiver's queue and leave the rest of the budget to the others.
//! Every wait is bounded by the request's answer deadline.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::index::ReceiverEntry;

/// Authorised bodies buffered at once across all connections and h2
/// streams. Without it the bound would be connections × streams × 2 MiB
/// (1024 × 64 × 2 MiB) for a client holding a valid token; with it, body
/// memory stays under 64 × 2 MiB = 128 MiB. Wrong-token bodies are drained,
/// not kept, and need no permit.
pub const MAX_BUFFERED_BODIES: usize = 64;

/// Authorised bodies one receiver may buffer at once: a quarter of the
/// budget, so that it takes four receivers' tokens to exhaust it.
pub const BODIES_PER_RECEIVER: usize = MAX_BUFFERED_BODIES / 4;

/// The body budget of one server.
pub(crate) struct BodyBudget {
    global: Arc<Semaphore>,
    per_receiver: usize,
    /// Share of each receiver, by a hash of its identity (a collision only
    /// makes two receivers share one share). Grows with the receivers ever
    /// seen with a valid token, a set the operator controls.
    shares: Mutex<HashMap<u64, Arc<Semaphore>>>,
}

/// A buffered body's place in the budget; released on drop.
pub(crate) struct BodyPermit {
    _share: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl BodyBudget {
    /// `total` bodies at once, `per_receiver` for each receiver.
    pub fn new(total: usize, per_receiver: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(total)),
            per_receiver: per_receiver.clamp(1, total.max(1)),
            shares: Mutex::new(HashMap::new()),
        }
    }

    fn share(&self, receiver: &ReceiverEntry) -> Arc<Semaphore> {
        let mut hasher = DefaultHasher::new();
        receiver.scope.hash(&mut hasher);
        receiver.name.hash(&mut hasher);
        let key = hasher.finish();
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_receiver)))
            .clone()
    }

    /// Waits for `receiver`'s share, then for a global slot. The caller
    /// bounds the wait (the answer deadline).
    pub async fn acquire(&self, receiver: &ReceiverEntry) -> Option<BodyPermit> {
        let share = self.share(receiver).acquire_owned().await.ok()?;
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(BodyPermit {
            _share: share,
            _global: global,
        })
    }

    /// Global slots free (tests).
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.global.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver(project: &str) -> ReceiverEntry {
        crate::testing::receiver_entry(project, "recv", b"t")
    }

    #[tokio::test(start_paused = true)]
    async fn one_receiver_cannot_take_the_whole_budget() {
        let budget = BodyBudget::new(4, 2);
        let (a, b) = (receiver("a"), receiver("b"));
        let held_a: Vec<_> = [
            budget.acquire(&a).await.unwrap(),
            budget.acquire(&a).await.unwrap(),
        ]
        .into();
        // a's share is used up: its next body waits…
        let third = tokio::time::timeout(Duration::from_secs(1), budget.acquire(&a)).await;
        assert!(third.is_err());
        // …and took no global slot while waiting: b still gets two.
        assert_eq!(budget.available(), 2);
        let _b1 = budget.acquire(&b).await.unwrap();
        let _b2 = budget.acquire(&b).await.unwrap();
        // The global bound holds for everyone.
        let c = tokio::time::timeout(Duration::from_secs(1), budget.acquire(&receiver("c"))).await;
        assert!(c.is_err());
        drop(held_a);
        assert!(budget.acquire(&a).await.is_some());
    }
}
