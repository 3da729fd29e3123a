//! Server-side apply and field ownership (what `managedFields` would record).
//!
//! Ownership is tracked on leaf paths (object keys joined with `.`; lists are atomic
//! leaves), per manager and operation (Apply or Update). Paths and manager names are
//! interned, so that 100 000 objects with the same shape share one copy of each path.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{admission, Store};
use crate::errors::{ApiError, ApiResult};
use crate::object::meta_mut;
use crate::resources::ResourceType;

/// An interned leaf path (`.spec.x`) or manager name.
type Interned = Arc<str>;

/// The interning table for field paths and manager names.
#[derive(Debug, Clone, Default)]
pub(super) struct FieldPaths(HashSet<Interned>);

impl FieldPaths {
    fn intern(&mut self, s: &str) -> Interned {
        if let Some(i) = self.0.get(s) {
            return i.clone();
        }
        let i: Interned = Arc::from(s);
        self.0.insert(i.clone());
        i
    }
}

/// The fields one manager owns through one kind of operation.
#[derive(Debug, Clone)]
struct Owner {
    manager: Interned,
    /// Apply (server-side apply) or Update (any other write).
    apply: bool,
    fields: BTreeSet<Interned>,
}

/// Who owns which fields of one object, ordered by manager and operation.
#[derive(Debug, Clone, Default)]
pub(super) struct Owners(Vec<Owner>);

impl Owners {
    fn of(&self, manager: &str, apply: bool) -> Option<&BTreeSet<Interned>> {
        self.0
            .iter()
            .find(|o| &*o.manager == manager && o.apply == apply)
            .map(|o| &o.fields)
    }

    /// The field set of `manager`/`apply`, created empty at its place in the order.
    fn entry(&mut self, manager: Interned, apply: bool) -> &mut BTreeSet<Interned> {
        let at = self
            .0
            .binary_search_by(|o| (&*o.manager, o.apply).cmp(&(&*manager, apply)));
        let i = match at {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(
                    i,
                    Owner {
                        manager,
                        apply,
                        fields: BTreeSet::new(),
                    },
                );
                i
            }
        };
        &mut self.0[i].fields
    }

    /// Whether a manager other than `manager` owns `path`.
    fn owned_by_other(&self, manager: &str, path: &str) -> bool {
        self.0
            .iter()
            .any(|o| &*o.manager != manager && o.fields.contains(path))
    }

    /// Every owner lets go of `paths`.
    fn release(&mut self, paths: &BTreeSet<String>) {
        for o in &mut self.0 {
            o.fields.retain(|p| !paths.contains(&**p));
        }
    }

    /// Fields that no longer exist in `obj` have no owner; owners of nothing go.
    fn prune(&mut self, obj: &Value) {
        for o in &mut self.0 {
            o.fields.retain(|p| value_at(obj, p).is_some());
        }
        self.0.retain(|o| !o.fields.is_empty());
    }
}

