//! The repository index: normalised repository → namespace → the
//! Warehouses subscribed to it, with each subscription's compiled tag rules
//! (compiled once per Warehouse generation).
//!
//! Written by the Warehouse watch, read by every authorised webhook request.
//! Readers load the current [`Repositories`] with one atomic load and never
//! wait. A writer derives the next version from the current one: persistent
//! maps share everything but the O(log n) path to what changed, so one
//! Warehouse change costs O(subscriptions × log n) however many Warehouses
//! are indexed, and a relist builds one version for all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use kargo_api::{SubscriptionSource, Warehouse};
use kube::ResourceExt;
use rpds::{HashTrieMapSync, RedBlackTreeMapSync};

use super::Scope;
use crate::core::harbor::Artifact;
use crate::core::interner::Interner;
use crate::core::repository::{normalize_chart, normalize_image};
use crate::core::tags::{PushedTag, RuleInterner, TagFilter, Verdict};

/// A Warehouse chosen for a refresh.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarehouseRef {
    /// Namespace (project).
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl WarehouseRef {
    /// A reference to `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }
}

impl std::fmt::Display for WarehouseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
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
    key: Arc<str>,
    filter: TagFilter,
    /// Its index in `spec.subscriptions`, for explanations.
    position: usize,
}

/// One subscription's decision on one pushed artifact, as the request path
/// makes it (see [`Repositories::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionVerdict<'r> {
    /// The pushed artifact.
    pub artifact: &'r Artifact,
    /// The repository key (image or chart normalisation of the pushed
    /// `resource_url`) the subscription is filed under.
    pub key: Arc<str>,
    /// Whose subscription.
    pub warehouse: &'r WarehouseRef,
    /// Its index in the Warehouse's `spec.subscriptions`.
    pub position: usize,
    /// What its tag rules decide on the pushed tag.
    pub verdict: Verdict<'r>,
}

#[derive(Debug)]
struct IndexedWarehouse {
    warehouse: WarehouseRef,
    generation: Option<i64>,
    subscriptions: Box<[IndexedSubscription]>,
}

impl IndexedWarehouse {
    /// The distinct repository keys of its subscriptions.
    fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.subscriptions
            .iter()
            .enumerate()
            .filter(|(i, s)| !self.subscriptions[..*i].iter().any(|o| o.key == s.key))
            .map(|(_, s)| &s.key)
    }

    fn accepts(&self, key: &str, tag: &PushedTag<'_>) -> bool {
        self.subscriptions
            .iter()
            .any(|s| &*s.key == key && s.filter.accepts_pushed(tag))
    }
}

type Names = RedBlackTreeMapSync<Arc<str>, Arc<IndexedWarehouse>>;
type Namespaces = RedBlackTreeMapSync<Arc<str>, Names>;

/// The Warehouses subscribed to one repository. Most repositories have one
/// subscriber, which is then held without a tree (two fewer nodes each).
#[derive(Clone, Debug)]
enum Subscribers {
    One(Arc<IndexedWarehouse>),
    /// Two or more, by namespace and name.
    Many(Namespaces),
}

impl Subscribers {
    /// Calls `f` with each subscriber in `scope`, by namespace and name.
    fn for_each_in<'a>(&'a self, scope: &Scope, mut f: impl FnMut(&'a Arc<IndexedWarehouse>)) {
        match (self, scope) {
            (Subscribers::One(wh), Scope::Project(ns)) if wh.warehouse.namespace != *ns => {}
            (Subscribers::One(wh), _) => f(wh),
            (Subscribers::Many(namespaces), Scope::Project(ns)) => namespaces
                .get(&**ns)
                .into_iter()
                .flat_map(|n| n.values())
                .for_each(f),
            (Subscribers::Many(namespaces), Scope::Cluster) => {
                namespaces.values().flat_map(|n| n.values()).for_each(f)
            }
        }
    }

    /// These subscribers with `indexed` added (or replacing its old self).
    fn with(&self, indexed: &Arc<IndexedWarehouse>) -> Subscribers {
        match self {
            Subscribers::One(wh) if wh.warehouse == indexed.warehouse => {
                Subscribers::One(indexed.clone())
            }
            Subscribers::One(wh) => {
                Subscribers::Many(insert(insert(Namespaces::new_sync(), wh), indexed))
            }
            Subscribers::Many(namespaces) => Subscribers::Many(insert(namespaces.clone(), indexed)),
        }
    }

