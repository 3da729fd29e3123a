//! Discovery documents: `/version`, `/api`, `/apis`, per group-version resource lists,
//! aggregated discovery (`apidiscovery.k8s.io/v2`) and a minimal OpenAPI v2 document.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::resources::ResourceType;

/// The Kubernetes version reported by `/version`. `/usr/bin/kubectl` on the dev machines
/// is a dispatcher that runs the bundled kubectl of the server's minor version; 1.32 is
/// bundled.
pub const GIT_VERSION: &str = "v1.32.4";

/// Content type of aggregated discovery v2 responses.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Content type of the protobuf OpenAPI v2 document.
pub const OPENAPI_V2_PROTO: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
        "emulator": "kube-emulator"
    })
}

/// Whether an Accept header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// `/api`.
pub fn api_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
    })
}

/// Groups (other than core) with their versions, in registration order.
fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let vs = out.entry(t.group.clone()).or_default();
        if !vs.contains(&t.version) {
            vs.push(t.version.clone());
        }
    }
    out
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(json!({})),
    })
}

/// `/apis`.
pub fn api_group_list(types: &[ResourceType]) -> Value {
    let gs: Vec<Value> = groups(types)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/<group>`.
pub fn api_group(types: &[ResourceType], group: &str) -> Option<Value> {
    let gs = groups(types);
    let vs = gs.get(group)?;
    let mut g = group_json(group, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let ts: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if ts.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in ts {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let rk = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let mut r = json!({
        "resource": t.plural,
        "responseKind": rk,
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    if t.status_subresource {
        r["subresources"] = json!([{
            "subresource": "status",
            "responseKind": rk,
            "verbs": ["get", "patch", "update"],
        }]);
    }
    r
}

/// Aggregated discovery (`APIGroupDiscoveryList`, v2) for `/api` (core) or `/apis`.
pub fn aggregated(types: &[ResourceType], core: bool) -> Value {
    let mut items = Vec::new();
    if core {
        let rs: Vec<Value> = types
            .iter()
            .filter(|t| t.group.is_empty())
            .map(aggregated_resource)
            .collect();
        items.push(json!({
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "resources": rs, "freshness": "Current"}],
        }));
    } else {
        for (g, vs) in groups(types) {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let rs: Vec<Value> = types
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": rs, "freshness": "Current"})
                })
                .collect();
            items.push(json!({
                "metadata": {"name": g, "creationTimestamp": null},
                "versions": versions,
            }));
        }
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// A minimal Swagger 2.0 document as JSON (no definitions: clients skip client-side
/// validation for types it does not describe).
pub fn openapi_v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": {},
        "definitions": {},
    })
}
