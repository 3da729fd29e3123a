//! End-to-end tests of the controller against kube-emulator with Kargo's
//! real CRDs: status, index, Secret access modes, leader election, faults.

use std::time::{Duration, Instant};

use e2e::*;
use kargo_api::ConfigStatus;
use kargo_harbor_receiver::app::Running;
use kargo_harbor_receiver::index::Scope;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const PROJECT: &str = "kargo-demo";
const RECEIVER: &str = "harbor-wh-receiver";
const SECRET: &str = "harbor-wh-secret";
const TOKEN: &str = "test-auth-token-123";
const VECTOR_PATH: &str =
    "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";
/// Kargo's Ready message when [`SECRET`] does not exist.
const NOT_FOUND_MESSAGE: &str = "Failed to sync WebhookReceivers: error syncing WebhookReceiver \
     \"harbor-wh-receiver\": error getting Secret \"harbor-wh-secret\" in namespace \
     \"kargo-demo\": secrets \"harbor-wh-secret\" not found";

/// Waits until the ProjectConfig's status satisfies `pred`; returns it and
/// the time it took.
async fn wait_status(
    env: &Env,
    ns: &str,
    what: &str,
    pred: impl Fn(&ConfigStatus) -> bool,
) -> (ConfigStatus, Duration) {
    let start = Instant::now();
    let status = wait_for(WAIT, what, || {
        let client = env.client.clone();
        let pred = &pred;
        async move { project_status(&client, ns).await.filter(|s| pred(s)) }
    })
    .await;
    (status, start.elapsed())
}

fn paths(status: &ConfigStatus) -> Vec<(String, String, String)> {
    status
        .webhook_receivers
        .iter()
        .map(|d| (d.name.clone(), d.path.clone(), d.url.clone()))
        .collect()
}

/// Whether the first receiver in a status has `path`.
fn first_path_is(path: &str) -> impl Fn(&ConfigStatus) -> bool + '_ {
    move |s| s.webhook_receivers.first().is_some_and(|d| d.path == path)
}

fn ready_message(status: &ConfigStatus) -> String {
    condition(status, "Ready")
        .map(|c| format!("{} {} {}", c.status, c.reason, c.message))
        .unwrap_or_default()
}

async fn wait_ready(running: &Running) {
    wait_until(WAIT, "readiness", || async { running.is_ready() }).await;
}

async fn wait_index_has(running: &Running, path: &str) -> Duration {
    wait_index(running, path, true, &format!("{path} in the index")).await
}

async fn wait_index_lacks(running: &Running, path: &str) -> Duration {
    wait_index(running, path, false, &format!("{path} gone from the index")).await
}

/// Waits until `path` is in the index (`present`) or not; returns the time it took.
async fn wait_index(running: &Running, path: &str, present: bool, what: &str) -> Duration {
    let index = running.index().clone();
    wait_until(WAIT, what, || {
        let index = index.clone();
        let path = path.to_owned();
        async move { index.routes.lookup(&path).is_some() == present }
    })
    .await
}

async fn wait_leader(running: &Running) {
    wait_until(WAIT, "leadership", || async {
        running.metrics().controller.leader.get() == 1
    })
    .await;
}

/// Starts the app with the default arguments; waits until it is ready and leads.
async fn start_leading_app(env: &Env) -> Running {
    let running = env.start_app(&[]).await;
    wait_ready(&running).await;
    wait_leader(&running).await;
    running
}

/// The usual project `ns`: the namespace, the Secret [`SECRET`] holding
/// [`TOKEN`] and the ProjectConfig with the receiver [`RECEIVER`] using it.
async fn create_project(env: &Env, ns: &str) {
    env.create_harbor_project(ns, RECEIVER, SECRET, TOKEN).await;
}

/// The ProjectConfig of `ns` with the receiver [`RECEIVER`] using [`SECRET`]
/// (the Secret itself left to the test).
async fn apply_receiver(env: &Env, ns: &str) {
    apply_project_config(&env.client, ns, vec![harbor_receiver(RECEIVER, SECRET)]).await;
}

/// A fault: 500 on the next two GETs of a Secret.
fn two_500s_on_secret_gets() -> Fault {
    Fault::new(500)
        .path_contains("/secrets/")
        .method(http::Method::GET)
        .times(2)
}

/// The requests that list or watch Secrets.
fn secret_lists_and_watches(requests: Vec<RequestRecord>) -> Vec<RequestRecord> {
    requests
        .into_iter()
        .filter(|r| {
            r.resource.as_deref() == Some("secrets")
                && matches!(r.verb.as_deref(), Some("list") | Some("watch"))
        })
        .collect()
}

