//! The shared in-memory index, built on every replica as a pure function of
//! watched state:
//! - receivers by full request path → scope, receiver name, token digest;
//! - Warehouses by normalised repository → their subscriptions' compiled
//!   tag rules (compiled once per Warehouse generation).
//!
//! Readers (the request path) take a [`Snapshot`] with one atomic load and
//! never wait: writers build the next snapshot aside and publish it with one
//! atomic store. Writers are serialised by a mutex that readers never touch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use kargo_api::{SubscriptionSource, Warehouse};
use kube::ResourceExt;

use crate::harbor::Artifact;
use crate::repository::{normalize_chart, normalize_image};
use crate::tags::{PushedTag, TagFilter};
use crate::token::TokenDigest;

/// Where a receiver's refreshes may reach.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A project's receiver: Warehouses in that namespace only.
    Project(String),
    /// The ClusterConfig's receiver: Warehouses in all namespaces.
    Cluster,
}

impl Scope {
    /// The project name as used in the URL derivation (`""` for the cluster).
    pub fn project(&self) -> &str {
        match self {
            Scope::Project(ns) => ns,
            Scope::Cluster => "",
        }
    }

    fn admits(&self, namespace: &str) -> bool {
        match self {
            Scope::Project(ns) => ns == namespace,
            Scope::Cluster => true,
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
}

/// A Warehouse chosen for a refresh.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarehouseRef {
    /// Namespace (project).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A Warehouse to refresh and the first pushed `repository:tag` that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarehouseMatch {
    /// Which Warehouse.
    pub warehouse: WarehouseRef,
    /// `resource_url` of the push that matched, for the Event on the Warehouse.
    pub artifact: String,
}

#[derive(Debug)]
struct IndexedSubscription {
    key: String,
    filter: TagFilter,
}

#[derive(Debug)]
struct IndexedWarehouse {
    warehouse: WarehouseRef,
    generation: Option<i64>,
    subscriptions: Vec<IndexedSubscription>,
}

impl IndexedWarehouse {
    fn keys(&self) -> BTreeSet<&str> {
        self.subscriptions.iter().map(|s| s.key.as_str()).collect()
    }
}

/// An immutable view of the index; cheap to take, never blocks.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    receivers: HashMap<String, Arc<ReceiverEntry>>,
    repositories: HashMap<String, Vec<Arc<IndexedWarehouse>>>,
    warehouse_count: usize,
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

impl Snapshot {
    /// The receiver answering on a full request path.
    pub fn receiver(&self, path: &str) -> Option<&Arc<ReceiverEntry>> {
        self.receivers.get(path)
    }

    /// All receiver paths (tests and diagnostics).
    pub fn receiver_paths(&self) -> BTreeSet<&str> {
        self.receivers.keys().map(String::as_str).collect()
    }

    /// Index sizes.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            receivers: self.receivers.len(),
            warehouses: self.warehouse_count,
            repository_keys: self.repositories.len(),
        }
    }

    /// The Warehouses in `scope` with a subscription on a pushed repository
    /// that accepts the pushed tag, each once, in a stable order.
    pub fn matching(&self, scope: &Scope, artifacts: &[Artifact]) -> Vec<WarehouseMatch> {
        let mut found: HashMap<&WarehouseRef, &str> = HashMap::new();
        for artifact in artifacts {
            let tag = PushedTag::new(&artifact.tag);
            let image_key = normalize_image(&artifact.resource_url);
            let chart_key = normalize_chart(&artifact.resource_url);
            let keys: &[&str] = if image_key == chart_key {
                &[&image_key]
            } else {
                &[&image_key, &chart_key]
            };
            for key in keys {
                let Some(candidates) = self.repositories.get(*key) else {
                    continue;
                };
                for wh in candidates {
                    if found.contains_key(&wh.warehouse) || !scope.admits(&wh.warehouse.namespace) {
                        continue;
                    }
                    let accepted = wh
                        .subscriptions
                        .iter()
                        .any(|s| s.key == *key && s.filter.accepts_pushed(&tag));
                    if accepted {
                        found.insert(&wh.warehouse, &artifact.resource_url);
                    }
                }
            }
        }
        let mut matches: Vec<WarehouseMatch> = found
            .into_iter()
            .map(|(warehouse, artifact)| WarehouseMatch {
                warehouse: warehouse.clone(),
                artifact: artifact.to_owned(),
            })
            .collect();
        matches.sort_by(|a, b| a.warehouse.cmp(&b.warehouse));
        matches
    }
}

