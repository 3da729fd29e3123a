//! End-to-end tests of the webhook receiver: kube-emulator with Kargo's
//! CRDs, the real controller filling the index from ProjectConfigs,
//! Secrets and Warehouses, the HTTP server, and real HTTP clients (hyper's
//! client, h2, TLS, and raw TCP for the misbehaving ones).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use e2e::*;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kargo_harbor_receiver::app::Running;
use kube::ResourceExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(20);
const TOKEN_1: &str = "e2e-token-one-9f86d081884c7d65";
const TOKEN_2: &str = "e2e-token-two-4a44dc15364204a8";
const APP: &str = "harbor.example.com/library/app";
/// The answer to a push that refreshed one Warehouse.
const REFRESHED_1: &str = r#"{"msg":"refreshed 1 warehouse(s)"}"#;

// ---------------------------------------------------------------- helpers

/// POST with `Authorization: token` (when given).
async fn post(client: &HttpClient, url: &str, token: Option<&str>, body: &str) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(t) = token {
        headers.push(("authorization", t));
    }
    send(client, Method::POST, url, &headers, body.to_owned()).await
}

fn assert_answer(a: &Answer, status: u16, body: &str, what: &str) {
    assert_eq!(a.status.as_u16(), status, "{what}: {a:?}");
    assert_eq!(a.body, format!("{body}\n"), "{what}");
    assert_eq!(
        a.headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{what}"
    );
}

fn sample(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/harbor-payloads")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Default-format push of `(resource_url, tag)` pairs.
fn push(resources: &[(&str, &str)]) -> String {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(url, tag)| json!({"resource_url": url, "tag": tag}))
        .collect();
    json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": resources}}).to_string()
}

fn push_tag(tag: &str) -> String {
    push(&[(&format!("{APP}:{tag}"), tag)])
}

fn semver_sub(repo: &str, constraint: &str) -> Value {
    json!({"image": {"repoURL": repo, "constraint": constraint}})
}

async fn refresh_value(env: &Env, ns: &str, name: &str) -> Option<String> {
    env.warehouses(ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("getting Warehouse {ns}/{name}: {e}"))
        .annotations()
        .get(kargo_api::REFRESH_ANNOTATION)
        .cloned()
}

fn url(app: &Running, path: &str) -> String {
    format!("http://{}{path}", app.listen_addr)
}

/// Waits until the controller indexed `paths` and `warehouses` Warehouses.
async fn wait_indexed(app: &Running, paths: &[&str], warehouses: usize) {
    wait_until(LONG, "receivers and Warehouses in the index", || async {
        let index = app.index();
        paths.iter().all(|p| index.routes.lookup(p).is_some())
            && index.sizes().warehouses == warehouses
    })
    .await;
}

/// Two projects, each with a Harbor receiver named `recv`:
/// - p1: `match` (^1.0.0 on app), `miss` (^2.0.0 on app), `other-repo`;
/// - p2: `match` (any semver on app).
struct Layout {
    env: Env,
    app: Running,
    client: HttpClient,
    path_1: String,
    path_2: String,
}

impl Layout {
    /// The URL of p1's receiver.
    fn url_1(&self) -> String {
        url(&self.app, &self.path_1)
    }

    /// POSTs `body` to p1's receiver with p1's token.
    async fn post_1(&self, body: &str) -> Answer {
        post(&self.client, &self.url_1(), Some(TOKEN_1), body).await
    }
}

