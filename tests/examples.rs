//! The examples/ directory, exactly as the README and the demo use it: applied
//! with the real kubectl to kube-emulator (with Kargo's own CRDs), the URL read
//! back with the README's jsonpath, and the example Harbor payloads sent as
//! Harbor sends them. If an example rots, this fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::*;
use http::{Method, StatusCode};
use kargo_api::REFRESH_ANNOTATION;
use kube::Api;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);
/// The auth header in examples/10-harbor-receiver.yaml.
const AUTH_HEADER: &str = "test-auth-token-123";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "kubectl {args:?} warned: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// POSTs the example payload `file` as Harbor does; (status, body without
/// its final newline).
async fn post(url: &str, content_type: &str, token: &str, file: &str) -> (StatusCode, String) {
    let body = std::fs::read(examples().join("harbor").join(file)).expect("example payload");
    let headers = [
        ("content-type", content_type),
        ("authorization", token),
        ("user-agent", "Go-http-client/1.1"),
    ];
    let answer = send(&http_client(), Method::POST, url, &headers, body).await;
    (answer.status, answer.body.trim_end().to_owned())
}

async fn refresh_of(api: &Api<kargo_api::Warehouse>, name: &str) -> Option<String> {
    let w = api.get(name).await.expect("warehouse exists");
    w.metadata
        .annotations
        .and_then(|a| a.get(REFRESH_ANNOTATION).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_work_as_the_readme_says() {
    let env = Env::start().await;
    let app = env.start_app(&[]).await;
    let kc = env.emulator.kubeconfig_path().to_path_buf();
    let dir = examples();
    let file = |f: &str| dir.join(f).to_string_lossy().into_owned();

    kubectl(&kc, &["apply", "-f", &file("00-namespace.yaml")]).await;
    kubectl(
        &kc,
        &[
            "apply",
            "-f",
            &file("10-harbor-receiver.yaml"),
            "-f",
            &file("20-warehouses.yaml"),
        ],
    )
    .await;

    // The README's command for reading the URL.
    let receivers: Value = wait_for(DEADLINE, "status.webhookReceivers", || {
        let kc = kc.clone();
        async move {
            let out = kubectl(
                &kc,
                &[
                    "get",
                    "projectconfigs",
                    "kargo-demo",
                    "-n",
                    "kargo-demo",
                    "-o=jsonpath={.status.webhookReceivers}",
                ],
            )
            .await;
            serde_json::from_str::<Value>(&out)
                .ok()
                .filter(|v| v[0]["url"].is_string())
        }
    })
    .await;
    let path = receivers[0]["path"].as_str().expect("path").to_owned();
    // The example uses the vector token of docs/behaviour.md, so the path is the vector's.
    assert_eq!(
        path,
        "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec"
    );
    assert_eq!(receivers[0]["name"], "harbor-wh-receiver");
    let ready = kubectl(
        &kc,
        &["get", "projectconfigs", "-n", "kargo-demo", "--no-headers"],
    )
    .await;
    assert!(ready.contains("True"), "READY column: {ready}");

    let url = format!("http://{}{path}", app.listen_addr);
    let warehouses: Api<kargo_api::Warehouse> = Api::namespaced(env.client.clone(), "kargo-demo");

    let refreshed_one = (
        StatusCode::OK,
        r#"{"msg":"refreshed 1 warehouse(s)"}"#.to_owned(),
    );

    // push-tag.json: only app-v1 (the comments in 20-warehouses.yaml say why).
    let answer = post(&url, "application/json", AUTH_HEADER, "push-tag.json").await;
    assert_eq!(answer, refreshed_one);
    let first = refresh_of(&warehouses, "app-v1")
        .await
        .expect("app-v1 refreshed");
    assert_eq!(refresh_of(&warehouses, "app-v2").await, None);
    assert_eq!(refresh_of(&warehouses, "my-chart").await, None);

    // push-chart.json: the OCI chart subscription.
    let answer = post(&url, "application/json", AUTH_HEADER, "push-chart.json").await;
    assert_eq!(answer, refreshed_one);
    assert!(refresh_of(&warehouses, "my-chart").await.is_some());
    assert_eq!(refresh_of(&warehouses, "app-v2").await, None);

    // cloudevents-push.json: the same push in Harbor's CloudEvents format.
    let answer = post(
        &url,
        "application/cloudevents+json",
        AUTH_HEADER,
        "cloudevents-push.json",
    )
    .await;
    assert_eq!(answer, refreshed_one);
    let second = refresh_of(&warehouses, "app-v1")
        .await
        .expect("app-v1 refreshed");
    assert!(second > first, "{second} must be later than {first}");

    // The README's wrong-token example.
    let answer = post(&url, "application/json", "wrong", "push-tag.json").await;
    assert_eq!(
        answer,
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized"}"#.into()
        )
    );

    app.shutdown().await.expect("clean shutdown");
}

/// The README's rotation command ("Things to try"): it must keep the
/// Secret's `kargo.akuity.io/cred-type` label, which `kubectl apply` of a
/// freshly generated Secret would drop.
const ROTATE: &str = r#"kubectl patch secret harbor-wh-secret -n kargo-demo --type merge -p '{"stringData":{"auth-header":"rotated"}}'"#;

/// Runs the built binary with `args` against the emulator; (exit success,
/// stdout, stderr).
async fn program(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(binary_path())
        .args(args)
        .current_dir(examples().join(".."))
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status_url(kc: &Path) -> Option<String> {
    let out = kubectl(
        kc,
        &[
            "get",
            "projectconfigs",
            "kargo-demo",
            "-n",
            "kargo-demo",
            "-o=jsonpath={.status.webhookReceivers[0].url}",
        ],
    )
    .await;
    Some(out).filter(|u| !u.is_empty())
}

/// The app with a base URL that reaches it, as in the demo (send-test reads
/// the URL from status), and the examples applied with kubectl; the app and
/// its base URL.
async fn demo_setup(env: &Env) -> (kargo_harbor_receiver::app::Running, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base_url = format!("http://127.0.0.1:{port}");
    let mut config = test_config(&[]);
    config.base_url =
        kargo_harbor_receiver::core::receiver_path::BaseUrl::parse(&base_url).unwrap();
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let app = start_app(config, env.program_client().await).await;
    let kc = env.emulator.kubeconfig_path();
    for f in [
        "00-namespace.yaml",
        "10-harbor-receiver.yaml",
        "20-warehouses.yaml",
    ] {
        kubectl(kc, &["apply", "-f", &examples().join(f).to_string_lossy()]).await;
    }
    (app, base_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_send_test_and_rotation_work_on_the_demo_setup() {
    let env = Env::start().await;
    let (app, base_url) = demo_setup(&env).await;
    let kc = env.emulator.kubeconfig_path().to_path_buf();
    let dir = examples();
    let first_url = wait_for(DEADLINE, "the receiver URL", || status_url(&kc)).await;
    assert!(first_url.starts_with(&base_url), "{first_url}");

    // explain, from the cluster: why app-v2 and my-chart are not refreshed.
    let (ok, out, err) = program(
        &kc,
        &[
            "explain",
            "--project",
            "kargo-demo",
            "examples/harbor/push-tag.json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    for line in [
        "kargo-demo/app-v1 subscription 0 (image harbor.example.com/library/app): refreshed: tag 1.2.3: accepted",
        "kargo-demo/app-v2 subscription 0 (image harbor.example.com/library/app): not refreshed: tag 1.2.3: does not satisfy `^2.0.0`",
        "kargo-demo/my-chart: not refreshed: no subscription on the pushed repository",
        "result: 1 of 3 Warehouse(s) in project kargo-demo refreshed: kargo-demo/app-v1",
    ] {
        assert!(out.contains(line), "{line}\nin:\n{out}");
    }

    // send-test: URL from status, token from the Secret, answered 200.
    let warehouses: Api<kargo_api::Warehouse> = Api::namespaced(env.client.clone(), "kargo-demo");
    let send = [
        "send-test",
        "--project",
        "kargo-demo",
        "--repository",
        "harbor.example.com/library/app",
        "--tag",
        "1.2.3",
    ];
    let (ok, out, err) = program(&kc, &send).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("POST {first_url} ")), "{out}");
    assert!(
        out.contains(r#"HTTP 200 {"msg":"refreshed 1 warehouse(s)"}"#),
        "{out}"
    );
    assert!(
        !out.contains(AUTH_HEADER) && !err.contains(AUTH_HEADER),
        "{out}{err}"
    );
    let before = refresh_of(&warehouses, "app-v1")
        .await
        .expect("app-v1 refreshed");
    assert_eq!(refresh_of(&warehouses, "app-v2").await, None);
    assert_eq!(refresh_of(&warehouses, "my-chart").await, None);

    // A push that refreshes nothing: the log line points at explain.
    let nothing = [
        &send[..3],
        &[
            "--repository",
            "harbor.example.com/library/unknown",
            "--tag",
            "1.0.0",
        ],
    ]
    .concat();
    let (ok, out, err) = program(&kc, &nothing).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(r#"HTTP 200 {"msg":"refreshed 0 warehouse(s)"}"#),
        "{out}"
    );
    wait_until(DEADLINE, "the hint in the log", || async {
        captured_logs().contains("`kargo-harbor-receiver explain` with this payload says why")
    })
    .await;

    // The README's rotation keeps the label; the URL changes; send-test
    // follows it (new URL, new token) in CloudEvents format too.
    let readme = std::fs::read_to_string(dir.join("../README.md")).unwrap();
    assert!(
        readme.contains(ROTATE),
        "the README's rotation command is {ROTATE}"
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", ROTATE])
        .env("KUBECONFIG", &kc)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = env
        .secrets("kargo-demo")
        .get("harbor-wh-secret")
        .await
        .unwrap();
    assert_eq!(
        secret
            .metadata
            .labels
            .unwrap_or_default()
            .get("kargo.akuity.io/cred-type")
            .map(String::as_str),
        Some("generic")
    );
    let rotated = wait_for(DEADLINE, "a new URL", || {
        let kc = kc.clone();
        let first = first_url.clone();
        async move { status_url(&kc).await.filter(|u| *u != first) }
    })
    .await;
    let mut cloudevents = send.to_vec();
    cloudevents.extend(["--format", "cloudevents"]);
    let (ok, out, err) = program(&kc, &cloudevents).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("POST {rotated} ")), "{out}");
    let after = refresh_of(&warehouses, "app-v1")
        .await
        .expect("app-v1 refreshed");
    assert!(after > before, "{after} after {before}");

    // A refused delivery is said, and fails: the previous URL is still
    // served in its rotation grace period, but only with the previous token.
    let (ok, out, err) = program(&kc, &[&send[..], &["--url", &first_url]].concat()).await;
    assert!(!ok);
    assert!(out.contains("HTTP 401"), "{out}");
    assert!(err.starts_with("error: the receiver answered 401"), "{err}");
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_and_explain_reach_a_cluster_config_receiver() {
    let env = Env::start().await;
    let (app, base_url) = demo_setup(&env).await;
    let kc = env.emulator.kubeconfig_path().to_path_buf();
    // A ClusterConfig receiver; its Secret in the system resources namespace.
    create_namespace(&env.client, "kargo-system-resources").await;
    put_auth_secret(
        &env.client,
        "kargo-system-resources",
        "cluster-wh",
        "cluster-token",
    )
    .await;
    apply_cluster_config(
        &env.client,
        vec![harbor_receiver("cluster-harbor", "cluster-wh")],
    )
    .await;
    let url = wait_for(DEADLINE, "the ClusterConfig receiver URL", || async {
        cluster_status(&env.client)
            .await
            .and_then(|s| s.webhook_receivers.first().map(|r| r.url.clone()))
    })
    .await;
    assert!(url.starts_with(&base_url), "{url}");

    let (ok, out, err) = program(
        &kc,
        &[
            "send-test",
            "--cluster",
            "--repository",
            "harbor.example.com/library/app",
            "--tag",
            "1.2.3",
            "--format",
            "cloudevents",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("POST {url} ")), "{out}");
    assert!(
        out.contains(r#"HTTP 200 {"msg":"refreshed 1 warehouse(s)"}"#),
        "{out}"
    );
    assert!(!out.contains("cluster-token") && !err.contains("cluster-token"));

    let (ok, out, err) = program(&kc, &["explain", "--cluster", "-"]).await;
    assert!(!ok, "an empty stdin is no payload: {out}");
    assert!(err.starts_with("error: -: not a Harbor event"), "{err}");
    let (ok, out, err) = program(
        &kc,
        &[
            "explain",
            "--cluster",
            "examples/harbor/cloudevents-push.json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("result: 1 of 3 Warehouse(s) in any project (ClusterConfig receiver) refreshed: kargo-demo/app-v1"),
        "{out}"
    );
    app.shutdown().await.expect("clean shutdown");
}
