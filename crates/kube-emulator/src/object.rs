//! Reading and writing parts of a JSON object: metadata fields, dotted paths, and the
//! values the server fills in (timestamps, generated names).

use serde_json::Value;

/// Current time as RFC 3339 with second precision, like Kubernetes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random suffix for `generateName`, from the same alphabet Kubernetes uses.
pub fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let u = uuid::Uuid::new_v4();
    u.as_bytes()[..5]
        .iter()
        .map(|b| ALPHA[*b as usize % ALPHA.len()] as char)
        .collect()
}

/// Borrow `obj.metadata` as a mutable map, creating it if needed.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Default::default());
    }
    let Value::Object(m) = obj else {
        unreachable!("just made an object")
    };
    let md = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !md.is_object() {
        *md = Value::Object(Default::default());
    }
    match md {
        Value::Object(x) => x,
        _ => unreachable!("just made an object"),
    }
}

/// `obj.metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Look up a dotted path (`metadata.name`, `spec.x`) in a JSON value.
pub fn dotted<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    Some(cur)
}
