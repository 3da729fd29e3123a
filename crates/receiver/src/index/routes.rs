//! The route table: full request path → the receiver answering on it.
//!
//! Written by the config reconciles (one owner per ProjectConfig namespace,
//! plus the ClusterConfig), read by every webhook request. Readers load the
//! current [`Routes`] with one atomic load and never wait; a writer derives
//! the next version from the current one at O(log n) per changed path (a
//! persistent map shares everything else) and publishes it atomically.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::ArcSwap;
use rpds::HashTrieMapSync;
use tokio::sync::watch;

use crate::core::token::TokenDigest;
use crate::metrics::ReceiverCounters;

/// Where a receiver's refreshes may reach.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A project's receiver: Warehouses in that namespace only.
    Project(Arc<str>),
    /// The ClusterConfig's receiver: Warehouses in all namespaces.
    Cluster,
}

impl Scope {
    /// A project's scope.
    pub fn project_of(namespace: &str) -> Self {
        Scope::Project(Arc::from(namespace))
    }

    /// The project name as used in the URL derivation (`""` for the cluster).
    pub fn project(&self) -> &str {
        match self {
            Scope::Project(ns) => ns,
            Scope::Cluster => "",
        }
    }
}

/// Why a path routes to a receiver. A receiver can answer on several paths
/// at once; each says why it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// The path derived from `--base-url` and the current token.
    Current,
    /// The same token's path under Kargo's base path, as Kargo publishes it
    /// in status (its `EXTERNAL_WEBHOOK_SERVER_BASE_URL` differs from
    /// `--base-url`): the URL registered in Harbor.
    PublishedByKargo,
}

impl RouteReason {
    /// A bounded label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            RouteReason::Current => "current",
            RouteReason::PublishedByKargo => "published_by_kargo",
        }
    }
}

/// A receiver as the request path needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverEntry {
    /// Whose receiver it is.
    pub scope: Scope,
    /// The receiver's name in the spec (bounded: comes from configuration).
    pub name: String,
    /// Digest of the `auth-header` value.
    pub token: TokenDigest,
    /// Why this path routes here.
    pub why: RouteReason,
    /// `Some`: a path from before a rotation (of either reason), accepted
    /// until then (`core::rotation`); `None`: a path of the current token.
    pub grace_until: Option<Instant>,
    /// Its request counters, looked up once (a cache; never part of its
    /// identity).
    pub counters: ReceiverCounters,
}

impl ReceiverEntry {
    /// Whether the path still answers at `now`: a path in its grace period
    /// stops at its end, even before the reconcile that removes it.
    pub fn accepts_at(&self, now: Instant) -> bool {
        self.grace_until.is_none_or(|until| now < until)
    }
}

/// One path a receiver answers on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Full request path, base path included.
    pub path: String,
    /// Who answers there.
    pub entry: ReceiverEntry,
}

/// An immutable version of the table; cheap to load, never blocks.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    by_path: HashTrieMapSync<Arc<str>, Arc<ReceiverEntry>>,
}

impl Routes {
    /// The receiver answering on a full request path.
    pub fn get(&self, path: &str) -> Option<&Arc<ReceiverEntry>> {
        self.by_path.get(path)
    }

    /// All paths (tests and diagnostics).
    pub fn paths(&self) -> BTreeSet<&str> {
        self.by_path.keys().map(|p| &**p).collect()
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.by_path.size()
    }

    /// Whether no path is routed.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// Who claims which path. Kargo's derivation concatenates project, receiver
/// name and token without separators, so two owners can derive the same
/// path ("a"+"bc" and "ab"+"c" with one token); removing one must not take
/// the other's route away.
///
/// Invariant (kept by [`Claims::replace`], the only mutation): a path is in
/// `by_owner[o]` exactly when `by_path[path]` has a claim of `o`.
#[derive(Default)]
struct Claims {
    by_owner: HashMap<Scope, Vec<Arc<str>>>,
    by_path: HashMap<Arc<str>, BTreeMap<Scope, Arc<ReceiverEntry>>>,
}

impl Claims {
    /// Whether `owner` already claims exactly `routes`.
    fn holds(&self, owner: &Scope, routes: &[Route]) -> bool {
        let current = self.by_owner.get(owner).map_or(&[][..], Vec::as_slice);
        current.len() == routes.len()
            && routes.iter().all(|r| {
                self.by_path
                    .get(r.path.as_str())
                    .and_then(|claims| claims.get(owner))
                    .is_some_and(|e| **e == r.entry)
            })
    }

