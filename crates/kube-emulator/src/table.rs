//! Server-side `Table` output for `kubectl get` (`Accept: application/json;as=Table;...`):
//! a Name column, the CRD's `additionalPrinterColumns` (a small JSONPath subset), or a
//! few kind-specific columns for built-ins.

use serde_json::{json, Value};

use crate::resources::ResourceType;

/// Evaluate a kubectl-style JSONPath subset: `.a.b`, `[N]`, `[*]`,
/// `[?(@.k=="v")]` / `[?(@.k!="v")]`. Returns all matches.
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = vec![obj.clone()];
    let mut rest = p.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return vec![];
            };
            // A filter may contain ']' only inside quotes; Kargo's do not.
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.iter().filter_map(|v| v.get(i).cloned()).collect();
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, neg, want) = match f.split_once("!=") {
                    Some((k, w)) => (k, true, w),
                    None => match f.split_once("==") {
                        Some((k, w)) => (k, false, w),
                        None => return vec![],
                    },
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                let k = k.trim();
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|e| {
                        let got = crate::object::dotted(e, k).and_then(Value::as_str);
                        (got == Some(want)) != neg
                    })
                    .collect();
            } else {
                return vec![];
            }
        } else {
            return vec![];
        }
    }
    cur
}

/// kubectl's human-readable duration (`5s`, `3m2s`, `4h`, `2d`).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(ts: Option<&str>) -> String {
    ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn cell(v: Option<&Value>, ty: &str) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if ty == "date" => json!(age(Some(s))),
        Some(Value::String(s)) => json!(s),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(v) => json!(v.to_string()),
    }
}

/// Render objects as a `meta.k8s.io/v1` `Table`.
pub fn table(rt: &ResourceType, items: &[Value], rv: &str) -> Value {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    type Getter = Box<dyn Fn(&Value) -> Value>;
    let mut getters: Vec<Getter> = vec![Box::new(|o: &Value| {
        json!(o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""))
    })];
    let col = |name: &str, ty: &str| json!({"name": name, "type": ty, "format": "", "description": "", "priority": 0});
    if rt.custom && !rt.printer_columns.is_empty() {
        for pc in &rt.printer_columns {
            let name = pc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ty = pc
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string")
                .to_string();
            let path = pc
                .get("jsonPath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut c = col(&name, &ty);
            if let Some(p) = pc.get("priority") {
                c["priority"] = p.clone();
            }
            if let Some(d) = pc.get("description") {
                c["description"] = d.clone();
            }
            cols.push(c);
            getters.push(Box::new(move |o: &Value| {
                cell(jsonpath(o, &path).first(), &ty)
            }));
        }
    } else {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                cols.push(col("Status", "string"));
                getters.push(Box::new(|o: &Value| {
                    cell(o.pointer("/status/phase"), "string")
                }));
            }
            ("", "secrets") => {
                cols.push(col("Type", "string"));
                getters.push(Box::new(|o: &Value| cell(o.get("type"), "string")));
                cols.push(col("Data", "string"));
                getters.push(Box::new(|o: &Value| {
                    json!(o
                        .get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len()))
                }));
            }
            ("", "configmaps") => {
                cols.push(col("Data", "string"));
                getters.push(Box::new(|o: &Value| {
                    let n = o
                        .get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                        + o.get("binaryData")
                            .and_then(Value::as_object)
                            .map_or(0, |m| m.len());
                    json!(n)
                }));
            }
            ("coordination.k8s.io", "leases") => {
                cols.push(col("Holder", "string"));
                getters.push(Box::new(|o: &Value| {
                    cell(o.pointer("/spec/holderIdentity"), "string")
                }));
            }
            _ => {}
        }
        cols.push(col("Age", "date"));
        getters.push(Box::new(|o: &Value| {
            json!(age(o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)))
        }));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = getters.iter().map(|g| g(o)).collect();
            json!({"cells": cells, "object": crate::server::to_partial(o)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": cols,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filter() {
        let o = json!({"status": {"conditions": [
            {"type": "Reconciling", "status": "False"},
            {"type": "Ready", "status": "True", "message": "ok"}]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[0].type"),
            vec![json!("Reconciling")]
        );
        assert_eq!(jsonpath(&o, ".status.conditions[*].type").len(), 2);
        assert!(jsonpath(&o, ".nope").is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
