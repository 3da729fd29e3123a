//! `kube_emulator::schema` against Kargo's real CRD schemas.

use kube_emulator::schema::{apply_defaults, crd_schema, prune, validate};
use serde_json::{json, Value};

fn schema(file: &str) -> Value {
    let text = std::fs::read_to_string(kube_emulator::kargo_crd_dir().join(file)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    crd_schema(&crd, "v1alpha1").unwrap().clone()
}

fn ready(reason: Value) -> Value {
    let mut c = json!({"type": "Ready", "status": "True", "message": "Synced",
                       "lastTransitionTime": "2025-06-01T12:00:00Z"});
    if !reason.is_null() {
        c["reason"] = reason;
    }
    c
}

fn project_config(status: Value) -> Value {
    json!({
        "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": "kargo-demo", "namespace": "kargo-demo", "annotations": {"a": "b"}},
        "spec": {"webhookReceivers": [{"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "s"}}}]},
        "status": status,
    })
}

#[test]
fn project_config_undeclared_status_field_is_pruned() {
    let s = schema("projectconfigs.yaml");
    let mut o = project_config(json!({
        "conditions": [ready(json!("Synced"))],
        "webhookReceivers": [{"name": "r", "path": "/harbor/x", "url": "https://h/harbor/x", "extra": 1}],
        "observedGeneration": 1,
        "lastHandledRefresh": "2025-06-01T12:00:00Z",
        "notInKargo": {"x": 1},
    }));
    prune(&s, &mut o);
    assert!(o["status"].get("notInKargo").is_none());
    assert!(o["status"]["webhookReceivers"][0].get("extra").is_none());
    assert_eq!(
        o["status"]["webhookReceivers"][0]["url"],
        "https://h/harbor/x"
    );
    assert_eq!(o["status"]["observedGeneration"], 1);
    assert_eq!(o["metadata"]["annotations"]["a"], "b", "metadata is kept");
    validate(&s, &o).unwrap();
}

#[test]
fn project_config_condition_requirements() {
    let s = schema("projectconfigs.yaml");
    for (cond, field) in [
        (ready(json!("")), "status.conditions[0].reason"),
        (ready(Value::Null), "status.conditions[0].reason"),
        (ready(json!("has space")), "status.conditions[0].reason"),
        (
            {
                let mut c = ready(json!("Synced"));
                c["lastTransitionTime"] = json!("now");
                c
            },
            "status.conditions[0].lastTransitionTime",
        ),
        (
            {
                let mut c = ready(json!("Synced"));
                c.as_object_mut().unwrap().remove("message");
                c
            },
            "status.conditions[0].message",
        ),
        (
            {
                let mut c = ready(json!("Synced"));
                c.as_object_mut().unwrap().remove("type");
                c
            },
            "status.conditions[0].type",
        ),
    ] {
        let errs = validate(&s, &project_config(json!({"conditions": [cond]}))).unwrap_err();
        assert!(
            errs.iter().any(|e| e.starts_with(field)),
            "{field}: {errs:?}"
        );
    }
    validate(
        &s,
        &project_config(json!({"conditions": [ready(json!("Synced")), ready(json!("A_b:c,d9"))]})),
    )
    .unwrap();
}

#[test]
fn warehouse_raw_subscriptions_survive_and_defaults_apply() {
    let s = schema("warehouses.yaml");
    let mut o = json!({
        "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": "w", "namespace": "p"},
        "spec": {"subscriptions": [
            {"image": {"repoURL": "ghcr.io/acme/app", "constraint": "^1.0.0", "allowTagsRegexes": ["^v"], "futureField": {"x": [1]}}},
            {"chart": {"repoURL": "oci://ghcr.io/acme/charts/app", "semverConstraint": ">=1"}}
        ], "bogus": true},
    });
    let before = o["spec"]["subscriptions"].clone();
    apply_defaults(&s, &mut o);
    prune(&s, &mut o);
    assert_eq!(
        o["spec"]["subscriptions"], before,
        "raw-JSON subscriptions are preserved as is"
    );
    assert!(o["spec"].get("bogus").is_none());
    assert_eq!(o["spec"]["interval"], "5m0s", "defaulted");
    validate(&s, &o).unwrap();
    let mut empty = o.clone();
    empty["spec"]["subscriptions"] = json!([]);
    let errs = validate(&s, &empty).unwrap_err();
    assert!(errs[0].starts_with("spec.subscriptions"), "{errs:?}");
}

#[test]
fn cluster_config_validates() {
    let s = schema("clusterconfigs.yaml");
    let o = json!({"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ClusterConfig",
        "metadata": {"name": "cluster"},
        "spec": {"webhookReceivers": [{"name": "h", "harbor": {"secretRef": {"name": "s"}}}]}});
    validate(&s, &o).unwrap();
    let bad = json!({"spec": {"webhookReceivers": [{"harbor": {"secretRef": {"name": "s"}}}]}});
    let errs = validate(&s, &bad).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e == "spec.webhookReceivers[0].name: Required value"),
        "{errs:?}"
    );
}