#[derive(Default)]
struct Master {
    receivers_by_owner: HashMap<Scope, Vec<String>>,
    /// Who claims each path. Kargo's derivation concatenates project,
    /// receiver name and token without separators, so two owners can derive
    /// the same path ("a"+"bc" and "ab"+"c" with one token); removing one
    /// must not take the other's route away.
    claims: HashMap<String, BTreeMap<Scope, Arc<ReceiverEntry>>>,
    warehouses: HashMap<WarehouseRef, Arc<IndexedWarehouse>>,
}

/// The index: one per process, shared by the controller (writer) and the
/// server (reader).
#[derive(Default)]
pub struct Index {
    current: ArcSwap<Snapshot>,
    master: Mutex<Master>,
}

/// Problems found while indexing a Warehouse (bad regex, bad constraint …):
/// the affected subscriptions accept every tag; the caller logs these.
pub type IndexProblems = Vec<String>;

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current view; lock-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn lock(&self) -> MutexGuard<'_, Master> {
        // A writer that panicked left a consistent master (updates are
        // applied to clones first), so a poisoned lock is still usable.
        self.master.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces every receiver owned by `owner` (a ProjectConfig's namespace
    /// or the ClusterConfig) with `receivers` (path → entry). An empty list
    /// removes the owner. Returns whether anything changed: publishing costs
    /// a copy of the snapshot, so an unchanged set (the usual resync) is not
    /// published.
    pub fn set_receivers(&self, owner: &Scope, receivers: Vec<(String, ReceiverEntry)>) -> bool {
        let mut master = self.lock();
        let current = self.current.load();
        let mut before: Vec<&str> = master
            .receivers_by_owner
            .get(owner)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(String::as_str)
            .collect();
        let mut after: Vec<&str> = receivers.iter().map(|(p, _)| p.as_str()).collect();
        before.sort_unstable();
        after.sort_unstable();
        if before == after
            && receivers
                .iter()
                .all(|(p, e)| current.receiver(p).is_some_and(|old| **old == *e))
        {
            return false;
        }
        let mut next = Snapshot::clone(&current);
        let old = master.receivers_by_owner.remove(owner).unwrap_or_default();
        for path in &old {
            if let Some(claims) = master.claims.get_mut(path) {
                claims.remove(owner);
                if claims.is_empty() {
                    master.claims.remove(path);
                }
            }
        }
        let mut paths = Vec::with_capacity(receivers.len());
        for (path, entry) in receivers {
            master
                .claims
                .entry(path.clone())
                .or_default()
                .insert(owner.clone(), Arc::new(entry));
            paths.push(path);
        }
        // Each touched path routes to its first claimant (a stable choice
        // when two owners collide), or nowhere.
        for path in old.iter().chain(&paths) {
            match master.claims.get(path).and_then(|c| c.values().next()) {
                Some(entry) => next.receivers.insert(path.clone(), entry.clone()),
                None => next.receivers.remove(path),
            };
        }
        if !paths.is_empty() {
            master.receivers_by_owner.insert(owner.clone(), paths);
        }
        self.current.store(Arc::new(next));
        true
    }

    /// Adds or updates one Warehouse. Tag rules are recompiled only when the
    /// generation changed.
    pub fn upsert_warehouse(&self, warehouse: &Warehouse) -> IndexProblems {
        let mut problems = Vec::new();
        let mut master = self.lock();
        let indexed = index_warehouse(&master, warehouse, &mut problems);
        let old = master.warehouses.get(&indexed.warehouse).cloned();
        // Metadata-only changes (our own refresh annotation among them) keep
        // the generation: nothing to publish, and no O(n) snapshot copy.
        if old.as_ref().is_some_and(|old| Arc::ptr_eq(old, &indexed)) {
            return problems;
        }
        let mut next = Snapshot::clone(&self.current.load());
        if let Some(old) = old {
            unlink(&mut next, &old);
        }
        link(&mut next, &indexed);
        master.warehouses.insert(indexed.warehouse.clone(), indexed);
        next.warehouse_count = master.warehouses.len();
        self.current.store(Arc::new(next));
        problems
    }

    /// Removes one Warehouse.
    pub fn remove_warehouse(&self, namespace: &str, name: &str) {
        let mut master = self.lock();
        let key = WarehouseRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let Some(old) = master.warehouses.remove(&key) else {
            return;
        };
        let mut next = Snapshot::clone(&self.current.load());
        unlink(&mut next, &old);
        next.warehouse_count = master.warehouses.len();
        self.current.store(Arc::new(next));
    }

    /// Replaces all Warehouses at once (after a full list); publishes one
    /// snapshot, so a relist of thousands of Warehouses costs one rebuild.
    pub fn replace_warehouses<'a>(
        &self,
        warehouses: impl IntoIterator<Item = &'a Warehouse>,
    ) -> IndexProblems {
        let mut problems = Vec::new();
        let mut master = self.lock();
        let mut fresh = Master {
            receivers_by_owner: std::mem::take(&mut master.receivers_by_owner),
            claims: std::mem::take(&mut master.claims),
            warehouses: HashMap::new(),
        };
        for wh in warehouses {
            let indexed = index_warehouse(&master, wh, &mut problems);
            fresh.warehouses.insert(indexed.warehouse.clone(), indexed);
        }
        let mut next = Snapshot {
            receivers: self.current.load().receivers.clone(),
            repositories: HashMap::new(),
            warehouse_count: fresh.warehouses.len(),
        };
        for indexed in fresh.warehouses.values() {
            link(&mut next, indexed);
        }
        *master = fresh;
        self.current.store(Arc::new(next));
        problems
    }
}

