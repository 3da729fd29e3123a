//! End-to-end: our program beside a double of Kargo's management
//! controller (`e2e::kargo`), both writing the status of the same
//! ProjectConfigs and ClusterConfig, on Kargo's real CRDs. Every version of
//! the status is recorded from a watch; writes are counted per writer from
//! the emulator's request log (User-Agent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::kargo::{is_double_request, KargoDouble, KargoDoubleOptions};
use e2e::*;
use futures::StreamExt;
use kargo_api::{ClusterConfig, ConfigStatus, ProjectConfig};
use kargo_harbor_receiver::app::Running;
use kube::runtime::watcher;
use kube::Api;

const WAIT: Duration = Duration::from_secs(10);
const PROJECT: &str = "kargo-demo";
const SYSTEM_NS: &str = "kargo-sys";
const HARBOR: &str = "harbor-wh-receiver";
const HARBOR_SECRET: &str = "harbor-wh-secret";
const GITHUB: &str = "gh";
const GITHUB_SECRET: &str = "gh-secret";
const TOKEN: &str = "test-auth-token-123";
const ROTATED: &str = "rotated-token-456";
/// The double requeues every second: a window of several requeues.
const REQUEUE: Duration = Duration::from_secs(1);
const QUIET_WINDOW: Duration = Duration::from_secs(4);
/// Kargo's base URL when it differs from ours ([`BASE_URL`]).
const KARGO_BASE_URL: &str = "https://kargo.example.com/kargo";

/// Every status version a watch saw, in order.
#[derive(Clone, Default)]
struct Samples(Arc<Mutex<Vec<ConfigStatus>>>);

impl Samples {
    fn all(&self) -> Vec<ConfigStatus> {
        self.0.lock().unwrap().clone()
    }
}

/// Records every status version of the objects of `api`.
fn record<K>(api: Api<K>) -> (Samples, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K: HasStatus,
{
    let samples = Samples::default();
    let sink = samples.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event {
                if let Some(s) = o.status() {
                    sink.0.lock().unwrap().push(s.clone());
                }
            }
        }
    });
    (samples, task)
}

/// The status of both config kinds.
trait HasStatus {
    fn status(&self) -> Option<&ConfigStatus>;
}

impl HasStatus for ProjectConfig {
    fn status(&self) -> Option<&ConfigStatus> {
        self.status.as_ref()
    }
}

impl HasStatus for ClusterConfig {
    fn status(&self) -> Option<&ConfigStatus> {
        self.status.as_ref()
    }
}

/// Successful status writes of each side on `resource`: (ours, Kargo's).
fn writes(env: &Env, resource: &str) -> (usize, usize) {
    let requests = env.requests();
    let count = |mine: &dyn Fn(&RequestRecord) -> bool| {
        requests
            .iter()
            .filter(|r| {
                mine(r)
                    && r.resource.as_deref() == Some(resource)
                    && r.subresource.as_deref() == Some("status")
                    && matches!(r.verb.as_deref(), Some("patch") | Some("update"))
                    && r.status < 300
            })
            .count()
    };
    (count(&is_program_request), count(&is_double_request))
}

/// The writes of each side during a quiet window.
async fn writes_during(env: &Env, resource: &str, window: Duration) -> (usize, usize) {
    env.emulator.clear_requests();
    tokio::time::sleep(window).await;
    writes(env, resource)
}

fn entry<'a>(s: &'a ConfigStatus, name: &str) -> Option<&'a kargo_api::WebhookReceiverDetails> {
    s.webhook_receivers.iter().find(|d| d.name == name)
}

