//! Tests of the Kargo management-controller double (`e2e::kargo`) against
//! kube-emulator with Kargo's real CRDs, without our program running. The
//! expected texts are Kargo's own (akuity/kargo 1c764767ae03), and paths are
//! computed here independently of the double.

use std::time::{Duration, Instant};

use e2e::kargo::{is_double_request, KargoDouble, KargoDoubleOptions, USER_AGENT};
use e2e::*;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(10);
const PROJECT: &str = "kargo-demo";
const TOKEN: &str = "test-auth-token-123";
/// DESIGN.md's vector: project `kargo-demo`, receiver `harbor-wh-receiver`,
/// auth header `test-auth-token-123`.
const VECTOR_PATH: &str =
    "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";
/// The quiet window of the steady-state test (the double requeues every second).
const QUIET_WINDOW: Duration = Duration::from_secs(4);

fn start_double(env: &Env, options: KargoDoubleOptions) -> KargoDouble {
    KargoDouble::start(env.client.clone(), options).unwrap_or_else(|e| panic!("double: {e}"))
}

/// `/<type>/hex(sha256(project + name + value))`, computed here.
fn receiver_path(type_: &str, project: &str, name: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("{project}{name}{value}").as_bytes());
    format!("/{type_}/{}", hex::encode(digest))
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", kind),
        plural,
    )
}

/// The ProjectConfig of `ns` (`None`: the ClusterConfig) as raw JSON.
async fn config(client: &Client, ns: Option<&str>) -> Option<DynamicObject> {
    let (api, name): (Api<DynamicObject>, &str) = match ns {
        Some(ns) => (
            Api::namespaced_with(
                client.clone(),
                ns,
                &resource("ProjectConfig", "projectconfigs"),
            ),
            ns,
        ),
        None => (
            Api::all_with(client.clone(), &resource("ClusterConfig", "clusterconfigs")),
            "cluster",
        ),
    };
    api.get_opt(name).await.ok().flatten()
}

fn status(obj: &DynamicObject) -> &Value {
    &obj.data["status"]
}

fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    status(obj)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_types(obj: &DynamicObject) -> Vec<String> {
    status(obj)["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn ready(obj: &DynamicObject) -> (String, String, String) {
    let c = condition(obj, "Ready").cloned().unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

fn ready_message_is(obj: &DynamicObject, message: &str) -> bool {
    ready(obj).2 == message
}

fn is_synced(obj: &DynamicObject) -> bool {
    ready(obj).1 == "Synced"
}

/// Synced, with the status's own observedGeneration: every receiver synced.
fn fully_synced(obj: &DynamicObject) -> bool {
    is_synced(obj) && status(obj).get("observedGeneration").is_some()
}

/// Waits until the ProjectConfig of `ns` (`None`: the ClusterConfig)
/// satisfies `pred`.
async fn wait_config(
    env: &Env,
    ns: Option<&str>,
    what: &str,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    wait_for(WAIT, what, || {
        let client = env.client.clone();
        let pred = &pred;
        async move { config(&client, ns).await.filter(|o| pred(o)) }
    })
    .await
}

/// Waits until the ProjectConfig of `ns` satisfies `pred`.
async fn wait_project(
    env: &Env,
    ns: &str,
    what: &str,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    wait_config(env, Some(ns), what, pred).await
}

/// Waits until the ClusterConfig satisfies `pred`.
async fn wait_cluster(
    env: &Env,
    what: &str,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    wait_config(env, None, what, pred).await
}

fn entry(name: &str, path: &str, base: &str) -> Value {
    json!({"name": name, "path": path, "url": format!("{base}{path}")})
}

/// How many of the double's requests in the emulator's log satisfy `pred`.
fn count_double_requests(env: &Env, pred: impl Fn(&RequestRecord) -> bool) -> usize {
    env.requests()
        .iter()
        .filter(|r| is_double_request(r) && pred(r))
        .count()
}

/// The double's status writes in the emulator's log.
fn double_status_writes(env: &Env) -> usize {
    count_double_requests(env, |r| {
        r.subresource.as_deref() == Some("status") && r.verb.as_deref() == Some("patch")
    })
}

/// The double's Secret GETs in the emulator's log.
fn double_secret_gets(env: &Env) -> usize {
    count_double_requests(env, |r| {
        r.resource.as_deref() == Some("secrets") && r.verb.as_deref() == Some("get")
    })
}

/// Options of a double that requeues every second.
fn requeuing() -> KargoDoubleOptions {
    KargoDoubleOptions::new(BASE_URL).requeue(Duration::from_secs(1))
}

/// A receiver entry of any type.
fn receiver(type_: &str, name: &str, secret: &str) -> Value {
    json!({"name": name, type_: {"secretRef": {"name": secret}}})
}

#[tokio::test]
async fn a_github_and_a_harbor_receiver_get_kargos_paths_in_spec_order() {
    let env = Env::start().await;
    // Kargo's 5-minute requeue: only the create event can trigger the pass.
    let double = start_double(&env, KargoDoubleOptions::new(BASE_URL));
    create_namespace(&env.client, PROJECT).await;
    put_secret(&env.client, PROJECT, "gh-secret", &[("secret", "gh-value")]).await;
    put_auth_secret(&env.client, PROJECT, "harbor-wh-secret", TOKEN).await;
    apply_project_config(
        &env.client,
        PROJECT,
        vec![
            github_receiver("gh-wh-receiver", "gh-secret"),
            harbor_receiver("harbor-wh-receiver", "harbor-wh-secret"),
        ],
    )
    .await;

    let pc = wait_project(&env, PROJECT, "a synced ProjectConfig", fully_synced).await;
    let generation = pc.metadata.generation.expect("generation");
    let github = receiver_path("github", PROJECT, "gh-wh-receiver", "gh-value");
    assert_eq!(
        status(&pc)["webhookReceivers"],
        json!([
            entry("gh-wh-receiver", &github, BASE_URL),
            entry("harbor-wh-receiver", VECTOR_PATH, BASE_URL),
        ])
    );
    assert_eq!(status(&pc)["observedGeneration"], json!(generation));
    assert!(status(&pc).get("lastHandledRefresh").is_none());
    assert_eq!(condition_types(&pc), ["Ready"], "{:?}", status(&pc));
    assert_eq!(
        ready(&pc),
        (
            "True".into(),
            "Synced".into(),
            "ProjectConfig is synced and ready for use".into()
        )
    );
    let ready = condition(&pc, "Ready").expect("Ready");
    assert_eq!(ready["observedGeneration"], json!(generation));
    assert!(ready["lastTransitionTime"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && !t.contains('.')));

    // Every status write on it is the double's, with its User-Agent; it
    // reads Secrets one GET at a time and never lists or watches them.
    let requests = env.requests();
    let writes: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| r.subresource.as_deref() == Some("status"))
        .collect();
    assert!(!writes.is_empty());
    assert!(writes
        .iter()
        .all(|r| r.user_agent.as_deref() == Some(USER_AGENT)));
    assert!(requests
        .iter()
        .filter(|r| is_double_request(r))
        .all(|r| { r.resource.as_deref() != Some("secrets") || r.verb.as_deref() == Some("get") }));
    assert!(double.writes() >= 1 && double.reconciles() >= 1);
    double.stop().await;
}

#[tokio::test]
async fn a_base_path_is_kept_before_the_receiver_type() {
    let env = Env::start().await;
    let base = "https://kargo.example.com/webhook/";
    let double = start_double(&env, KargoDoubleOptions::new(base));
    env.create_harbor_project(PROJECT, "harbor-wh-receiver", "harbor-wh-secret", TOKEN)
        .await;
    let pc = wait_project(&env, PROJECT, "a synced ProjectConfig", is_synced).await;
    let path = format!("/webhook{VECTOR_PATH}");
    assert_eq!(
        status(&pc)["webhookReceivers"],
        json!([{
            "name": "harbor-wh-receiver",
            "path": path,
            "url": format!("https://kargo.example.com{path}"),
        }])
    );
    double.stop().await;
}

#[tokio::test]
async fn missing_secrets_and_keys_are_reported_in_kargos_words() {
    let env = Env::start().await;
    let double = start_double(&env, requeuing());
    create_namespace(&env.client, PROJECT).await;
    put_secret(&env.client, PROJECT, "no-key", &[("other", "x")]).await;
    put_secret(&env.client, PROJECT, "gh", &[("secret", "v")]).await;
    apply_project_config(
        &env.client,
        PROJECT,
        vec![
            harbor_receiver("a", "absent"),
            harbor_receiver("b", "no-key"),
            github_receiver("c", "gh"),
        ],
    )
    .await;
    let missing_secret = "error syncing WebhookReceiver \"a\": error getting Secret \"absent\" \
         in namespace \"kargo-demo\": secrets \"absent\" not found";
    let missing_key = "error syncing WebhookReceiver \"b\": error extracting secret values from \
         Secret \"no-key\" in namespace \"kargo-demo\": missing data key \"auth-header\" for \
         Harbor WebhookReceiver";
    let both = format!("Failed to sync WebhookReceivers: [{missing_secret}, {missing_key}]");
    let pc = wait_project(&env, PROJECT, "both errors", |o| ready_message_is(o, &both)).await;
    let generation = pc.metadata.generation.expect("generation");
    assert_eq!(
        ready(&pc),
        (
            "False".into(),
            "SyncWebhookReceiversFailed".into(),
            both.clone()
        )
    );
    // Kargo appends new conditions: Reconciling was set first.
    assert_eq!(condition_types(&pc), ["Reconciling", "Ready"]);
    let reconciling = condition(&pc, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling["status"], "True");
    assert_eq!(reconciling["reason"], "SyncingWebhooks");
    assert_eq!(reconciling["message"], "Syncing WebhookReceivers");
    assert_eq!(reconciling["observedGeneration"], json!(generation));
    assert_eq!(
        condition(&pc, "Ready").expect("Ready")["observedGeneration"],
        json!(generation)
    );
    // Not all synced: no observedGeneration on the status itself.
    assert!(status(&pc).get("observedGeneration").is_none());
    let c = entry("c", &receiver_path("github", PROJECT, "c", "v"), BASE_URL);
    assert_eq!(status(&pc)["webhookReceivers"], json!([c]));
    let ready_since = condition(&pc, "Ready").expect("Ready")["lastTransitionTime"].clone();

    // One error left: its text alone, without brackets. The double does not
    // watch Secrets; its requeue finds the new one.
    put_auth_secret(&env.client, PROJECT, "absent", "t").await;
    let one = format!("Failed to sync WebhookReceivers: {missing_key}");
    let pc = wait_project(&env, PROJECT, "one error", |o| ready_message_is(o, &one)).await;
    let a = entry("a", &receiver_path("harbor", PROJECT, "a", "t"), BASE_URL);
    assert_eq!(status(&pc)["webhookReceivers"], json!([a, c]));

    // Kargo keeps a replaced condition's lastTransitionTime even when its
    // status flips: make sure a later second would show if it did not.
    let since = chrono::DateTime::parse_from_rfc3339(ready_since.as_str().expect("time"))
        .expect("RFC 3339");
    wait_until(WAIT, "a later second", || async move {
        chrono::Utc::now() > since + chrono::Duration::seconds(1)
    })
    .await;
    put_secret(&env.client, PROJECT, "no-key", &[("auth-header", "")]).await;
    let pc = wait_project(&env, PROJECT, "all synced", fully_synced).await;
    assert_eq!(
        ready(&pc),
        (
            "True".into(),
            "Synced".into(),
            "ProjectConfig is synced and ready for use".into()
        )
    );
    assert_eq!(condition_types(&pc), ["Ready"]);
    assert_eq!(
        condition(&pc, "Ready").expect("Ready")["lastTransitionTime"],
        ready_since
    );
    // A present but empty value is a value.
    let b = entry("b", &receiver_path("harbor", PROJECT, "b", ""), BASE_URL);
    assert_eq!(status(&pc)["webhookReceivers"], json!([a, b, c]));
    assert_eq!(status(&pc)["observedGeneration"], json!(generation));
    double.stop().await;
}

#[tokio::test]
async fn every_receiver_type_words_its_missing_key() {
    let env = Env::start().await;
    let double = start_double(&env, KargoDoubleOptions::new(BASE_URL));
    create_namespace(&env.client, PROJECT).await;
    put_secret(&env.client, PROJECT, "unrelated", &[("unrelated", "x")]).await;
    // Each type with the cause Kargo words for its missing key.
    let cases = [
        (
            "artifactory",
            "secret data is not valid for a Artifactory WebhookReceiver",
        ),
        (
            "azure",
            "missing data key \"secret\" for Azure WebhookReceiver",
        ),
        (
            "bitbucket",
            "missing data key \"secret\" for Bitbucket WebhookReceiver",
        ),
        (
            "dockerhub",
            "missing data key \"secret\" for DockerHub WebhookReceiver",
        ),
        (
            "generic",
            "secret data is not valid for a Generic WebhookReceiver",
        ),
        (
            "gitea",
            "secret data is not valid for a Gitea WebhookReceiver",
        ),
        (
            "github",
            "missing \"secret\" data key for GitHub WebhookReceiver",
        ),
        (
            "gitlab",
            "missing data key \"secret-token\" for GitLab WebhookReceiver",
        ),
        (
            "harbor",
            "missing data key \"auth-header\" for Harbor WebhookReceiver",
        ),
        (
            "quay",
            "missing \"secret\" data key for Quay.io WebhookReceiver",
        ),
    ];
    let mut receivers: Vec<Value> = cases
        .iter()
        .map(|(t, _)| receiver(t, &format!("{t}-receiver"), "unrelated"))
        .collect();
    receivers.push(json!({"name": "typeless"}));
    apply_project_config(&env.client, PROJECT, receivers).await;

    let mut errors: Vec<String> = cases
        .iter()
        .map(|(t, cause)| {
            format!(
                "error syncing WebhookReceiver \"{t}-receiver\": error extracting secret values \
                 from Secret \"unrelated\" in namespace \"kargo-demo\": {cause}"
            )
        })
        .collect();
    errors.push(
        "error syncing WebhookReceiver \"typeless\": error getting receiver factory: no matching \
         registration found"
            .into(),
    );
    let message = format!("Failed to sync WebhookReceivers: [{}]", errors.join(", "));
    let pc = wait_project(&env, PROJECT, "eleven errors", |o| {
        ready_message_is(o, &message)
    })
    .await;
    // None synced: the list is absent, not empty.
    assert!(status(&pc).get("webhookReceivers").is_none(), "{pc:?}");
    double.stop().await;
}

#[tokio::test]
async fn a_steady_state_writes_nothing() {
    let env = Env::start().await;
    let double = start_double(&env, requeuing());
    env.create_harbor_project("steady-ok", "r", "s", TOKEN)
        .await;
    create_namespace(&env.client, "steady-failing").await;
    apply_project_config(
        &env.client,
        "steady-failing",
        vec![harbor_receiver("r", "absent")],
    )
    .await;
    wait_project(&env, "steady-ok", "synced", fully_synced).await;
    wait_project(&env, "steady-failing", "failing", |o| {
        ready(o).1 == "SyncWebhookReceiversFailed"
    })
    .await;
    // Let the double take a few more passes, so that its retries after the
    // failure have caught up with its own writes before the window opens.
    let passes = double.reconciles();
    wait_until(WAIT, "more passes", || {
        let done = double.reconciles();
        async move { done >= passes + 4 }
    })
    .await;

    let writes = double_status_writes(&env);
    let reconciles = double.reconciles();
    let gets = double_secret_gets(&env);
    let opened = Instant::now();
    tokio::time::sleep(QUIET_WINDOW).await;
    let window = opened.elapsed();
    assert_eq!(
        double_status_writes(&env),
        writes,
        "status writes during a quiet window of {window:?}"
    );
    assert_eq!(double.writes(), writes);
    eprintln!(
        "quiet window {window:?}: {} reconciles, {} Secret GETs, 0 status writes (before: {writes})",
        double.reconciles() - reconciles,
        double_secret_gets(&env) - gets
    );
    // The window was not quiet because nothing ran: both objects were
    // reconciled again, each reading its Secret.
    assert!(
        double.reconciles() >= reconciles + 4,
        "{}",
        double.reconciles()
    );
    assert!(double_secret_gets(&env) >= gets + 4);
    double.stop().await;
}

#[tokio::test]
async fn refresh_and_spec_changes_trigger_a_reconcile() {
    let env = Env::start().await;
    // No requeue within the test: every pass here comes from an event.
    let double = start_double(&env, KargoDoubleOptions::new(BASE_URL));
    env.create_harbor_project(PROJECT, "harbor-wh-receiver", "harbor-wh-secret", TOKEN)
        .await;
    wait_project(&env, PROJECT, "synced", is_synced).await;

    let token = "2026-08-21T10:00:00.123456Z";
    request_refresh(&env.client, PROJECT, token).await;
    let pc = wait_project(&env, PROJECT, "the refresh handled", |o| {
        status(o)["lastHandledRefresh"] == token
    })
    .await;
    assert!(is_synced(&pc));
    request_refresh(&env.client, PROJECT, "second").await;
    wait_project(&env, PROJECT, "the second refresh handled", |o| {
        status(o)["lastHandledRefresh"] == "second"
    })
    .await;

    put_secret(&env.client, PROJECT, "gh", &[("secret", "v")]).await;
    let pc = apply_project_config(
        &env.client,
        PROJECT,
        vec![
            harbor_receiver("harbor-wh-receiver", "harbor-wh-secret"),
            github_receiver("gh-wh-receiver", "gh"),
        ],
    )
    .await;
    let generation = pc.metadata.generation.expect("generation");
    let pc = wait_project(&env, PROJECT, "the new generation", |o| {
        status(o)["observedGeneration"] == json!(generation)
    })
    .await;
    assert_eq!(
        status(&pc)["webhookReceivers"],
        json!([
            entry("harbor-wh-receiver", VECTOR_PATH, BASE_URL),
            entry(
                "gh-wh-receiver",
                &receiver_path("github", PROJECT, "gh-wh-receiver", "v"),
                BASE_URL
            ),
        ])
    );
    assert_eq!(status(&pc)["lastHandledRefresh"], "second");
    double.stop().await;
}

#[tokio::test]
async fn the_cluster_config_uses_the_system_resources_namespace_and_no_project() {
    let env = Env::start().await;
    let system = "custom-system";
    let double = start_double(&env, requeuing().system_resources_namespace(system));
    create_namespace(&env.client, system).await;
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, system, "cluster-secret", TOKEN).await;
    // A Secret of that name elsewhere is not the one.
    put_auth_secret(&env.client, PROJECT, "absent", TOKEN).await;
    apply_cluster_config(
        &env.client,
        vec![
            harbor_receiver("cluster-receiver", "cluster-secret"),
            harbor_receiver("other", "absent"),
        ],
    )
    .await;
    // The ClusterConfig reconciler words its failure in lower case.
    let message = "Failed to sync webhook receivers: error syncing WebhookReceiver \"other\": \
         error getting Secret \"absent\" in namespace \"custom-system\": secrets \"absent\" not \
         found";
    let cc = wait_cluster(&env, "the failure", |o| ready_message_is(o, message)).await;
    let first = entry(
        "cluster-receiver",
        &receiver_path("harbor", "", "cluster-receiver", TOKEN),
        BASE_URL,
    );
    assert_eq!(status(&cc)["webhookReceivers"], json!([first]));

    put_auth_secret(&env.client, system, "absent", "other-token").await;
    let cc = wait_cluster(&env, "synced", fully_synced).await;
    assert_eq!(
        ready(&cc),
        (
            "True".into(),
            "Synced".into(),
            "ClusterConfig is synced and ready for use".into()
        )
    );
    let other = entry(
        "other",
        &receiver_path("harbor", "", "other", "other-token"),
        BASE_URL,
    );
    assert_eq!(status(&cc)["webhookReceivers"], json!([first, other]));
    double.stop().await;
}

