#![forbid(unsafe_code)]
//! End to end: `HarborWebhookRegistration` against the Harbor emulator and
//! kube-emulator. The program runs in-process; Harbor delivers to it over
//! loopback through a forwarder (its `--base-url`), exactly as it would in a
//! cluster: the URL and auth header in the policy are all Harbor knows.
//!
//! - applying a registration creates the policy (address, auth header,
//!   event type, enabled) and a push reaches the Warehouse;
//! - a rotation updates the policy; a push Harbor still sends with the old
//!   URL and token (its policy not updated yet) lands during the grace
//!   period, the next one on the new URL; the old URL stops at the end;
//! - an edit made in Harbor is repaired at the next resync;
//! - deleting the registration deletes the policy; a policy we did not
//!   create is left alone;
//! - wrong credentials, a missing permission, an unknown Harbor project and
//!   Harbor down each give their condition and recover when fixed;
//! - no token in logs, Events, status or metrics.

use std::time::Duration;

use e2e::harbor::{
    apply_registration, harbor_admin, ready, registration_spec, registration_status, robot_login,
    start_harbor, webhook_robot, Forward, HARBOR_HOST, HARBOR_PROJECT, ROBOT, ROBOT_SECRET,
};
use e2e::*;
use harbor_emulator::{
    ApiFault, Handle as Harbor, Policy, ProjectSpec, PushSpec, RobotSpec, Status,
};
use harbor_registration_api::HarborWebhookRegistration;
use http::Method;
use kargo_harbor_receiver::app::Running;
use kube::Api;
use serde_json::json;

const NS: &str = "kargo-demo";
const RECEIVER: &str = "harbor-wh-receiver";
const SECRET: &str = "harbor-wh-secret";
const TOKEN: &str = "test-auth-token-123";
const ROTATED: &str = "rotated-token-456";
const REGISTRATION: &str = "registration";
const CREDENTIALS: &str = "harbor-robot";
/// Our policy's default name: `kargo-<namespace>-<registration>`.
const POLICY: &str = "kargo-kargo-demo-registration";
const DEADLINE: Duration = Duration::from_secs(30);

/// One test's world: the API server, Harbor, and the program serving on
/// the forwarder's URL, with project `kargo-demo` (receiver, Secret, a
/// Warehouse on `harbor.example.com/library/app`) and the robot's Secret.
struct World {
    env: Env,
    harbor: Harbor,
    app: Running,
    base_url: String,
}

async fn world(extra: &[&str]) -> World {
    let env = Env::start().await;
    // Deliveries: 3 s timeout and retries scaled to 30 ms and ~0.2–1 s.
    let harbor = start_harbor(0.01).await;
    let forward = Forward::bind().await;
    let base_url = forward.base_url();
    let mut args = vec!["--base-url", base_url.as_str()];
    args.extend_from_slice(extra);
    let app = env.start_app(&args).await;
    forward.to(app.listen_addr);
    // The forwarder lives as long as the test's runtime.
    std::mem::forget(forward);
    env.create_harbor_project(NS, RECEIVER, SECRET, TOKEN).await;
    apply_warehouse(
        &env.client,
        NS,
        "app",
        json!([image_subscription(&format!(
            "{HARBOR_HOST}/{HARBOR_PROJECT}/app"
        ))]),
    )
    .await;
    put_credentials(&env, &robot_login(HARBOR_PROJECT), ROBOT_SECRET).await;
    World {
        env,
        harbor,
        app,
        base_url,
    }
}

/// The robot's Secret [`CREDENTIALS`], with this login.
async fn put_credentials(env: &Env, username: &str, password: &str) {
    let data = [("username", username), ("password", password)];
    put_secret(&env.client, NS, CREDENTIALS, &data).await;
}

impl World {
    async fn register(&self, projects: &[&str]) -> HarborWebhookRegistration {
        self.register_with(projects, json!({})).await
    }

    /// Registers [`RECEIVER`] in `projects` with these `spec.policy` settings.
    async fn register_with(
        &self,
        projects: &[&str],
        policy: serde_json::Value,
    ) -> HarborWebhookRegistration {
        let mut spec = registration_spec(&self.harbor.url(), projects, CREDENTIALS, RECEIVER);
        spec["policy"] = policy;
        apply_registration(&self.env.client, NS, REGISTRATION, spec).await
    }

