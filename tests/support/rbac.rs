//! Kubernetes RBAC, evaluated the way the API server's RBAC authorizer does,
//! for checking the program's API requests against a rendered chart.
//!
//! The requests come as the kube-emulator recorded them
//! ([`RequestRecord`]: verb, API group, resource, subresource, namespace,
//! name; the end-to-end tests' logs read back into the same type); nothing
//! here re-parses paths into attributes, except for telling discovery paths
//! (non-resource requests) from resource requests the emulator could not
//! classify. The policy is the
//! Roles and ClusterRoles bound to one ServiceAccount by the manifests'
//! RoleBindings and ClusterRoleBindings, plus what every authenticated client
//! may do by default (discovery, `/version`, health, self-reviews).
//!
//! Matching follows `plugin/pkg/auth/authorizer/rbac` of Kubernetes: `*`
//! matches any verb, group or resource; a resource `*/sub` matches the
//! subresource `sub` of any resource (there is no `resource/*`); a rule with
//! `resourceNames` matches only requests that carry one of those names (so
//! never `create` or an unnarrowed list); a RoleBinding grants only in its
//! own namespace, and non-resource URLs only through ClusterRoleBindings.
//!
//! Not modelled (the chart uses none of it): aggregated ClusterRoles, and
//! the API server narrowing a list or watch to a name by a
//! `metadata.name` field selector (the emulator records no name there, so
//! such a request is checked without one: stricter, never looser).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use kube_emulator::RequestRecord;
use serde_json::Value;
use thiserror::Error;

/// Why a policy or a request could not be built.
#[derive(Debug, Error)]
pub enum RbacError {
    /// A manifest is not the object its kind says.
    #[error("{kind} {name}: {source}")]
    Object {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The manifests hold no single Deployment to take the subject from.
    #[error("expected exactly one Deployment in the manifests, found {0}")]
    Deployment(usize),
    /// A binding refers to a role the manifests do not have.
    #[error("{binding} refers to {kind} {name:?}, which is not in the manifests")]
    MissingRole {
        /// The binding (`RoleBinding/ns/name`).
        binding: String,
        /// The role's kind.
        kind: String,
        /// The role's name.
        name: String,
    },
    /// A resource request the emulator recorded without its attributes (a
    /// resource it does not serve): it cannot be checked.
    #[error("{method} {path}: the emulator recorded no verb/resource for this resource request")]
    Unclassified {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
    },
}

/// A ServiceAccount: the subject whose permissions are checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the API server authorizes for one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Request {
    /// A request on a resource.
    Resource(ResourceRequest),
    /// Anything else: discovery, `/version`, `/healthz`, ….
    NonResource {
        /// The HTTP method, lower-cased (the API server's verb for these).
        verb: String,
        /// The path.
        path: String,
    },
}

/// The attributes of a resource request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace (`None`: cluster-scoped, or across all namespaces).
    pub namespace: Option<String>,
    /// Object name (`None`: a collection, or a create).
    pub name: Option<String>,
}

impl ResourceRequest {
    /// `verb` on `resource` of `group`, spelled as RBAC rules and the API
    /// server's RequestInfo spell them: `resource` may be
    /// `resource/subresource`, and an empty `namespace` or `name` is none
    /// (cluster-scoped or across all namespaces; a collection or a create).
    pub fn new(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_owned())),
            None => (resource, None),
        };
        let given = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource,
            namespace: given(namespace),
            name: given(name),
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn full_resource(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

impl From<ResourceRequest> for Request {
    fn from(r: ResourceRequest) -> Self {
        Request::Resource(r)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::NonResource { verb, path } => write!(f, "{verb} {path} (non-resource)"),
            Request::Resource(r) => {
                let group = if r.group.is_empty() { "\"\"" } else { &r.group };
                write!(f, "{} {group} {}", r.verb, r.full_resource())?;
                if let Some(name) = &r.name {
                    write!(f, " {name}")?;
                }
                match &r.namespace {
                    Some(ns) => write!(f, " (namespace {ns})"),
                    None => write!(f, " (cluster-wide)"),
                }
            }
        }
    }
}

/// The emulator's own control endpoints: not Kubernetes API requests.
const EMULATOR_CONTROL_PREFIX: &str = "/_emulator/";