fn ready(s: &ConfigStatus) -> Option<(String, String, String)> {
    condition(s, "Ready").map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// `/<type>/hex(sha256(project + name + value))`.
fn kargo_path(type_: &str, project: &str, name: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{project}{name}{value}").as_bytes());
    format!("/{type_}/{}", hex::encode(digest))
}

async fn start_leading_app(env: &Env) -> Running {
    let running = env
        .start_app(&["--system-resources-namespace", SYSTEM_NS])
        .await;
    wait_until(WAIT, "leadership and readiness", || async {
        running.is_ready() && running.metrics().controller.leader.get() == 1
    })
    .await;
    running
}

fn start_double(env: &Env, base_url: &str) -> KargoDouble {
    KargoDouble::start(
        env.client.clone(),
        KargoDoubleOptions::new(base_url)
            .requeue(REQUEUE)
            .system_resources_namespace(SYSTEM_NS),
    )
    .unwrap_or_else(|e| panic!("double: {e}"))
}

/// Which config kind a scenario runs on.
#[derive(Clone, Copy)]
enum Kind {
    Project,
    Cluster,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::Project => "projectconfigs",
            Kind::Cluster => "clusterconfigs",
        }
    }
    fn project(self) -> &'static str {
        match self {
            Kind::Project => PROJECT,
            Kind::Cluster => "",
        }
    }
    fn secrets_ns(self) -> &'static str {
        match self {
            Kind::Project => PROJECT,
            Kind::Cluster => SYSTEM_NS,
        }
    }
    fn synced(self) -> &'static str {
        match self {
            Kind::Project => "ProjectConfig is synced and ready for use",
            Kind::Cluster => "ClusterConfig is synced and ready for use",
        }
    }
    async fn status(self, env: &Env) -> Option<ConfigStatus> {
        match self {
            Kind::Project => project_status(&env.client, PROJECT).await,
            Kind::Cluster => cluster_status(&env.client).await,
        }
    }
    async fn wait_status(
        self,
        env: &Env,
        what: &str,
        pred: impl Fn(&ConfigStatus) -> bool,
    ) -> ConfigStatus {
        wait_for(WAIT, what, || {
            let pred = &pred;
            async move { self.status(env).await.filter(|s| pred(s)) }
        })
        .await
    }
    async fn apply(self, env: &Env, receivers: Vec<serde_json::Value>) {
        match self {
            Kind::Project => {
                apply_project_config(&env.client, PROJECT, receivers).await;
            }
            Kind::Cluster => {
                apply_cluster_config(&env.client, receivers).await;
            }
        }
    }
    fn record(self, env: &Env) -> (Samples, tokio::task::JoinHandle<()>) {
        match self {
            Kind::Project => record(env.project_configs(PROJECT)),
            Kind::Cluster => record(env.cluster_configs()),
        }
    }
}