/// The leaf paths of `v` that a manager can own (not identity or system metadata).
fn owned_leaves(v: &Value) -> BTreeSet<String> {
    let mut leaves = Vec::new();
    leaf_paths(v, "", &mut leaves);
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

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaf_paths(x, &format!("{prefix}.{k}"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The value at a leaf path from [`leaf_paths`].
fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for k in path.split('.').skip(1) {
        cur = cur.get(k)?;
    }
    Some(cur)
}

/// Remove the field at a leaf path (no-op when absent); emptied parents are kept.
fn remove_path(v: &mut Value, path: &str) {
    let keys: Vec<&str> = path.split('.').skip(1).collect();
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(*k) {
            Some(x) => cur = x,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        m.remove(*last);
    }
}

/// Merge an applied configuration into `target`: objects merge recursively, lists and
/// scalars are replaced (an approximation of server-side apply's merge).
fn apply_merge(target: &mut Value, applied: &Value) {
    match applied {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    apply_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The part of an applied configuration a request may change: only `.status` through
/// the status subresource, everything but `.status` on the main resource when there is
/// a status subresource.
fn in_scope(rt: &ResourceType, mut applied: Value, sub: Option<&str>) -> Value {
    if let Some(m) = applied.as_object_mut() {
        if sub == Some("status") {
            m.retain(|k, _| k == "status");
        } else if rt.status_subresource {
            m.remove("status");
        }
    }
    applied
}

fn path_in_scope(rt: &ResourceType, path: &str, sub: Option<&str>) -> bool {
    if sub == Some("status") {
        path.starts_with(".status")
    } else {
        !(rt.status_subresource && path.starts_with(".status"))
    }
}

/// Fields of `leaves` owned by another manager whose applied value differs from the
/// stored one, as `(manager, path)` in owner order.
fn conflicts(
    owners: &Owners,
    manager: &str,
    leaves: &BTreeSet<String>,
    old: &Value,
    applied: &Value,
) -> Vec<(Interned, String)> {
    let mut out = Vec::new();
    for o in owners.0.iter().filter(|o| &*o.manager != manager) {
        for p in leaves.iter().filter(|p| o.fields.contains(p.as_str())) {
            if value_at(old, p) != value_at(applied, p) {
                out.push((o.manager.clone(), p.clone()));
            }
        }
    }
    out
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[(Interned, String)]) -> ApiError {
    let n = conflicts.len();
    let list: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
        .collect();
    ApiError::conflict_msg(
        &rt.group,
        &rt.plural,
        name,
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            list.join("\n")
        ),
    )
}

impl Store {
    fn intern_all(&mut self, paths: impl IntoIterator<Item = String>) -> Vec<Interned> {
        paths.into_iter().map(|p| self.paths.intern(&p)).collect()
    }

    fn owners_mut(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<&mut Owners> {
        self.record_mut(rt, ns, name).map(|r| &mut r.owners)
    }

    /// Field ownership after a non-apply write of `new` (`old` is `None` on create):
    /// changed fields leave their previous owners and go to `manager`; fields that no
    /// longer exist have no owner.
    pub(super) fn record_update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        new: &Value,
        manager: Option<&str>,
    ) {
        let new_leaves = owned_leaves(new);
        let old_leaves = old.map(owned_leaves).unwrap_or_default();
        let changed: BTreeSet<String> = new_leaves
            .union(&old_leaves)
            .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
            .cloned()
            .collect();
        let manager = manager.filter(|m| !m.is_empty());
        let gained = match manager {
            Some(_) => self.intern_all(changed.iter().filter(|p| new_leaves.contains(*p)).cloned()),
            None => Vec::new(),
        };
        let manager = manager.map(|m| self.paths.intern(m));
        let Some(owners) = self.owners_mut(rt, ns, name) else {
            return;
        };
        owners.release(&changed);
        if let Some(m) = manager {
            owners.entry(m, false).extend(gained);
        }
        owners.prune(new);
    }

    /// Server-side apply (`application/apply-patch+yaml`) of `body` by `field_manager`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
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
        let applied = decode_applied(rt, name, body)?;
        let ns = Self::ns_key(rt, url_ns);
        let eff = in_scope(rt, applied.clone(), sub);
        let leaves = owned_leaves(&eff);
        let old = match self.existing(rt, url_ns, name) {
            Ok((_, o)) => o,
            Err(e) if e.code == 404 && sub != Some("status") => {
                return self.create_by_apply(rt, url_ns, &ns, name, eff, manager, leaves);
            }
            Err(e) => return Err(e),
        };
        Self::check_rv(rt, name, &applied, &old)?;
        let owners = self
            .raw_record(rt, &ns, name)
            .map(|r| r.owners.clone())
            .unwrap_or_default();
        let conflicts = conflicts(&owners, manager, &leaves, &old, &eff);
        if !conflicts.is_empty() && !force {
            return Err(conflict_error(rt, name, &conflicts));
        }
        let mut new = (*old).clone();
        // Fields this manager applied before and no longer does are removed, unless
        // someone else owns them too.
        if let Some(prev) = owners.of(manager, true) {
            for p in prev.iter().filter(|p| !leaves.contains(&***p)) {
                if !owners.owned_by_other(manager, p) && path_in_scope(rt, p, sub) {
                    remove_path(&mut new, p);
                }
            }
        }
        let mut eff = eff;
        if let Some(Value::Object(md)) = eff.get_mut("metadata") {
            md.remove("resourceVersion");
        }
        apply_merge(&mut new, &eff);
        let result = self.commit_update(rt, &ns, name, old, new, sub)?;
        let forced: BTreeSet<String> = conflicts.into_iter().map(|(_, p)| p).collect();
        self.take_ownership(rt, &ns, name, manager, leaves, &forced, &result);
        Ok(result)
    }

    /// Apply to an object that does not exist: create it, owned by `manager`.
    #[allow(clippy::too_many_arguments)]
    fn create_by_apply(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        ns: &str,
        name: &str,
        eff: Value,
        manager: &str,
        leaves: BTreeSet<String>,
    ) -> ApiResult<Value> {
        if rt.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        let created = self.create_inner(rt, url_ns, eff)?;
        self.take_ownership(rt, ns, name, manager, leaves, &BTreeSet::new(), &created);
        Ok(created)
    }

    /// After an apply: `manager`'s applied set becomes `leaves`; `forced` fields leave
    /// their other owners (equal values stay shared).
    #[allow(clippy::too_many_arguments)]
    fn take_ownership(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        manager: &str,
        leaves: BTreeSet<String>,
        forced: &BTreeSet<String>,
        result: &Value,
    ) {
        let leaves = self.intern_all(leaves);
        let manager = self.paths.intern(manager);
        let Some(owners) = self.owners_mut(rt, ns, name) else {
            return;
        };
        for o in owners.0.iter_mut().filter(|o| o.manager != manager) {
            o.fields.retain(|p| !forced.contains(&**p));
        }
        *owners.entry(manager, true) = leaves.into_iter().collect();
        owners.prune(result);
    }
}

/// Parse an applied configuration: YAML (or JSON) of `rt`'s type naming `name` (or no
/// name), in its stored form, with the name set.
fn decode_applied(rt: &ResourceType, name: &str, body: &[u8]) -> ApiResult<Value> {
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
    admission::check_type(rt, &mut applied)?;
    let mut applied = rt.to_storage(applied);
    admission::check_name_matches(&applied, name)?;
    meta_mut(&mut applied).insert("name".into(), Value::String(name.to_string()));
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_and_paths() {
        let v =
            json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {"l": [1], "e": {}}});
        let leaves = owned_leaves(&v);
        assert_eq!(
            leaves.into_iter().collect::<Vec<_>>(),
            vec![".metadata.labels.a", ".spec.e", ".spec.l"]
        );
        assert_eq!(value_at(&v, ".spec.l"), Some(&json!([1])));
        let mut w = v.clone();
        remove_path(&mut w, ".metadata.labels.a");
        assert_eq!(w["metadata"]["labels"], json!({}));
    }

    #[test]
    fn owners_stay_ordered_and_pruned() {
        let mut paths = FieldPaths::default();
        let mut o = Owners::default();
        o.entry(paths.intern("b"), true).insert(paths.intern(".x"));
        o.entry(paths.intern("a"), false).insert(paths.intern(".y"));
        o.entry(paths.intern("a"), true).insert(paths.intern(".x"));
        let order: Vec<(&str, bool)> = o.0.iter().map(|w| (&*w.manager, w.apply)).collect();
        assert_eq!(order, vec![("a", false), ("a", true), ("b", true)]);
        assert!(o.owned_by_other("a", ".x"));
        assert!(o.owned_by_other("b", ".y"));
        assert!(!o.owned_by_other("a", ".y"));
        o.prune(&json!({"x": 1}));
        assert_eq!(o.0.len(), 2, "the owner of only the missing .y goes");
        assert!(Arc::ptr_eq(&paths.intern(".x"), &paths.intern(".x")));
    }
}