/// A recorded request as RBAC sees it; `None` for the emulator's control
/// endpoints.
pub fn request_of(record: &RequestRecord) -> Result<Option<Request>, RbacError> {
    if record.path.starts_with(EMULATOR_CONTROL_PREFIX) {
        return Ok(None);
    }
    if let (Some(verb), Some(resource)) = (&record.verb, &record.resource) {
        let mut namespace = record.namespace.clone();
        let group = record.group.clone().unwrap_or_default();
        if group.is_empty() && resource == "namespaces" && record.name.is_some() {
            // The API server's request namespace of a Namespace object
            // is its own name; the emulator records none.
            namespace = record.name.clone();
        }
        return Ok(Some(Request::Resource(ResourceRequest {
            verb: verb.clone(),
            group,
            resource: resource.clone(),
            subresource: record.subresource.clone(),
            namespace,
            name: record.name.clone(),
        })));
    }
    if is_resource_path(&record.path) {
        return Err(RbacError::Unclassified {
            method: record.method.clone(),
            path: record.path.clone(),
        });
    }
    Ok(Some(Request::NonResource {
        verb: record.method.to_ascii_lowercase(),
        path: record.path.clone(),
    }))
}

/// Whether `path` is below an API version (`/api/v1/…`, `/apis/g/v/…`),
/// where the API server serves resources, rather than discovery.
fn is_resource_path(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.first() {
        Some(&"api") => segs.len() > 2,
        Some(&"apis") => segs.len() > 3,
        _ => false,
    }
}

/// A rule bound to the subject.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `ClusterRole/name` or `Role/ns/name`, and the rule's index.
    pub origin: String,
    /// The rule.
    pub rule: PolicyRule,
    /// The binding that grants it (`ClusterRoleBinding/name`, `RoleBinding/ns/name`).
    pub binding: String,
    /// A RoleBinding's namespace: the rule applies only there. `None`: a
    /// ClusterRoleBinding, everywhere.
    pub namespace: Option<String>,
}

/// Non-resource URLs every authenticated client may GET by default
/// (ClusterRoles `system:discovery` and `system:public-info-viewer`).
const DEFAULT_NON_RESOURCE_URLS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];

/// Resource requests every authenticated client may make by default
/// (ClusterRole `system:basic-user`): (group, resource, verb).
const DEFAULT_RESOURCE_GRANTS: &[(&str, &str, &str)] = &[
    ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    ("authorization.k8s.io", "selfsubjectrulesreviews", "create"),
    ("authentication.k8s.io", "selfsubjectreviews", "create"),
];

/// The RBAC rules that apply to one ServiceAccount.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The subject.
    pub subject: ServiceAccount,
    /// Every rule bound to it.
    pub grants: Vec<Grant>,
}

fn name_of(doc: &Value) -> String {
    doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn typed<T: serde::de::DeserializeOwned>(doc: &Value) -> Result<T, RbacError> {
    serde_json::from_value(doc.clone()).map_err(|source| RbacError::Object {
        kind: kind_of(doc).to_string(),
        name: name_of(doc),
        source,
    })
}

/// The ServiceAccount the manifests' one Deployment runs as.
pub fn deployment_subject(docs: &[Value]) -> Result<ServiceAccount, RbacError> {
    let deployments: Vec<&Value> = docs.iter().filter(|d| kind_of(d) == "Deployment").collect();
    let [dep] = deployments.as_slice() else {
        return Err(RbacError::Deployment(deployments.len()));
    };
    let spec = &dep["spec"]["template"]["spec"];
    let name = spec["serviceAccountName"]
        .as_str()
        .or_else(|| spec["serviceAccount"].as_str())
        .unwrap_or("default");
    Ok(ServiceAccount {
        namespace: dep["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        name: name.to_string(),
    })
}

fn subject_matches(subject: &Subject, binding_ns: &str, sa: &ServiceAccount) -> bool {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().unwrap_or(binding_ns);
            ns == sa.namespace && subject.name == sa.name
        }
        "User" => subject.name == format!("system:serviceaccount:{}:{}", sa.namespace, sa.name),
        "Group" => [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", sa.namespace),
            "system:authenticated".to_string(),
        ]
        .contains(&subject.name),
        _ => false,
    }
}

impl Policy {
    /// The policy of the ServiceAccount the manifests' Deployment runs as.
    pub fn from_manifests(docs: &[Value]) -> Result<Self, RbacError> {
        Self::for_subject(docs, deployment_subject(docs)?)
    }