    /// Replaces `owner`'s claims; returns every path whose route may have
    /// changed.
    fn replace(&mut self, owner: &Scope, routes: Vec<Route>) -> Vec<Arc<str>> {
        let mut touched = self.by_owner.remove(owner).unwrap_or_default();
        for path in &touched {
            if let Some(claims) = self.by_path.get_mut(path) {
                claims.remove(owner);
                if claims.is_empty() {
                    self.by_path.remove(path);
                }
            }
        }
        let mut paths = Vec::with_capacity(routes.len());
        for Route { path, entry } in routes {
            let path: Arc<str> = Arc::from(path);
            self.by_path
                .entry(path.clone())
                .or_default()
                .insert(owner.clone(), Arc::new(entry));
            paths.push(path);
        }
        touched.extend(paths.iter().cloned());
        if !paths.is_empty() {
            self.by_owner.insert(owner.clone(), paths);
        }
        touched
    }

    /// The route of `path`: its first claimant (a stable choice when two
    /// owners collide), or none.
    fn route(&self, path: &str) -> Option<&Arc<ReceiverEntry>> {
        self.by_path.get(path).and_then(|c| c.values().next())
    }
}

/// The route table: one per process.
pub struct RouteTable {
    current: ArcSwap<Routes>,
    claims: Mutex<Claims>,
    /// Bumped after each published change (the registration controller
    /// re-registers a receiver whose current path changed).
    changes: watch::Sender<u64>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            current: ArcSwap::default(),
            claims: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The receiver answering on `path` right now; lock-free.
    pub fn lookup(&self, path: &str) -> Option<Arc<ReceiverEntry>> {
        self.current.load().get(path).cloned()
    }

    /// The current version; lock-free.
    pub fn load(&self) -> Arc<Routes> {
        self.current.load_full()
    }

