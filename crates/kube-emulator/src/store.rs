//! The in-memory object store: objects, one global resourceVersion counter, the event
//! history used to resume watches, and the write semantics (create, update, patch,
//! apply, delete) of a real API server.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::errors::{ApiError, ApiResult};
use crate::object::{meta_mut, meta_str, now_rfc3339, random_suffix};
use crate::patch;
use crate::resources::{self, ResourceType};
use crate::schema;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A stored change, kept in the history and broadcast to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Event type.
    pub etype: EventType,
    /// API group of the resource.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// The object after the change (the last state for deletions).
    pub object: Value,
    /// The object before the change (for selector transitions).
    pub old: Option<Value>,
}

pub use crate::patch::PatchType;

type ObjKey = (String, String, String, String);

/// Replayed events plus a receiver for later ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// The object store.
pub struct Store {
    rv: u64,
    types: Vec<ResourceType>,
    objects: HashMap<(String, String), BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Event>>,
    compacted_rv: u64,
    retention: usize,
    /// A throw-away copy serving a `dryRun=All` request.
    dry_run: bool,
    tx: broadcast::Sender<Arc<Event>>,
    /// Server-side apply field ownership: object → (manager, is apply) → leaf paths.
    ssa: HashMap<ObjKey, BTreeMap<(String, bool), BTreeSet<String>>>,
}

fn set_str(obj: &mut Value, field: &str, v: &str) {
    meta_mut(obj).insert(field.into(), json!(v));
}