    /// The policy of `subject` under the manifests' bindings.
    pub fn for_subject(docs: &[Value], subject: ServiceAccount) -> Result<Self, RbacError> {
        let mut cluster_roles = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for doc in docs {
            match kind_of(doc) {
                "ClusterRole" => {
                    let r: ClusterRole = typed(doc)?;
                    cluster_roles.insert(name_of(doc), r.rules.unwrap_or_default());
                }
                "Role" => {
                    let r: Role = typed(doc)?;
                    let ns = r.metadata.namespace.clone().unwrap_or_default();
                    roles.insert((ns, name_of(doc)), r.rules.unwrap_or_default());
                }
                _ => {}
            }
        }
        let mut grants = Vec::new();
        for doc in docs {
            let (binding, namespace, role_ref, subjects) = match kind_of(doc) {
                "ClusterRoleBinding" => {
                    let b: ClusterRoleBinding = typed(doc)?;
                    (
                        format!("ClusterRoleBinding/{}", name_of(doc)),
                        None,
                        b.role_ref,
                        b.subjects.unwrap_or_default(),
                    )
                }
                "RoleBinding" => {
                    let b: RoleBinding = typed(doc)?;
                    let ns = b.metadata.namespace.clone().unwrap_or_default();
                    (
                        format!("RoleBinding/{ns}/{}", name_of(doc)),
                        Some(ns),
                        b.role_ref,
                        b.subjects.unwrap_or_default(),
                    )
                }
                _ => continue,
            };
            let binding_ns = namespace.as_deref().unwrap_or(&subject.namespace);
            if !subjects
                .iter()
                .any(|s| subject_matches(s, binding_ns, &subject))
            {
                continue;
            }
            let missing = || RbacError::MissingRole {
                binding: binding.clone(),
                kind: role_ref.kind.clone(),
                name: role_ref.name.clone(),
            };
            let (origin, rules) = match (role_ref.kind.as_str(), &namespace) {
                ("ClusterRole", _) => (
                    format!("ClusterRole/{}", role_ref.name),
                    cluster_roles.get(&role_ref.name).ok_or_else(missing)?,
                ),
                ("Role", Some(ns)) => (
                    format!("Role/{ns}/{}", role_ref.name),
                    roles
                        .get(&(ns.clone(), role_ref.name.clone()))
                        .ok_or_else(missing)?,
                ),
                _ => return Err(missing()),
            };
            for (i, rule) in rules.iter().enumerate() {
                grants.push(Grant {
                    origin: format!("{origin} rule {i}"),
                    rule: rule.clone(),
                    binding: binding.clone(),
                    namespace: namespace.clone(),
                });
            }
        }
        Ok(Self { subject, grants })
    }

    /// The indices of the grants that allow `request` (empty: none does).
    pub fn grants_for(&self, request: &Request) -> Vec<usize> {
        self.grants
            .iter()
            .enumerate()
            .filter(|(_, g)| grant_allows(g, request))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether `request` is allowed: by a grant, or to everyone by default.
    pub fn allows(&self, request: &Request) -> bool {
        allowed_by_default(request) || !self.grants_for(request).is_empty()
    }

    /// Checks `requests` (each with where it came from, e.g. a log file):
    /// which are forbidden, and which granted (group, resource, verb) none
    /// of them used.
    pub fn check<'a>(&self, requests: impl IntoIterator<Item = (&'a str, Request)>) -> Report {
        let mut report = Report {
            subject: self.subject.clone(),
            requests: 0,
            denied: Vec::new(),
            used: BTreeMap::new(),
            unused: Vec::new(),
        };
        let mut used_grants: BTreeSet<(usize, String, String, String)> = BTreeSet::new();
        for (source, request) in requests {
            report.requests += 1;
            let hits = self.grants_for(&request);
            if let Request::Resource(r) = &request {
                let key = (r.group.clone(), r.full_resource(), r.verb.clone());
                *report.used.entry(key).or_default() += 1;
                for &i in &hits {
                    used_grants.insert((i, r.group.clone(), r.full_resource(), r.verb.clone()));
                }
            }
            if hits.is_empty() && !allowed_by_default(&request) {
                report.denied.push((source.to_string(), request));
            }
        }
        for (i, g) in self.grants.iter().enumerate() {
            let rule = &g.rule;
            let Some(resources) = rule.resources.as_ref().filter(|r| !r.is_empty()) else {
                continue;
            };
            let groups = rule.api_groups.clone().unwrap_or_default();
            for group in &groups {
                for resource in resources {
                    for verb in &rule.verbs {
                        let used = used_grants.iter().any(|(gi, ug, ur, uv)| {
                            *gi == i
                                && (group == "*" || ug == group)
                                && (resource == "*"
                                    || ur == resource
                                    || resource.strip_prefix('*').is_some_and(|sub| {
                                        sub.starts_with('/') && ur.ends_with(sub)
                                    }))
                                && (verb == "*" || uv == verb)
                        });
                        if !used {
                            report.unused.push(Unused {
                                grant: format!("{} via {}", g.origin, g.binding),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                            });
                        }
                    }
                }
            }
        }
        report
    }
}