    /// Registers [`RECEIVER`] in [`HARBOR_PROJECT`] and waits until it is synced.
    async fn register_synced(&self) {
        self.register(&[HARBOR_PROJECT]).await;
        self.wait_ready("True", "Synced").await;
    }

    /// Creates `policy` in [`HARBOR_PROJECT`] as Harbor's admin, as someone
    /// would by hand.
    async fn create_by_hand(&self, policy: serde_json::Value) {
        let path = format!("/projects/{HARBOR_PROJECT}/webhook/policies");
        let answer = harbor_admin(&self.harbor, Method::POST, &path, Some(policy)).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }

    /// The URL the program serves `receiver` of `project` (`""`: the
    /// ClusterConfig) at, with `token`.
    fn receiver_url(&self, project: &str, receiver: &str, token: &str) -> String {
        use kargo_harbor_receiver::core::receiver_path::{receiver_path, BaseUrl};
        let base = BaseUrl::parse(&self.base_url).unwrap();
        format!(
            "{}{}",
            self.base_url,
            receiver_path(&base, project, receiver, token)
        )
    }

    /// Waits until the registration's Ready condition has `status` and
    /// `reason`; returns its message.
    async fn wait_ready(&self, status: &str, reason: &str) -> String {
        let what = format!("registration Ready={status} ({reason})");
        wait_for(DEADLINE, &what, || async {
            let s = registration_status(&self.env.client, NS, REGISTRATION).await?;
            let c = ready(&s)?;
            (c.status == status && c.reason == reason).then(|| c.message.clone())
        })
        .await
    }

    /// Waits until registration `name` is Ready.
    async fn wait_named_ready(&self, name: &str) {
        wait_until(DEADLINE, &format!("registration {name} ready"), || async {
            let s = registration_status(&self.env.client, NS, name).await;
            s.as_ref()
                .and_then(ready)
                .is_some_and(|c| c.status == "True")
        })
        .await;
    }

    /// Waits for `reason` naming `needle`, clears Harbor's fault, waits for
    /// the recovery.
    async fn unreachable_until_fault_cleared(&self, needle: &str) {
        let message = self.wait_ready("False", "HarborUnreachable").await;
        assert!(message.contains(needle), "{message}");
        self.harbor.set_fault(None);
        self.wait_ready("True", "Synced").await;
    }

    /// Our policy in the project, once it satisfies `check`.
    async fn wait_policy(&self, what: &str, check: impl Fn(&Policy) -> bool) -> Policy {
        wait_for(DEADLINE, what, || async {
            self.harbor
                .policies(Some(HARBOR_PROJECT))
                .into_iter()
                .find(|p| p.name == POLICY && check(p))
        })
        .await
    }

    /// The receiver URL as the ProjectConfig's status publishes it, once it
    /// is the one derived from `token`.
    async fn wait_receiver_url(&self, token: &str) -> String {
        let want = self.receiver_url(NS, RECEIVER, token);
        wait_for(DEADLINE, "the receiver URL in status", || async {
            let s = project_status(&self.env.client, NS).await?;
            s.webhook_receivers
                .iter()
                .any(|r| r.url == want)
                .then(|| want.clone())
        })
        .await
    }

    /// Pushes `app:<tag>` in Harbor; waits until its delivery is final and
    /// returns the task's status and attempts.
    async fn push(&self, tag: &str) -> (Status, i32) {
        let deliveries = self
            .harbor
            .push(PushSpec::tag(HARBOR_PROJECT, "app", tag))
            .expect("push");
        assert_eq!(
            deliveries.len(),
            1,
            "one policy, one delivery: {deliveries:?}"
        );
        let (_, task) = self
            .harbor
            .wait_execution_done(deliveries[0].execution_id, DEADLINE)
            .await
            .expect("delivery done");
        (task.status, task.run_count)
    }

    async fn refresh_value(&self) -> Option<String> {
        use kube::ResourceExt;
        self.env
            .warehouses(NS)
            .get("app")
            .await
            .ok()?
            .annotations()
            .get(kargo_api::REFRESH_ANNOTATION)
            .cloned()
    }

    async fn wait_refresh_after(&self, before: Option<String>) {
        wait_until(DEADLINE, "the Warehouse refreshed", || async {
            let now = self.refresh_value().await;
            now.is_some() && now != before
        })
        .await;
    }

