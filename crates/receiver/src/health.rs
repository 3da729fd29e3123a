//! `/readyz`: ready once the watches have synced and the index is built.

use std::sync::atomic::{AtomicBool, Ordering};

/// The process's readiness, set by the controller and read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