/// A GitHub receiver and a Harbor receiver, both writers running: the
/// GitHub entry is in every status version, the Harbor URL is right in
/// every one, the steady state has no write, a rotation one write of ours.
async fn github_and_harbor_converge(kind: Kind) {
    let env = Env::start().await;
    create_namespace(&env.client, PROJECT).await;
    create_namespace(&env.client, SYSTEM_NS).await;
    let ns = kind.secrets_ns();
    put_secret(&env.client, ns, GITHUB_SECRET, &[("secret", "gh-value")]).await;
    put_auth_secret(&env.client, ns, HARBOR_SECRET, TOKEN).await;
    let (samples, recorder) = kind.record(&env);
    let double = start_double(&env, BASE_URL);
    let running = start_leading_app(&env).await;
    kind.apply(
        &env,
        vec![
            github_receiver(GITHUB, GITHUB_SECRET),
            harbor_receiver(HARBOR, HARBOR_SECRET),
        ],
    )
    .await;

    let project = kind.project();
    let gh_path = kargo_path("github", project, GITHUB, "gh-value");
    let old_path = kargo_path("harbor", project, HARBOR, TOKEN);
    let new_path = kargo_path("harbor", project, HARBOR, ROTATED);
    let synced = |path: &str| {
        let path = path.to_owned();
        move |s: &ConfigStatus| {
            let names: Vec<&str> = s
                .webhook_receivers
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            names == [GITHUB, HARBOR]
                && entry(s, HARBOR).is_some_and(|d| d.path == path)
                && ready(s).is_some_and(|r| r.1 == "Synced")
                && s.observed_generation == Some(1)
        }
    };
    let status = kind
        .wait_status(&env, "both entries, synced", synced(&old_path))
        .await;
    assert_eq!(
        ready(&status).unwrap(),
        ("True".into(), "Synced".into(), kind.synced().into())
    );
    assert!(condition(&status, "Reconciling").is_none());

    // Steady state: the double requeues every second, nobody writes.
    let (ours, kargo) = writes_during(&env, kind.resource(), QUIET_WINDOW).await;
    println!("steady window of {QUIET_WINDOW:?}: our status writes {ours}, Kargo's {kargo}");
    assert_eq!((ours, kargo), (0, 0), "steady state writes (ours, Kargo's)");
    assert!(double.reconciles() >= 3, "the double requeued");

    // A rotation: we get there first (the Secret watch), once.
    env.emulator.clear_requests();
    put_auth_secret(&env.client, ns, HARBOR_SECRET, ROTATED).await;
    kind.wait_status(&env, "the rotated path", synced(&new_path))
        .await;
    wait_until(WAIT, "the rotated path routed", || async {
        running.index().routes.lookup(&new_path).is_some()
    })
    .await;
    // Then several of the double's requeues: both settled.
    tokio::time::sleep(QUIET_WINDOW).await;
    let (ours, kargo) = writes(&env, kind.resource());
    println!("rotation + {QUIET_WINDOW:?}: our status writes {ours}, Kargo's {kargo}");
    assert!(ours <= 1, "our writes after a rotation: {ours}");
    assert!(ours + kargo >= 1, "somebody wrote the rotated path");
    let (ours, kargo) = writes_during(&env, kind.resource(), QUIET_WINDOW).await;
    assert_eq!((ours, kargo), (0, 0), "settled after the rotation");

    // Every status version: the GitHub entry (once Kargo wrote it) as Kargo
    // wrote it; the Harbor URL one of the two right ones.
    let all = samples.all();
    assert!(!all.is_empty());
    let first_gh = all
        .iter()
        .position(|s| entry(s, GITHUB).is_some())
        .expect("Kargo's GitHub entry");
    for s in &all[first_gh..] {
        let gh = entry(s, GITHUB).unwrap_or_else(|| panic!("GitHub entry lost: {s:?}"));
        assert_eq!(
            (gh.path.as_str(), gh.url.clone()),
            (gh_path.as_str(), format!("{BASE_URL}{gh_path}"))
        );
    }
    for s in &all {
        if let Some(h) = entry(s, HARBOR) {
            assert!(h.path == old_path || h.path == new_path, "{h:?}");
            assert_eq!(h.url, format!("{BASE_URL}{}", h.path));
        }
    }
    recorder.abort();
    double.stop().await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn project_config_github_and_harbor_converge() {
    github_and_harbor_converge(Kind::Project).await;
}

#[tokio::test]
async fn cluster_config_github_and_harbor_converge() {
    github_and_harbor_converge(Kind::Cluster).await;
}

#[tokio::test]
async fn a_github_only_config_gets_no_write_of_ours() {
    let env = Env::start().await;
    create_namespace(&env.client, PROJECT).await;
    put_secret(&env.client, PROJECT, GITHUB_SECRET, &[("secret", "v")]).await;
    let double = start_double(&env, BASE_URL);
    let running = start_leading_app(&env).await;
    env.emulator.clear_requests();
    Kind::Project
        .apply(&env, vec![github_receiver(GITHUB, GITHUB_SECRET)])
        .await;
    let status = Kind::Project
        .wait_status(&env, "Kargo's entry", |s| entry(s, GITHUB).is_some())
        .await;
    assert_eq!(status.webhook_receivers.len(), 1);
    tokio::time::sleep(QUIET_WINDOW).await;
    let (ours, _) = writes(&env, "projectconfigs");
    assert_eq!(ours, 0, "our writes on a GitHub-only config");
    assert_eq!(
        Kind::Project.status(&env).await.unwrap().webhook_receivers,
        status.webhook_receivers
    );
    double.stop().await;
    running.shutdown().await.unwrap();
}

/// Kargo's base URL differs from ours: Kargo's path is kept (after a
/// rotation with the new hash), both are served with the token check, one
/// warning, no flapping.
#[tokio::test]
async fn a_different_kargo_base_url_is_kept_served_and_warned_about() {
    let env = Env::start().await;
    create_namespace(&env.client, PROJECT).await;
    put_auth_secret(&env.client, PROJECT, HARBOR_SECRET, TOKEN).await;
    let double = start_double(&env, KARGO_BASE_URL);
    let running = start_leading_app(&env).await;
    Kind::Project
        .apply(&env, vec![harbor_receiver(HARBOR, HARBOR_SECRET)])
        .await;
    let ours = kargo_path("harbor", PROJECT, HARBOR, TOKEN);
    let kargos = format!("/kargo{ours}");
    let status = Kind::Project
        .wait_status(&env, "Kargo's path", |s| {
            entry(s, HARBOR).is_some_and(|d| d.path == kargos)
        })
        .await;
    assert_eq!(
        entry(&status, HARBOR).unwrap().url,
        format!("https://kargo.example.com{kargos}")
    );
    wait_until(WAIT, "both paths routed", || async {
        let routes = &running.index().routes;
        routes.lookup(&ours).is_some() && routes.lookup(&kargos).is_some()
    })
    .await;

    // No flapping: nobody writes over several requeues.
    let (w_ours, w_kargo) = writes_during(&env, "projectconfigs", QUIET_WINDOW).await;
    assert_eq!(
        (w_ours, w_kargo),
        (0, 0),
        "writes (ours, Kargo's) with two bases"
    );
    assert_eq!(
        Kind::Project
            .status(&env)
            .await
            .and_then(|s| entry(&s, HARBOR).map(|d| d.path.clone())),
        Some(kargos.clone())
    );

    // Both paths answer, with the token check.
    let http = http_client();
    for path in [&ours, &kargos] {
        let url = format!("http://{}{path}", running.listen_addr);
        let good = send(
            &http,
            http::Method::POST,
            &url,
            &[("authorization", TOKEN)],
            "{}",
        )
        .await;
        assert_eq!(good.status.as_u16(), 400, "{path}: {}", good.body);
        let bad = send(
            &http,
            http::Method::POST,
            &url,
            &[("authorization", "nope")],
            "{}",
        )
        .await;
        assert_eq!(
            (bad.status.as_u16(), bad.body.trim_end()),
            (401, r#"{"error":"unauthorized"}"#)
        );
    }

    // Said once: a Warning Event, the metric, a log line naming both bases.
    let events = || async {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(env.client.clone(), PROJECT);
        api.list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("PublishedBaseDiffers"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let warned = wait_for(WAIT, "the Warning Event", || async {
        let e = events().await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].type_.as_deref(), Some("Warning"));
    let note = warned[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("\"/kargo\"") && note.contains("\"/\""),
        "{note}"
    );
    assert!(!note.contains(&ours[8..]), "the hash is a secret: {note}");
    let metrics = running.metrics_text();
    assert!(
        metrics.contains("published_base_differs_total{kind=\"project_config\"} 1"),
        "{metrics}"
    );
    let logs = captured_logs();
    assert!(
        logs.contains("our_base_path=\"/\"") || logs.contains("our_base_path=/"),
        "log line with both bases"
    );
    assert!(logs.contains("/kargo"));

    // A rotation: Kargo's base with the new hash, served; one warning still.
    env.emulator.clear_requests();
    put_auth_secret(&env.client, PROJECT, HARBOR_SECRET, ROTATED).await;
    let rotated = format!("/kargo{}", kargo_path("harbor", PROJECT, HARBOR, ROTATED));
    Kind::Project
        .wait_status(&env, "Kargo's base, new hash", |s| {
            entry(s, HARBOR).is_some_and(|d| d.path == rotated)
        })
        .await;
    wait_until(WAIT, "the rotated Kargo path routed", || async {
        running.index().routes.lookup(&rotated).is_some()
    })
    .await;
    tokio::time::sleep(QUIET_WINDOW).await;
    let (w_ours, w_kargo) = writes(&env, "projectconfigs");
    println!(
        "two bases, rotation + {QUIET_WINDOW:?}: our status writes {w_ours}, Kargo's {w_kargo}"
    );
    assert!(w_ours <= 1, "our writes after the rotation: {w_ours}");
    let (w_ours, w_kargo) = writes_during(&env, "projectconfigs", QUIET_WINDOW).await;
    assert_eq!((w_ours, w_kargo), (0, 0), "settled after the rotation");
    assert_eq!(
        events().await.len(),
        1,
        "one warning per receiver and change"
    );
    double.stop().await;
    running.shutdown().await.unwrap();
}
