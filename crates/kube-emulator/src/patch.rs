//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), an approximation
//! of strategic merge patch, and the merge used for server-side apply.

use serde_json::{Map, Value};

/// Apply an RFC 7386 JSON merge patch to `target` in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Approximate strategic merge patch: directives (`$patch`, `$retainKeys`,
/// `$setElementOrder/...`, `$deleteFromPrimitiveList/...`) are interpreted minimally
/// and the rest is applied as a JSON merge patch (lists are replaced, not merged by key).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let mut p = patch.clone();
    strip_directives(&mut p);
    merge_patch(target, &p);
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for (_, x) in m.iter_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {p:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn get_at<'a>(v: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(v: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path component {t:?} not found"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("invalid index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("index {i} out of range"))?
            }
            _ => return Err(format!("cannot traverse into scalar at {t:?}")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, toks: &[String], val: Value) -> Result<(), String> {
    let Some((last, parent)) = toks.split_last() else {
        *doc = val;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), val);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(val);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i > a.len() {
                return Err(format!("index {i} out of range"));
            }
            a.insert(i, val);
            Ok(())
        }
        _ => Err("cannot add to a scalar".into()),
    }
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, String> {
    let (last, parent) = toks
        .split_last()
        .ok_or_else(|| "cannot remove the whole document".to_string())?;
    match parent_mut(doc, parent)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {last:?} not found")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err("cannot remove from a scalar".into()),
    }
}

/// Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or_else(|| "json patch must be an array of operations".to_string())?;
    let mut doc = target.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| "operation missing op field".to_string())?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| "operation missing path field".to_string())?;
        let toks = split_pointer(path)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {name} missing value field"))
        };
        let from = || -> Result<Vec<String>, String> {
            split_pointer(
                op.get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("operation {name} missing from field"))?,
            )
        };
        match name {
            "add" => add(&mut doc, &toks, value()?)?,
            "remove" => {
                remove(&mut doc, &toks)?;
            }
            "replace" => {
                if toks.is_empty() {
                    doc = value()?;
                } else {
                    let v = value()?;
                    let slot = parent_mut(&mut doc, &toks).map_err(|_| {
                        format!("replace operation does not apply: doc is missing key: {path}")
                    })?;
                    *slot = v;
                }
            }
            "test" => {
                let v = value()?;
                let found = get_at(&doc, &toks);
                // As the API server's evanphx/json-patch: a missing member
                // of an existing object tests equal to null (kube-rs's
                // finalizer helper adds the first finalizer that way).
                let missing_is_null = found.is_none()
                    && v.is_null()
                    && toks
                        .split_last()
                        .is_some_and(|(_, parent)| get_at(&doc, parent).is_some());
                if found != Some(&v) && !missing_is_null {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "move" => {
                let f = from()?;
                let v = remove(&mut doc, &f)?;
                add(&mut doc, &toks, v)?;
            }
            "copy" => {
                let f = from()?;
                let v = get_at(&doc, &f)
                    .cloned()
                    .ok_or_else(|| format!("copy from path {f:?} not found"))?;
                add(&mut doc, &toks, v)?;
            }
            other => return Err(format!("unsupported json patch operation {other:?}")),
        }
    }
    Ok(doc)
}

/// A leaf field path used for server-side apply field ownership
/// (object keys joined with `.`; lists are treated as atomic leaves).
pub fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaf_paths(x, &format!("{prefix}.{k}"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Value at a leaf path produced by [`leaf_paths`].
pub fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for k in path.split('.').skip(1) {
        cur = cur.get(k)?;
    }
    Some(cur)
}

/// Remove the field at a leaf path (no-op when absent); empties parents are kept.
pub fn remove_path(v: &mut Value, path: &str) {
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
pub fn apply_merge(target: &mut Value, applied: &Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn a_missing_member_tests_equal_to_null_as_on_a_real_api_server() {
        let doc = json!({"metadata": {"name": "x"}});
        let ops = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        assert_eq!(
            json_patch(&doc, &ops).unwrap(),
            json!({"metadata": {"name": "x", "finalizers": ["f"]}})
        );
        // Not when the member's parent is missing too, nor for another value.
        assert!(json_patch(
            &doc,
            &json!([{"op": "test", "path": "/spec/x", "value": null}])
        )
        .is_err());
        assert!(json_patch(
            &doc,
            &json!([{"op": "test", "path": "/metadata/f", "value": []}])
        )
        .is_err());
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": {"b": [1, 2]}, "x": 1});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "test", "path": "/x", "value": 1},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "add", "path": "/a/b/0", "value": 0},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "replace", "path": "/x", "value": 2},
                {"op": "copy", "from": "/x", "path": "/y"},
                {"op": "move", "from": "/y", "path": "/a~1b"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": [0, 2, 3]}, "x": 2, "a/b": 2}));
        assert!(json_patch(&doc, &json!([{"op": "test", "path": "/x", "value": 5}])).is_err());
        assert!(json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/nope", "value": 5}])
        )
        .is_err());
    }

    #[test]
    fn smp_strips_directives() {
        let mut t = json!({"metadata": {"finalizers": ["a"]}});
        strategic_merge_patch(
            &mut t,
            &json!({"metadata": {"$setElementOrder/finalizers": ["a"], "labels": {"x": "y"}}}),
        );
        assert_eq!(
            t,
            json!({"metadata": {"finalizers": ["a"], "labels": {"x": "y"}}})
        );
    }
}
