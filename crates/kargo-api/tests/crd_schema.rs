//! Our objects against Kargo's real CRDs (../shared/reference/kargo-crds) and
//! against the CRDs generated from our types.
//!
//! A real API server prunes undeclared fields silently and rejects objects
//! that break the schema (422), so both are checked with the same schema
//! code the kube-emulator uses on every write.

use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kargo_api::*;
use kube::api::ObjectMeta;
use serde_json::{json, Value};

fn kargo_crd(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/kargo-crds")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_yaml::from_str(&text).unwrap()
}

fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

fn generated_crd(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(crd).unwrap()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time("2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap()),
        observed_generation: Some(3),
    }
}

fn status() -> ConfigStatus {
    ConfigStatus {
        conditions: vec![
            condition("Ready", "True", "Synced", "1 Harbor receiver ready; skipped github receiver \"gh\""),
            condition("Reconciling", "False", "Synced", ""),
        ],
        observed_generation: Some(3),
        last_handled_refresh: Some("2026-11-29T03:00:00.123456Z".into()),
        webhook_receivers: vec![WebhookReceiverDetails {
            name: "harbor-wh-receiver".into(),
            path: "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec".into(),
            url: "https://webhooks.example.com/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec".into(),
        }],
    }
}

fn receivers() -> Vec<WebhookReceiverConfig> {
    serde_json::from_value(json!([
        {"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "harbor-wh-secret"}}},
        {"name": "gh", "github": {"secretRef": {"name": "gh-secret"}}}
    ]))
    .unwrap()
}

fn project_config() -> Value {
    let mut pc = ProjectConfig::new(
        "kargo-demo",
        ProjectConfigSpec {
            webhook_receivers: receivers(),
        },
    );
    pc.metadata = ObjectMeta {
        name: Some("kargo-demo".into()),
        namespace: Some("kargo-demo".into()),
        ..Default::default()
    };
    pc.status = Some(status());
    serde_json::to_value(pc).unwrap()
}

fn cluster_config() -> Value {
    let mut cc = ClusterConfig::new(
        CLUSTER_CONFIG_NAME,
        ClusterConfigSpec {
            webhook_receivers: receivers(),
        },
    );
    cc.status = Some(status());
    serde_json::to_value(cc).unwrap()
}

fn warehouse() -> Value {
    let spec: WarehouseSpec = serde_json::from_value(json!({
        "interval": "5m0s",
        "subscriptions": [
            {"image": {"repoURL": "harbor.example.com/library/app", "constraint": "^1.0.0",
                       "imageSelectionStrategy": "SemVer", "strictSemvers": true,
                       "allowTagsRegexes": ["^1\\."], "ignoreTagsRegexes": ["-rc"]}},
            {"chart": {"repoURL": "oci://harbor.example.com/charts/my-chart", "semverConstraint": ">=1.4.0"}},
            {"git": {"repoURL": "https://github.com/example/app.git"}},
        ]
    }))
    .unwrap();
    let mut w = Warehouse::new("app", spec);
    w.metadata.namespace = Some("kargo-demo".into());
    serde_json::to_value(w).unwrap()
}

fn objects() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("projectconfigs.yaml", "ProjectConfig", project_config()),
        ("clusterconfigs.yaml", "ClusterConfig", cluster_config()),
        ("warehouses.yaml", "Warehouse", warehouse()),
    ]
}

#[test]
fn our_objects_validate_against_kargos_crds() {
    for (file, kind, obj) in objects() {
        let crd = kargo_crd(file);
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        kube_emulator::schema::validate(schema_of(&crd), &obj)
            .unwrap_or_else(|errs| panic!("{kind} invalid against Kargo's CRD: {errs:?}"));
    }
}

#[test]
fn nothing_we_write_is_pruned_by_kargos_crds() {
    for (file, kind, obj) in objects() {
        let crd = kargo_crd(file);
        let mut pruned = obj.clone();
        kube_emulator::schema::prune(schema_of(&crd), &mut pruned);
        assert_eq!(
            pruned, obj,
            "{kind}: Kargo's CRD prunes part of what we write"
        );
    }
}

