//! Removal for good, and what goes with it: a namespace's contents, a CRD's custom
//! resources and the types it served. A CRD write (re)defines the types it serves.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{is_crd_type, is_namespace_type, EventType, ObjName, Store};
use crate::object::meta_str;
use crate::resources::{self, ResourceType};

impl Store {
    /// Remove an object whose deletion is no longer held by finalizers (on DELETE, or
    /// when its last finalizer goes), with what goes with it. Those go first, so the
    /// object's DELETED event has the last resourceVersion. Returns its last state.
    pub(super) fn remove_for_good(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut last: Value,
    ) -> Value {
        let namespace = is_namespace_type(rt);
        if namespace {
            self.delete_namespace_contents(name);
        }
        if is_crd_type(rt) {
            self.delete_crd_contents(&last);
        }
        self.stamp(&mut last);
        if namespace {
            last["status"] = json!({"phase": "Terminating"});
        }
        self.remove_now(rt, &(ns.to_string(), name.to_string()), last.clone());
        last
    }

    /// Drop an object (and its field owners) and announce its `last` state.
    fn remove_now(&mut self, rt: &ResourceType, key: &ObjName, last: Value) {
        if let Some(b) = self.buckets.get_mut(&rt.key()) {
            b.remove(key);
        }
        self.history
            .record(self.rv, rt, &key.0, EventType::Deleted, last.into(), None);
    }

    /// Remove every object of every namespaced type in `ns`, each with its own DELETED
    /// event.
    fn delete_namespace_contents(&mut self, ns: &str) {
        let mut seen = BTreeSet::new();
        let types: Vec<ResourceType> = self
            .types
            .iter()
            .filter(|t| t.namespaced && seen.insert(t.key()))
            .cloned()
            .collect();
        for rt in types {
            let doomed: Vec<(ObjName, Value)> = self
                .bucket(&rt)
                .map(|b| {
                    b.range(Some(ns), None)
                        .map(|(k, r)| (k.clone(), (*r.object).clone()))
                        .collect()
                })
                .unwrap_or_default();
            for (key, mut o) in doomed {
                self.stamp(&mut o);
                self.remove_now(&rt, &key, o);
            }
        }
    }

    /// Remove a CRD's custom resources and stop serving its types.
    fn delete_crd_contents(&mut self, crd: &Value) {
        let Ok(ts) = resources::from_crd(crd) else {
            return;
        };
        if let Some(rt) = ts.first() {
            let doomed: Vec<(ObjName, Value)> = self
                .bucket(rt)
                .map(|b| {
                    b.records
                        .iter()
                        .map(|(k, r)| (k.clone(), (*r.object).clone()))
                        .collect()
                })
                .unwrap_or_default();
            for (key, mut o) in doomed {
                self.stamp(&mut o);
                self.remove_now(rt, &key, o);
            }
            self.buckets.remove(&rt.key());
        }
        self.unserve_crd(crd);
    }

    /// After a CRD is stored: serve the types it defines now.
    pub(super) fn after_crd_write(&mut self, rt: &ResourceType, obj: &Value) {
        if is_crd_type(rt) {
            self.unserve_crd(obj);
            if let Ok(ts) = resources::from_crd(obj) {
                self.types.extend(ts);
            }
        }
    }

    /// Stop serving the types a CRD (named `plural.group`) defines.
    fn unserve_crd(&mut self, crd: &Value) {
        let name = meta_str(crd, "name").unwrap_or("");
        self.types
            .retain(|t| !(t.custom && format!("{}.{}", t.plural, t.group) == name));
    }
}