/// Compiles a Warehouse's subscriptions, unless its generation is already
/// indexed: then returns the indexed one itself (same `Arc`), and its
/// problems were reported when it was compiled.
fn index_warehouse(
    master: &Master,
    warehouse: &Warehouse,
    problems: &mut Vec<String>,
) -> Arc<IndexedWarehouse> {
    let key = WarehouseRef {
        namespace: warehouse.namespace().unwrap_or_default(),
        name: warehouse.name_any(),
    };
    let generation = warehouse.metadata.generation;
    if let Some(existing) = master.warehouses.get(&key) {
        if generation.is_some() && existing.generation == generation {
            return existing.clone();
        }
    }
    let mut subscriptions = Vec::new();
    for (i, sub) in warehouse.spec.subscriptions.iter().enumerate() {
        let (repo_key, filter) = match &sub.source {
            SubscriptionSource::Image(image) => (
                normalize_image(&image.repo_url),
                TagFilter::for_image(image),
            ),
            SubscriptionSource::Chart(chart) => (
                normalize_chart(&chart.repo_url),
                TagFilter::for_chart(chart),
            ),
            SubscriptionSource::Git(_) | SubscriptionSource::Other { .. } => continue,
            SubscriptionSource::Malformed { reason, .. } => {
                problems.push(format!(
                    "Warehouse {}/{} subscription {i}: {reason}; ignored",
                    key.namespace, key.name
                ));
                continue;
            }
        };
        for p in filter.problems() {
            problems.push(format!(
                "Warehouse {}/{} subscription {i}: {p}; refreshing on every push to {repo_key}",
                key.namespace, key.name
            ));
        }
        subscriptions.push(IndexedSubscription {
            key: repo_key,
            filter,
        });
    }
    Arc::new(IndexedWarehouse {
        warehouse: key,
        generation,
        subscriptions,
    })
}

fn link(next: &mut Snapshot, indexed: &Arc<IndexedWarehouse>) {
    for key in indexed.keys() {
        next.repositories
            .entry(key.to_owned())
            .or_default()
            .push(indexed.clone());
    }
}