    /// These subscribers without `wh`; `None` if none is left.
    fn without(&self, wh: &WarehouseRef) -> Option<Subscribers> {
        let mut namespaces = match self {
            Subscribers::One(one) if one.warehouse == *wh => return None,
            Subscribers::One(_) => return Some(self.clone()),
            Subscribers::Many(namespaces) => namespaces.clone(),
        };
        if let Some(names) = namespaces.get(&*wh.namespace) {
            let names = names.remove(&*wh.name);
            if names.is_empty() {
                namespaces.remove_mut(&*wh.namespace);
            } else {
                namespaces.insert_mut(wh.namespace.clone(), names);
            }
        }
        let mut all = namespaces.values().flat_map(|n| n.values());
        match (all.next(), all.next()) {
            (None, _) => None,
            (Some(last), None) => Some(Subscribers::One(last.clone())),
            _ => Some(Subscribers::Many(namespaces)),
        }
    }
}

fn insert(mut namespaces: Namespaces, indexed: &Arc<IndexedWarehouse>) -> Namespaces {
    let wh = &indexed.warehouse;
    let mut names = namespaces.get(&*wh.namespace).cloned().unwrap_or_default();
    names.insert_mut(wh.name.clone(), indexed.clone());
    namespaces.insert_mut(wh.namespace.clone(), names);
    namespaces
}

/// An immutable version of the repository index; cheap to load, never blocks.
#[derive(Clone, Debug, Default)]
pub struct Repositories {
    by_key: HashTrieMapSync<Arc<str>, Subscribers>,
    warehouses: usize,
}

impl Repositories {
    /// Warehouses indexed.
    pub fn warehouses(&self) -> usize {
        self.warehouses
    }

    /// Distinct repository keys.
    pub fn keys(&self) -> usize {
        self.by_key.size()
    }

    /// The Warehouses in `scope` with a subscription on a pushed repository
    /// that accepts the pushed tag, each once, ordered by namespace and name.
    pub fn matching(&self, scope: &Scope, artifacts: &[Artifact]) -> Vec<WarehouseMatch> {
        let mut found: BTreeMap<&WarehouseRef, &str> = BTreeMap::new();
        self.walk(scope, artifacts, |artifact, key, tag, wh| {
            if !found.contains_key(&wh.warehouse) && wh.accepts(key, tag) {
                found.insert(&wh.warehouse, &artifact.resource_url);
            }
        });
        found
            .into_iter()
            .map(|(warehouse, artifact)| WarehouseMatch {
                warehouse: warehouse.clone(),
                artifact: artifact.to_owned(),
            })
            .collect()
    }

    /// Every subscription in `scope` on a pushed repository with its
    /// verdict on the pushed tag: the walk [`matching`](Self::matching)
    /// makes, with each decision kept. A Warehouse is refreshed when any of
    /// its verdicts accepts.
    pub fn explain<'r>(
        &'r self,
        scope: &Scope,
        artifacts: &'r [Artifact],
    ) -> Vec<SubscriptionVerdict<'r>> {
        let mut out = Vec::new();
        self.walk(scope, artifacts, |artifact, key, tag, wh| {
            for sub in wh.subscriptions.iter().filter(|s| &*s.key == key) {
                out.push(SubscriptionVerdict {
                    artifact,
                    key: sub.key.clone(),
                    warehouse: &wh.warehouse,
                    position: sub.position,
                    verdict: sub.filter.verdict(tag),
                });
            }
        });
        out
    }

    /// Calls `visit` for each pushed artifact, each of its repository keys
    /// (image and chart normalisation) and each Warehouse in `scope` filed
    /// under that key.
    fn walk<'s, 'a>(
        &'s self,
        scope: &Scope,
        artifacts: &'a [Artifact],
        mut visit: impl FnMut(&'a Artifact, &str, &PushedTag<'a>, &'s IndexedWarehouse),
    ) {
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
                let Some(subscribers) = self.by_key.get(*key) else {
                    continue;
                };
                subscribers.for_each_in(scope, |wh| visit(artifact, key, &tag, wh));
            }
        }
    }

    fn link(&mut self, indexed: &Arc<IndexedWarehouse>) {
        for key in indexed.keys() {
            let next = match self.by_key.get(&**key) {
                Some(subscribers) => subscribers.with(indexed),
                None => Subscribers::One(indexed.clone()),
            };
            self.by_key.insert_mut(key.clone(), next);
        }
    }

    fn unlink(&mut self, old: &IndexedWarehouse) {
        for key in old.keys() {
            let Some(subscribers) = self.by_key.get(&**key) else {
                continue;
            };
            match subscribers.without(&old.warehouse) {
                Some(rest) => self.by_key.insert_mut(key.clone(), rest),
                None => {
                    self.by_key.remove_mut(&**key);
                }
            }
        }
    }
}

