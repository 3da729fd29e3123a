//! Grace periods of rotated receivers, for the config reconciles: the
//! routes of previous paths still accepted ([`crate::core::rotation`]) are
//! published next to the current ones, each entry carrying the instant it
//! stops (the request path checks it; the reconcile requeues for it).
//!
//! A receiver's paths are remembered per reason ([`RouteReason`]): its own
//! path and the one under Kargo's base path (when Kargo publishes one) each
//! get a grace period when a rotation moves them.
//!
//! Every replica keeps its own memory, from the rotations it saw: a replica
//! started after a rotation never knew the old token and answers 404 on the
//! old path, as before this feature.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::rotation::GracePeriods;
use crate::index::{ReceiverEntry, Route, RouteReason, Scope};

/// Why a route exists, for every reason it can.
const REASONS: [RouteReason; 2] = [RouteReason::Current, RouteReason::PublishedByKargo];

/// A receiver's paths of one reason: owner, receiver name, reason.
type Key = (Scope, String, RouteReason);

/// The grace-period memory of every receiver of every config.
pub struct Rotations {
    memory: Mutex<GracePeriods<Key>>,
}

impl Rotations {
    /// Previous paths are accepted for `period` after a rotation.
    pub fn new(period: Duration) -> Self {
        Self {
            memory: Mutex::new(GracePeriods::new(period)),
        }
    }

    fn memory(&self) -> MutexGuard<'_, GracePeriods<Key>> {
        // Each critical section is one call that leaves the map consistent.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `routes` are the current routes of `scope`'s Harbor receivers named
    /// `receivers` (a receiver without one serves nothing: a revocation).
    /// Adds the routes of their previous paths still accepted at `now`, and
    /// returns when the first of those ends.
    pub fn add_grace_routes(
        &self,
        scope: &Scope,
        receivers: &[&str],
        routes: &mut Vec<Route>,
        now: Instant,
    ) -> Option<Instant> {
        let mut memory = self.memory();
        memory.retain(|(s, name, _)| s != scope || receivers.contains(&name.as_str()));
        let mut graced = Vec::new();
        for (name, why) in receivers.iter().flat_map(|n| REASONS.map(|why| (n, why))) {
            let current = routes.iter().find(|r| {
                r.entry.name == *name && r.entry.why == why && r.entry.grace_until.is_none()
            });
            let key = (scope.clone(), (*name).to_owned(), why);
            let previous = memory.observe(
                &key,
                current.map(|r| (r.path.as_str(), &r.entry.token)),
                now,
            );
            for p in previous {
                if routes
                    .iter()
                    .chain(&graced)
                    .any(|r: &Route| r.path == p.path)
                {
                    continue;
                }
                tracing::debug!(
                    receiver = name,
                    remaining_s = p.until.saturating_duration_since(now).as_secs(),
                    "previous path of a rotated receiver still accepted"
                );
                graced.push(Route {
                    path: p.path,
                    entry: ReceiverEntry {
                        scope: scope.clone(),
                        name: (*name).to_owned(),
                        token: p.token,
                        why,
                        grace_until: Some(p.until),
                        counters: Default::default(),
                    },
                });
            }
        }
        let first_end = graced.iter().filter_map(|r| r.entry.grace_until).min();
        routes.extend(graced);
        first_end
    }

    /// Forgets `scope` entirely (its config was deleted: a revocation).
    pub fn forget(&self, scope: &Scope) {
        self.memory().retain(|(s, _, _)| s != scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::token::TokenDigest;

    fn current(path: &str, name: &str, token: &str) -> Route {
        Route {
            path: path.into(),
            entry: ReceiverEntry {
                scope: Scope::project_of("p"),
                name: name.into(),
                token: TokenDigest::of(token.as_bytes()),
                why: RouteReason::Current,
                grace_until: None,
                counters: Default::default(),
            },
        }
    }

    fn published(path: &str, name: &str, token: &str) -> Route {
        let mut r = current(path, name, token);
        r.entry.why = RouteReason::PublishedByKargo;
        r
    }

    #[test]
    fn the_path_under_kargos_base_gets_its_own_grace_period() {
        let rotations = Rotations::new(Duration::from_secs(60));
        let scope = Scope::project_of("p");
        let now = Instant::now();
        let mut routes = vec![current("/a", "r", "old"), published("/kargo/a", "r", "old")];
        rotations.add_grace_routes(&scope, &["r"], &mut routes, now);
        let mut routes = vec![current("/b", "r", "new"), published("/kargo/b", "r", "new")];
        rotations.add_grace_routes(&scope, &["r"], &mut routes, now);
        let graced: Vec<(&str, RouteReason)> = routes
            .iter()
            .filter(|r| r.entry.grace_until.is_some())
            .map(|r| (r.path.as_str(), r.entry.why))
            .collect();
        assert_eq!(
            graced,
            [
                ("/a", RouteReason::Current),
                ("/kargo/a", RouteReason::PublishedByKargo)
            ]
        );
    }

    #[test]
    fn a_rotated_receiver_gets_a_grace_route_with_its_old_token() {
        let rotations = Rotations::new(Duration::from_secs(60));
        let scope = Scope::project_of("p");
        let t0 = Instant::now();
        let mut routes = vec![current("/a", "r", "old")];
        assert_eq!(
            rotations.add_grace_routes(&scope, &["r"], &mut routes, t0),
            None
        );

        let mut routes = vec![current("/b", "r", "new")];
        let t1 = t0 + Duration::from_secs(5);
        let end = rotations.add_grace_routes(&scope, &["r"], &mut routes, t1);
        assert_eq!(end, Some(t1 + Duration::from_secs(60)));
        assert_eq!(routes.len(), 2);
        let old = &routes[1];
        assert_eq!(old.path, "/a");
        assert!(old.entry.token.verify(b"old") && !old.entry.token.verify(b"new"));
        assert_eq!(old.entry.grace_until, end);
    }

    #[test]
    fn removed_receivers_and_deleted_configs_are_revoked() {
        let rotations = Rotations::new(Duration::from_secs(60));
        let scope = Scope::project_of("p");
        let now = Instant::now();
        let mut routes = vec![current("/a", "r", "old")];
        rotations.add_grace_routes(&scope, &["r"], &mut routes, now);
        // The receiver leaves the spec, comes back with another token.
        rotations.add_grace_routes(&scope, &[], &mut Vec::new(), now);
        let mut routes = vec![current("/b", "r", "new")];
        assert_eq!(
            rotations.add_grace_routes(&scope, &["r"], &mut routes, now),
            None
        );
        // The config is deleted, then recreated with another token.
        rotations.forget(&scope);
        let mut routes = vec![current("/c", "r", "newer")];
        assert_eq!(
            rotations.add_grace_routes(&scope, &["r"], &mut routes, now),
            None
        );
        assert_eq!(routes.len(), 1);
    }
}