async fn layout(extra_warehouses: &[(&str, &str, Value)], args: &[&str]) -> Layout {
    let env = Env::start().await;
    let c = &env.client;
    for (ns, token) in [("p1", TOKEN_1), ("p2", TOKEN_2)] {
        env.create_harbor_project(ns, "recv", "harbor-secret", token)
            .await;
    }
    apply_warehouse(c, "p1", "match", json!([semver_sub(APP, "^1.0.0")])).await;
    apply_warehouse(c, "p1", "miss", json!([semver_sub(APP, "^2.0.0")])).await;
    apply_warehouse(
        c,
        "p1",
        "other-repo",
        json!([image_subscription("harbor.example.com/library/other")]),
    )
    .await;
    apply_warehouse(c, "p2", "match", json!([image_subscription(APP)])).await;
    for (ns, name, subs) in extra_warehouses {
        create_namespace(c, ns).await;
        apply_warehouse(c, ns, name, subs.clone()).await;
    }
    let app = env.start_app(args).await;
    let path_1 = expected_path("p1", "recv", TOKEN_1);
    let path_2 = expected_path("p2", "recv", TOKEN_2);
    wait_indexed(&app, &[&path_1, &path_2], 4 + extra_warehouses.len()).await;
    Layout {
        env,
        app,
        client: http_client(),
        path_1,
        path_2,
    }
}