/// Problems found while indexing a Warehouse (bad regex, bad constraint …):
/// the affected subscriptions accept every tag; the caller logs these.
pub type IndexProblems = Vec<String>;

/// What the writers keep beside the published version: every indexed
/// Warehouse by reference, to find what an update replaces, and the
/// interners that make equal texts one copy (namespaces, repository keys,
/// regexes, constraints).
#[derive(Default)]
struct Writer {
    warehouses: HashMap<WarehouseRef, Arc<IndexedWarehouse>>,
    rules: RuleInterner,
    strings: Interner<str>,
}

/// The repository index: one per process.
#[derive(Default)]
pub struct RepositoryIndex {
    current: ArcSwap<Repositories>,
    writer: Mutex<Writer>,
}

/// A relist in progress: Warehouses are compiled as they arrive (the full
/// objects are not kept) and published together by
/// [`RepositoryIndex::finish_relist`].
#[derive(Default)]
pub struct Relist {
    compiled: HashMap<WarehouseRef, Arc<IndexedWarehouse>>,
}

impl Relist {
    /// Warehouses compiled so far.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }
}

impl RepositoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version; lock-free.
    pub fn load(&self) -> Arc<Repositories> {
        self.current.load_full()
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Updates are applied to copies and published last, so a writer that
        // panicked left a consistent state: a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or updates one Warehouse. Tag rules are recompiled only when the
    /// generation changed; a metadata-only change (our own refresh
    /// annotation among them) publishes nothing.
    pub fn upsert(&self, warehouse: &Warehouse) -> IndexProblems {
        let mut problems = Vec::new();
        let mut writer = self.writer();
        let indexed = writer.compile(warehouse, &mut problems);
        let old = writer.warehouses.get(&indexed.warehouse).cloned();
        if old.as_ref().is_some_and(|old| Arc::ptr_eq(old, &indexed)) {
            return problems;
        }
        let mut next = Repositories::clone(&self.current.load());
        if let Some(old) = &old {
            next.unlink(old);
        }
        next.link(&indexed);
        writer.warehouses.insert(indexed.warehouse.clone(), indexed);
        next.warehouses = writer.warehouses.len();
        self.current.store(Arc::new(next));
        problems
    }

    /// Removes one Warehouse.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut writer = self.writer();
        let Some(old) = writer
            .warehouses
            .remove(&WarehouseRef::new(namespace, name))
        else {
            return;
        };
        let mut next = Repositories::clone(&self.current.load());
        next.unlink(&old);
        next.warehouses = writer.warehouses.len();
        self.current.store(Arc::new(next));
    }

    /// Compiles one Warehouse of a relist, reusing the indexed one when its
    /// generation is unchanged (its problems were reported back then).
    pub fn relist_add(&self, relist: &mut Relist, warehouse: &Warehouse) -> IndexProblems {
        let mut problems = Vec::new();
        let indexed = self.writer().compile(warehouse, &mut problems);
        relist.compiled.insert(indexed.warehouse.clone(), indexed);
        problems
    }

    /// Replaces every Warehouse with `warehouses`, in one version (a relist
    /// whose objects are all at hand).
    pub fn replace_all<'a>(
        &self,
        warehouses: impl IntoIterator<Item = &'a Warehouse>,
    ) -> IndexProblems {
        let mut relist = Relist::default();
        let problems = warehouses
            .into_iter()
            .flat_map(|w| self.relist_add(&mut relist, w))
            .collect();
        self.finish_relist(relist);
        problems
    }

    /// Replaces every Warehouse with those of `relist`, in one version.
    pub fn finish_relist(&self, relist: Relist) {
        let mut writer = self.writer();
        let mut next = Repositories {
            warehouses: relist.compiled.len(),
            ..Repositories::default()
        };
        for indexed in relist.compiled.values() {
            next.link(indexed);
        }
        writer.warehouses = relist.compiled;
        self.current.store(Arc::new(next));
    }
}

