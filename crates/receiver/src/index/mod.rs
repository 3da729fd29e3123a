//! The in-memory index every replica builds as a pure function of watched
//! state, in two independent parts:
//!
//! - [`routes`]: full request path → receiver (scope, name, token digest),
//!   written by the config reconciles;
//! - [`repositories`]: normalised repository → the Warehouses subscribed to
//!   it with their compiled tag rules, written by the Warehouse watch.
//!
//! Each is published as immutable versions behind an atomic pointer:
//! requests never wait for writers, and a writer pays for what changed, not
//! for the size of the index.

mod repositories;
mod routes;

use std::sync::Arc;

pub use repositories::{
    IndexProblems, Relist, Repositories, RepositoryIndex, SubscriptionVerdict, WarehouseMatch,
    WarehouseRef,
};
pub use routes::{ReceiverEntry, Route, RouteReason, RouteTable, Routes, Scope};

/// Both parts, as the request path and the metrics scrape read them.
#[derive(Clone, Default)]
pub struct Index {
    /// Request path → receiver.
    pub routes: Arc<RouteTable>,
    /// Repository → Warehouses.
    pub repositories: Arc<RepositoryIndex>,
}

/// Sizes, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Receivers by path.
    pub receivers: usize,
    /// Warehouses indexed.
    pub warehouses: usize,
    /// Distinct repository keys.
    pub repository_keys: usize,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Current sizes.
    pub fn sizes(&self) -> Sizes {
        let repositories = self.repositories.load();
        Sizes {
            receivers: self.routes.load().len(),
            warehouses: repositories.warehouses(),
            repository_keys: repositories.keys(),
        }
    }
}
