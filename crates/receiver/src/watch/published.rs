//! What this process has learned about where Kargo publishes Harbor
//! receivers when its `EXTERNAL_WEBHOOK_SERVER_BASE_URL` differs from our
//! `--base-url` (see [`crate::core::status::published_elsewhere`]):
//!
//! - the base paths known to be Kargo's (one setting of Kargo's, so learned
//!   from any config and kept for the life of the process);
//! - which receivers were already reported as published under Kargo's base,
//!   so that the log line, the metric and the Warning Event come once per
//!   receiver and change, not once per reconcile.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::index::Scope;

/// One receiver's report: the Kargo base it was found under, and whether
/// its Event went out (only a leader emits it).
struct Noticed {
    kargo_base: Option<String>,
    evented: bool,
}

#[derive(Default)]
struct Inner {
    kargo_bases: BTreeSet<String>,
    noticed: HashMap<(Scope, String), Noticed>,
}

/// What a new observation of a receiver under Kargo's base calls for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    /// New or changed: log it and count it.
    pub report: bool,
    /// Emit the Warning Event (we lead and it was not emitted yet).
    pub event: bool,
}

/// The process's memory of Kargo's base paths and of what was reported.
#[derive(Default)]
pub struct PublishedBases {
    inner: Mutex<Inner>,
}

impl PublishedBases {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base paths known to be Kargo's.
    pub fn known(&self) -> BTreeSet<String> {
        self.lock().kargo_bases.clone()
    }

    /// Remembers base paths as Kargo's.
    pub fn learn(&self, bases: impl IntoIterator<Item = String>) {
        self.lock().kargo_bases.extend(bases);
    }

    /// Receiver `name` of `scope` is published under `kargo_base`; `leader`:
    /// whether this replica emits Events.
    pub fn notice(&self, scope: &Scope, name: &str, kargo_base: &str, leader: bool) -> Notice {
        let mut inner = self.lock();
        let key = (scope.clone(), name.to_owned());
        let noticed = inner.noticed.entry(key).or_insert(Noticed {
            kargo_base: None,
            evented: false,
        });
        let report = noticed.kargo_base.as_deref() != Some(kargo_base);
        if report {
            noticed.kargo_base = Some(kargo_base.to_owned());
            noticed.evented = false;
        }
        let event = leader && !noticed.evented;
        noticed.evented |= event;
        Notice { report, event }
    }

    /// Forgets the reports of `scope`'s receivers except `keep` (those
    /// still published under Kargo's base).
    pub fn retain(&self, scope: &Scope, keep: &[&str]) {
        self.lock()
            .noticed
            .retain(|(s, name), _| s != scope || keep.contains(&name.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_receiver_and_change() {
        let bases = PublishedBases::default();
        let p = Scope::project_of("p");
        let n = |report, event| Notice { report, event };
        // A follower reports (log, metric) but leaves the Event to a leader.
        assert_eq!(bases.notice(&p, "r", "/kargo", false), n(true, false));
        assert_eq!(bases.notice(&p, "r", "/kargo", false), n(false, false));
        // Once leading: the Event, once.
        assert_eq!(bases.notice(&p, "r", "/kargo", true), n(false, true));
        assert_eq!(bases.notice(&p, "r", "/kargo", true), n(false, false));
        // Another base is a change: reported again.
        assert_eq!(bases.notice(&p, "r", "/other", true), n(true, true));
        // Back under our base, then Kargo's again: a change too.
        bases.retain(&p, &[]);
        assert_eq!(bases.notice(&p, "r", "/other", true), n(true, true));
        // Learned bases stay.
        bases.learn(["/kargo".to_owned()]);
        assert!(bases.known().contains("/kargo"));
        // Kargo's base may be the root ("").
        assert_eq!(bases.notice(&p, "root", "", true), n(true, true));
    }
}