fn matches_or_star(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == "*" || v == wanted)
}

/// `ResourceMatches` of the RBAC authorizer.
fn resource_matches(rule_resources: &[String], r: &ResourceRequest) -> bool {
    let combined = r.full_resource();
    rule_resources.iter().any(|rr| {
        rr == "*"
            || *rr == combined
            || r.subresource
                .as_deref()
                .is_some_and(|sub| rr.strip_prefix("*/") == Some(sub))
    })
}

/// `NonResourceURLMatches` of the RBAC authorizer.
fn non_resource_url_matches(patterns: &[&str], path: &str) -> bool {
    patterns.iter().any(|p| {
        *p == "*" || *p == path || p.strip_suffix('*').is_some_and(|pre| path.starts_with(pre))
    })
}

fn grant_allows(g: &Grant, request: &Request) -> bool {
    let rule = &g.rule;
    match request {
        Request::NonResource { verb, path } => {
            let urls: Vec<&str> = rule
                .non_resource_urls
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            // Non-resource rules count only through a ClusterRoleBinding.
            g.namespace.is_none()
                && matches_or_star(&rule.verbs, verb)
                && non_resource_url_matches(&urls, path)
        }
        Request::Resource(r) => {
            // A RoleBinding grants only in its namespace; cluster-scoped and
            // all-namespace requests need a ClusterRoleBinding.
            if g.namespace.is_some() && g.namespace != r.namespace {
                return false;
            }
            let names = rule.resource_names.as_deref().unwrap_or_default();
            matches_or_star(&rule.verbs, &r.verb)
                && matches_or_star(rule.api_groups.as_deref().unwrap_or_default(), &r.group)
                && resource_matches(rule.resources.as_deref().unwrap_or_default(), r)
                && (names.is_empty() || r.name.as_ref().is_some_and(|n| names.contains(n)))
        }
    }
}

/// Whether every authenticated client may make `request` by default.
pub fn allowed_by_default(request: &Request) -> bool {
    match request {
        Request::NonResource { verb, path } => {
            (verb == "get" || verb == "head")
                && non_resource_url_matches(DEFAULT_NON_RESOURCE_URLS, path)
        }
        Request::Resource(r) => DEFAULT_RESOURCE_GRANTS
            .iter()
            .any(|(g, res, v)| r.group == *g && r.full_resource() == *res && r.verb == *v),
    }
}

/// A granted (group, resource, verb) that no checked request used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unused {
    /// The rule and its binding.
    pub grant: String,
    /// API group.
    pub group: String,
    /// Resource (as the rule names it).
    pub resource: String,
    /// Verb.
    pub verb: String,
}

/// The outcome of [`Policy::check`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The subject checked.
    pub subject: ServiceAccount,
    /// How many requests were checked.
    pub requests: usize,
    /// The forbidden ones, each with its source.
    pub denied: Vec<(String, Request)>,
    /// (group, resource, verb) → how many requests.
    pub used: BTreeMap<(String, String, String), usize>,
    /// Grants no request used.
    pub unused: Vec<Unused>,
}

impl Report {
    /// Whether every request was allowed.
    pub fn ok(&self) -> bool {
        self.denied.is_empty()
    }
}