#[tokio::test]
async fn harness_smoke() {
    let env = Env::start().await;
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, PROJECT, "s", "t").await;
    put_auth_secret(&env.client, PROJECT, "s", "t2").await;
    apply_project_config(&env.client, PROJECT, vec![harbor_receiver("r", "s")]).await;
    apply_warehouse(
        &env.client,
        PROJECT,
        "w",
        json!([image_subscription("nginx")]),
    )
    .await;
    assert!(env
        .project_configs(PROJECT)
        .get_opt(PROJECT)
        .await
        .unwrap()
        .is_some());
    assert!(binary_path().exists());
    let _ = test_config(&["--secret-access", "get"]);
}

#[tokio::test]
async fn secret_and_project_config_give_the_design_vector_url() {
    let env = Env::start().await;
    let running = start_leading_app(&env).await;
    create_namespace(&env.client, PROJECT).await;
    let start = Instant::now();
    put_auth_secret(&env.client, PROJECT, SECRET, TOKEN).await;
    apply_receiver(&env, PROJECT).await;
    let (status, _) = wait_status(&env, PROJECT, "Ready=True with the URL", |s| {
        is_ready(s) && !s.webhook_receivers.is_empty()
    })
    .await;
    let latency = start.elapsed();
    println!("apply Secret + ProjectConfig → Ready status: {latency:?}");
    assert_eq!(
        paths(&status),
        vec![(
            RECEIVER.to_owned(),
            VECTOR_PATH.to_owned(),
            format!("https://webhooks.example.com{VECTOR_PATH}")
        )]
    );
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready.reason, "Synced");
    assert_eq!(status.observed_generation, Some(1));
    assert!(condition(&status, "Reconciling").is_none());
    let entry = running.index().routes.lookup(VECTOR_PATH).unwrap();
    assert_eq!(entry.scope, Scope::project_of(PROJECT));
    assert_eq!(entry.name, RECEIVER);
    assert!(entry.token.verify(TOKEN.as_bytes()));
    assert!(latency < Duration::from_secs(2), "took {latency:?}");

    // The refresh annotation is echoed once handled.
    request_refresh(&env.client, PROJECT, "2026-11-29T10:00:00.123Z").await;
    wait_status(&env, PROJECT, "lastHandledRefresh", |s| {
        s.last_handled_refresh.as_deref() == Some("2026-11-29T10:00:00.123Z")
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_secret_then_created_then_key_removed() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    create_namespace(&env.client, PROJECT).await;
    apply_receiver(&env, PROJECT).await;
    let (status, _) = wait_status(&env, PROJECT, "Ready=False", |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "False")
    })
    .await;
    // Kargo's words, byte for byte.
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready.reason, "SyncWebhookReceiversFailed");
    assert_eq!(ready.message, NOT_FOUND_MESSAGE);
    let reconciling = condition(&status, "Reconciling").unwrap();
    assert_eq!(
        (
            reconciling.status.as_str(),
            reconciling.reason.as_str(),
            reconciling.message.as_str()
        ),
        ("True", "SyncingWebhooks", "Syncing WebhookReceivers")
    );
    assert!(status.webhook_receivers.is_empty());
    assert_eq!(status.observed_generation, None);
    assert!(running.index().routes.load().paths().is_empty());

    let start = Instant::now();
    put_auth_secret(&env.client, PROJECT, SECRET, TOKEN).await;
    let (status, _) = wait_status(&env, PROJECT, "the URL", is_ready).await;
    println!("Secret created → Ready status: {:?}", start.elapsed());
    assert_eq!(status.webhook_receivers[0].path, VECTOR_PATH);
    assert_eq!(
        ready_message(&status),
        "True Synced ProjectConfig is synced and ready for use"
    );
    assert!(condition(&status, "Reconciling").is_none());
    assert_eq!(status.observed_generation, Some(1));
    wait_index_has(&running, VECTOR_PATH).await;

    let start = Instant::now();
    put_secret(&env.client, PROJECT, SECRET, &[("other", "x")]).await;
    let (status, _) = wait_status(&env, PROJECT, "Ready=False (key)", |s| !is_ready(s)).await;
    println!("auth-header removed → Ready=False: {:?}", start.elapsed());
    assert_eq!(
        ready_message(&status),
        "False SyncWebhookReceiversFailed Failed to sync WebhookReceivers: error syncing \
         WebhookReceiver \"harbor-wh-receiver\": error extracting secret values from Secret \
         \"harbor-wh-secret\" in namespace \"kargo-demo\": missing data key \"auth-header\" \
         for Harbor WebhookReceiver"
    );
    assert!(status.webhook_receivers.is_empty());
    wait_index_lacks(&running, VECTOR_PATH).await;

    // An empty value is accepted, as Kargo accepts it: published and
    // routed, and every request to it is 401 (an empty Authorization is a
    // missing one, anything else is wrong), as in Kargo.
    put_secret(&env.client, PROJECT, SECRET, &[("auth-header", "")]).await;
    let empty_path = expected_path(PROJECT, RECEIVER, "");
    let (status, _) = wait_status(
        &env,
        PROJECT,
        "the empty value's URL",
        first_path_is(&empty_path),
    )
    .await;
    assert!(is_ready(&status));
    wait_index_has(&running, &empty_path).await;
    let url = format!("http://{}{empty_path}", running.listen_addr);
    let http = http_client();
    for (headers, want) in [
        (vec![], r#"{"error":"missing authorization"}"#),
        (
            vec![("authorization", "")],
            r#"{"error":"missing authorization"}"#,
        ),
        (vec![("authorization", "x")], r#"{"error":"unauthorized"}"#),
    ] {
        let answer = send(&http, http::Method::POST, &url, &headers, "{}").await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.trim_end()),
            (401, want)
        );
    }

    // Deleting the Secret.
    put_auth_secret(&env.client, PROJECT, SECRET, TOKEN).await;
    wait_status(&env, PROJECT, "ready again", is_ready).await;
    delete(&env.secrets(PROJECT), SECRET).await;
    wait_status(&env, PROJECT, "not found", |s| {
        condition(s, "Ready").is_some_and(|c| c.message == NOT_FOUND_MESSAGE)
    })
    .await;
    wait_index_lacks(&running, VECTOR_PATH).await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotating_the_secret_moves_the_path() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    create_project(&env, PROJECT).await;
    wait_status(&env, PROJECT, "first URL", is_ready).await;
    wait_index_has(&running, VECTOR_PATH).await;

    let (mut previous_path, mut previous_token) = (VECTOR_PATH.to_owned(), TOKEN.to_owned());
    for round in 0..3 {
        let token = format!("rotated-token-{round}");
        let new_path = expected_path(PROJECT, RECEIVER, &token);
        env.emulator.clear_requests();
        let start = Instant::now();
        put_auth_secret(&env.client, PROJECT, SECRET, &token).await;
        let (status, took) =
            wait_status(&env, PROJECT, "rotated path", first_path_is(&new_path)).await;
        println!(
            "rotation {round}: Secret update → new status path: {:?} (poll {took:?})",
            start.elapsed()
        );
        assert_eq!(status.webhook_receivers.len(), 1);
        wait_index_has(&running, &new_path).await;
        let snap = running.index().routes.load();
        let current: Vec<&str> = snap
            .paths()
            .into_iter()
            .filter(|p| snap.get(p).is_some_and(|e| e.grace_until.is_none()))
            .collect();
        assert_eq!(current, [new_path.as_str()], "one current path");
        assert!(snap.get(&new_path).unwrap().token.verify(token.as_bytes()));
        // The previous path stays for the grace period (docs/behaviour.md,
        // "Rotation"), accepting its own token only.
        let previous = snap
            .get(&previous_path)
            .expect("previous path in its grace period");
        assert!(previous.grace_until.is_some());
        assert!(previous.token.verify(previous_token.as_bytes()));
        assert!(!previous.token.verify(token.as_bytes()));
        (previous_path, previous_token) = (new_path.clone(), token.clone());
        // Requests the controller made for this change (ours: user agent kube-rs;
        // the test's own requests are the PUT/GET of the Secret and status GETs).
        let reqs = env.requests();
        let secret_gets = reqs
            .iter()
            .filter(|r| {
                r.verb.as_deref() == Some("get") && r.resource.as_deref() == Some("secrets")
            })
            .count();
        let status_patches = status_writes(&reqs, "projectconfigs");
        let controller_requests: Vec<String> = reqs
            .iter()
            .filter(|r| r.verb.as_deref() != Some("watch"))
            .filter(|r| {
                !(r.verb.as_deref() == Some("get")
                    && r.resource.as_deref() == Some("projectconfigs"))
            })
            .filter(|r| {
                // The test's own Secret write (create → 409, then update).
                !matches!(r.verb.as_deref(), Some("update") | Some("create"))
                    || r.resource.as_deref() != Some("secrets")
            })
            .filter_map(|r| r.rbac())
            .collect();
        println!("rotation {round}: API requests of the reconcile: {controller_requests:?}");
        println!("rotation {round}: controller Secret GETs = {secret_gets}, status PATCHes = {status_patches}");
        assert_eq!(secret_gets, 1, "Secret GETs for one change");
        assert_eq!(status_patches, 1);
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn deleting_the_project_config_empties_its_paths() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    create_project(&env, PROJECT).await;
    create_project(&env, "other").await;
    let other_path = expected_path("other", RECEIVER, TOKEN);
    wait_index_has(&running, VECTOR_PATH).await;
    wait_index_has(&running, &other_path).await;
    let start = Instant::now();
    delete(&env.project_configs(PROJECT), PROJECT).await;
    let took = wait_index_lacks(&running, VECTOR_PATH).await;
    println!(
        "ProjectConfig deleted → path gone from the index: {:?}",
        start.elapsed()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(running.index().routes.lookup(&other_path).is_some());

    // Removing a receiver from the spec removes it too.
    apply_project_config(&env.client, "other", vec![]).await;
    wait_index_lacks(&running, &other_path).await;
    let (status, _) = wait_status(&env, "other", "no receivers", |s| {
        s.webhook_receivers.is_empty() && is_ready(s)
    })
    .await;
    assert_eq!(
        ready_message(&status),
        "True Synced ProjectConfig is synced and ready for use"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn several_receivers_and_foreign_kinds() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, PROJECT, "s1", "token-one").await;
    put_auth_secret(&env.client, PROJECT, "s2", "token-two").await;
    apply_project_config(
        &env.client,
        PROJECT,
        vec![
            harbor_receiver("one", "s1"),
            github_receiver("gh", "s1"),
            harbor_receiver("two", "s2"),
        ],
    )
    .await;
    let (status, _) = wait_status(&env, PROJECT, "two receivers", |s| {
        s.webhook_receivers.len() == 2
    })
    .await;
    let p1 = expected_path(PROJECT, "one", "token-one");
    let p2 = expected_path(PROJECT, "two", "token-two");
    assert_eq!(
        paths(&status),
        vec![
            ("one".into(), p1.clone(), format!("{BASE_URL}{p1}")),
            ("two".into(), p2.clone(), format!("{BASE_URL}{p2}")),
        ]
    );
    // Without Kargo nobody publishes `gh`: whether it synced is Kargo's to
    // judge, so the conditions are left to Kargo.
    assert!(status.conditions.is_empty(), "{:?}", status.conditions);
    assert_eq!(status.observed_generation, None);
    wait_index_has(&running, &p1).await;
    wait_index_has(&running, &p2).await;
    assert_eq!(running.index().routes.load().paths().len(), 2);

    // One broken receiver does not drop the other.
    delete(&env.secrets(PROJECT), "s2").await;
    let (status, _) = wait_status(&env, PROJECT, "two is missing", |s| {
        s.webhook_receivers.len() == 1
    })
    .await;
    assert_eq!(status.webhook_receivers[0].name, "one");
    assert!(status.conditions.is_empty(), "{:?}", status.conditions);
    wait_index_lacks(&running, &p2).await;
    assert!(running.index().routes.lookup(&p1).is_some());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn cluster_config_uses_the_system_resources_namespace() {
    let env = Env::start().await;
    // Without a grace period, so that a rotated path leaves the index at once.
    let running = env
        .start_app(&[
            "--system-resources-namespace",
            "kargo-sys",
            "--rotation-grace-period",
            "0s",
        ])
        .await;
    create_namespace(&env.client, "kargo-sys").await;
    put_auth_secret(&env.client, "kargo-sys", SECRET, TOKEN).await;
    apply_cluster_config(&env.client, vec![harbor_receiver(RECEIVER, SECRET)]).await;
    let path = expected_path("", RECEIVER, TOKEN);
    let status = wait_for(WAIT, "ClusterConfig status", || {
        let client = env.client.clone();
        async move {
            cluster_status(&client)
                .await
                .filter(|s| is_ready(s) && !s.webhook_receivers.is_empty())
        }
    })
    .await;
    assert_eq!(status.webhook_receivers[0].path, path);
    assert_ne!(path, VECTOR_PATH);
    wait_index_has(&running, &path).await;
    assert_eq!(
        running.index().routes.lookup(&path).unwrap().scope,
        Scope::Cluster
    );
    // Rotation through the system namespace's Secret.
    put_auth_secret(&env.client, "kargo-sys", SECRET, "cluster-rotated").await;
    let rotated = expected_path("", RECEIVER, "cluster-rotated");
    wait_index_has(&running, &rotated).await;
    wait_index_lacks(&running, &path).await;
    // A Secret of the same name elsewhere is not used.
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, PROJECT, SECRET, "elsewhere").await;
    delete(&env.cluster_configs(), "cluster").await;
    wait_index_lacks(&running, &rotated).await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_mode_rereads_secrets_periodically() {
    let env = Env::start().await;
    let running = env
        .start_app(&["--secret-access", "get", "--secret-resync", "1s"])
        .await;
    create_project(&env, PROJECT).await;
    wait_status(&env, PROJECT, "URL", is_ready).await;
    wait_index_has(&running, VECTOR_PATH).await;
    let start = Instant::now();
    put_auth_secret(&env.client, PROJECT, SECRET, "get-mode-rotated").await;
    let new_path = expected_path(PROJECT, RECEIVER, "get-mode-rotated");
    wait_index_has(&running, &new_path).await;
    wait_status(&env, PROJECT, "rotated", first_path_is(&new_path)).await;
    let took = start.elapsed();
    println!("get mode (--secret-resync 1s): rotation picked up after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // No list or watch of Secrets at all in this mode.
    let forbidden = secret_lists_and_watches(env.requests());
    assert!(forbidden.is_empty(), "{forbidden:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn watch_limited_to_namespaces() {
    let env = Env::start().await;
    let running = env
        .start_app(&[
            "--watch-namespaces",
            "kargo-demo,kargo-sys",
            "--secret-resync",
            "1s",
        ])
        .await;
    for ns in [PROJECT, "kargo-sys", "unwatched"] {
        create_project(&env, ns).await;
    }
    for ns in [PROJECT, "kargo-sys", "unwatched"] {
        wait_index_has(&running, &expected_path(ns, RECEIVER, TOKEN)).await;
    }
    // Watched: fast. Unwatched: re-read every --secret-resync.
    put_auth_secret(&env.client, PROJECT, SECRET, "r1").await;
    put_auth_secret(&env.client, "unwatched", SECRET, "r1").await;
    wait_index_has(&running, &expected_path(PROJECT, RECEIVER, "r1")).await;
    wait_index_has(&running, &expected_path("unwatched", RECEIVER, "r1")).await;
    let secret_watches: Vec<Option<String>> = secret_lists_and_watches(env.requests())
        .into_iter()
        .map(|r| r.namespace)
        .collect();
    assert!(!secret_watches.is_empty());
    assert!(
        secret_watches
            .iter()
            .all(|ns| matches!(ns.as_deref(), Some("kargo-demo") | Some("kargo-sys"))),
        "{secret_watches:?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn readiness_waits_for_the_initial_index() {
    let env = Env::start().await;
    create_project(&env, PROJECT).await;
    apply_warehouse(
        &env.client,
        PROJECT,
        "w",
        json!([image_subscription("harbor.example.com/library/app")]),
    )
    .await;
    let running = env.start_app(&[]).await;
    wait_ready(&running).await;
    // Ready implies: the receiver and the Warehouse are in the index.
    assert!(running.index().routes.lookup(VECTOR_PATH).is_some());
    assert_eq!(running.index().sizes().warehouses, 1);
    running.shutdown().await.unwrap();
}

/// Counts the status writes of the controller over `quiet`.
async fn writes_during(env: &Env, quiet: Duration) -> usize {
    env.emulator.clear_requests();
    tokio::time::sleep(quiet).await;
    status_writes(&env.requests(), "projectconfigs")
        + status_writes(&env.requests(), "clusterconfigs")
}

#[tokio::test]
async fn two_replicas_one_writer_and_handover() {
    let env = Env::start().await;
    create_project(&env, PROJECT).await;
    let a = env.start_app(&["--identity", "replica-a"]).await;
    let b = env.start_app(&["--identity", "replica-b"]).await;
    wait_ready(&a).await;
    wait_ready(&b).await;
    wait_status(&env, PROJECT, "status", is_ready).await;
    // Exactly one leader.
    let leaders = || a.metrics().controller.leader.get() + b.metrics().controller.leader.get();
    wait_until(WAIT, "one leader", || async { leaders() == 1 }).await;
    // Same indexes.
    wait_index_has(&a, VECTOR_PATH).await;
    wait_index_has(&b, VECTOR_PATH).await;
    let paths_of = |r: &Running| {
        r.index()
            .routes
            .load()
            .paths()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(paths_of(&a), paths_of(&b));

    // No write storms while nothing changes (resyncs included).
    let quiet = writes_during(&env, Duration::from_secs(3)).await;
    println!("status writes during a 3 s quiet period with two replicas: {quiet}");
    assert_eq!(quiet, 0);

    // A change: the one leader writes once; the other writes nothing.
    env.emulator.clear_requests();
    put_auth_secret(&env.client, PROJECT, SECRET, "two-replicas").await;
    let p = expected_path(PROJECT, RECEIVER, "two-replicas");
    wait_status(&env, PROJECT, "rotated", first_path_is(&p)).await;
    wait_index_has(&a, &p).await;
    wait_index_has(&b, &p).await;
    assert_eq!(paths_of(&a), paths_of(&b));
    let after_change = writes_during(&env, Duration::from_secs(1)).await;
    assert_eq!(after_change, 0);

    // Hand over: shut the leader down (it releases the Lease).
    let (leader, follower) = if a.metrics().controller.leader.get() == 1 {
        (a, b)
    } else {
        (b, a)
    };
    leader.shutdown().await.unwrap();
    let start = Instant::now();
    wait_leader(&follower).await;
    println!("handover after graceful shutdown: {:?}", start.elapsed());
    create_project(&env, "second").await;
    let (_, took) = wait_status(&env, "second", "status by the new leader", is_ready).await;
    assert!(
        start.elapsed() < Duration::from_secs(2 + 3),
        "{:?}",
        start.elapsed()
    );
    println!("new ProjectConfig status by the new leader after {took:?}");
    follower.shutdown().await.unwrap();
}

#[tokio::test]
async fn new_leader_rewrites_stale_status() {
    // A leader that dies without releasing: the other takes over within the
    // lease duration and fixes status written by nobody meanwhile.
    let env = Env::start().await;
    create_project(&env, PROJECT).await;
    let a = env.start_app(&["--identity", "a"]).await;
    wait_leader(&a).await;
    wait_status(&env, PROJECT, "status", is_ready).await;
    let b = env.start_app(&["--identity", "b"]).await;
    wait_ready(&b).await;
    // Make a's renewals fail: 503 on its Lease updates for a while.
    env.emulator.inject(
        Fault::new(503)
            .path_contains("/leases/")
            .method(http::Method::PUT)
            .times(1000),
    );
    let start = Instant::now();
    wait_until(WAIT, "a steps down", || async {
        a.metrics().controller.leader.get() == 0
    })
    .await;
    let stepped_down = start.elapsed();
    env.emulator.clear_faults();
    wait_leader(&b).await;
    println!(
        "leader cut off: stepped down after {stepped_down:?}, other leader after {:?}",
        start.elapsed()
    );
    assert!(stepped_down < Duration::from_secs(2));
    put_auth_secret(&env.client, PROJECT, SECRET, "after-failover").await;
    let p = expected_path(PROJECT, RECEIVER, "after-failover");
    wait_status(&env, PROJECT, "rotated by new leader", first_path_is(&p)).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn faults_converge() {
    let env = Env::start().await;
    let running = start_leading_app(&env).await;
    create_namespace(&env.client, PROJECT).await;

    // 500s on Secret reads and on status writes, 409s on status writes.
    env.emulator.inject(two_500s_on_secret_gets());
    env.emulator.inject(
        Fault::new(500)
            .path_contains("/status")
            .method(http::Method::PATCH)
            .times(2),
    );
    env.emulator.inject(
        Fault::new(409)
            .path_contains("/status")
            .method(http::Method::PATCH)
            .times(2),
    );
    put_auth_secret(&env.client, PROJECT, SECRET, TOKEN).await;
    apply_receiver(&env, PROJECT).await;
    let (status, took) = wait_status(&env, PROJECT, "converged after faults", |s| {
        is_ready(s) && condition(s, "Reconciling").is_none() && !s.webhook_receivers.is_empty()
    })
    .await;
    println!("converged after 2×500 on GET Secret + 2×500 + 2×409 on status: {took:?}");
    assert_eq!(status.webhook_receivers[0].path, VECTOR_PATH);
    wait_index_has(&running, VECTOR_PATH).await;
    let injected = env.requests().iter().filter(|r| r.injected_fault).count();
    assert!(injected >= 4, "faults not exercised: {injected}");

    // Dropped watches: changes after the drop still arrive.
    env.emulator.drop_watches();
    put_auth_secret(&env.client, PROJECT, SECRET, "after-drop").await;
    wait_index_has(&running, &expected_path(PROJECT, RECEIVER, "after-drop")).await;
    apply_warehouse(
        &env.client,
        PROJECT,
        "w1",
        json!([image_subscription("nginx")]),
    )
    .await;
    let index = running.index().clone();
    wait_until(WAIT, "Warehouse after watch drop", || {
        let index = index.clone();
        async move { index.sizes().warehouses == 1 }
    })
    .await;

    // 410 after compaction: re-list; a deletion during the gap is noticed.
    env.emulator.compact();
    delete(&env.project_configs(PROJECT), PROJECT).await;
    wait_index_lacks(&running, &expected_path(PROJECT, RECEIVER, "after-drop")).await;
    env.emulator.compact();
    create_project(&env, "late").await;
    apply_warehouse(
        &env.client,
        "late",
        "w2",
        json!([image_subscription("nginx")]),
    )
    .await;
    wait_index_has(&running, &expected_path("late", RECEIVER, TOKEN)).await;
    wait_until(WAIT, "second Warehouse after 410", || {
        let index = index.clone();
        async move { index.sizes().warehouses == 2 }
    })
    .await;
    wait_status(&env, "late", "status after 410", is_ready).await;
    let restarts = running.metrics_text();
    assert!(restarts.contains("watch_restarts"), "{restarts}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn written_status_validates_against_kargos_crd() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, PROJECT, "s1", TOKEN).await;
    apply_project_config(
        &env.client,
        PROJECT,
        vec![
            harbor_receiver("ok", "s1"),
            harbor_receiver("missing", "nope"),
        ],
    )
    .await;
    let (status, _) = wait_status(&env, PROJECT, "mixed status", |s| {
        !is_ready(s) && !s.webhook_receivers.is_empty()
    })
    .await;
    let raw: serde_json::Value = {
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            env.client.clone(),
            PROJECT,
            &kube::api::ApiResource::erase::<kargo_api::ProjectConfig>(&()),
        );
        serde_json::to_value(api.get(PROJECT).await.unwrap()).unwrap()
    };
    let schema = kargo_crd_schema("projectconfigs");
    kube_emulator::schema::validate(&schema, &raw).unwrap_or_else(|e| panic!("{e:?}\n{raw:#}"));
    // Nothing pruned: what we meant to write is what is stored.
    let stored = &raw["status"];
    assert_eq!(stored["webhookReceivers"].as_array().unwrap().len(), 1);
    for c in stored["conditions"].as_array().unwrap() {
        for f in [
            "type",
            "status",
            "lastTransitionTime",
            "reason",
            "message",
            "observedGeneration",
        ] {
            assert!(c.get(f).is_some(), "{f} missing: {c}");
        }
    }
    assert_eq!(
        condition(&status, "Ready").unwrap().reason,
        "SyncWebhookReceiversFailed"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_are_recorded_on_transitions() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    wait_leader(&running).await;
    create_namespace(&env.client, PROJECT).await;
    apply_receiver(&env, PROJECT).await;
    wait_status(&env, PROJECT, "not ready", |s| !is_ready(s)).await;
    put_auth_secret(&env.client, PROJECT, SECRET, TOKEN).await;
    wait_status(&env, PROJECT, "ready", is_ready).await;
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), PROJECT);
    let list = wait_for(WAIT, "two Events", || {
        let events = events.clone();
        async move {
            let l = events.list(&Default::default()).await.ok()?;
            (l.items.len() >= 2).then_some(l.items)
        }
    })
    .await;
    let reasons: Vec<String> = list.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(
        reasons.contains(&"ReceiverNotReady".to_owned()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"ReceiverReady".to_owned()), "{reasons:?}");
    let digest = hex_sha256(TOKEN);
    for e in &list {
        let text = serde_json::to_string(e).unwrap();
        assert!(!text.contains(TOKEN) && !text.contains(&digest), "{text}");
    }
    running.shutdown().await.unwrap();
}

fn hex_sha256(s: &str) -> String {
    // The digest of the token alone (what the index keeps), to prove it is
    // not leaked; computed through the path function's building blocks.
    let base = kargo_harbor_receiver::core::receiver_path::BaseUrl::parse("https://x").unwrap();
    kargo_harbor_receiver::core::receiver_path::receiver_path(&base, "", "", s)
        .trim_start_matches("/harbor/")
        .to_owned()
}

#[tokio::test]
async fn token_never_logged() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    let token = "very-secret-token-that-must-not-leak-42";
    env.create_harbor_project(PROJECT, RECEIVER, SECRET, token)
        .await;
    wait_status(&env, PROJECT, "ready", is_ready).await;
    env.emulator.inject(two_500s_on_secret_gets());
    put_auth_secret(&env.client, PROJECT, SECRET, &format!("{token}-2")).await;
    wait_index_has(
        &running,
        &expected_path(PROJECT, RECEIVER, &format!("{token}-2")),
    )
    .await;
    running.shutdown().await.unwrap();
    let logs = captured_logs();
    assert!(!logs.is_empty());
    assert!(!logs.contains(token), "token in logs");
}

fn reconcile_count(running: &Running) -> u64 {
    use kargo_harbor_receiver::metrics::{ConfigKind, ReconcileLabels, ReconcileResult};
    [
        ReconcileResult::Ready,
        ReconcileResult::NotReady,
        ReconcileResult::Error,
    ]
    .into_iter()
    .map(|result| {
        running
            .metrics()
            .controller
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: ConfigKind::ProjectConfig,
                result,
            })
            .get()
    })
    .sum()
}

#[tokio::test]
async fn reconciling_an_unchanged_object_makes_no_requests() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    wait_leader(&running).await;
    create_project(&env, PROJECT).await;
    wait_status(&env, PROJECT, "ready", is_ready).await;
    // Let the reconcile triggered by our own status write settle.
    let settled = writes_during(&env, Duration::from_millis(500)).await;
    assert_eq!(settled, 0);

    // An unrelated metadata change triggers a reconcile that needs nothing.
    let before = reconcile_count(&running);
    env.emulator.clear_requests();
    let api = env.project_configs(PROJECT);
    let patch = json!({"metadata": {"labels": {"unrelated": "change"}}});
    api.patch(
        PROJECT,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_until(WAIT, "a reconcile", || async {
        reconcile_count(&running) > before
    })
    .await;
    tokio::task::yield_now().await;
    let reqs: Vec<String> = env
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.verb.as_deref(), Some("watch")))
        .filter_map(|r| r.rbac())
        .collect();
    println!("requests during a no-op reconcile (the test's own patch included): {reqs:?}");
    assert_eq!(reqs, vec!["patch projectconfigs".to_owned()]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn secret_watch_is_metadata_only() {
    let env = Env::start().await;
    let running = env.start_app(&[]).await;
    wait_ready(&running).await;
    let secret_reads = secret_lists_and_watches(env.requests());
    assert!(!secret_reads.is_empty());
    for r in &secret_reads {
        let accept = r.accept.clone().unwrap_or_default();
        assert!(
            accept.contains("as=PartialObjectMetadata"),
            "{} {}?{} accept={accept}",
            r.method,
            r.path,
            r.query
        );
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn binary_writes_status_and_releases_the_lease_on_sigterm() {
    use k8s_openapi::api::coordination::v1::Lease;
    let env = Env::start().await;
    create_project(&env, PROJECT).await;
    let args = test_args(&["--identity", "binary-replica"]);
    let mut child = tokio::process::Command::new(binary_path())
        .args(&args[1..])
        .env("KUBECONFIG", env.emulator.kubeconfig_path())
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the binary");
    let leases: kube::Api<Lease> = kube::Api::namespaced(env.client.clone(), "default");
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("kargo-harbor-receiver")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
        }
    };
    wait_until(WAIT, "the binary to lead", || async {
        holder().await.as_deref() == Some("binary-replica")
    })
    .await;
    let (status, _) = wait_status(&env, PROJECT, "status by the binary", is_ready).await;
    assert_eq!(status.webhook_receivers[0].path, VECTOR_PATH);
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the binary exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(holder().await, None, "Lease not released");
    // The binary names itself (app::client_config): its Lease writes carry
    // the program's User-Agent, so they reach the request log for the RBAC check (tests/chart.rs).
    assert!(
        env.requests()
            .iter()
            .any(|r| is_program_request(r) && r.rbac().as_deref() == Some("update leases")),
        "no Lease update with the program's User-Agent"
    );
}

#[tokio::test]
async fn program_requests_carry_its_user_agent_and_the_tests_do_not() {
    let env = Env::start().await;
    create_namespace(&env.client, PROJECT).await;
    let running = start_leading_app(&env).await;
    running.shutdown().await.unwrap();
    let requests = env.requests();
    let (ours, theirs): (Vec<_>, Vec<_>) = requests.iter().partition(|r| is_program_request(r));
    assert!(
        ours.iter()
            .any(|r| r.rbac().as_deref() == Some("watch warehouses")),
        "{ours:#?}"
    );
    assert!(
        theirs
            .iter()
            .any(|r| r.rbac().as_deref() == Some("create namespaces")),
        "{theirs:#?}"
    );
    assert!(theirs.iter().all(|r| r.user_agent.is_none()), "{theirs:#?}");
    // Drop writes the program's requests for tests/chart.rs; the explicit
    // call writes another file with the same content.
    let path = env.write_request_log().unwrap().expect("a log file");
    assert!(path.starts_with(request_log_dir()), "{}", path.display());
    let logged: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(logged.len(), ours.len());
    assert!(logged
        .iter()
        .all(|r| r["userAgent"] == kargo_harbor_receiver::app::USER_AGENT));
}

#[tokio::test]
async fn conditions_of_others_are_kept() {
    let env = Env::start().await;
    create_project(&env, PROJECT).await;
    let foreign = json!({"status": {"conditions": [{
        "type": "Healthy", "status": "True", "reason": "SomeoneElse",
        "message": "kept", "lastTransitionTime": "2026-01-01T00:00:00Z"
    }]}});
    env.project_configs(PROJECT)
        .patch_status(
            PROJECT,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&foreign),
        )
        .await
        .unwrap();
    let running = env.start_app(&[]).await;
    let (status, _) = wait_status(&env, PROJECT, "ready", is_ready).await;
    let healthy = condition(&status, "Healthy").expect("foreign condition kept");
    assert_eq!(healthy.reason, "SomeoneElse");
    assert_eq!(status.conditions[0].type_, "Healthy");
    // Our Ready keeps its lastTransitionTime across later writes.
    let t0 = condition(&status, "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    request_refresh(&env.client, PROJECT, "r1").await;
    let (status, _) = wait_status(&env, PROJECT, "refresh handled", |s| {
        s.last_handled_refresh.as_deref() == Some("r1")
    })
    .await;
    assert_eq!(
        condition(&status, "Ready").unwrap().last_transition_time,
        t0
    );
    assert!(condition(&status, "Healthy").is_some());
    running.shutdown().await.unwrap();
}
