//! What a write must pass before it is stored: the body's type, the namespace, the
//! name, kind-specific normalisation and defaults, and a CRD's structural schema.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use super::Store;
use crate::errors::{ApiError, ApiResult};
use crate::object::{meta_mut, meta_str};
use crate::resources::ResourceType;
use crate::schema;

/// The body must be an object of `rt`'s kind and apiVersion (either may be left out);
/// both are then set.
pub(super) fn check_type(rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
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

/// A name in the body must be the name on the URL.
pub(super) fn check_name_matches(obj: &Value, name: &str) -> ApiResult<()> {
    match meta_str(obj, "name").filter(|n| !n.is_empty()) {
        Some(n) if n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

/// A namespace in the body must be the namespace on the URL.
pub(super) fn check_namespace_matches(
    rt: &ResourceType,
    obj: &Value,
    url_ns: Option<&str>,
) -> ApiResult<()> {
    let body_ns = meta_str(obj, "namespace").filter(|n| !n.is_empty());
    match (rt.namespaced, body_ns, url_ns) {
        (true, Some(b), Some(u)) if b != u => Err(namespace_mismatch()),
        _ => Ok(()),
    }
}

fn namespace_mismatch() -> ApiError {
    ApiError::bad_request(
        "the namespace of the provided object does not match the namespace sent on the request",
    )
}

impl Store {
    /// The namespace a created object goes to (from the URL, else the body), which must
    /// exist; it is written into the object. Cluster-scoped objects lose any namespace.
    pub(super) fn resolve_ns(
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
            (Some(u), Some(b)) if !b.is_empty() && u != b => return Err(namespace_mismatch()),
            (Some(u), _) => u.to_string(),
            (None, Some(b)) if !b.is_empty() => b.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "the namespace of the object is required",
                ))
            }
        };
        if !self.namespace_exists(&ns) {
            return Err(ApiError::not_found("", "namespaces", &ns));
        }
        meta_mut(obj).insert("namespace".into(), json!(ns));
        Ok(ns)
    }
}

/// Kind-specific normalisation, defaulting, pruning and validation of an object about
/// to be stored (on every create and update).
pub(super) fn prepare(rt: &ResourceType, obj: &mut Value, name: &str) -> ApiResult<()> {
    let md = meta_mut(obj);
    md.remove("managedFields");
    md.remove("selfLink");
    let mut errs: Vec<String> = name_error(rt, name).into_iter().collect();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => default_secret(obj),
        ("", "namespaces") => default_namespace(obj),
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

/// The field error for a name `rt` does not accept, in the API server's words.
fn name_error(rt: &ResourceType, name: &str) -> Option<String> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        // RBAC objects may be named like `system:discovery` (ValidateRBACName).
        ("rbac.authorization.k8s.io", _) => (!valid_path_segment(name)).then(|| format!(
            "metadata.name: Invalid value: {name:?}: may not be '.' or '..' and may not contain '/' or '%'"
        )),
        ("", "services") => (!valid_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase())).then(|| format!(
            "metadata.name: Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
        )),
        ("", "namespaces") => (!valid_label(name)).then(|| rfc1123_error(name, "label")),
        _ => (!valid_subdomain(name)).then(|| rfc1123_error(name, "subdomain")),
    }
}

fn rfc1123_error(name: &str, what: &str) -> String {
    format!(
        "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 {what} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    )
}

/// `stringData` is folded into `data` (base64); the type defaults to `Opaque`.
fn default_secret(obj: &mut Value) {
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
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

/// A namespace is `Active` and has the `kubernetes` finalizer unless told otherwise.
fn default_namespace(obj: &mut Value) {
    if obj.pointer("/status/phase").is_none() {
        obj["status"] = json!({"phase": "Active"});
    }
    if obj.pointer("/spec/finalizers").is_none() {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
}

fn valid_label(s: &str) -> bool {
    s.len() <= 63 && valid_label_part(s)
}

fn valid_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

fn valid_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(valid_label_part)
}

fn valid_label_part(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !p.starts_with('-')
        && !p.ends_with('-')
}