fn group_label(group: &str) -> &str {
    if group.is_empty() {
        "\"\""
    } else {
        group
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "RBAC check for ServiceAccount {}: {} request(s), {} forbidden, {} unused grant(s)",
            self.subject,
            self.requests,
            self.denied.len(),
            self.unused.len()
        )?;
        if !self.used.is_empty() {
            writeln!(f, "used:")?;
            for ((group, resource, verb), n) in &self.used {
                writeln!(f, "  {} {resource} {verb}: {n}", group_label(group))?;
            }
        }
        if !self.denied.is_empty() {
            writeln!(f, "FORBIDDEN (the chart's RBAC does not allow these):")?;
            // One line per (verb, group, resource), with a first example.
            let mut seen: BTreeMap<String, (usize, &Request, &str)> = BTreeMap::new();
            for (source, request) in &self.denied {
                let key = match request {
                    Request::Resource(r) => {
                        format!("{} {} {}", r.verb, group_label(&r.group), r.full_resource())
                    }
                    other => other.to_string(),
                };
                seen.entry(key).or_insert((0, request, source)).0 += 1;
            }
            for (key, (n, request, source)) in seen {
                writeln!(f, "  {key}: {n} request(s), e.g. {request} in {source}")?;
            }
        }
        if !self.unused.is_empty() {
            writeln!(f, "WARNING: granted, never requested:")?;
            for u in &self.unused {
                writeln!(
                    f,
                    "  {}: {} {} {}",
                    u.grant,
                    group_label(&u.group),
                    u.resource,
                    u.verb
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's RBAC in the shape it renders (release khr in kargo).
    const MANIFESTS: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: khr, namespace: kargo}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: khr}
rules:
  - apiGroups: ["kargo.akuity.io"]
    resources: ["projectconfigs", "clusterconfigs", "warehouses"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["kargo.akuity.io"]
    resources: ["warehouses"]
    verbs: ["patch"]
  - apiGroups: ["kargo.akuity.io"]
    resources: ["projectconfigs/status", "clusterconfigs/status"]
    verbs: ["patch"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: khr}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: khr}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: khr-lease, namespace: kargo}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["khr"]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: khr-lease, namespace: kargo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-lease}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: khr, namespace: kargo}
spec:
  template:
    spec:
      serviceAccountName: khr
      containers: [{name: receiver, image: x}]