/// Writes `head` (and optionally streams a body) on a raw connection and
/// returns what the server answered before closing, as text.
async fn raw_exchange(addr: SocketAddr, head: String, body_chunks: Vec<Bytes>) -> String {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body_chunks {
            // The server may refuse and close while we are still sending.
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Err(_) => panic!(
                "no complete answer within {LONG:?}; got {:?}",
                String::from_utf8_lossy(&answer)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if complete_response(&answer) {
                    break;
                }
            }
        }
    }
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether `bytes` hold a whole HTTP/1.1 response with a Content-Length.
fn complete_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len = text[..end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    bytes.len() >= end + 4 + len
}

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn every_row_of_the_table() {
    let l = layout(&[], &[]).await;
    let (c, app) = (&l.client, &l.app);
    let ok = push_tag("1.2.3");

    // Health endpoints on the webhook listener.
    let h = send(c, Method::GET, &url(app, "/healthz"), &[], "").await;
    assert_eq!(h.status, 200);
    wait_until(LONG, "/readyz 200", || async {
        send(c, Method::GET, &url(app, "/readyz"), &[], "")
            .await
            .status
            == 200
    })
    .await;

    // 404: unknown path, whatever the method or token.
    for (method, path) in [
        (Method::POST, "/harbor/0000"),
        (Method::GET, "/"),
        (Method::POST, "/harbor"),
    ] {
        let a = send(
            c,
            method,
            &url(app, path),
            &[("authorization", TOKEN_1)],
            ok.clone(),
        )
        .await;
        assert_answer(&a, 404, r#"{"error":"not found"}"#, path);
    }
    // 405 with Allow: POST.
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let a = send(c, method.clone(), &url(app, &l.path_1), &[], "").await;
        assert_answer(
            &a,
            405,
            r#"{"error":"method not allowed"}"#,
            method.as_str(),
        );
        assert_eq!(a.headers["allow"], "POST");
    }
    // 401s (p2's token on p1's path is just a wrong token).
    let a = post(c, &url(app, &l.path_1), None, &ok).await;
    assert_answer(&a, 401, r#"{"error":"missing authorization"}"#, "no header");
    let a = post(c, &url(app, &l.path_1), Some(TOKEN_2), &ok).await;
    assert_answer(
        &a,
        401,
        r#"{"error":"unauthorized"}"#,
        "other project's token",
    );
    let a = post(
        c,
        &url(app, &l.path_1),
        Some(&format!("Bearer {TOKEN_1}")),
        &ok,
    )
    .await;
    assert_answer(&a, 401, r#"{"error":"unauthorized"}"#, "Bearer prefix");
    // 400s.
    for body in ["", "not json", "[]", "{}", r#"{"type":7}"#] {
        let a = post(c, &url(app, &l.path_1), Some(TOKEN_1), body).await;
        assert_answer(&a, 400, r#"{"error":"invalid request body"}"#, body);
    }
    for file in [
        "pull-artifact.json",
        "delete-artifact.json",
        "scanning-completed.json",
        "cloudevents-pull.json",
    ] {
        let a = post(c, &url(app, &l.path_1), Some(TOKEN_1), &sample(file)).await;
        assert_answer(&a, 400, r#"{"error":"unsupported event type"}"#, file);
    }
    // 200, nothing to refresh.
    let empty = r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#;
    let a = post(c, &url(app, &l.path_1), Some(TOKEN_1), empty).await;
    assert_answer(
        &a,
        200,
        r#"{"msg":"refreshed 0 warehouse(s)"}"#,
        "no resources",
    );
    assert_eq!(refresh_value(&l.env, "p1", "match").await, None);
    // 200, refreshed.
    let a = post(c, &url(app, &l.path_1), Some(TOKEN_1), &ok).await;
    assert_answer(&a, 200, REFRESHED_1, "push");
    assert!(refresh_value(&l.env, "p1", "match").await.is_some());

    // 413 rows need raw connections: see oversize_bodies_are_refused.

    // Metrics: outcomes per receiver, never the path.
    let m = send(
        c,
        Method::GET,
        &format!("http://{}/metrics", app.metrics_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for needle in [
        r#"kargo_harbor_receiver_webhook_requests_total{project="p1",receiver="recv",outcome="refreshed"} 2"#,
        r#"kargo_harbor_receiver_webhook_requests_total{project="",receiver="",outcome="not_found"} 3"#,
        r#"kargo_harbor_receiver_webhook_requests_total{project="p1",receiver="recv",outcome="method_not_allowed"} 3"#,
        r#"kargo_harbor_receiver_webhook_requests_total{project="p1",receiver="recv",outcome="unauthorized"} 2"#,
        r#"kargo_harbor_receiver_warehouse_refreshes_total{result="patched"} 1"#,
        "kargo_harbor_receiver_webhook_requests_in_flight 0",
    ] {
        assert!(m.body.contains(needle), "{needle} not in\n{}", m.body);
    }
    let hash = l.path_1.rsplit('/').next().unwrap();
    assert!(!m.body.contains(hash), "metrics mention the receiver path");
    assert!(
        !captured_logs().contains(hash),
        "logs mention the receiver path"
    );
    assert!(!captured_logs().contains(TOKEN_1), "logs mention the token");
}

#[tokio::test]
async fn a_push_refreshes_only_matching_warehouses_of_its_project() {
    let l = layout(&[], &[]).await;
    let a = l.post_1(&push_tag("1.2.3")).await;
    assert_answer(&a, 200, REFRESHED_1, "push");
    assert!(refresh_value(&l.env, "p1", "match").await.is_some());
    // The 200 promises every refresh is done, so their absence is final.
    assert_eq!(
        refresh_value(&l.env, "p1", "miss").await,
        None,
        "constraint misses"
    );
    assert_eq!(
        refresh_value(&l.env, "p1", "other-repo").await,
        None,
        "other repo"
    );
    assert_eq!(
        refresh_value(&l.env, "p2", "match").await,
        None,
        "other project"
    );
    // p2's receiver reaches p2 only.
    let a = post(
        &l.client,
        &url(&l.app, &l.path_2),
        Some(TOKEN_2),
        &push_tag("2.0.0"),
    )
    .await;
    assert_answer(&a, 200, REFRESHED_1, "p2 push");
    assert!(refresh_value(&l.env, "p2", "match").await.is_some());
    assert_eq!(refresh_value(&l.env, "p1", "miss").await, None);
}

#[tokio::test]
async fn a_cluster_receiver_refreshes_across_projects() {
    let env = Env::start().await;
    let c = &env.client;
    const CLUSTER_TOKEN: &str = "e2e-cluster-token-0b2f1f6c";
    create_namespace(c, "kargo-system-resources").await;
    put_auth_secret(c, "kargo-system-resources", "cluster-secret", CLUSTER_TOKEN).await;
    apply_cluster_config(c, vec![harbor_receiver("cluster-recv", "cluster-secret")]).await;
    for ns in ["p1", "p2"] {
        create_namespace(c, ns).await;
        apply_warehouse(c, ns, "match", json!([semver_sub(APP, "^1")])).await;
        apply_warehouse(c, ns, "miss", json!([semver_sub(APP, "^2")])).await;
    }
    let app = env.start_app(&[]).await;
    let path = expected_path("", "cluster-recv", CLUSTER_TOKEN);
    wait_indexed(&app, &[&path], 4).await;
    let a = post(
        &http_client(),
        &url(&app, &path),
        Some(CLUSTER_TOKEN),
        &push_tag("1.0.1"),
    )
    .await;
    assert_answer(
        &a,
        200,
        r#"{"msg":"refreshed 2 warehouse(s)"}"#,
        "cluster push",
    );
    for ns in ["p1", "p2"] {
        assert!(
            refresh_value(&env, ns, "match").await.is_some(),
            "{ns}/match"
        );
        assert_eq!(refresh_value(&env, ns, "miss").await, None, "{ns}/miss");
    }
}

#[tokio::test]
async fn charts_digests_multi_tags_cloudevents_and_host_spellings() {
    let digest_sub = json!({"image": {"repoURL": APP, "imageSelectionStrategy": "Digest", "constraint": "latest"}});
    let extra = [
        (
            "p1",
            "chart",
            json!([{"chart": {"repoURL": "oci://harbor.example.com/charts/my-chart", "semverConstraint": "^1.4"}}]),
        ),
        (
            "p1",
            "chart-v2",
            json!([{"chart": {"repoURL": "oci://harbor.example.com/charts/my-chart", "semverConstraint": "^2"}}]),
        ),
        ("p1", "digest", json!([digest_sub])),
        (
            "p1",
            "ported",
            json!([semver_sub("Harbor.Example.COM:8443/Library/App", "^1")]),
        ),
        (
            "p1",
            "api-v2",
            json!([semver_sub("harbor.example.com/team-a/api", "^2")]),
        ),
        (
            "p1",
            "api-v3",
            json!([semver_sub("harbor.example.com/team-a/api", "^3")]),
        ),
        (
            "p1",
            "api-latest",
            json!([{"image": {"repoURL": "harbor.example.com/team-a/api", "imageSelectionStrategy": "Lexical", "allowTagsRegexes": ["^latest$"]}}]),
        ),
    ];
    let l = layout(&extra, &[]).await;
    let (c, target) = (&l.client, l.url_1());
    let env = &l.env;

    // Chart push → the oci:// chart subscription whose constraint accepts it.
    let a = post(c, &target, Some(TOKEN_1), &sample("push-chart.json")).await;
    assert_answer(&a, 200, REFRESHED_1, "chart");
    assert!(refresh_value(env, "p1", "chart").await.is_some());
    assert_eq!(refresh_value(env, "p1", "chart-v2").await, None);

    // Push by digest: not a semver, not the followed tag.
    let a = post(c, &target, Some(TOKEN_1), &sample("push-digest.json")).await;
    assert_answer(&a, 200, r#"{"msg":"refreshed 0 warehouse(s)"}"#, "digest");
    assert_eq!(refresh_value(env, "p1", "digest").await, None);
    assert_eq!(refresh_value(env, "p1", "match").await, None);
    // The followed tag moves → the Digest subscription refreshes.
    let a = post(c, &target, Some(TOKEN_1), &push_tag("latest")).await;
    assert_answer(&a, 200, REFRESHED_1, "latest");
    assert!(refresh_value(env, "p1", "digest").await.is_some());
    assert_eq!(refresh_value(env, "p1", "match").await, None);

    // Registry host with a port, in another case.
    let a = post(
        c,
        &target,
        Some(TOKEN_1),
        &push(&[("harbor.example.com:8443/library/app:1.0.0", "1.0.0")]),
    )
    .await;
    assert_answer(&a, 200, REFRESHED_1, "port");
    assert!(refresh_value(env, "p1", "ported").await.is_some());
    assert_eq!(
        refresh_value(env, "p1", "match").await,
        None,
        "the port is part of the repo"
    );

    // Multi-tag push: v2.0.0 and latest.
    let a = post(c, &target, Some(TOKEN_1), &sample("push-multi-tag.json")).await;
    assert_answer(
        &a,
        200,
        r#"{"msg":"refreshed 2 warehouse(s)"}"#,
        "multi-tag",
    );
    assert!(refresh_value(env, "p1", "api-v2").await.is_some());
    assert!(refresh_value(env, "p1", "api-latest").await.is_some());
    assert_eq!(refresh_value(env, "p1", "api-v3").await, None);

    // CloudEvents format with its content type.
    let a = send(
        c,
        Method::POST,
        &target,
        &[
            ("content-type", "application/cloudevents+json"),
            ("authorization", TOKEN_1),
        ],
        sample("cloudevents-push.json"),
    )
    .await;
    assert_answer(&a, 200, REFRESHED_1, "cloudevents");
    assert!(refresh_value(env, "p1", "match").await.is_some());
}

#[tokio::test]
async fn two_pushes_in_one_second_are_two_refreshes() {
    let l = layout(&[], &[]).await;
    let mut values = Vec::new();
    for _ in 0..2 {
        let a = l.post_1(&push_tag("1.2.3")).await;
        assert_eq!(a.status, 200, "{a:?}");
        values.push(
            refresh_value(&l.env, "p1", "match")
                .await
                .expect("annotated"),
        );
    }
    assert!(values[1] > values[0], "{values:?}");
    let parse = |v: &str| chrono_like_nanos(v);
    assert!(parse(&values[1]) > parse(&values[0]));
}

/// Parses `YYYY-MM-DDTHH:MM:SS.fffffffffZ` into nanoseconds since the epoch
/// (enough for comparisons with `SystemTime`).
fn chrono_like_nanos(v: &str) -> u128 {
    let ts = v
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not UTC: {v}"));
    let (date, time) = ts
        .split_once('T')
        .unwrap_or_else(|| panic!("not RFC 3339: {v}"));
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let frac_ns: u128 = format!("{frac:0<9}")[..9].parse().unwrap();
    u128::try_from(secs).unwrap() * 1_000_000_000 + frac_ns
}

#[test]
fn the_test_timestamp_parser_agrees_with_system_time() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let v = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let parsed = chrono_like_nanos(&v);
    let diff = parsed.abs_diff(now.as_nanos());
    assert!(diff < 5_000_000_000, "{v} vs {now:?}");
    assert_eq!(chrono_like_nanos("1970-01-01T00:00:01.5Z"), 1_500_000_000);
    assert_eq!(
        chrono_like_nanos("2026-11-29T03:30:00.123456789Z"),
        1_795_923_000_123_456_789
    );
}

#[tokio::test]
async fn fifty_concurrent_pushes_for_one_warehouse() {
    let l = layout(&[], &[]).await;
    let target = Arc::new(l.url_1());
    l.env.emulator.clear_requests();
    let body = Arc::new(push_tag("1.2.3"));
    let mut tasks = Vec::new();
    for _ in 0..49 {
        let (c, target, body) = (l.client.clone(), target.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            post(&c, &target, Some(TOKEN_1), &body).await
        }));
    }
    let before_last = SystemTime::now();
    let last = post(&l.client, &target, Some(TOKEN_1), &body).await;
    assert_answer(&last, 200, REFRESHED_1, "last");
    for t in tasks {
        let a = t.await.unwrap();
        assert_answer(&a, 200, REFRESHED_1, "concurrent");
    }
    let value = refresh_value(&l.env, "p1", "match")
        .await
        .expect("annotated");
    let before_last_ns = before_last
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(
        chrono_like_nanos(&value) > before_last_ns,
        "final value {value} is not later than the last request's arrival"
    );
    let patches = l
        .env
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/warehouses/match"))
        .count();
    assert!((1..=50).contains(&patches), "{patches} PATCHes");
    println!("50 concurrent pushes → {patches} PATCHes");
}

#[tokio::test]
async fn a_failed_patch_answers_500_and_a_retry_succeeds() {
    let l = layout(&[], &[]).await;
    // Every PATCH of that Warehouse fails until the fault is cleared (the
    // client may retry some errors by itself).
    l.env.emulator.inject(
        Fault::new(500)
            .method(Method::PATCH)
            .path_contains("/warehouses/match")
            .times(1000),
    );
    let a = l.post_1(&push_tag("1.2.3")).await;
    assert_answer(
        &a,
        500,
        r#"{"error":"failed to refresh 1 of 1 warehouses"}"#,
        "fault",
    );
    assert_eq!(refresh_value(&l.env, "p1", "match").await, None);
    l.env.emulator.clear_faults();
    let a = l.post_1(&push_tag("1.2.3")).await;
    assert_answer(&a, 200, REFRESHED_1, "retry");
    assert!(refresh_value(&l.env, "p1", "match").await.is_some());
}

#[tokio::test]
async fn a_warehouse_deleted_before_its_refresh_is_reported_not_refreshed() {
    let l = layout(&[], &[]).await;
    // The API server says the Warehouse is gone (as if deleted after indexing).
    l.env.emulator.inject(
        Fault::new(404)
            .method(Method::PATCH)
            .path_contains("/warehouses/match")
            .times(1),
    );
    let a = l.post_1(&push_tag("1.2.3")).await;
    // Neither refreshed nor failed: Harbor has nothing to retry.
    assert_answer(&a, 200, r#"{"msg":"refreshed 0 warehouse(s)"}"#, "gone");
    let metrics = l.app.metrics_text();
    assert!(
        metrics.contains(r#"warehouse_refreshes_total{result="not_found"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let l = layout(&[], &[]).await;
    let addr = l.app.listen_addr;
    let over = (2 << 20) + 1;
    let want = r#"{"error":"content exceeds limit of 2097152 bytes"}"#.to_owned() + "\n";
    // Declared: refused from the head, before any body byte is sent.
    for auth in [format!("Authorization: {TOKEN_1}\r\n"), String::new()] {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {over}\r\n\r\n",
            l.path_1
        );
        let raw = raw_exchange(addr, head, vec![]).await;
        assert_eq!(status_of(&raw), 413, "{raw}");
        assert_eq!(body_of(&raw), want);
    }
    // Chunked, undeclared: refused once the limit is crossed, authorised or not.
    for auth in [
        format!("Authorization: {TOKEN_1}\r\n"),
        "Authorization: wrong\r\n".to_owned(),
        String::new(),
    ] {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n",
            l.path_1
        );
        let chunk = vec![b' '; 64 * 1024];
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        let framed = Bytes::from(framed);
        let mut chunks: Vec<Bytes> = (0..48).map(|_| framed.clone()).collect(); // 3 MiB
        chunks.push(Bytes::from_static(b"0\r\n\r\n"));
        let raw = raw_exchange(addr, head, chunks).await;
        assert_eq!(status_of(&raw), 413, "{auth}: {raw}");
        assert_eq!(body_of(&raw), want);
    }
    // Exactly at the limit is fine (and then just not a Harbor event).
    let mut body = push_tag("1.2.3").into_bytes();
    body.resize(2 << 20, b' ');
    let a = l.post_1(std::str::from_utf8(&body).unwrap()).await;
    assert_answer(&a, 200, REFRESHED_1, "2 MiB exactly");
    // The server still answers.
    let h = send(&l.client, Method::GET, &url(&l.app, "/healthz"), &[], "").await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn a_client_sending_headers_byte_by_byte_is_cut_off() {
    let l = layout(&[], &["--header-read-timeout", "1s"]).await;
    let stream = TcpStream::connect(l.app.listen_addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        l.path_1,
        "a".repeat(200)
    );
    // Would take about a minute to send in full.
    let trickle = tokio::spawn(async move {
        for b in head.bytes() {
            if write.write_all(&[b]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    });
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // The server closes (possibly after a 408): read returns EOF or an error.
    loop {
        match tokio::time::timeout(LONG, read.read(&mut buf)).await {
            Err(_) => panic!("the connection stayed open for {LONG:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "closed only after {took:?}");
    assert!(
        !trickle.is_finished() || !trickle.await.unwrap(),
        "the whole head was sent"
    );
    // Others are still served.
    let a = l.post_1(&push_tag("1.0.0")).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn bad_tokens_do_not_starve_good_requests() {
    let l = layout(&[], &[]).await;
    let target = Arc::new(l.url_1());
    let body = Arc::new(push_tag("1.2.3"));
    let bad = futures::stream::iter(0..1000)
        .map(|i| {
            let (c, target, body) = (l.client.clone(), target.clone(), body.clone());
            async move {
                let token = format!("wrong-{i}");
                let a = post(&c, &target, Some(&token), &body).await;
                assert_answer(&a, 401, r#"{"error":"unauthorized"}"#, "bad token");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>();
    let good = async {
        let mut values = Vec::new();
        for _ in 0..10 {
            let a = post(&l.client, &target, Some(TOKEN_1), &body).await;
            assert_answer(&a, 200, REFRESHED_1, "good");
            values.push(
                refresh_value(&l.env, "p1", "match")
                    .await
                    .expect("annotated"),
            );
        }
        values
    };
    let (bad, values) = tokio::join!(bad, good);
    assert_eq!(bad.len(), 1000);
    assert!(values.windows(2).all(|w| w[1] > w[0]), "{values:?}");
}

use futures::StreamExt;

#[tokio::test]
async fn h2_prior_knowledge_is_served() {
    let l = layout(&[], &[]).await;
    let tcp = TcpStream::connect(l.app.listen_addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let request = Request::post(format!("http://x{}", l.path_1))
        .header("authorization", TOKEN_1)
        .body(Full::new(Bytes::from(push_tag("1.2.3"))))
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{\"msg\":\"refreshed 1 warehouse(s)\"}\n");
}

#[tokio::test]
async fn tls_is_served_and_a_rotated_certificate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, k1) = self_signed(dir.path(), "one");
    let (c2, k2) = self_signed(dir.path(), "two");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(&c1, &cert).unwrap();
    std::fs::copy(&k1, &key).unwrap();
    let l = layout(
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let addr = l.app.listen_addr;
    let path = l.path_1.clone();
    let a = tls_post(addr, &c1, &path)
        .await
        .expect("TLS with the first cert");
    assert_eq!(
        a,
        (200, "{\"msg\":\"refreshed 1 warehouse(s)\"}\n".to_owned())
    );
    assert!(
        tls_post(addr, &c2, &path).await.is_err(),
        "second cert not served yet"
    );
    // Rotate (key first, then cert: a half-rotated pair is not picked).
    std::fs::copy(&k2, &key).unwrap();
    std::fs::copy(&c2, &cert).unwrap();
    wait_until(LONG, "the rotated certificate", || {
        let (c2, path) = (c2.clone(), path.clone());
        async move { tls_post(addr, &c2, &path).await.is_ok() }
    })
    .await;
    // Plain HTTP on the TLS port is refused.
    let plain = raw_exchange(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        vec![],
    )
    .await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

/// A fresh self-signed pair for `localhost` in `dir` (rcgen): (cert, key) paths.
/// POSTs a push over TLS trusting only `ca`; (status, body) or an error.
async fn tls_post(
    addr: SocketAddr,
    ca: &std::path::Path,
    path: &str,
) -> Result<(u16, String), String> {
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(&pem) {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::post(path)
        .header("host", "localhost")
        .header("authorization", TOKEN_1)
        .body(Full::new(Bytes::from(push_tag("1.2.3"))))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

// ------------------------------------------------------- the built binary

/// Starts the binary against `env` with `--shutdown-timeout 20s` and a
/// 1 s drain delay.
fn start_binary(env: &Env, rust_log: &str) -> Binary {
    Binary::start(
        env.emulator.kubeconfig_path(),
        rust_log,
        &["--shutdown-timeout", "20s", "--drain-delay", "1s"],
    )
}

/// Waits until the binary's receiver at `path` answers (not 404).
async fn wait_serving(bin: &Binary, client: &HttpClient, path: &str) {
    let empty = r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#;
    wait_until(LONG, "the binary serving the receiver", || async {
        let request = Request::post(bin.url(path))
            .header("authorization", TOKEN_1)
            .body(Full::new(Bytes::from_static(empty.as_bytes())))
            .unwrap();
        matches!(
            tokio::time::timeout(Duration::from_secs(2), client.request(request)).await,
            Ok(Ok(r)) if r.status() == 200
        )
    })
    .await;
}

async fn binary_layout() -> (Env, String) {
    let env = Env::start().await;
    env.create_harbor_project("p1", "recv", "harbor-secret", TOKEN_1)
        .await;
    apply_warehouse(
        &env.client,
        "p1",
        "match",
        json!([semver_sub(APP, "^1.0.0")]),
    )
    .await;
    (env, expected_path("p1", "recv", TOKEN_1))
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let (env, path) = binary_layout().await;
    let mut bin = start_binary(&env, "info");
    let client = http_client();
    wait_serving(&bin, &client, &path).await;

    // A request whose body is only half sent.
    let body = push_tag("1.2.3");
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(bin.listen).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN_1}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();

    bin.terminate();
    // First the drain delay: /readyz answers 503 while serving goes on…
    wait_until(LONG, "/readyz to turn 503", || async {
        let request = Request::get(bin.url("/readyz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        matches!(
            tokio::time::timeout(Duration::from_secs(2), client.request(request)).await,
            Ok(Ok(r)) if r.status() == 503
        )
    })
    .await;
    // …then shutdown proper begins: the listener closes.
    wait_until(LONG, "the listener to close", || async {
        TcpStream::connect(bin.listen).await.is_err()
    })
    .await;
    assert!(
        bin.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LONG, stream.read_to_end(&mut answer))
        .await
        .expect("answer within the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 200, "{answer}\n{}", bin.output());
    assert_eq!(body_of(&answer), "{\"msg\":\"refreshed 1 warehouse(s)\"}\n");
    assert!(refresh_value(&env, "p1", "match").await.is_some());

    let status = bin.wait_exit(LONG).await;
    assert_eq!(status.code(), Some(0), "output:\n{}", bin.output());
}

#[tokio::test]
async fn tokens_and_receiver_paths_never_reach_the_logs() {
    let (env, path) = binary_layout().await;
    let mut bin = start_binary(&env, "debug");
    let client = http_client();
    wait_serving(&bin, &client, &path).await;
    const WRONG: &str = "e2e-wrong-token-3e23e8160039594a";
    let a = post(&client, &bin.url(&path), Some(TOKEN_1), &push_tag("1.2.3")).await;
    assert_eq!(a.status, 200);
    let a = post(&client, &bin.url(&path), Some(WRONG), &push_tag("1.2.3")).await;
    assert_eq!(a.status, 401);
    let a = post(&client, &bin.url(&path), None, "{}").await;
    assert_eq!(a.status, 401);
    bin.terminate();
    assert_eq!(
        bin.wait_exit(LONG).await.code(),
        Some(0),
        "{}",
        bin.output()
    );
    let logs = bin.output();
    // The logs are really there (one line per request, naming the receiver).
    assert!(
        logs.matches("webhook request").count() >= 3,
        "no request log lines:\n{logs}"
    );
    assert!(logs.contains("recv"), "{logs}");
    let hash = path.rsplit('/').next().unwrap();
    for secret in [TOKEN_1, WRONG, hash] {
        assert!(
            !logs.contains(secret),
            "{secret} appears in the logs:\n{logs}"
        );
    }
}