impl Store {
    /// A store with the built-in types and the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`. `retention` bounds the event history.
    pub fn new(retention: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let mut s = Store {
            rv: 0,
            types: resources::builtins(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted_rv: 0,
            retention: retention.max(1),
            dry_run: false,
            tx,
            ssa: HashMap::new(),
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
        let (tx, _) = broadcast::channel(1);
        Store {
            rv: self.rv,
            types: self.types.clone(),
            objects: self.objects.clone(),
            history: VecDeque::new(),
            compacted_rv: self.compacted_rv,
            retention: 1,
            dry_run: true,
            tx,
            ssa: self.ssa.clone(),
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

    /// GET one object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(Self::ns_key(rt, ns), name.to_string())))
            .map(|o| Self::render(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// LIST objects of a type, in one namespace or (None) all of them, ordered by
    /// namespace and name.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        let Some(m) = self.objects.get(&rt.key()) else {
            return vec![];
        };
        m.iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| !rt.namespaced || n == want))
            .map(|(_, o)| Self::render(rt, o))
            .collect()
    }

    fn emit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        etype: EventType,
        obj: &Value,
        old: Option<Value>,
    ) {
        let (group, plural) = rt.key();
        let ev = Arc::new(Event {
            rv: self.rv,
            etype,
            group,
            plural,
            namespace: ns.to_string(),
            object: obj.clone(),
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.retention {
            if let Some(e) = self.history.pop_front() {
                self.compacted_rv = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Start a watch of `group/plural` from resourceVersion `from` (events strictly after
    /// it): returns the retained events to replay and a receiver for later ones, or 410
    /// Expired when `from` is older than the retained history.
    pub fn watch_from(&self, group: &str, plural: &str, from: u64) -> ApiResult<WatchStart> {
        if from < self.compacted_rv {
            return Err(ApiError::expired(format!(
                "too old resource version: {from} ({})",
                self.compacted_rv + 1
            )));
        }
        let evs = self
            .history
            .iter()
            .filter(|e| e.rv > from && e.group == group && e.plural == plural)
            .cloned()
            .collect();
        Ok((evs, self.tx.subscribe()))
    }

    /// Subscribe to all future events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Discard the event history: watches from any resourceVersion older than the next
    /// one get 410 Expired. Also advances the resourceVersion counter by one (as unrelated
    /// writes do on a real cluster), so that every existing resourceVersion is too old.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn check_type(rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str) {
            if !k.is_empty() && k != rt.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            if !av.is_empty() && av != rt.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version()
                )));
            }
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        Ok(())
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())))
    }

    fn resolve_ns(
        &self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<String> {
        if !rt.namespaced {
            meta_mut(obj).remove("namespace");
            return Ok(String::new());
        }
        let body_ns = meta_str(obj, "namespace").map(str::to_string);
        let ns = match (url_ns, body_ns.as_deref()) {
            (Some(u), Some(b)) if !b.is_empty() && u != b => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            (Some(u), _) => u.to_string(),
            (None, Some(b)) if !b.is_empty() => b.to_string(),
            _ => return Err(ApiError::bad_request("the namespace of the object is required")),
        };
        if !self.namespace_exists(&ns) {
            return Err(ApiError::not_found("", "namespaces", &ns));
        }
        set_str(obj, "namespace", &ns);
        Ok(ns)
    }

    /// Kind-specific normalisation, defaulting, pruning and validation.
    fn prepare(rt: &ResourceType, obj: &mut Value, name: &str) -> ApiResult<()> {
        let md = meta_mut(obj);
        md.remove("managedFields");
        md.remove("selfLink");
        let mut errs = Vec::new();
        match (rt.group.as_str(), rt.plural.as_str()) {
            // RBAC objects may be named like `system:discovery` (ValidateRBACName).
            ("rbac.authorization.k8s.io", _) => {
                if !valid_path_segment(name) {
                    errs.push(format!(
                        "metadata.name: Invalid value: {name:?}: may not be '.' or '..' and may not contain '/' or '%'"
                    ));
                }
            }
            ("", "services") => {
                if !valid_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    errs.push(format!(
                        "metadata.name: Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
                    ));
                }
            }
            _ => {
                let name_ok = if rt.plural == "namespaces" {
                    valid_label(name)
                } else {
                    valid_subdomain(name)
                };
                if !name_ok {
                    errs.push(format!(
                        "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 {} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                        if rt.plural == "namespaces" { "label" } else { "subdomain" }
                    ));
                }
            }
        }
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => {
                if let Some(Value::Object(sd)) =
                    obj.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    let data = obj
                        .as_object_mut()
                        .map(|m| m.entry("data").or_insert_with(|| json!({})));
                    if let Some(Value::Object(d)) = data {
                        for (k, v) in sd {
                            let s = v
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            d.insert(k, json!(BASE64.encode(s.as_bytes())));
                        }
                    }
                }
                if obj
                    .get("type")
                    .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
                {
                    obj["type"] = json!("Opaque");
                }
            }
            ("", "namespaces") => {
                if obj.pointer("/status/phase").is_none() {
                    obj["status"] = json!({"phase": "Active"});
                }
                if obj.pointer("/spec/finalizers").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
            }
            _ => {}
        }
        if let Some(s) = &rt.schema {
            schema::apply_defaults(s, obj);
            schema::prune(s, obj);
            if let Err(mut e) = schema::validate(s, obj) {
                errs.append(&mut e);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, name, &errs))
        }
    }

    fn put(&mut self, rt: &ResourceType, ns: &str, name: &str, obj: Value) {
        self.objects
            .entry(rt.key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj);
    }

    fn after_crd_write(&mut self, rt: &ResourceType, obj: &Value) {
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            self.unserve_crd(obj);
            if let Ok(ts) = resources::from_crd(obj) {
                self.types.extend(ts);
            }
        }
    }

    /// POST: create an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        obj: Value,
    ) -> ApiResult<Value> {
        self.create_as(rt, url_ns, obj, None)
    }

    /// POST on behalf of a field manager (who then owns the fields it set, for
    /// server-side apply conflict detection).
    pub fn create_as(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        obj: Value,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        let created = self.create_inner(rt, url_ns, obj)?;
        self.record_update(rt, None, &created, manager);
        Ok(created)
    }

    fn create_inner(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        mut obj: Value,
    ) -> ApiResult<Value> {
        Self::check_type(rt, &mut obj)?;
        let mut obj = rt.to_storage(obj);
        let ns = self.resolve_ns(rt, url_ns, &mut obj)?;
        let md = meta_mut(&mut obj);
        let name = match md
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => match md
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(g) => format!("{g}{}", random_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        &[
                            "metadata.name: Required value: name or generateName is required"
                                .into(),
                        ],
                    ))
                }
            },
        };
        md.insert("name".into(), json!(name));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            md.remove(f);
        }
        md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        md.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if rt.has_generation {
            md.insert("generation".into(), json!(1));
        }
        // With a status subresource, create ignores `.status` (custom resources and
        // built-ins such as Deployments alike); a Namespace gets its phase in `prepare`.
        if rt.status_subresource && !(rt.group.is_empty() && rt.plural == "namespaces") {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        if rt.group == "apiextensions.k8s.io" {
            resources::from_crd(&obj).map_err(|e| {
                ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    &[format!("spec: Invalid value: {e}")],
                )
            })?;
            obj["status"] = resources::crd_status(&obj);
        }
        Self::prepare(rt, &mut obj, &name)?;
        if self.raw(rt, &ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if self.dry_run {
            // Like a real server: a dry-run create has no resourceVersion.
            meta_mut(&mut obj).remove("resourceVersion");
            return Ok(Self::render(rt, &obj));
        }
        self.rv += 1;
        set_str(&mut obj, "resourceVersion", &self.rv.to_string());
        self.put(rt, &ns, &name, obj.clone());
        self.emit(rt, &ns, EventType::Added, &obj, None);
        self.after_crd_write(rt, &obj);
        Ok(Self::render(rt, &obj))
    }

    fn raw(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    fn existing(
        &self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
    ) -> ApiResult<(String, Value)> {
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

    /// PUT: replace an object (or its `status` when `sub` is `Some("status")`), with
    /// optimistic concurrency on `metadata.resourceVersion` when the body sets it.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        obj: Value,
        sub: Option<&str>,
    ) -> ApiResult<Value> {
        self.update_as(rt, url_ns, name, obj, sub, None)
    }

    /// PUT on behalf of a field manager.
    pub fn update_as(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<&str>,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        Self::check_type(rt, &mut obj)?;
        let obj = rt.to_storage(obj);
        if let Some(n) = meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if rt.namespaced {
            if let (Some(b), Some(u)) = (
                meta_str(&obj, "namespace").filter(|n| !n.is_empty()),
                url_ns,
            ) {
                if b != u {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        let (ns, old) = self.existing(rt, url_ns, name)?;
        self.check_rv(rt, name, &obj, &old)?;
        let new = self.commit_update(rt, &ns, name, old.clone(), obj, sub)?;
        self.record_update(rt, Some(&old), &new, manager);
        Ok(new)
    }

    fn owned_leaves(v: &Value) -> BTreeSet<String> {
        let mut leaves = Vec::new();
        patch::leaf_paths(v, "", &mut leaves);
        leaves
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.as_str(),
                    ".apiVersion"
                        | ".kind"
                        | ".metadata.name"
                        | ".metadata.namespace"
                        | ".metadata.resourceVersion"
                        | ".metadata.uid"
                        | ".metadata.creationTimestamp"
                        | ".metadata.generation"
                        | ".metadata.managedFields"
                        | ".metadata.deletionTimestamp"
                        | ".metadata.deletionGracePeriodSeconds"
                )
            })
            .collect()
    }

    fn obj_key(rt: &ResourceType, obj: &Value) -> ObjKey {
        (
            rt.key().0,
            rt.key().1,
            meta_str(obj, "namespace").unwrap_or("").to_string(),
            meta_str(obj, "name").unwrap_or("").to_string(),
        )
    }

    /// Field ownership after a non-apply write: changed fields leave their previous
    /// owners and go to `manager`; fields that no longer exist have no owner.
    fn record_update(
        &mut self,
        rt: &ResourceType,
        old: Option<&Value>,
        new: &Value,
        manager: Option<&str>,
    ) {
        let key = Self::obj_key(rt, new);
        let new_leaves = Self::owned_leaves(new);
        let old_leaves = old.map(Self::owned_leaves).unwrap_or_default();
        let changed: BTreeSet<String> = new_leaves
            .union(&old_leaves)
            .filter(|p| old.and_then(|o| patch::value_at(o, p)) != patch::value_at(new, p))
            .cloned()
            .collect();
        let entry = self.ssa.entry(key.clone()).or_default();
        for owned in entry.values_mut() {
            owned.retain(|p| !changed.contains(p));
        }
        if let Some(m) = manager.filter(|m| !m.is_empty()) {
            entry
                .entry((m.to_string(), false))
                .or_default()
                .extend(changed.into_iter().filter(|p| new_leaves.contains(p)));
        }
        self.prune_owners(key, new);
    }

    fn prune_owners(&mut self, key: ObjKey, obj: &Value) {
        if let Some(entry) = self.ssa.get_mut(&key) {
            for owned in entry.values_mut() {
                owned.retain(|p| patch::value_at(obj, p).is_some());
            }
            entry.retain(|_, o| !o.is_empty());
            if entry.is_empty() {
                self.ssa.remove(&key);
            }
        }
    }

    fn check_rv(&self, rt: &ResourceType, name: &str, new: &Value, old: &Value) -> ApiResult<()> {
        if let Some(rv) = meta_str(new, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(old, "resourceVersion") {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name));
            }
        }
        Ok(())
    }

    fn commit_update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
        sub: Option<&str>,
    ) -> ApiResult<Value> {
        if sub == Some("status") {
            let status = new.get("status").cloned();
            new = old.clone();
            if let Some(m) = new.as_object_mut() {
                match status {
                    Some(s) => {
                        m.insert("status".into(), s);
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status_subresource {
            if let Some(m) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let om = old.get("metadata").cloned().unwrap_or(json!({}));
            let md = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ] {
                match om.get(f) {
                    Some(v) => {
                        md.insert(f.into(), v.clone());
                    }
                    None => {
                        md.remove(f);
                    }
                }
            }
            md.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(json!("")),
            );
            // Empty label/annotation/finalizer collections are omitted, as by a Go server.
            for f in ["labels", "annotations", "finalizers"] {
                let empty = match md.get(f) {
                    Some(Value::Object(m)) => m.is_empty(),
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(Value::Null) => true,
                    _ => false,
                };
                if empty {
                    md.remove(f);
                }
            }
        }
        if rt.group == "apiextensions.k8s.io" {
            resources::from_crd(&new).map_err(|e| {
                ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &[format!("spec: Invalid value: {e}")],
                )
            })?;
            if sub != Some("status") {
                new["status"] = resources::crd_status(&new);
                if let (Some(a), Some(b)) = (old.get("status"), new.get("status")) {
                    // Keep the old transition times when nothing changed in the names.
                    if a.get("acceptedNames") == b.get("acceptedNames") {
                        new["status"] = a.clone();
                    }
                }
            }
        }
        Self::prepare(rt, &mut new, name)?;
        let mut a = old.clone();
        a["apiVersion"] = json!(rt.api_version());
        if a == new {
            return Ok(Self::render(rt, &old));
        }
        if rt.has_generation {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                    m.remove("apiVersion");
                    m.remove("kind");
                    if rt.status_subresource {
                        m.remove("status");
                    }
                }
                v
            };
            if strip(&old) != strip(&new) {
                let g = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(&mut new).insert("generation".into(), json!(g + 1));
            }
        }
        if self.dry_run {
            // Nothing is stored: the object keeps its current resourceVersion.
            return Ok(Self::render(rt, &new));
        }
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if deleting && no_finalizers {
            let last = self.remove_for_good(rt, ns, name, new);
            return Ok(Self::render(rt, &last));
        }
        self.rv += 1;
        set_str(&mut new, "resourceVersion", &self.rv.to_string());
        self.put(rt, ns, name, new.clone());
        self.emit(rt, ns, EventType::Modified, &new, Some(old));
        self.after_crd_write(rt, &new);
        Ok(Self::render(rt, &new))
    }

    /// PATCH with the given content type.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        content_type: &str,
        body: &[u8],
        sub: Option<&str>,
        field_manager: Option<&str>,
        force: bool,
    ) -> ApiResult<Value> {
        let ptype = PatchType::from_content_type(content_type)
            .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
        if ptype == PatchType::Strategic && rt.custom {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        if ptype == PatchType::Apply {
            return self.apply(rt, url_ns, name, body, sub, field_manager, force);
        }
        let p: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let (ns, old) = self.existing(rt, url_ns, name)?;
        let mut new = rt.from_storage(&old);
        match ptype {
            PatchType::Merge => {
                if !p.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                patch::merge_patch(&mut new, &p)
            }
            PatchType::Strategic => {
                if !p.is_object() {
                    return Err(ApiError::bad_request(
                        "a strategic merge patch must be a JSON object",
                    ));
                }
                patch::strategic_merge_patch(&mut new, &p)
            }
            PatchType::Json => {
                new = patch::json_patch(&old, p).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?
            }
            PatchType::Apply => unreachable!("handled above"),
        }
        let new = rt.to_storage(new);
        if meta_str(&new, "name") != Some(name) {
            return Err(ApiError::bad_request(
                "metadata.name cannot be changed by a patch",
            ));
        }
        self.check_rv(rt, name, &new, &old)?;
        let result = self.commit_update(rt, &ns, name, old.clone(), new, sub)?;
        self.record_update(rt, Some(&old), &result, field_manager);
        Ok(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        body: &[u8],
        sub: Option<&str>,
        field_manager: Option<&str>,
        force: bool,
    ) -> ApiResult<Value> {
        let manager = field_manager.filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager parameter",
            )
        })?;
        let mut applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let av = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
        if av.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "invalid object type: {av}, Kind={kind}"
            )));
        }
        Self::check_type(rt, &mut applied)?;
        let mut applied = rt.to_storage(applied);
        if let Some(n) = meta_str(&applied, "name").filter(|n| !n.is_empty()) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        set_str(&mut applied, "name", name);
        let ns = Self::ns_key(rt, url_ns);
        let key: ObjKey = (rt.key().0, rt.key().1, ns.clone(), name.to_string());
        let mut eff = applied.clone();
        if let Some(m) = eff.as_object_mut() {
            if sub == Some("status") {
                m.retain(|k, _| k == "status");
            } else if rt.status_subresource {
                m.remove("status");
            }
        }
        let leafset = Self::owned_leaves(&eff);
        let old = match self.existing(rt, url_ns, name) {
            Ok((_, o)) => o,
            Err(e) if e.code == 404 && sub != Some("status") => {
                if rt.namespaced && !self.namespace_exists(&ns) {
                    return Err(ApiError::not_found("", "namespaces", &ns));
                }
                let created = self.create_inner(rt, url_ns, eff)?;
                self.ssa.insert(
                    key.clone(),
                    BTreeMap::from([((manager.to_string(), true), leafset)]),
                );
                self.prune_owners(key, &created);
                return Ok(created);
            }
            Err(e) => return Err(e),
        };
        self.check_rv(rt, name, &applied, &old)?;
        let owners = self.ssa.entry(key.clone()).or_default().clone();
        let mut conflicts = Vec::new();
        let mut conflicting = BTreeSet::new();
        for ((m, _), owned) in &owners {
            if m == manager {
                continue;
            }
            for p in leafset.iter().filter(|p| owned.contains(*p)) {
                if patch::value_at(&old, p) != patch::value_at(&eff, p) {
                    conflicts.push(format!("conflict with \"{m}\": {p}"));
                    conflicting.insert(p.clone());
                }
            }
        }
        if !conflicts.is_empty() && !force {
            let n = conflicts.len();
            return Err(ApiError::conflict_msg(
                &rt.group,
                &rt.plural,
                name,
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    conflicts.join("\n")
                ),
            ));
        }
        let mut new = old.clone();
        if let Some(prev) = owners.get(&(manager.to_string(), true)) {
            for p in prev.difference(&leafset) {
                let owned_by_other = owners
                    .iter()
                    .any(|((m, _), o)| m != manager && o.contains(p));
                let in_scope = if sub == Some("status") {
                    p.starts_with(".status")
                } else {
                    !(rt.status_subresource && p.starts_with(".status"))
                };
                if !owned_by_other && in_scope {
                    patch::remove_path(&mut new, p);
                }
            }
        }
        if let Some(m) = eff.as_object_mut() {
            if let Some(Value::Object(md)) = m.get_mut("metadata") {
                md.remove("resourceVersion");
            }
        }
        patch::apply_merge(&mut new, &eff);
        let result = self.commit_update(rt, &ns, name, old, new, sub)?;
        let entry = self.ssa.entry(key.clone()).or_default();
        // Forced fields move to this manager; equal values become shared ownership.
        for ((m, _), owned) in entry.iter_mut() {
            if m != manager {
                owned.retain(|p| !conflicting.contains(p));
            }
        }
        entry.insert((manager.to_string(), true), leafset);
        self.prune_owners(key, &result);
        Ok(result)
    }

    fn remove_now(&mut self, rt: &ResourceType, ns: &str, name: &str, last: Value) {
        if let Some(m) = self.objects.get_mut(&rt.key()) {
            m.remove(&(ns.to_string(), name.to_string()));
        }
        self.ssa
            .remove(&(rt.key().0, rt.key().1, ns.to_string(), name.to_string()));
        self.emit(rt, ns, EventType::Deleted, &last, None);
    }

    /// DELETE one object. With finalizers, only sets `deletionTimestamp`; otherwise the
    /// object is removed at once. Deleting a namespace removes its contents; deleting a
    /// CRD removes its custom resources and stops serving them.
    /// Returns the object and whether it is gone.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        opts: &Value,
    ) -> ApiResult<(Value, bool)> {
        let (ns, old) = self.existing(rt, url_ns, name)?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
            let actual = meta_str(&old, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::conflict_msg(
                    &rt.group,
                    &rt.plural,
                    name,
                    format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
                ));
            }
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            let actual = meta_str(&old, "resourceVersion").unwrap_or("");
            if rv != actual {
                return Err(ApiError::conflict_msg(&rt.group, &rt.plural, name, format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                )));
            }
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok((Self::render(rt, &old), false));
            }
            let mut new = old.clone();
            let md = meta_mut(&mut new);
            md.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            self.rv += 1;
            set_str(&mut new, "resourceVersion", &self.rv.to_string());
            self.put(rt, &ns, name, new.clone());
            self.emit(rt, &ns, EventType::Modified, &new, Some(old));
            return Ok((Self::render(rt, &new), false));
        }
        let last = self.remove_for_good(rt, &ns, name, old);
        Ok((Self::render(rt, &last), true))
    }

    /// Remove an object whose deletion is no longer held by finalizers (on DELETE, or
    /// when its last finalizer goes), with what goes with it: a namespace's contents, a
    /// CRD's custom resources and types. Those go first, so the object's DELETED event
    /// has the last resourceVersion. Returns the object's last state.
    fn remove_for_good(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut last: Value,
    ) -> Value {
        let namespace = rt.group.is_empty() && rt.plural == "namespaces";
        if namespace {
            self.delete_namespace_contents(name);
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            self.delete_crd_contents(&last);
        }
        self.rv += 1;
        set_str(&mut last, "resourceVersion", &self.rv.to_string());
        if namespace {
            last["status"] = json!({"phase": "Terminating"});
        }
        self.remove_now(rt, ns, name, last.clone());
        last
    }

    fn delete_namespace_contents(&mut self, ns: &str) {
        let types: Vec<ResourceType> = self
            .types
            .iter()
            .filter(|t| t.namespaced)
            .cloned()
            .collect();
        let mut seen = BTreeSet::new();
        for rt in types {
            if !seen.insert(rt.key()) {
                continue;
            }
            let names: Vec<(String, Value)> = self
                .objects
                .get(&rt.key())
                .map(|m| {
                    m.iter()
                        .filter(|((n, _), _)| n == ns)
                        .map(|((_, name), o)| (name.clone(), o.clone()))
                        .collect()
                })
                .unwrap_or_default();
            for (name, mut o) in names {
                self.rv += 1;
                set_str(&mut o, "resourceVersion", &self.rv.to_string());
                self.remove_now(&rt, ns, &name, o);
            }
        }
    }

    fn delete_crd_contents(&mut self, crd: &Value) {
        let Ok(ts) = resources::from_crd(crd) else {
            return;
        };
        if let Some(rt) = ts.first() {
            let all: Vec<((String, String), Value)> = self
                .objects
                .get(&rt.key())
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for ((ns, name), mut o) in all {
                self.rv += 1;
                set_str(&mut o, "resourceVersion", &self.rv.to_string());
                self.remove_now(rt, &ns, &name, o);
            }
            self.objects.remove(&rt.key());
        }
        self.unserve_crd(crd);
    }

    /// Stop serving the types a CRD (named `plural.group`) defines.
    fn unserve_crd(&mut self, crd: &Value) {
        let name = meta_str(crd, "name").unwrap_or("");
        self.types
            .retain(|t| !(t.custom && format!("{}.{}", t.plural, t.group) == name));
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn valid_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

fn valid_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}