"#;

    fn docs(text: &str) -> Vec<Value> {
        kube_emulator::parse_manifests(text).unwrap()
    }

    fn policy(text: &str) -> Policy {
        Policy::from_manifests(&docs(text)).unwrap()
    }

    /// [`ResourceRequest::new`] as a [`Request`].
    fn req(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Request {
        ResourceRequest::new(verb, group, resource, namespace, name).into()
    }

    fn non_resource(path: &str) -> Request {
        Request::NonResource {
            verb: "get".into(),
            path: path.into(),
        }
    }

    const K: &str = "kargo.akuity.io";
    const LEASES: &str = "coordination.k8s.io";

    /// What the program does in a normal run: discovery, the watches, a
    /// Secret read, the Lease, status writes, a refresh and an Event.
    fn program_requests() -> Vec<Request> {
        vec![
            non_resource("/version"),
            non_resource("/apis"),
            non_resource("/apis/kargo.akuity.io/v1alpha1"),
            req("list", K, "projectconfigs", "", ""),
            req("watch", K, "projectconfigs", "", ""),
            req("list", K, "clusterconfigs", "", ""),
            req("watch", K, "clusterconfigs", "", ""),
            req("list", K, "warehouses", "", ""),
            req("watch", K, "warehouses", "", ""),
            req("get", K, "warehouses", "p", "w"),
            req("get", K, "projectconfigs", "p", "p"),
            req("get", K, "clusterconfigs", "", "cluster"),
            req("list", "", "secrets", "", ""),
            req("watch", "", "secrets", "", ""),
            req("get", "", "secrets", "p", "s"),
            req("get", LEASES, "leases", "kargo", "khr"),
            req("create", LEASES, "leases", "kargo", ""),
            req("update", LEASES, "leases", "kargo", "khr"),
            req("patch", K, "projectconfigs/status", "p", "p"),
            req("patch", K, "clusterconfigs/status", "", "cluster"),
            req("patch", K, "warehouses", "p", "w"),
            req("create", "events.k8s.io", "events", "p", ""),
        ]
    }

    fn check(p: &Policy, requests: &[Request]) -> Report {
        p.check(requests.iter().map(|r| ("test", r.clone())))
    }

    fn denied(report: &Report) -> Vec<Request> {
        report.denied.iter().map(|(_, r)| r.clone()).collect()
    }

    #[test]
    fn the_subject_is_the_deployment_s_service_account() {
        let p = policy(MANIFESTS);
        assert_eq!(p.subject.to_string(), "kargo/khr");
        let no_sa = MANIFESTS.replace("serviceAccountName: khr\n", "");
        assert_eq!(policy(&no_sa).subject.to_string(), "kargo/default");
        let two = format!("{MANIFESTS}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: b, namespace: kargo}}\n");
        assert!(matches!(
            Policy::from_manifests(&docs(&two)),
            Err(RbacError::Deployment(2))
        ));
    }

    #[test]
    fn the_program_s_requests_are_allowed_and_use_every_grant() {
        let report = check(&policy(MANIFESTS), &program_requests());
        assert!(report.ok(), "{report}");
        assert_eq!(report.requests, program_requests().len());
        assert_eq!(report.unused, vec![], "{report}");
    }

    #[test]
    fn unused_grants_are_reported() {
        let requests: Vec<Request> = program_requests()
            .into_iter()
            .filter(|r| {
                !matches!(r, Request::Resource(r)
                    if r.resource == "events" || (r.resource == "secrets" && r.verb == "get"))
            })
            .collect();
        let report = check(&policy(MANIFESTS), &requests);
        assert!(report.ok(), "{report}");
        let unused: Vec<(&str, &str, &str, &str)> = report
            .unused
            .iter()
            .map(|u| {
                (
                    u.grant.as_str(),
                    u.group.as_str(),
                    u.resource.as_str(),
                    u.verb.as_str(),
                )
            })
            .collect();
        assert_eq!(
            unused,
            vec![
                (
                    "ClusterRole/khr rule 3 via ClusterRoleBinding/khr",
                    "",
                    "secrets",
                    "get"
                ),
                (
                    "ClusterRole/khr rule 4 via ClusterRoleBinding/khr",
                    "events.k8s.io",
                    "events",
                    "create"
                ),
            ]
        );
        assert!(report.to_string().contains("granted, never requested"));
    }

    #[test]
    fn requests_outside_the_rules_are_forbidden() {
        // Each: (request, why it must be refused).
        let cases: Vec<(Request, &str)> = vec![
            (
                req("patch", LEASES, "leases", "kargo", "khr"),
                "the Lease is replaced (update), never patched",
            ),
            (
                req("update", LEASES, "leases", "kargo", "other"),
                "resourceNames: only our own Lease",
            ),
            (
                req("list", LEASES, "leases", "kargo", ""),
                "a name-restricted rule never matches an unnamed request",
            ),
            (
                req("create", LEASES, "leases", "default", ""),
                "a Role in kargo grants nothing in another namespace",
            ),
            (
                req("patch", "events.k8s.io", "events", "p", "e"),
                "Events are created, not patched, here",
            ),
            (
                req("create", "", "events", "p", ""),
                "core Events are another group",
            ),
            (
                req("update", K, "warehouses", "p", "w"),
                "Warehouses are patched, never replaced",
            ),
            (
                req("patch", K, "warehouses/status", "p", "w"),
                "a subresource needs its own rule",
            ),
            (
                req("patch", K, "projectconfigs", "p", "p"),
                "status rule does not grant the main resource",
            ),
            (req("delete", "", "secrets", "a", "s"), "no delete"),
            (req("list", "", "configmaps", "", ""), "no configmaps"),
            (
                non_resource("/metrics"),
                "no non-resource grant for /metrics",
            ),
            (
                Request::NonResource {
                    verb: "post".into(),
                    path: "/version".into(),
                },
                "discovery is GET only",
            ),
        ];
        let p = policy(MANIFESTS);
        for (request, why) in &cases {
            assert!(!p.allows(request), "{request} must be refused: {why}");
        }
        let mut all = program_requests();
        all.extend(cases.iter().map(|(r, _)| r.clone()));
        let report = check(&p, &all);
        assert_eq!(
            denied(&report),
            cases.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>()
        );
        assert!(report.to_string().contains("FORBIDDEN"));
    }

    #[test]
    fn discovery_and_self_reviews_are_allowed_to_everyone() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/kargo.akuity.io/v1alpha1",
            "/version",
            "/openapi/v3",
            "/healthz",
        ] {
            assert!(allowed_by_default(&non_resource(path)), "{path}");
        }
        assert!(!allowed_by_default(&non_resource("/metrics")));
        let review = |resource: &str| req("create", "authorization.k8s.io", resource, "", "");
        assert!(allowed_by_default(&review("selfsubjectaccessreviews")));
        assert!(!allowed_by_default(&review("subjectaccessreviews")));
    }

    const WIDE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: wide}