impl Writer {
    /// Compiles a Warehouse's subscriptions, unless its generation is
    /// already indexed: then returns the indexed one itself (same `Arc`).
    fn compile(
        &mut self,
        warehouse: &Warehouse,
        problems: &mut Vec<String>,
    ) -> Arc<IndexedWarehouse> {
        let key = WarehouseRef {
            namespace: self
                .strings
                .string(warehouse.namespace().as_deref().unwrap_or_default()),
            name: Arc::from(warehouse.name_any()),
        };
        let generation = warehouse.metadata.generation;
        if let Some(existing) = self.warehouses.get(&key) {
            if generation.is_some() && existing.generation == generation {
                return existing.clone();
            }
        }
        let mut subscriptions = Vec::new();
        for (i, sub) in warehouse.spec.subscriptions.iter().enumerate() {
            let (repo_key, filter) = match &sub.source {
                SubscriptionSource::Image(image) => (
                    normalize_image(&image.repo_url),
                    TagFilter::for_image_in(image, &mut self.rules),
                ),
                SubscriptionSource::Chart(chart) => (
                    normalize_chart(&chart.repo_url),
                    TagFilter::for_chart_in(chart, &mut self.rules),
                ),
                SubscriptionSource::Git(_) | SubscriptionSource::Other { .. } => continue,
                SubscriptionSource::Malformed { reason, .. } => {
                    problems.push(format!(
                        "Warehouse {key} subscription {i}: {reason}; ignored"
                    ));
                    continue;
                }
            };
            for p in filter.problems() {
                problems.push(format!(
                    "Warehouse {key} subscription {i}: {p}; refreshing on every push to {repo_key}"
                ));
            }
            subscriptions.push(IndexedSubscription {
                key: self.strings.string(&repo_key),
                filter,
                position: i,
            });
        }
        Arc::new(IndexedWarehouse {
            warehouse: key,
            generation,
            subscriptions: subscriptions.into_boxed_slice(),
        })
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
        m.into_iter().map(|m| m.warehouse.to_string()).collect()
    }

