//! The resource types the emulator serves: built-ins and those defined by CRDs.

use std::sync::Arc;

use serde_json::{json, Value};

/// One served resource (a group/version/plural) and what the server knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `secrets`.
    pub plural: String,
    /// Singular name, e.g. `secret`.
    pub singular: String,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Categories (e.g. `all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (main-resource writes then ignore `.status`).
    pub status_subresource: bool,
    /// `openAPIV3Schema` for custom resources (shared: a type is cloned per request).
    pub schema: Option<Arc<Value>>,
    /// CRD `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// Defined by a CRD.
    pub custom: bool,
    /// Whether `metadata.generation` is maintained.
    pub has_generation: bool,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            schema: None,
            printer_columns: vec![],
            custom: false,
            has_generation: false,
        }
    }

    /// `group/version` or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key: objects are shared between versions of a group/resource, and
    /// `events.k8s.io` Events are stored as core `v1` Events (as on a real server).
    pub fn key(&self) -> (String, String) {
        if self.is_events_v1() {
            return (String::new(), "events".into());
        }
        (self.group.clone(), self.plural.clone())
    }

    /// Whether `group`/`plural` is this type's storage [`key`](Self::key), without
    /// building it (watchers check every event).
    pub fn stored_as(&self, group: &str, plural: &str) -> bool {
        if self.is_events_v1() {
            group.is_empty() && plural == "events"
        } else {
            self.group == group && self.plural == plural
        }
    }

    fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// Convert an object of this type into its stored form (events.k8s.io/v1 Events
    /// become core v1 Events; everything else is unchanged).
    pub fn to_storage(&self, mut v: Value) -> Value {
        if self.is_events_v1() {
            if let Value::Object(m) = &mut v {
                for (core, ev1) in EVENT_RENAMES {
                    if let Some(x) = m.remove(ev1) {
                        m.insert(core.into(), x);
                    }
                }
            }
        }
        v
    }

    /// Convert a stored object into this type's form.
    pub fn from_storage(&self, v: &Value) -> Value {
        let mut v = v.clone();
        if self.is_events_v1() {
            if let Value::Object(m) = &mut v {
                for (core, ev1) in EVENT_RENAMES {
                    if let Some(x) = m.remove(core) {
                        m.insert(ev1.into(), x);
                    }
                }
            }
        }
        v
    }

    /// Verbs for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Field names that differ between core/v1 and events.k8s.io/v1 Events.
const EVENT_RENAMES: [(&str, &str); 7] = [
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// The built-in resources.
pub fn builtins() -> Vec<ResourceType> {
    let mut ns = ResourceType::builtin("", "v1", "namespaces", "Namespace", false);
    ns.short_names = vec!["ns".into()];
    ns.status_subresource = true;
    let mut cm = ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true);
    cm.short_names = vec!["cm".into()];
    let mut ev = ResourceType::builtin("", "v1", "events", "Event", true);
    ev.short_names = vec!["ev".into()];
    let mut ev2 = ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true);
    ev2.short_names = vec!["ev".into()];
    let lease = ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true);
    let mut crd = ResourceType::builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    crd.short_names = vec!["crd".into(), "crds".into()];
    crd.categories = vec!["api-extensions".into()];
    crd.status_subresource = true;
    crd.has_generation = true;
    let mut sa = ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true);
    sa.short_names = vec!["sa".into()];
    let mut svc = ResourceType::builtin("", "v1", "services", "Service", true);
    svc.short_names = vec!["svc".into()];
    svc.categories = vec!["all".into()];
    svc.status_subresource = true;
    let mut deploy = ResourceType::builtin("apps", "v1", "deployments", "Deployment", true);
    deploy.short_names = vec!["deploy".into()];
    deploy.categories = vec!["all".into()];
    deploy.status_subresource = true;
    deploy.has_generation = true;
    let mut pdb = ResourceType::builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    );
    pdb.short_names = vec!["pdb".into()];
    pdb.status_subresource = true;
    pdb.has_generation = true;
    let mut ing = ResourceType::builtin("networking.k8s.io", "v1", "ingresses", "Ingress", true);
    ing.short_names = vec!["ing".into()];
    ing.status_subresource = true;
    ing.has_generation = true;
    let rbac = |plural: &str, kind: &str, namespaced: bool| {
        ResourceType::builtin("rbac.authorization.k8s.io", "v1", plural, kind, namespaced)
    };
    vec![
        ns,
        cm,
        ResourceType::builtin("", "v1", "secrets", "Secret", true),
        sa,
        svc,
        ev,
        ev2,
        lease,
        crd,
        deploy,
        pdb,
        ing,
        ResourceType::builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
        rbac("roles", "Role", true),
        rbac("rolebindings", "RoleBinding", true),
        rbac("clusterroles", "ClusterRole", false),
        rbac("clusterrolebindings", "ClusterRoleBinding", false),
    ]
}

/// The resource types a CRD object defines (one per served version).
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("CRD has no spec")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let plural = s(names, "plural").ok_or("spec.names.plural is required")?;
    let kind = s(names, "kind").ok_or("spec.names.kind is required")?;
    let singular = s(names, "singular").unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strs(names.get("shortNames"));
    let categories = strs(names.get("categories"));
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = s(v, "name").ok_or("spec.versions[].name is required")?;
        out.push(ResourceType {
            group: group.into(),
            version,
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: short_names.clone(),
            categories: categories.clone(),
            status_subresource: v.pointer("/subresources/status").is_some(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            custom: true,
            has_generation: true,
        });
    }
    Ok(out)
}

/// The status a CRD gets once "established".
pub fn crd_status(crd: &Value) -> Value {
    let now = crate::object::now_rfc3339();
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now}
        ],
        "storedVersions": stored,
    })
}
