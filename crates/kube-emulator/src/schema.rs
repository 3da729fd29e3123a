//! Structural-schema handling for custom resources, following the rules of the real
//! API server for an `openAPIV3Schema`:
//!
//! - [`prune`] drops fields not declared in the schema (and `null`s for non-nullable fields),
//! - [`apply_defaults`] fills in `default` values,
//! - [`validate`] checks the object and returns field errors in the API server's wording.
//!
//! At the root, `apiVersion`, `kind` and `metadata` are always kept (as the API server does),
//! and `metadata` is not validated against the schema. CEL rules
//! (`x-kubernetes-validations`), `uniqueItems` and list-type uniqueness are not checked.
//!
//! ```
//! use serde_json::json;
//! let schema = json!({"type": "object", "properties": {
//!     "spec": {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}}});
//! let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
//!                      "spec": {"a": "b", "junk": 1}, "extra": true});
//! kube_emulator::schema::prune(&schema, &mut obj);
//! assert_eq!(obj["spec"], json!({"a": "b"}));
//! assert!(obj.get("extra").is_none());
//! assert!(kube_emulator::schema::validate(&schema, &obj).is_ok());
//! assert!(kube_emulator::schema::validate(&schema, &json!({"spec": {}})).is_err());
//! ```

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

const ROOT_KEEP: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Prune `obj` in place against a structural `openAPIV3Schema` (the schema of the whole
/// object). Fields not declared in `properties` are dropped unless the schema (at that
/// level) has `x-kubernetes-preserve-unknown-fields: true` or an `additionalProperties`
/// schema; `null` values are dropped where the field is not `nullable`. At the root,
/// `apiVersion`, `kind` and `metadata` are kept; `x-kubernetes-embedded-resource` objects
/// keep theirs too.
pub fn prune(schema: &Value, obj: &mut Value) {
    prune_at(schema, obj, true);
}

fn prune_at(schema: &Value, obj: &mut Value, keep_meta: bool) {
    match obj {
        Value::Object(m) => {
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = is_true(schema, "x-kubernetes-embedded-resource");
            let props = schema.get("properties").and_then(Value::as_object);
            let addl = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if (keep_meta || embedded) && ROOT_KEEP.contains(&k.as_str()) {
                    if let (Some(p), Some(v)) = (props.and_then(|p| p.get(&k)), m.get_mut(&k)) {
                        if k != "metadata" {
                            prune_at(p, v, false);
                        }
                    }
                    continue;
                }
                let sub = props
                    .and_then(|p| p.get(&k))
                    .or(addl.filter(|a| a.is_object()));
                match sub {
                    Some(s) => {
                        let drop_null =
                            m.get(&k).is_some_and(Value::is_null) && !is_true(s, "nullable");
                        if drop_null {
                            m.remove(&k);
                        } else if let Some(v) = m.get_mut(&k) {
                            prune_at(s, v, false);
                        }
                    }
                    None => {
                        let allowed = preserve || addl.and_then(Value::as_bool) == Some(true);
                        if !allowed {
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for v in a.iter_mut() {
                    prune_at(items, v, false);
                }
            }
        }
        _ => {}
    }
}

/// Fill in `default` values for absent properties of objects present in `obj`
/// (as the API server does when reading and writing custom resources).
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(s, v);
                    }
                }
            }
            if let Some(addl) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let declared = schema.get("properties").and_then(Value::as_object);
                for (k, v) in m.iter_mut() {
                    if declared.is_none_or(|d| !d.contains_key(k)) {
                        apply_defaults(addl, v);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                a.iter_mut().for_each(|v| apply_defaults(items, v));
            }
        }
        _ => {}
    }
}