    #[test]
    fn matching_respects_repository_scope_and_tags() {
        let index = RepositoryIndex::new();
        let app = "harbor.example.com/library/app";
        index.replace_all(&[
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
        let repos = index.load();
        let pushed = [push("Harbor.Example.com/library/app:1.2.3", "1.2.3")];
        assert_eq!(
            names(repos.matching(&Scope::project_of("p1"), &pushed)),
            ["p1/all-tags", "p1/chart", "p1/v1-only"]
        );
        assert_eq!(
            names(repos.matching(&Scope::Cluster, &pushed)),
            ["p1/all-tags", "p1/chart", "p1/v1-only", "p2/other-project"]
        );
        assert!(repos.matching(&Scope::project_of("p3"), &pushed).is_empty());
        let not_semver = [push("harbor.example.com/library/app:latest", "latest")];
        assert!(repos
            .matching(&Scope::project_of("p1"), &not_semver)
            .is_empty());
        assert_eq!((repos.warehouses(), repos.keys()), (6, 2));
    }

    #[test]
    fn a_warehouse_matches_once_through_the_first_artifact_that_chose_it() {
        let index = RepositoryIndex::new();
        index.upsert(&warehouse(
            "p",
            "w",
            1,
            vec![
                image("h/a", None),
                image("h/a", Some("^2")),
                image("h/b", None),
            ],
        ));
        let pushed = [push("h/a:1.0.0", "1.0.0"), push("h/b:1.0.0", "1.0.0")];
        let found = index.load().matching(&Scope::project_of("p"), &pushed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].artifact, "h/a:1.0.0");
        // Two subscriptions on one repository file the Warehouse once.
        assert_eq!(index.load().keys(), 2);
    }

    #[test]
    fn updates_and_removals_are_incremental() {
        let index = RepositoryIndex::new();
        let app = "harbor.example.com/library/app";
        index.upsert(&warehouse("p", "w", 1, vec![image(app, None)]));
        let pushed = [push("harbor.example.com/library/app:1.0.0", "1.0.0")];
        let scope = Scope::project_of("p");
        let before = index.load();
        assert_eq!(names(before.matching(&scope, &pushed)), ["p/w"]);
        // Same generation: nothing recompiled, nothing changes, no new version.
        index.upsert(&warehouse("p", "w", 1, vec![image("elsewhere/x", None)]));
        assert!(Arc::ptr_eq(&before, &index.load()));
        // New generation moves it to another repository.
        index.upsert(&warehouse("p", "w", 2, vec![image("elsewhere/x", None)]));
        let after = index.load();
        assert!(after.matching(&scope, &pushed).is_empty());
        assert_eq!(after.keys(), 1);
        // A version loaded earlier is unaffected by later writes.
        assert_eq!(names(before.matching(&scope, &pushed)), ["p/w"]);
        index.remove("p", "w");
        let empty = index.load();
        assert_eq!((empty.warehouses(), empty.keys()), (0, 0));
    }

    #[test]
    fn removing_one_warehouse_keeps_its_neighbours() {
        let index = RepositoryIndex::new();
        for (ns, name) in [("p", "a"), ("p", "b"), ("q", "a")] {
            index.upsert(&warehouse(ns, name, 1, vec![image("h/app", None)]));
        }
        index.remove("p", "a");
        let pushed = [push("h/app:1.0.0", "1.0.0")];
        assert_eq!(
            names(index.load().matching(&Scope::Cluster, &pushed)),
            ["p/b", "q/a"]
        );
        index.remove("q", "a");
        index.remove("p", "missing");
        assert_eq!(
            names(index.load().matching(&Scope::Cluster, &pushed)),
            ["p/b"]
        );
        assert_eq!(index.load().warehouses(), 1);
    }

    #[test]
    fn a_repository_goes_from_one_subscriber_to_many_and_back() {
        let index = RepositoryIndex::new();
        let pushed = [push("h/app:1.0.0", "1.0.0")];
        let found = |scope: &Scope| names(index.load().matching(scope, &pushed));
        index.upsert(&warehouse("p", "a", 1, vec![image("h/app", None)]));
        assert_eq!(found(&Scope::project_of("q")), Vec::<String>::new());
        index.upsert(&warehouse("q", "b", 1, vec![image("h/app", None)]));
        index.upsert(&warehouse("p", "c", 1, vec![image("h/app", None)]));
        assert_eq!(found(&Scope::Cluster), ["p/a", "p/c", "q/b"]);
        assert_eq!(found(&Scope::project_of("p")), ["p/a", "p/c"]);
        index.remove("p", "a");
        index.remove("q", "b");
        assert_eq!(found(&Scope::Cluster), ["p/c"]);
        assert_eq!(found(&Scope::project_of("q")), Vec::<String>::new());
        // The one subscriber left is updated in place.
        index.upsert(&warehouse("p", "c", 2, vec![image("h/app", Some("^2"))]));
        assert!(found(&Scope::Cluster).is_empty());
        assert_eq!(index.load().keys(), 1);
        index.remove("p", "c");
        assert_eq!((index.load().warehouses(), index.load().keys()), (0, 0));
    }

    #[test]
    fn equal_texts_are_held_once() {
        let index = RepositoryIndex::new();
        index.replace_all(&[
            warehouse("p", "a", 1, vec![image("h/app", Some("^1"))]),
            warehouse("p", "b", 1, vec![image("h/app", Some("^1"))]),
        ]);
        let writer = index.writer();
        let a = &writer.warehouses[&WarehouseRef::new("p", "a")];
        let b = &writer.warehouses[&WarehouseRef::new("p", "b")];
        assert!(Arc::ptr_eq(&a.warehouse.namespace, &b.warehouse.namespace));
        assert!(Arc::ptr_eq(
            &a.subscriptions[0].key,
            &b.subscriptions[0].key
        ));
    }

    #[test]
    fn malformed_subscriptions_are_reported_not_fatal() {
        let index = RepositoryIndex::new();
        let mut w = warehouse("p", "w", 1, vec![image("h/app", None)]);
        w.spec
            .subscriptions
            .push(serde_json::from_value(serde_json::json!({"image": {"repoURL": 5}})).unwrap());
        let problems = index.upsert(&w);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(index.load().warehouses(), 1);
        // Reported once per generation: not again for a metadata-only event
        // or a relist of the same generation, again for a new generation.
        assert!(index.upsert(&w).is_empty());
        assert!(index.replace_all([&w]).is_empty());
        w.metadata.generation = Some(2);
        assert_eq!(index.upsert(&w).len(), 1);
    }

    #[test]
    fn a_relist_replaces_everything_at_once() {
        let index = RepositoryIndex::new();
        index.upsert(&warehouse("p", "gone", 1, vec![image("h/app", None)]));
        index.replace_all(&[warehouse("p", "kept", 1, vec![image("h/app", None)])]);
        let pushed = [push("h/app:1.0.0", "1.0.0")];
        assert_eq!(
            names(index.load().matching(&Scope::Cluster, &pushed)),
            ["p/kept"]
        );
        assert_eq!(index.load().warehouses(), 1);
    }
}