#[test]
fn an_undeclared_status_field_would_be_pruned() {
    // Guards the test above: pruning is really applied to status.
    let crd = kargo_crd("projectconfigs.yaml");
    let mut obj = project_config();
    obj["status"]["receiverCount"] = json!(1);
    kube_emulator::schema::prune(schema_of(&crd), &mut obj);
    assert_eq!(obj, project_config());
}

#[test]
fn conditions_missing_required_fields_are_rejected_by_kargos_crd() {
    let crd = kargo_crd("projectconfigs.yaml");
    for field in ["reason", "message", "lastTransitionTime", "type", "status"] {
        let mut obj = project_config();
        obj["status"]["conditions"][0]
            .as_object_mut()
            .unwrap()
            .remove(field);
        assert!(
            kube_emulator::schema::validate(schema_of(&crd), &obj).is_err(),
            "a condition without {field} must be rejected"
        );
    }
    let mut obj = project_config();
    obj["status"]["conditions"][0]["reason"] = json!("");
    assert!(kube_emulator::schema::validate(schema_of(&crd), &obj).is_err());
}

#[test]
fn generated_crds_accept_the_same_objects_and_keep_them_whole() {
    for (file, kind, obj) in objects() {
        let ours = generated_crd(kind);
        let kargo = kargo_crd(file);
        assert_eq!(
            ours["spec"]["scope"], kargo["spec"]["scope"],
            "{kind} scope"
        );
        assert_eq!(
            ours["spec"]["names"]["plural"],
            kargo["spec"]["names"]["plural"]
        );
        assert_eq!(
            ours["spec"]["versions"][0]["subresources"],
            kargo["spec"]["versions"][0]["subresources"],
            "{kind} subresources"
        );
        kube_emulator::schema::validate(schema_of(&ours), &obj)
            .unwrap_or_else(|errs| panic!("{kind} invalid against our CRD: {errs:?}"));
        let mut pruned = obj.clone();
        kube_emulator::schema::prune(schema_of(&ours), &mut pruned);
        assert_eq!(pruned, obj, "{kind}: our CRD prunes part of it");
    }
}

#[test]
fn generated_crds_keep_kargo_fields_we_do_not_model() {
    // Clusters without Kargo use our CRDs; spec fields we do not read must survive.
    let mut pc = project_config();
    pc["spec"]["promotionPolicies"] = json!([{"stage": "test", "autoPromotionEnabled": true}]);
    let mut pruned = pc.clone();
    kube_emulator::schema::prune(schema_of(&generated_crd("ProjectConfig")), &mut pruned);
    assert_eq!(pruned, pc);
    kube_emulator::schema::validate(schema_of(&kargo_crd("projectconfigs.yaml")), &pc).unwrap();
}

#[test]
fn kargo_objects_decode_into_our_types() {
    // A ProjectConfig as Kargo's docs write it, with fields we do not model.
    let pc: ProjectConfig = serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": "kargo-demo", "namespace": "kargo-demo"},
        "spec": {
            "promotionPolicies": [{"stage": "test", "autoPromotionEnabled": true}],
            "webhookReceivers": [
                {"name": "harbor-wh-receiver", "harbor": {"secretRef": {"name": "harbor-wh-secret"}}},
                {"name": "gh", "github": {"secretRef": {"name": "gh"}}}
            ]
        },
        "status": {"conditions": [], "somethingNew": 1}
    }))
    .unwrap();
    assert!(matches!(pc.spec.webhook_receivers[0].kind(),
        ReceiverKind::Harbor(h) if h.secret_ref.name == "harbor-wh-secret"));
    assert_eq!(
        pc.spec.webhook_receivers[1].kind(),
        ReceiverKind::Other("github")
    );
}