rules:
  - {apiGroups: ["*"], resources: ["*/status"], verbs: ["patch"]}
  - {apiGroups: ["apps"], resources: ["*"], verbs: ["*"]}
  - {apiGroups: ["batch"], resources: ["jobs/*"], verbs: ["get"]}
  - {nonResourceURLs: ["/metrics", "/debug/*"], verbs: ["get"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{kind: ServiceAccount, name: sa, namespace: ns}]
"#;

    fn sa(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn wildcards_match_like_the_rbac_authorizer() {
        let p = Policy::for_subject(&docs(WIDE), sa("ns", "sa")).unwrap();
        let table: Vec<(Request, bool)> = vec![
            (req("patch", K, "projectconfigs/status", "p", "p"), true),
            (req("patch", K, "projectconfigs", "p", "p"), false),
            (req("patch", K, "projectconfigs/scale", "p", "p"), false),
            (req("delete", "apps", "deployments", "p", "d"), true),
            (req("patch", "apps", "deployments/scale", "p", "d"), true),
            (req("get", "", "pods", "p", "x"), false),
            // There is no resource/* in RBAC: "jobs/*" is a literal name.
            (req("get", "batch", "jobs/status", "p", "j"), false),
            (non_resource("/metrics"), true),
            (non_resource("/debug/pprof/heap"), true),
            (non_resource("/debugger"), false),
        ];
        for (request, want) in &table {
            assert_eq!(p.allows(request), *want, "{request}");
        }
    }

    #[test]
    fn resource_names_restrict_to_named_requests() {
        let p = policy(MANIFESTS);
        let lease = |verb: &str, name: &str| req(verb, LEASES, "leases", "kargo", name);
        assert!(p.allows(&lease("get", "khr")));
        assert!(p.allows(&lease("update", "khr")));
        assert!(!p.allows(&lease("get", "khr2")));
        assert!(!p.allows(&lease("get", "")), "unnamed get");
        // create is granted by the rule without resourceNames.
        assert!(p.allows(&lease("create", "")));
    }

    const NAMESPACED_SECRETS: &str = r#"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: khr-secrets, namespace: kargo-demo}
rules: [{apiGroups: [""], resources: ["secrets"], verbs: ["get"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: khr-secrets, namespace: kargo-demo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-secrets}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: khr-view, namespace: kargo-other}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view-configmaps}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view-configmaps}
rules:
  - {apiGroups: [""], resources: ["configmaps"], verbs: ["get"]}
  - {nonResourceURLs: ["/metrics"], verbs: ["get"]}
"#;

    #[test]
    fn a_namespaced_role_or_role_binding_grants_only_in_its_namespace() {
        let text = MANIFESTS.replace(
            "  - apiGroups: [\"\"]\n    resources: [\"secrets\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n",
            "",
        ) + NAMESPACED_SECRETS;
        let p = policy(&text);
        let secret = |ns: &str| req("get", "", "secrets", ns, "s");
        let table: Vec<(Request, bool)> = vec![
            (secret("kargo-demo"), true),
            (secret("kargo-other"), false),
            (req("watch", "", "secrets", "", ""), false),
            (req("watch", "", "secrets", "kargo-demo", ""), false),
            // A ClusterRole bound by a RoleBinding: only in that namespace,
            // and its non-resource rules not at all.
            (req("get", "", "configmaps", "kargo-other", "c"), true),
            (req("get", "", "configmaps", "kargo-demo", "c"), false),
            (req("get", "", "configmaps", "", "c"), false),
            (non_resource("/metrics"), false),
        ];
        for (request, want) in &table {
            assert_eq!(p.allows(request), *want, "{request}");
        }
    }

    #[test]
    fn only_bindings_of_the_subject_count() {
        let elsewhere = MANIFESTS.replacen(
            "subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]",
            "subjects: [{kind: ServiceAccount, name: khr, namespace: elsewhere}]",
            1,
        );
        assert!(!policy(&elsewhere).allows(&req("list", "", "secrets", "", "")));
        // A subject without a namespace is in the binding's namespace.
        let implicit = MANIFESTS.replace(
            "metadata: {name: khr-lease, namespace: kargo}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-lease}\nsubjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]",
            "metadata: {name: khr-lease, namespace: kargo}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-lease}\nsubjects: [{kind: ServiceAccount, name: khr}]",
        );
        assert_ne!(implicit, MANIFESTS);
        let create = req("create", LEASES, "leases", "kargo", "");
        assert!(policy(&implicit).allows(&create));
        // Users and groups that name the ServiceAccount count too.
        for subject in [
            "{kind: User, name: \"system:serviceaccount:ns:sa\"}",
            "{kind: Group, name: \"system:serviceaccounts:ns\"}",
            "{kind: Group, name: \"system:authenticated\"}",
        ] {
            let text = WIDE.replace("{kind: ServiceAccount, name: sa, namespace: ns}", subject);
            let p = Policy::for_subject(&docs(&text), sa("ns", "sa")).unwrap();
            assert!(p.allows(&non_resource("/metrics")), "{subject}");
            let other = Policy::for_subject(&docs(&text), sa("other", "sa")).unwrap();
            assert_eq!(
                other.allows(&non_resource("/metrics")),
                subject.contains("system:authenticated"),
                "{subject}"
            );
        }
    }

    #[test]
    fn a_binding_to_a_missing_role_is_an_error() {
        let text = MANIFESTS.replace("kind: Role, name: khr-lease}", "kind: Role, name: gone}");
        let err = Policy::from_manifests(&docs(&text)).unwrap_err();
        assert!(matches!(err, RbacError::MissingRole { .. }), "{err}");
        assert!(err.to_string().contains("gone"), "{err}");
    }

    fn recorded(method: &str, path: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: path.into(),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn recorded_requests_use_the_emulator_s_attributes() {
        let mut r = recorded(
            "PATCH",
            "/apis/kargo.akuity.io/v1alpha1/namespaces/p/projectconfigs/p/status",
        );
        r.verb = Some("patch".into());
        r.group = Some(K.into());
        r.resource = Some("projectconfigs".into());
        r.subresource = Some("status".into());
        r.namespace = Some("p".into());
        r.name = Some("p".into());
        assert_eq!(
            request_of(&r).unwrap(),
            Some(req("patch", K, "projectconfigs/status", "p", "p"))
        );
        // A Namespace object's request namespace is its name.
        let mut ns = recorded("GET", "/api/v1/namespaces/kargo");
        ns.verb = Some("get".into());
        ns.group = Some(String::new());
        ns.resource = Some("namespaces".into());
        ns.name = Some("kargo".into());
        assert_eq!(
            request_of(&ns).unwrap(),
            Some(req("get", "", "namespaces", "kargo", "kargo"))
        );
        // Discovery is non-resource; control endpoints are left out; a
        // resource path without attributes cannot be checked.
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/g",
            "/apis/g/v1",
            "/version",
        ] {
            assert_eq!(
                request_of(&recorded("GET", path)).unwrap(),
                Some(non_resource(path)),
                "{path}"
            );
        }
        assert_eq!(
            request_of(&recorded("DELETE", "/_emulator/requests")).unwrap(),
            None
        );
        for path in ["/api/v1/things", "/apis/g/v1/things/x"] {
            let err = request_of(&recorded("GET", path)).unwrap_err();
            assert!(
                matches!(err, RbacError::Unclassified { .. }),
                "{path}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn the_emulator_s_records_read_back_from_their_json() {
        // The harness writes kube_emulator::RequestRecord as JSON and the
        // check reads it back into the same type: what RBAC needs survives.
        crate::init();
        let emulator = kube_emulator::Emulator::start(kube_emulator::EmulatorOptions::default())
            .await
            .unwrap();
        let client = crate::client_for(&emulator).await;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(client, "default");
        let _ = secrets.get_opt("s").await.unwrap();
        let records = emulator.requests();
        let record = records
            .iter()
            .find(|r| r.resource.as_deref() == Some("secrets"))
            .expect("the Secret request is logged");
        let json = serde_json::to_value(record).unwrap();
        let back: RequestRecord = serde_json::from_value(json).unwrap();
        assert_eq!(
            request_of(&back).unwrap(),
            request_of(record).unwrap(),
            "{back:?}"
        );
        assert_eq!(
            request_of(&back).unwrap(),
            Some(req("get", "", "secrets", "default", "s"))
        );
    }
}
