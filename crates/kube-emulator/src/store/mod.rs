//! The in-memory object store: objects, one global resourceVersion counter, the event
//! history used to resume watches, and the write semantics of a real API server.
//!
//! By concern:
//! - this module: the layout (one ordered bucket of records per stored resource),
//!   reads, and the steps every write shares;
//! - `crud.rs`: create, update, patch and delete;
//! - `admission.rs`: type checks, names, kind-specific defaults, CRD schemas;
//! - `apply.rs`: server-side apply and field ownership (managedFields);
//! - `history.rs`: change events, their bounded history and the broadcast to watchers;
//! - `cascade.rs`: what goes with a deleted namespace or CRD;
//! - `pagination.rs`: `limit`/`continue` pages.
//!
//! Objects are kept once, behind an [`Arc`], and shared with the events in the history:
//! reading a page or starting a watch copies pointers, not objects.

mod admission;
mod apply;
mod cascade;
mod crud;
mod history;
mod pagination;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::errors::{ApiError, ApiResult};
use crate::object::meta_mut;
use crate::resources::{self, ResourceType};

pub use crate::patch::PatchType;
pub use history::{Event, EventType, WatchStart};
pub use pagination::{ListPage, PageRequest};

use apply::{FieldPaths, Owners};
use history::History;

/// `(namespace, name)`; the namespace is `""` for cluster-scoped objects. Ordered as
/// lists return objects.
type ObjName = (String, String);

fn is_namespace_type(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

fn is_crd_type(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

/// One stored object and who owns its fields.
#[derive(Debug, Clone)]
struct Record {
    object: Arc<Value>,
    owners: Owners,
}

/// The objects of one stored resource (group and plural), by namespace and name, with
/// a count per namespace (for `remainingItemCount` without a scan).
#[derive(Debug, Clone, Default)]
struct Bucket {
    records: BTreeMap<ObjName, Record>,
    per_namespace: HashMap<String, usize>,
}

impl Bucket {
    /// Store `object` under `key`, keeping the field owners of a previous version.
    fn put(&mut self, key: ObjName, object: Arc<Value>) -> &mut Record {
        use std::collections::btree_map::Entry;
        match self.records.entry(key) {
            Entry::Occupied(e) => {
                let r = e.into_mut();
                r.object = object;
                r
            }
            Entry::Vacant(e) => {
                *self.per_namespace.entry(e.key().0.clone()).or_default() += 1;
                e.insert(Record {
                    object,
                    owners: Owners::default(),
                })
            }
        }
    }

    fn remove(&mut self, key: &ObjName) -> Option<Record> {
        let r = self.records.remove(key)?;
        if let Some(n) = self.per_namespace.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_namespace.remove(&key.0);
            }
        }
        Some(r)
    }

    /// Objects in `ns` (all when `None`).
    fn count(&self, ns: Option<&str>) -> usize {
        match ns {
            None => self.records.len(),
            Some(ns) => self.per_namespace.get(ns).copied().unwrap_or(0),
        }
    }

    /// Records in `ns` (all when `None`) whose key is after `after`, in order.
    fn range<'a>(
        &'a self,
        ns: Option<&'a str>,
        after: Option<&ObjName>,
    ) -> impl Iterator<Item = (&'a ObjName, &'a Record)> + 'a {
        let lower = match (ns, after) {
            // A key before the namespace: start at the namespace.
            (Some(n), Some(a)) if a.0.as_str() < n => {
                Bound::Included((n.to_string(), String::new()))
            }
            (_, Some(a)) => Bound::Excluded(a.clone()),
            (Some(n), None) => Bound::Included((n.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        self.records
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| ns.is_none_or(|n| k.0 == n))
    }
}

/// The object store.
pub struct Store {
    rv: u64,
    types: Vec<ResourceType>,
    buckets: HashMap<(String, String), Bucket>,
    history: History,
    /// Interned field paths and manager names for field ownership.
    paths: FieldPaths,
    /// A throw-away copy serving a `dryRun=All` request.
    dry_run: bool,
}