    /// Events on the registration (reason, note).
    async fn events(&self) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.env.client.clone(), NS);
        api.list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.kind.as_deref() == Some("HarborWebhookRegistration"))
            })
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_registration_creates_the_policy_and_a_push_refreshes_the_warehouse() {
    let w = world(&[]).await;
    let applied = std::time::Instant::now();
    w.register(&[HARBOR_PROJECT]).await;
    let url = w.wait_receiver_url(TOKEN).await;
    let message = w.wait_ready("True", "Synced").await;
    println!(
        "registration applied → Ready (policy created): {:?}",
        applied.elapsed()
    );
    assert_eq!(
        message,
        format!("webhook policy {POLICY:?} registered in 1 Harbor project(s)")
    );

    let policies = w.harbor.policies(Some(HARBOR_PROJECT));
    assert_eq!(policies.len(), 1, "{policies:?}");
    let p = &policies[0];
    assert_eq!(p.name, POLICY);
    assert!(p.enabled);
    assert_eq!(p.event_types, ["PUSH_ARTIFACT"]);
    assert_eq!(p.targets.len(), 1);
    let t = &p.targets[0];
    assert_eq!(
        (t.kind.as_str(), t.address.as_str()),
        ("http", url.as_str())
    );
    assert_eq!(t.auth_header, TOKEN);
    assert_eq!(t.payload_format, "Default");
    assert!(!t.skip_cert_verify);
    assert!(p
        .description
        .contains("[managed-by=kargo-harbor-receiver registration=kargo-demo/registration]"));

    let status = registration_status(&w.env.client, NS, REGISTRATION)
        .await
        .unwrap();
    assert_eq!(status.url.as_deref(), Some(url.as_str()));
    assert_eq!(status.projects.len(), 1);
    assert_eq!(status.projects[0].policy_id, Some(p.id));
    assert!(status.projects[0].synced);
    assert!(status.last_synced_time.is_some());

    let before = w.refresh_value().await;
    assert_eq!(w.push("1.2.3").await, (Status::Success, 1));
    w.wait_refresh_after(before).await;
    let reasons: Vec<String> = w.events().await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.contains(&"PolicyCreated".to_owned()), "{reasons:?}");

    // The steady state does not write: no second create, no update.
    let writes = || {
        w.harbor
            .requests()
            .iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "DELETE"))
            .count()
    };
    assert_eq!(writes(), 1, "one POST");

    // A rotation reaches Harbor's policy: measured, not asserted.
    let rotated = std::time::Instant::now();
    put_auth_secret(&w.env.client, NS, SECRET, ROTATED).await;
    w.wait_policy("the rotated token in Harbor", |p| {
        p.targets[0].auth_header == ROTATED
    })
    .await;
    println!(
        "Secret rotated → Harbor policy updated: {:?}",
        rotated.elapsed()
    );
    assert_eq!(writes(), 2, "one PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_updates_the_policy_and_harbors_old_url_keeps_working_for_the_grace_period() {
    let w = world(&["--rotation-grace-period", "6s"]).await;
    w.register(&[HARBOR_PROJECT]).await;
    let old_url = w.wait_receiver_url(TOKEN).await;
    w.wait_ready("True", "Synced").await;

    // Harbor's API is down while the Secret rotates, so its policy still
    // has the old URL and token when the next push is delivered: exactly
    // what deliveries queued before a policy update look like.
    w.harbor.set_fault(Some(ApiFault::InternalError));
    put_auth_secret(&w.env.client, NS, SECRET, ROTATED).await;
    let new_url = w.wait_receiver_url(ROTATED).await;
    assert_ne!(new_url, old_url);
    let status = project_status(&w.env.client, NS).await.unwrap();
    assert_eq!(
        status.webhook_receivers.len(),
        1,
        "status shows only the new URL"
    );

    let before = w.refresh_value().await;
    assert_eq!(
        w.push("1.2.4").await,
        (Status::Success, 1),
        "old URL, old token: accepted"
    );
    w.wait_refresh_after(before).await;
    let grace = r#"kargo_harbor_receiver_webhook_grace_period_requests_total{project="kargo-demo",receiver="harbor-wh-receiver",outcome="refreshed"} 1"#;
    assert!(
        w.app.metrics_text().contains(grace),
        "{}",
        w.app.metrics_text()
    );

    // Harbor back: the policy gets the new URL and token.
    w.harbor.set_fault(None);
    let p = w
        .wait_policy("the policy updated to the new URL and token", |p| {
            p.targets[0].address == new_url && p.targets[0].auth_header == ROTATED
        })
        .await;
    assert!(p.enabled);
    w.wait_ready("True", "Synced").await;
    let before = w.refresh_value().await;
    assert_eq!(w.push("1.2.5").await, (Status::Success, 1));
    w.wait_refresh_after(before).await;
    assert!(
        w.app.metrics_text().contains(grace),
        "the new URL is not a grace path"
    );
    let updated: Vec<String> = w
        .events()
        .await
        .into_iter()
        .filter(|(r, _)| r == "PolicyUpdated")
        .map(|(_, n)| n)
        .collect();
    assert!(
        updated
            .iter()
            .any(|n| n.ends_with(": address, auth header")),
        "{updated:?}"
    );

    // The grace period ends: the old URL answers 404, even to the old token.
    let old = old_url.replacen(&w.base_url, &format!("http://{}", w.app.listen_addr), 1);
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/harbor/push-tag.json"
    ))
    .unwrap();
    wait_until(DEADLINE, "the old URL to stop answering", || async {
        let a = send(
            &http_client(),
            Method::POST,
            &old,
            &[("authorization", TOKEN)],
            body.clone(),
        )
        .await;
        a.status == 404
    })
    .await;

    // No token anywhere we write or log.
    let logs = captured_logs();
    let events = format!("{:?}", w.events().await);
    let status =
        serde_json::to_string(&registration_status(&w.env.client, NS, REGISTRATION).await).unwrap();
    let metrics = w.app.metrics_text();
    for secret in [TOKEN, ROTATED, ROBOT_SECRET] {
        for (what, text) in [
            ("logs", &logs),
            ("Events", &events),
            ("status", &status),
            ("metrics", &metrics),
        ] {
            assert!(!text.contains(secret), "{what} contain a secret");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_harbor_is_repaired_at_the_next_resync() {
    let w = world(&["--registration-resync", "1s"]).await;
    w.register_with(&[HARBOR_PROJECT], json!({"payloadFormat": "CloudEvents"}))
        .await;
    w.wait_ready("True", "Synced").await;
    let p = w.wait_policy("the policy", |_| true).await;
    assert_eq!(p.targets[0].payload_format, "CloudEvents");

    // Someone disables it and points it elsewhere, in Harbor's UI.
    let mut edited = serde_json::to_value(p.to_json()).unwrap();
    edited["enabled"] = json!(false);
    edited["targets"][0]["address"] = json!("https://elsewhere.example.com/hook");
    let path = format!("/projects/{HARBOR_PROJECT}/webhook/policies/{}", p.id);
    let answer = harbor_admin(&w.harbor, Method::PUT, &path, Some(edited)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!w.harbor.policies(Some(HARBOR_PROJECT))[0].enabled);

    let repaired = w
        .wait_policy("the edit repaired", |q| {
            q.enabled && q.targets[0].address == p.targets[0].address
        })
        .await;
    assert_eq!(repaired.id, p.id, "repaired in place, not recreated");
    let before = w.refresh_value().await;
    assert_eq!(
        w.push("1.2.3").await,
        (Status::Success, 1),
        "CloudEvents delivered"
    );
    w.wait_refresh_after(before).await;
    // The repair's Event is published after the policy write.
    wait_until(DEADLINE, "an Event naming what was repaired", || async {
        w.events()
            .await
            .iter()
            .any(|(_, note)| note.ends_with(": enabled, address"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_registration_deletes_the_policy() {
    let w = world(&[]).await;
    w.register_synced().await;
    assert_eq!(w.harbor.policies(Some(HARBOR_PROJECT)).len(), 1);
    // A policy someone else made stays.
    let theirs = json!({"name": "by-hand", "enabled": true, "event_types": ["PUSH_ARTIFACT"],
                        "targets": [{"type": "http", "address": "https://other.example.com/x"}]});
    w.create_by_hand(theirs).await;

    let api: Api<HarborWebhookRegistration> = Api::namespaced(w.env.client.clone(), NS);
    delete(&api, REGISTRATION).await;
    wait_until(
        DEADLINE,
        "the registration gone (finalizer removed)",
        || async { api.get_opt(REGISTRATION).await.is_ok_and(|r| r.is_none()) },
    )
    .await;
    let left: Vec<String> = w
        .harbor
        .policies(Some(HARBOR_PROJECT))
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(left, ["by-hand"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_our_name_that_we_did_not_create_is_left_alone() {
    let w = world(&[]).await;
    let theirs = json!({"name": POLICY, "description": "made by hand", "enabled": false,
                        "event_types": ["PUSH_ARTIFACT"],
                        "targets": [{"type": "http", "address": "https://other.example.com/x"}]});
    w.create_by_hand(theirs).await;
    w.register(&[HARBOR_PROJECT]).await;
    let message = w.wait_ready("False", "PolicyNameTaken").await;
    assert!(message.contains("spec.policy.name"), "{message}");
    let p = &w.harbor.policies(Some(HARBOR_PROJECT))[0];
    assert_eq!((p.description.as_str(), p.enabled), ("made by hand", false));
    // Renaming ours resolves it.
    w.register_with(&[HARBOR_PROJECT], json!({"name": "kargo-demo-webhook"}))
        .await;
    w.wait_ready("True", "Synced").await;
    assert_eq!(w.harbor.policies(Some(HARBOR_PROJECT)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_and_recover_when_fixed() {
    let w = world(&[]).await;
    put_credentials(&w.env, &robot_login(HARBOR_PROJECT), "wrong").await;
    w.register(&[HARBOR_PROJECT]).await;
    let message = w.wait_ready("False", "InvalidCredentials").await;
    assert!(message.contains("401"), "{message}");
    assert!(w.harbor.policies(None).is_empty());
    put_credentials(&w.env, &robot_login(HARBOR_PROJECT), ROBOT_SECRET).await;
    w.wait_ready("True", "Synced").await;
    assert_eq!(w.harbor.policies(None).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_reported_and_recovers_when_granted() {
    let w = world(&[]).await;
    // The robot may list and read, not create.
    w.harbor.add_robot(
        RobotSpec::project(HARBOR_PROJECT, ROBOT, ROBOT_SECRET).allow(
            HARBOR_PROJECT,
            "notification-policy",
            &["list", "read"],
        ),
    );
    w.register(&[HARBOR_PROJECT]).await;
    let message = w.wait_ready("False", "MissingPermission").await;
    assert!(message.contains("may not create"), "{message}");
    w.harbor.add_robot(webhook_robot(HARBOR_PROJECT));
    w.wait_ready("True", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_harbor_project_is_reported_and_recovers_when_created() {
    let w = world(&[]).await;
    w.register(&[HARBOR_PROJECT, "team-b"]).await;
    let message = w.wait_ready("False", "HarborProjectNotFound").await;
    assert!(message.contains("\"team-b\""), "{message}");
    let status = registration_status(&w.env.client, NS, REGISTRATION)
        .await
        .unwrap();
    let synced: Vec<(String, bool)> = status
        .projects
        .iter()
        .map(|p| (p.name.clone(), p.synced))
        .collect();
    assert_eq!(
        synced,
        [
            (HARBOR_PROJECT.to_owned(), true),
            ("team-b".to_owned(), false)
        ]
    );
    // The project appears, and a system robot (robot$kargo; a project
    // robot is limited to its project) gets the permissions in both.
    w.harbor.add_project(ProjectSpec::private("team-b"));
    let robot = RobotSpec::system(ROBOT, ROBOT_SECRET)
        .allow_webhooks(HARBOR_PROJECT)
        .allow_webhooks("team-b");
    w.harbor.add_robot(robot);
    put_credentials(&w.env, &format!("robot${ROBOT}"), ROBOT_SECRET).await;
    w.wait_ready("True", "Synced").await;
    assert_eq!(w.harbor.policies(Some("team-b")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_down_is_reported_and_recovers() {
    let w = world(&[]).await;
    w.harbor.set_fault(Some(ApiFault::Refuse));
    w.register(&[HARBOR_PROJECT]).await;
    w.unreachable_until_fault_cleared("cannot reach Harbor")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harbor_that_never_answers_slows_only_its_own_registration() {
    let w = world(&["--harbor-timeout", "20s"]).await;
    // This Harbor accepts connections and never answers.
    w.harbor.set_fault(Some(ApiFault::Hang));
    w.register(&[HARBOR_PROJECT]).await;
    // Another registration, to a healthy Harbor, syncs meanwhile.
    let healthy = start_harbor(0.01).await;
    let spec = registration_spec(&healthy.url(), &[HARBOR_PROJECT], CREDENTIALS, RECEIVER);
    apply_registration(&w.env.client, NS, "healthy", spec).await;
    w.wait_named_ready("healthy").await;
    assert_eq!(healthy.policies(None).len(), 1);
    let stuck = registration_status(&w.env.client, NS, REGISTRATION).await;
    assert!(
        stuck.as_ref().and_then(ready).is_none(),
        "the hanging Harbor's registration is still waiting: {stuck:?}"
    );
    // Its requests end at the timeout: unreachable, named so.
    w.unreachable_until_fault_cleared("did not answer within 20s")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_subcommand_shows_what_harbor_recorded() {
    let w = world(&[]).await;
    w.register_synced().await;
    assert_eq!(w.push("1.2.3").await, (Status::Success, 1));
    // Every attempt of the next delivery fails: the receiver's refresh
    // PATCH fails, so it answers 500, three times.
    w.env.emulator.inject(
        Fault::new(500)
            .method(Method::PATCH)
            .path_contains("/warehouses/app")
            .times(3),
    );
    assert_eq!(w.push("1.2.4").await, (Status::Error, 3));

    let kubeconfig = w.env.emulator.kubeconfig_path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary_path())
            .args(["deliveries", "--namespace", NS, "--name", REGISTRATION])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("running deliveries")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "HarborWebhookRegistration {NS}/{REGISTRATION}: webhook policy {POLICY:?} in {}",
            w.harbor.url()
        )
    );
    let id = w.harbor.policies(Some(HARBOR_PROJECT))[0].id;
    assert_eq!(
        lines[2],
        format!("project {HARBOR_PROJECT} (policy {id}): 2 most recent deliveries")
    );
    let row = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let failed = row(lines[4]);
    assert_eq!(
        failed[1..3],
        ["Error".to_owned(), "3".to_owned()],
        "{stdout}"
    );
    assert!(lines[4].contains("500"), "the job log's error: {stdout}");
    let ok = row(lines[5]);
    assert_eq!(ok[1..3], ["Success".to_owned(), "1".to_owned()], "{stdout}");
    for secret in [TOKEN, ROBOT_SECRET] {
        assert!(!stdout.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_config_receiver_is_registered_too() {
    let w = world(&[]).await;
    create_namespace(&w.env.client, "kargo-system-resources").await;
    put_auth_secret(
        &w.env.client,
        "kargo-system-resources",
        SECRET,
        "cluster-token",
    )
    .await;
    apply_cluster_config(
        &w.env.client,
        vec![harbor_receiver("cluster-receiver", SECRET)],
    )
    .await;
    let mut spec = registration_spec(
        &w.harbor.url(),
        &[HARBOR_PROJECT],
        CREDENTIALS,
        "cluster-receiver",
    );
    spec["receiver"]["config"] = json!("ClusterConfig");
    apply_registration(&w.env.client, NS, REGISTRATION, spec).await;
    w.wait_ready("True", "Synced").await;
    let p = w.wait_policy("the policy", |_| true).await;
    assert_eq!(
        p.targets[0].address,
        w.receiver_url("", "cluster-receiver", "cluster-token")
    );
    assert_eq!(p.targets[0].auth_header, "cluster-token");
    // A ClusterConfig receiver reaches the Warehouses of every project.
    let before = w.refresh_value().await;
    assert_eq!(w.push("1.2.3").await, (Status::Success, 1));
    w.wait_refresh_after(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_registers_as_its_comments_say() {
    let w = world(&[]).await;
    // examples/30-harbor-registration.yaml, pointed at this test's Harbor
    // (the file names the demo's).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/30-harbor-registration.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("url: http://127.0.0.1:18088"));
    let text = text.replace("http://127.0.0.1:18088", &w.harbor.url());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let out = tokio::process::Command::new("kubectl")
        .args(["apply", "-f"])
        .arg(file.path())
        .env("KUBECONFIG", w.env.emulator.kubeconfig_path())
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_named_ready("harbor").await;
    let policies = w.harbor.policies(Some(HARBOR_PROJECT));
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0].name, "kargo-kargo-demo-harbor",
        "the default name the comment gives"
    );
}
