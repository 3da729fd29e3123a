//! `/readyz`: ready once the watches have synced and the index is built,
//! and not any more from the moment shutdown begins (so that Kubernetes
//! takes the pod out of its Service while it still serves).

use std::sync::atomic::{AtomicBool, Ordering};

/// The process's readiness, set by the controller and the shutdown, read
/// by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the process shutting down: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_wins_over_ready() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.set_ready();
        assert!(h.is_ready());
        h.set_draining();
        assert!(!h.is_ready() && h.is_draining());
    }
}