/// Validate `obj` against an `openAPIV3Schema`. Returns the list of field errors, each
/// formatted like the API server's (`spec.x: Required value`,
/// `status.conditions[0].reason: Invalid value: "": ... should match '...'`).
///
/// Checked: `type` (incl. `x-kubernetes-int-or-string`, `nullable`), `required`,
/// `enum`, `pattern`, `minLength`/`maxLength`, `minimum`/`maximum` (and exclusive),
/// `format: date-time`, `items`, `minItems`/`maxItems`, `minProperties`/`maxProperties`,
/// `properties`, `additionalProperties`, `oneOf`/`anyOf`/`allOf`/`not`.
/// The root `metadata` is not validated.
pub fn validate(schema: &Value, obj: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    check(schema, obj, "", true, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

static REGEXES: LazyLock<Mutex<HashMap<String, Option<regex::Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn pattern_matches(pat: &str, s: &str) -> bool {
    let mut cache = crate::lock(&REGEXES);
    let re = cache
        .entry(pat.to_string())
        .or_insert_with(|| regex::Regex::new(pat).ok());
    // An uncompilable pattern is not held against the object.
    re.as_ref().is_none_or(|r| r.is_match(s))
}

fn check(schema: &Value, v: &Value, path: &str, root: bool, errs: &mut Vec<String>) {
    let p = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if is_true(schema, "nullable") {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            errs.push(format!(
                "{p}: Invalid value: \"null\": {p} in body must be of type {t}: \"null\""
            ));
        }
        return;
    }
    let int_or_string = is_true(schema, "x-kubernetes-int-or-string");
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            errs.push(format!(
                "{p}: Invalid value: \"{}\": {p} in body must be of type integer,string: \"{}\"",
                type_name(v),
                type_name(v)
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = t == actual || (t == "number" && actual == "integer");
        if !ok {
            errs.push(format!(
                "{p}: Invalid value: \"{actual}\": {p} in body must be of type {t}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array) {
        if !en.contains(v) {
            let allowed: Vec<String> = en.iter().map(show).collect();
            errs.push(format!(
                "{p}: Unsupported value: {}: supported values: {}",
                show(v),
                allowed.join(", ")
            ));
        }
    }
    match v {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if n > max {
                    errs.push(format!("{p}: Too long: may not be more than {max} bytes"));
                }
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if n < min {
                    errs.push(format!(
                        "{p}: Invalid value: {}: {p} in body should be at least {min} chars long",
                        show(v)
                    ));
                }
            }
            if let Some(pat) = schema.get("pattern").and_then(Value::as_str) {
                if !pattern_matches(pat, s) {
                    errs.push(format!(
                        "{p}: Invalid value: {}: {p} in body should match '{pat}'",
                        show(v)
                    ));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(s).is_err()
            {
                errs.push(format!(
                    "{p}: Invalid value: {}: {p} in body must be of type date-time: {}",
                    show(v),
                    show(v)
                ));
            }
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                    let excl = is_true(schema, "exclusiveMinimum");
                    if x < min || (excl && x == min) {
                        let op = if excl {
                            "greater than"
                        } else {
                            "greater than or equal to"
                        };
                        errs.push(format!(
                            "{p}: Invalid value: {n}: {p} in body should be {op} {min}"
                        ));
                    }
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                    let excl = is_true(schema, "exclusiveMaximum");
                    if x > max || (excl && x == max) {
                        let op = if excl {
                            "less than"
                        } else {
                            "less than or equal to"
                        };
                        errs.push(format!(
                            "{p}: Invalid value: {n}: {p} in body should be {op} {max}"
                        ));
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if a.len() as u64 > max {
                    errs.push(format!(
                        "{p}: Too many: {}: must have at most {max} items",
                        a.len()
                    ));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (a.len() as u64) < min {
                    errs.push(format!(
                        "{p}: Invalid value: {}: {p} in body should have at least {min} items",
                        a.len()
                    ));
                }
            }
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    check(items, x, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        Value::Object(m) => check_object(schema, m, path, root, errs),
        _ => {}
    }
    check_combinators(schema, v, path, root, errs);
}

fn check_object(
    schema: &Value,
    m: &Map<String, Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<String>,
) {
    let p = if path.is_empty() { "<root>" } else { path };
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if root && ROOT_KEEP.contains(&r) {
                continue;
            }
            if !m.contains_key(r) {
                errs.push(format!("{}: Required value", join(path, r)));
            }
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if m.len() as u64 > max {
            errs.push(format!(
                "{p}: Too many: {}: must have at most {max} items",
                m.len()
            ));
        }
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if (m.len() as u64) < min {
            errs.push(format!(
                "{p}: Invalid value: {}: {p} in body should have at least {min} properties",
                m.len()
            ));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let addl = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, x) in m {
        if root && k == "metadata" {
            continue;
        }
        if let Some(s) = props.and_then(|ps| ps.get(k)).or(addl) {
            check(s, x, &join(path, k), false, errs);
        }
    }
}

fn check_combinators(schema: &Value, v: &Value, path: &str, root: bool, errs: &mut Vec<String>) {
    let p = if path.is_empty() { "<root>" } else { path };
    let passes = |s: &Value| {
        let mut e = Vec::new();
        check(s, v, path, root, &mut e);
        e.is_empty()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(s, v, path, root, errs);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(passes) {
            errs.push(format!(
                "{p}: Invalid value: {}: {p} in body must match at least one schema in anyOf",
                truncate(v)
            ));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|s| passes(s)).count();
        if n != 1 {
            errs.push(format!(
                "{p}: Invalid value: {}: {p} in body must match exactly one schema in oneOf",
                truncate(v)
            ));
        }
    }
    if let Some(not) = schema.get("not") {
        if passes(not) {
            errs.push(format!(
                "{p}: Invalid value: {}: {p} in body must not match the schema in not",
                truncate(v)
            ));
        }
    }
}

fn truncate(v: &Value) -> String {
    let s = show(v);
    if s.len() > 80 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// The `openAPIV3Schema` of `version` in a CRD object (`None` when absent).
///
/// ```
/// let text = std::fs::read_to_string(kube_emulator::kargo_crd_dir().join("projectconfigs.yaml")).unwrap();
/// let crd: serde_json::Value = serde_yaml::from_str(&text).unwrap();
/// assert!(kube_emulator::schema::crd_schema(&crd, "v1alpha1").is_some());
/// ```
pub fn crd_schema<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_nested_and_preserve() {
        let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "l": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "empty": {"type": "object"}
        }}}});
        let mut o = json!({"kind": "K", "spec": {
            "raw": {"x": {"y": 1}}, "m": {"k": "v"}, "l": [{"a": "1", "b": 2}],
            "empty": {"gone": 1}, "nope": null}});
        prune(&schema, &mut o);
        assert_eq!(
            o,
            json!({"kind": "K", "spec": {
            "raw": {"x": {"y": 1}}, "m": {"k": "v"}, "l": [{"a": "1"}], "empty": {}}})
        );
    }

    #[test]
    fn validate_basics() {
        let schema = json!({"type": "object", "properties": {"s": {"type": "object",
        "required": ["r"],
        "properties": {
            "r": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
            "n": {"type": "integer", "minimum": 1, "maximum": 3},
            "e": {"type": "string", "enum": ["A", "B"]},
            "t": {"type": "string", "format": "date-time"},
            "io": {"x-kubernetes-int-or-string": true},
            "l": {"type": "array", "maxItems": 1, "items": {"type": "string"}}
        }}}});
        assert!(validate(
            &schema,
            &json!({"s": {"r": "ab", "n": 2, "e": "A",
            "t": "2024-01-01T00:00:00Z", "io": "50%", "l": ["x"]}})
        )
        .is_ok());
        let errs = validate(
            &schema,
            &json!({"s": {"n": 9, "e": "C", "t": "yesterday",
            "io": true, "l": ["x", "y"]}}),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(errs.iter().any(|e| e == "s.r: Required value"));
        let errs = validate(&schema, &json!({"s": {"r": ""}})).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn defaults() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string", "default": "x"},
                           "l": {"type": "array", "items": {"type": "object",
                                 "properties": {"b": {"type": "integer", "default": 3}}}}}}}});
        let mut o = json!({"spec": {"l": [{}]}});
        apply_defaults(&schema, &mut o);
        assert_eq!(o, json!({"spec": {"a": "x", "l": [{"b": 3}]}}));
    }
}