    /// Changes when the table does (after the new version is published).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn claims(&self) -> MutexGuard<'_, Claims> {
        // Every critical section leaves the claims consistent before it
        // can panic, so a poisoned lock is still usable.
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces every route owned by `owner` (a ProjectConfig's namespace or
    /// the ClusterConfig) with `routes`; an empty list removes the owner.
    /// Returns whether anything changed: an unchanged set (the usual resync)
    /// publishes nothing.
    pub fn replace(&self, owner: &Scope, routes: Vec<Route>) -> bool {
        let mut claims = self.claims();
        if claims.holds(owner, &routes) {
            return false;
        }
        let touched = claims.replace(owner, routes);
        let mut next = Routes::clone(&self.current.load());
        for path in touched {
            match claims.route(&path) {
                Some(entry) => next.by_path.insert_mut(path, entry.clone()),
                None => {
                    next.by_path.remove_mut(&*path);
                }
            }
        }
        self.current.store(Arc::new(next));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, scope: &Scope, name: &str, token: &[u8]) -> Route {
        Route {
            path: path.into(),
            entry: ReceiverEntry {
                scope: scope.clone(),
                name: name.into(),
                token: TokenDigest::of(token),
                why: RouteReason::Current,
                counters: Default::default(),
                grace_until: None,
            },
        }
    }

    #[test]
    fn routes_are_replaced_per_owner() {
        let table = RouteTable::new();
        let p = Scope::project_of("p");
        let c = Scope::Cluster;
        table.replace(&p, vec![route("/harbor/a", &p, "a", b"t")]);
        table.replace(&c, vec![route("/harbor/c", &c, "c", b"t")]);
        assert_eq!(
            table.load().paths(),
            BTreeSet::from(["/harbor/a", "/harbor/c"])
        );
        table.replace(&p, vec![route("/harbor/b", &p, "b", b"t")]);
        assert_eq!(
            table.load().paths(),
            BTreeSet::from(["/harbor/b", "/harbor/c"])
        );
        assert_eq!(table.lookup("/harbor/b").unwrap().name, "b");
        // The same set again publishes nothing; another digest does.
        let before = table.load();
        assert!(!table.replace(&p, vec![route("/harbor/b", &p, "b", b"t")]));
        assert!(Arc::ptr_eq(&before, &table.load()));
        assert!(table.replace(&p, vec![route("/harbor/b", &p, "b", b"rotated")]));
        assert!(table.lookup("/harbor/b").unwrap().token.verify(b"rotated"));
        // A version loaded earlier is unaffected by later writes.
        assert!(before.get("/harbor/b").unwrap().token.verify(b"t"));
        table.replace(&p, vec![]);
        assert_eq!(table.load().paths(), BTreeSet::from(["/harbor/c"]));
    }

    #[test]
    fn colliding_paths_survive_the_removal_of_one_owner() {
        // "a" + "bc" and "ab" + "c" derive the same path with one token.
        let table = RouteTable::new();
        let (a, ab) = (Scope::project_of("a"), Scope::project_of("ab"));
        table.replace(&a, vec![route("/harbor/same", &a, "bc", b"t")]);
        table.replace(&ab, vec![route("/harbor/same", &ab, "c", b"t")]);
        assert_eq!(table.lookup("/harbor/same").unwrap().scope, a);
        table.replace(&a, vec![]);
        assert_eq!(table.lookup("/harbor/same").unwrap().scope, ab);
        table.replace(&ab, vec![]);
        assert!(table.lookup("/harbor/same").is_none());
        assert!(table.load().is_empty());
    }

    #[test]
    fn claims_stay_consistent_through_any_sequence() {
        // Owners take, move and drop paths in every order; afterwards the
        // two maps agree and the table routes exactly the claimed paths.
        let table = RouteTable::new();
        let owners = [
            Scope::project_of("a"),
            Scope::project_of("b"),
            Scope::Cluster,
        ];
        let paths = ["/x", "/y", "/z"];
        for step in 0..60usize {
            let owner = &owners[step % owners.len()];
            let chosen: Vec<Route> = paths
                .iter()
                .enumerate()
                .filter(|(i, _)| (step >> i) & 1 == 1)
                .map(|(_, p)| route(p, owner, "r", b"t"))
                .collect();
            table.replace(owner, chosen);
            let claims = table.claims();
            for (owner, owned) in &claims.by_owner {
                for path in owned {
                    assert!(claims.by_path[path].contains_key(owner));
                }
            }
            for (path, by) in &claims.by_path {
                assert!(!by.is_empty());
                for owner in by.keys() {
                    assert!(claims.by_owner[owner].contains(path));
                }
            }
            let claimed: BTreeSet<String> = claims.by_path.keys().map(|p| p.to_string()).collect();
            drop(claims);
            let routed: BTreeSet<String> = table
                .load()
                .paths()
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(routed, claimed);
        }
    }

    #[test]
    fn one_receiver_answers_on_several_paths_each_with_its_reason() {
        let table = RouteTable::new();
        let p = Scope::project_of("p");
        let current = route("/harbor/h", &p, "r", b"t");
        let mut kargo = route("/kargo/harbor/h", &p, "r", b"t");
        kargo.entry.why = RouteReason::PublishedByKargo;
        assert!(table.replace(&p, vec![current.clone(), kargo.clone()]));
        assert_eq!(table.lookup("/harbor/h").unwrap().why, RouteReason::Current);
        let published = table.lookup("/kargo/harbor/h").unwrap();
        assert_eq!(published.why, RouteReason::PublishedByKargo);
        assert!(published.token.verify(b"t") && !published.token.verify(b"u"));
        // The reason is part of the route: dropping the published path alone
        // is a change, the same pair again is not.
        assert!(!table.replace(&p, vec![current.clone(), kargo]));
        assert!(table.replace(&p, vec![current]));
        assert!(table.lookup("/kargo/harbor/h").is_none());
    }

    #[test]
    fn a_path_in_its_grace_period_stops_at_its_end() {
        let now = Instant::now();
        let p = Scope::project_of("p");
        let mut entry = route("/harbor/old", &p, "r", b"t").entry;
        assert!(entry.accepts_at(now), "a current path has no end");
        entry.grace_until = Some(now + std::time::Duration::from_secs(1));
        assert!(entry.accepts_at(now));
        assert!(!entry.accepts_at(now + std::time::Duration::from_secs(1)));
    }

    #[test]
    fn subscribers_see_published_changes_only() {
        let table = RouteTable::new();
        let mut changes = table.changes();
        let p = Scope::project_of("p");
        table.replace(&p, vec![route("/harbor/a", &p, "a", b"t")]);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // The same set again publishes nothing and signals nothing.
        table.replace(&p, vec![route("/harbor/a", &p, "a", b"t")]);
        assert!(!changes.has_changed().unwrap());
    }
}