#[tokio::test]
async fn a_cluster_config_without_a_system_resources_namespace_fails_as_kargo_does() {
    let env = Env::start().await;
    let double = start_double(
        &env,
        KargoDoubleOptions::new(BASE_URL).system_resources_namespace(""),
    );
    apply_cluster_config(&env.client, vec![harbor_receiver("r", "s")]).await;
    let message = "Failed to sync webhook receivers: no namespace is designated for storing \
         Secrets referenced by cluster-level resources; please ensure environment variable \
         \"SYSTEM_RESOURCES_NAMESPACE\" is set";
    let cc = wait_cluster(&env, "the failure", |o| ready_message_is(o, message)).await;
    assert_eq!(ready(&cc).1, "SyncWebhookReceiversFailed");
    assert!(condition(&cc, "Reconciling").is_some());
    assert!(status(&cc).get("webhookReceivers").is_none());
    double.stop().await;
}

#[tokio::test]
async fn api_errors_odd_objects_and_deletes_do_not_stop_it() {
    let env = Env::start().await;
    let double = start_double(&env, requeuing());
    // A ProjectConfig not named like its namespace: Kargo looks up the
    // ProjectConfig `odd` in namespace `odd`, finds none and does nothing.
    create_namespace(&env.client, PROJECT).await;
    let odd = json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "ProjectConfig",
        "metadata": {"name": "odd", "namespace": PROJECT},
        "spec": {"webhookReceivers": [harbor_receiver("r", "s")]},
    });
    let odd_api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        PROJECT,
        &resource("ProjectConfig", "projectconfigs"),
    );
    odd_api
        .create(
            &Default::default(),
            &serde_json::from_value(odd).expect("object"),
        )
        .await
        .expect("creating odd");
    wait_until(WAIT, "the odd object reconciled", || {
        let n = double.reconciles();
        async move { n >= 1 }
    })
    .await;

    env.emulator.inject(
        Fault::new(500)
            .method(http::Method::PATCH)
            .path_contains("/status")
            .times(2),
    );
    env.emulator.inject(
        Fault::new(500)
            .method(http::Method::GET)
            .path_contains("/secrets/")
            .times(1),
    );
    env.create_harbor_project(PROJECT, "harbor-wh-receiver", "harbor-wh-secret", TOKEN)
        .await;
    let pc = wait_project(&env, PROJECT, "synced despite faults", fully_synced).await;
    assert_eq!(
        status(&pc)["webhookReceivers"],
        json!([entry("harbor-wh-receiver", VECTOR_PATH, BASE_URL)])
    );
    assert!(double.failed_writes() >= 1, "{}", double.failed_writes());
    let odd = odd_api.get("odd").await.expect("odd");
    assert!(odd.data.get("status").is_none_or(Value::is_null), "{odd:?}");

    // Its watch history compacted (a re-list), then deleted and created
    // again: the new object is reconciled as well.
    env.emulator.compact();
    delete(&env.project_configs(PROJECT), PROJECT).await;
    wait_until(WAIT, "the ProjectConfig gone", || {
        let client = env.client.clone();
        async move { config(&client, Some(PROJECT)).await.is_none() }
    })
    .await;
    apply_project_config(
        &env.client,
        PROJECT,
        vec![harbor_receiver("again", "harbor-wh-secret")],
    )
    .await;
    let pc = wait_project(&env, PROJECT, "the new object synced", |o| {
        status(o)["webhookReceivers"][0]["name"] == "again"
    })
    .await;
    assert!(is_synced(&pc));
    double.stop().await;
}

#[tokio::test]
async fn secret_names_and_namespaces_that_are_no_path_segment_are_refused_before_any_request() {
    let env = Env::start().await;
    let double = start_double(&env, requeuing().system_resources_namespace("bad%ns"));
    create_namespace(&env.client, PROJECT).await;
    apply_project_config(&env.client, PROJECT, vec![harbor_receiver("r", "a/b")]).await;
    apply_cluster_config(&env.client, vec![harbor_receiver("c", "s")]).await;
    let name = "invalid resource name \"a/b\": [may not contain '/']";
    let pc = wait_project(&env, PROJECT, "the name refused", |o| {
        ready(o).2.contains(name)
    })
    .await;
    assert_eq!(ready(&pc).1, "SyncWebhookReceiversFailed");
    let namespace = "invalid namespace \"bad%ns\": [may not contain '%']";
    wait_cluster(&env, "the namespace refused", |o| {
        ready(o).2.contains(namespace)
    })
    .await;
    // Refused here, not by the API server: no Secret was asked for.
    assert_eq!(double_secret_gets(&env), 0);
    double.stop().await;
}