fn unlink(next: &mut Snapshot, old: &IndexedWarehouse) {
    for key in old.keys() {
        if let Some(list) = next.repositories.get_mut(key) {
            list.retain(|w| w.warehouse != old.warehouse);
            if list.is_empty() {
                next.repositories.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_api::{ChartSubscription, ImageSubscription, Subscription, WarehouseSpec};

    fn image(repo: &str, constraint: Option<&str>) -> Subscription {
        Subscription::image(ImageSubscription {
            repo_url: repo.into(),
            constraint: constraint.map(Into::into),
            ..Default::default()
        })
    }

    fn warehouse(ns: &str, name: &str, generation: i64, subs: Vec<Subscription>) -> Warehouse {
        let mut w = Warehouse::new(
            name,
            WarehouseSpec {
                interval: None,
                subscriptions: subs,
            },
        );
        w.metadata.namespace = Some(ns.into());
        w.metadata.generation = Some(generation);
        w
    }

    fn push(url: &str, tag: &str) -> Artifact {
        Artifact {
            resource_url: url.into(),
            tag: tag.into(),
        }
    }

    fn names(m: Vec<WarehouseMatch>) -> Vec<String> {
        m.into_iter()
            .map(|m| format!("{}/{}", m.warehouse.namespace, m.warehouse.name))
            .collect()
    }

    #[test]
    fn matching_respects_repository_scope_and_tags() {
        let index = Index::new();
        let app = "harbor.example.com/library/app";
        index.replace_warehouses(&[
            warehouse("p1", "all-tags", 1, vec![image(app, None)]),
            warehouse("p1", "v1-only", 1, vec![image(app, Some("^1.0.0"))]),
            warehouse("p1", "v2-only", 1, vec![image(app, Some("^2.0.0"))]),
            warehouse(
                "p1",
                "other-repo",
                1,
                vec![image("harbor.example.com/library/other", None)],
            ),
            warehouse("p2", "other-project", 1, vec![image(app, None)]),
            warehouse(
                "p1",
                "chart",
                1,
                vec![Subscription::chart(ChartSubscription {
                    repo_url: "oci://harbor.example.com/library/app".into(),
                    ..Default::default()
                })],
            ),
        ]);
        let snap = index.snapshot();
        let pushed = [push("Harbor.Example.com/library/app:1.2.3", "1.2.3")];
        assert_eq!(
            names(snap.matching(&Scope::Project("p1".into()), &pushed)),
            ["p1/all-tags", "p1/chart", "p1/v1-only"]
        );
        assert_eq!(
            names(snap.matching(&Scope::Cluster, &pushed)),
            ["p1/all-tags", "p1/chart", "p1/v1-only", "p2/other-project"]
        );
        assert!(snap
            .matching(&Scope::Project("p3".into()), &pushed)
            .is_empty());
        let not_semver = [push("harbor.example.com/library/app:latest", "latest")];
        assert!(snap
            .matching(&Scope::Project("p1".into()), &not_semver)
            .is_empty());
        assert_eq!(
            snap.sizes(),
            Sizes {
                receivers: 0,
                warehouses: 6,
                repository_keys: 2
            }
        );
    }

    #[test]
    fn updates_and_removals_are_incremental() {
        let index = Index::new();
        let app = "harbor.example.com/library/app";
        index.upsert_warehouse(&warehouse("p", "w", 1, vec![image(app, None)]));
        let pushed = [push("harbor.example.com/library/app:1.0.0", "1.0.0")];
        let scope = Scope::Project("p".into());
        let before = index.snapshot();
        assert_eq!(names(before.matching(&scope, &pushed)), ["p/w"]);
        // Same generation: nothing recompiled, nothing changes, no new snapshot.
        index.upsert_warehouse(&warehouse("p", "w", 1, vec![image("elsewhere/x", None)]));
        assert!(Arc::ptr_eq(&before, &index.snapshot()));
        assert_eq!(names(index.snapshot().matching(&scope, &pushed)), ["p/w"]);
        // New generation moves it to another repository.
        index.upsert_warehouse(&warehouse("p", "w", 2, vec![image("elsewhere/x", None)]));
        let after = index.snapshot();
        assert!(after.matching(&scope, &pushed).is_empty());
        assert_eq!(after.sizes().repository_keys, 1);
        // A snapshot taken earlier is unaffected by later writes.
        assert_eq!(names(before.matching(&scope, &pushed)), ["p/w"]);
        index.remove_warehouse("p", "w");
        assert_eq!(index.snapshot().sizes(), Sizes::default());
    }

    #[test]
    fn receivers_are_replaced_per_owner() {
        let index = Index::new();
        let entry = |scope: Scope, name: &str| ReceiverEntry {
            scope,
            name: name.into(),
            token: TokenDigest::of(b"t"),
        };
        let p = Scope::Project("p".into());
        index.set_receivers(&p, vec![("/harbor/a".into(), entry(p.clone(), "a"))]);
        index.set_receivers(
            &Scope::Cluster,
            vec![("/harbor/c".into(), entry(Scope::Cluster, "c"))],
        );
        assert_eq!(
            index.snapshot().receiver_paths(),
            BTreeSet::from(["/harbor/a", "/harbor/c"])
        );
        index.set_receivers(&p, vec![("/harbor/b".into(), entry(p.clone(), "b"))]);
        assert_eq!(
            index.snapshot().receiver_paths(),
            BTreeSet::from(["/harbor/b", "/harbor/c"])
        );
        assert_eq!(index.snapshot().receiver("/harbor/b").unwrap().name, "b");
        // The same set again publishes nothing; another digest does.
        let before = index.snapshot();
        assert!(!index.set_receivers(&p, vec![("/harbor/b".into(), entry(p.clone(), "b"))]));
        assert!(Arc::ptr_eq(&before, &index.snapshot()));
        let mut rotated = entry(p.clone(), "b");
        rotated.token = TokenDigest::of(b"rotated");
        assert!(index.set_receivers(&p, vec![("/harbor/b".into(), rotated)]));
        index.set_receivers(&p, vec![]);
        assert_eq!(
            index.snapshot().receiver_paths(),
            BTreeSet::from(["/harbor/c"])
        );
        // A relist of Warehouses keeps receivers.
        index.replace_warehouses(&[]);
        assert_eq!(
            index.snapshot().receiver_paths(),
            BTreeSet::from(["/harbor/c"])
        );
    }

    #[test]
    fn colliding_paths_survive_the_removal_of_one_owner() {
        // "a" + "bc" and "ab" + "c" derive the same path with one token.
        let index = Index::new();
        let (a, ab) = (Scope::Project("a".into()), Scope::Project("ab".into()));
        let entry = |scope: &Scope, name: &str| ReceiverEntry {
            scope: scope.clone(),
            name: name.into(),
            token: TokenDigest::of(b"t"),
        };
        let path = "/harbor/same".to_string();
        index.set_receivers(&a, vec![(path.clone(), entry(&a, "bc"))]);
        index.set_receivers(&ab, vec![(path.clone(), entry(&ab, "c"))]);
        assert_eq!(index.snapshot().receiver(&path).unwrap().scope, a);
        index.set_receivers(&a, vec![]);
        assert_eq!(index.snapshot().receiver(&path).unwrap().scope, ab);
        index.set_receivers(&ab, vec![]);
        assert!(index.snapshot().receiver(&path).is_none());
    }

    #[test]
    fn malformed_subscriptions_are_reported_not_fatal() {
        let index = Index::new();
        let mut w = warehouse("p", "w", 1, vec![image("h/app", None)]);
        w.spec
            .subscriptions
            .push(serde_json::from_value(serde_json::json!({"image": {"repoURL": 5}})).unwrap());
        let problems = index.upsert_warehouse(&w);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(index.snapshot().sizes().warehouses, 1);
        // Reported once per generation: not again for a metadata-only event
        // or a relist of the same generation, again for a new generation.
        assert!(index.upsert_warehouse(&w).is_empty());
        assert!(index.replace_warehouses([&w]).is_empty());
        w.metadata.generation = Some(2);
        assert_eq!(index.upsert_warehouse(&w).len(), 1);
    }
}