impl Store {
    /// A store with the built-in types and the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`. `retention` bounds the event history.
    pub fn new(retention: usize) -> Self {
        let mut s = Store {
            rv: 0,
            types: resources::builtins(),
            buckets: HashMap::new(),
            history: History::new(retention),
            paths: FieldPaths::default(),
            dry_run: false,
        };
        if let Some(ns_rt) = s.resolve("", "v1", "namespaces").cloned() {
            for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                // Cannot fail: fresh store, valid names.
                let _ = s.create(&ns_rt, None, json!({"metadata": {"name": n}}));
            }
        }
        s
    }

    /// A copy for `dryRun=All` requests: same objects, no history and no watchers, so
    /// whatever is done to it is invisible.
    pub fn dry_run_copy(&self) -> Store {
        Store {
            rv: self.rv,
            types: self.types.clone(),
            buckets: self.buckets.clone(),
            history: self.history.detached(),
            paths: self.paths.clone(),
            dry_run: true,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// All served resource types.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Find a served resource by group, version and plural.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Find a served resource by `apiVersion` (`group/version`, or `v1` for core) and
    /// kind, as a manifest names it.
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// A stored object as seen through `rt` (version, kind, Event conversion).
    pub fn render(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = rt.from_storage(obj);
        if let Value::Object(m) = &mut o {
            m.insert("apiVersion".into(), json!(rt.api_version()));
            m.insert("kind".into(), json!(rt.kind));
        }
        o
    }

    fn ns_key(rt: &ResourceType, ns: Option<&str>) -> String {
        if rt.namespaced {
            ns.unwrap_or("").to_string()
        } else {
            String::new()
        }
    }

    /// The namespace filter of a list of `rt` in `ns` (`None`: every namespace).
    fn list_scope<'a>(rt: &ResourceType, ns: Option<&'a str>) -> Option<&'a str> {
        if rt.namespaced {
            ns
        } else {
            None
        }
    }

    fn bucket(&self, rt: &ResourceType) -> Option<&Bucket> {
        self.buckets.get(&rt.key())
    }

    /// GET one object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.raw(rt, &Self::ns_key(rt, ns), name)
            .map(|o| Self::render(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// LIST objects of a type, in one namespace or (None) all of them, ordered by
    /// namespace and name.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.objects(rt, ns)
            .iter()
            .map(|o| Self::render(rt, o))
            .collect()
    }

    /// The stored objects of a type (in one namespace or all), ordered by namespace and
    /// name, as shared pointers: cheap to take while the store is locked, to be
    /// rendered with [`Store::render`] after it is released.
    pub fn objects(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.bucket(rt)
            .map(|b| {
                b.range(Self::list_scope(rt, ns), None)
                    .map(|(_, r)| r.object.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn raw(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.raw_record(rt, ns, name).map(|r| &r.object)
    }

    fn raw_record(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Record> {
        self.bucket(rt)?
            .records
            .get(&(ns.to_string(), name.to_string()))
    }

    fn record_mut(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<&mut Record> {
        self.buckets
            .get_mut(&rt.key())?
            .records
            .get_mut(&(ns.to_string(), name.to_string()))
    }

    /// The namespace key and stored object addressed by a write, or 404.
    fn existing(
        &self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
    ) -> ApiResult<(String, Arc<Value>)> {
        let ns = Self::ns_key(rt, url_ns);
        if rt.namespaced && !self.namespace_exists(&ns) {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        }
        let old = self
            .raw(rt, &ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        Ok((ns, old))
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.buckets
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|b| b.records.contains_key(&(String::new(), ns.to_string())))
    }

    /// Take the next resourceVersion and stamp it on `obj`.
    fn stamp(&mut self, obj: &mut Value) {
        self.rv += 1;
        meta_mut(obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
    }

    /// Store a new version of an object and announce it.
    fn store_version(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        etype: EventType,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        let obj = Arc::new(obj);
        self.buckets
            .entry(rt.key())
            .or_default()
            .put((ns.to_string(), name.to_string()), obj.clone());
        self.history
            .record(self.rv, rt, ns, etype, obj.clone(), old);
        obj
    }

    /// Start a watch of `group/plural` from resourceVersion `from` (events strictly after
    /// it): returns the retained events to replay and a receiver for later ones, or 410
    /// Expired when `from` is older than the retained history.
    pub fn watch_from(&self, group: &str, plural: &str, from: u64) -> ApiResult<WatchStart> {
        self.history.since(group, plural, from)
    }

    /// Subscribe to all future events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.history.subscribe()
    }

    /// Discard the event history: watches from any resourceVersion older than the next
    /// one get 410 Expired. Also advances the resourceVersion counter by one (as unrelated
    /// writes do on a real cluster), so that every existing resourceVersion is too old.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.compact(self.rv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(keys: &[(&str, &str)]) -> Bucket {
        let mut b = Bucket::default();
        for (ns, n) in keys {
            b.put((ns.to_string(), n.to_string()), Arc::new(json!({})));
        }
        b
    }

    fn names<'a>(it: impl Iterator<Item = (&'a ObjName, &'a Record)>) -> Vec<String> {
        it.map(|(k, _)| format!("{}/{}", k.0, k.1)).collect()
    }

    #[test]
    fn ranges_stay_in_their_namespace_and_start_after_the_key() {
        let b = bucket(&[("a", "1"), ("b", "1"), ("b", "2"), ("b", "3"), ("c", "1")]);
        assert_eq!(names(b.range(Some("b"), None)), ["b/1", "b/2", "b/3"]);
        let k = |ns: &str, n: &str| (ns.to_string(), n.to_string());
        assert_eq!(
            names(b.range(Some("b"), Some(&k("b", "1")))),
            ["b/2", "b/3"]
        );
        assert_eq!(
            names(b.range(Some("b"), Some(&k("a", "9")))),
            ["b/1", "b/2", "b/3"]
        );
        assert!(names(b.range(Some("b"), Some(&k("c", "0")))).is_empty());
        assert_eq!(names(b.range(None, Some(&k("b", "3")))), ["c/1"]);
        assert!(names(b.range(Some("x"), None)).is_empty());
        assert_eq!(
            (b.count(None), b.count(Some("b")), b.count(Some("x"))),
            (5, 3, 0)
        );
        let mut b = b;
        b.remove(&k("b", "2"));
        b.put(k("b", "1"), Arc::new(json!({"again": true})));
        assert_eq!(
            b.count(Some("b")),
            2,
            "replacing an object does not count it twice"
        );
    }
}
