//! Patch formats: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), both by the
//! `json-patch` crate, and an approximation of strategic merge patch. (Server-side
//! apply is the store's: it needs field ownership.)

use serde_json::Value;

/// The content types accepted by PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json` (approximated as a merge patch)
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply, approximated)
    Apply,
}

impl PatchType {
    /// Parse a Content-Type header.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let mime = ct.split(';').next().unwrap_or("").trim();
        match mime {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Why a JSON patch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum JsonPatchError {
    /// The body is not an array of RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    Decode(#[from] serde_json::Error),
    /// An operation failed (a `test` did not match, a path does not exist, ...).
    #[error(transparent)]
    Apply(#[from] json_patch::PatchError),
}

/// Apply an RFC 7386 JSON merge patch to `target` in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test) to a copy of
/// `target`.
pub fn json_patch(target: &Value, ops: Value) -> Result<Value, JsonPatchError> {
    let ops: json_patch::Patch = serde_json::from_value(ops)?;
    let mut doc = target.clone();
    // The copy is thrown away on failure, so the crate need not undo partial changes.
    for op in &ops.0 {
        if missing_member_tested_null(&doc, op) {
            continue;
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op))?;
    }
    Ok(doc)
}

/// Whether `op` tests a member that `doc` lacks (in an object it has)
/// against `null`: the API server's evanphx/json-patch passes that test,
/// the `json-patch` crate fails it. kube-rs's finalizer helper adds the
/// first finalizer with `test /metadata/finalizers == null` and `add`.
fn missing_member_tested_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    let json_patch::PatchOperation::Test(test) = op else {
        return false;
    };
    let path = test.path.as_str();
    let parent_is_object = path
        .rsplit_once('/')
        .and_then(|(parent, _)| doc.pointer(parent))
        .is_some_and(Value::is_object);
    test.value.is_null() && doc.pointer(path).is_none() && parent_is_object
}

/// Approximate strategic merge patch: directives (`$patch`, `$retainKeys`,
/// `$setElementOrder/...`, `$deleteFromPrimitiveList/...`) are dropped and the rest is
/// applied as a JSON merge patch (lists are replaced, not merged by key).
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
            json_patch(&doc, ops).unwrap(),
            json!({"metadata": {"name": "x", "finalizers": ["f"]}})
        );
        // Not when the member's parent is missing too, nor for another value.
        let missing_parent = json!([{"op": "test", "path": "/spec/x", "value": null}]);
        assert!(json_patch(&doc, missing_parent).is_err());
        let other_value = json!([{"op": "test", "path": "/metadata/f", "value": []}]);
        assert!(json_patch(&doc, other_value).is_err());
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": {"b": [1, 2]}, "x": 1});
        let out = json_patch(
            &doc,
            json!([
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
        assert!(json_patch(&doc, json!([{"op": "test", "path": "/x", "value": 5}])).is_err());
        assert!(json_patch(
            &doc,
            json!([{"op": "replace", "path": "/nope", "value": 5}])
        )
        .is_err());
        assert!(matches!(
            json_patch(&doc, json!({"op": "add"})),
            Err(JsonPatchError::Decode(_))
        ));
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
