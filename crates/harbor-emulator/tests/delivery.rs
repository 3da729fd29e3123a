//! Delivery like Harbor: payloads in both formats with Harbor's headers, retries with
//! byte-identical bodies, final failures, timeouts, disabled policies, TLS targets, and the
//! executions/tasks/log the API shows for them.

mod support;

use std::time::Duration;

use harbor_emulator::{
    DeliveryOptions, EmulatorOptions, Execution, Handle, ProjectSpec, PushSpec, Status, Task,
};
use http::Method;
use serde_json::{json, Value};
use support::{policy, serve, Api, Receiver, Reply};

const POLICIES: &str = "/api/v2.0/projects/team-a/webhook/policies";
const WAIT: Duration = Duration::from_secs(30);

/// Durations scaled by 1/100 (backoff 0.16–0.74 s, 0.31–1.18 s) but a generous 3 s
/// per-attempt timeout so a loaded machine does not fail deliveries.
async fn start(extra_ca: Option<String>) -> (Handle, Api) {
    let opts = EmulatorOptions {
        projects: vec![ProjectSpec::private("team-a")],
        external_host: Some("harbor.example.com:8443".into()),
        time_scale: 0.01,
        delivery: DeliveryOptions {
            timeout: Duration::from_secs(300),
            max_attempts: 3,
            extra_ca_pem: extra_ca,
        },
        ..EmulatorOptions::default()
    };
    serve(opts).await
}

async fn create(api: &Api, body: Value) -> i64 {
    let r = api.admin(Method::POST, POLICIES, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Pushes `spec` and waits for the first delivery's execution to end.
async fn push_and_wait(h: &Handle, spec: PushSpec) -> (Execution, Task) {
    let d = h.push(spec).unwrap();
    h.wait_execution_done(d[0].execution_id, WAIT)
        .await
        .unwrap()
}

/// The API paths of a policy's executions, an execution's tasks and a task's log.
fn executions(policy: i64) -> String {
    format!("{POLICIES}/{policy}/executions")
}
fn tasks(policy: i64, execution: i64) -> String {
    format!("{}/{execution}/tasks", executions(policy))
}
fn task_log(policy: i64, execution: i64, task: i64) -> String {
    format!("{}/{task}/log", tasks(policy, execution))
}

const DIGEST: &str = "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6";

#[tokio::test]
async fn default_format_with_harbors_headers() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![]).await;
    let pid = create(&api, policy("kargo", &rx.url("/hook"), "Default", true)).await;
    let d = h
        .push(
            PushSpec::tag("team-a", "app", "1.2.3")
                .with_digest(DIGEST)
                .with_operator("robot$team-a+ci"),
        )
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].policy_id, pid);
    h.wait_deliveries_done(WAIT).await.unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/hook");
    assert_eq!(req.version, http::Version::HTTP_11);
    let hdr = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(hdr("content-type").as_deref(), Some("application/json"));
    assert_eq!(hdr("authorization").as_deref(), Some("Bearer t0ken"));
    assert_eq!(hdr("user-agent").as_deref(), Some("Go-http-client/1.1"));
    assert_eq!(hdr("accept-encoding").as_deref(), Some("gzip"));
    assert_eq!(hdr("content-length"), Some(req.body.len().to_string()));
    assert_eq!(hdr("host"), Some(rx.addr.to_string()));
    let names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), 6, "nothing else of Harbor's own: {names:?}");

    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["type"], "PUSH_ARTIFACT");
    assert_eq!(body["operator"], "robot$team-a+ci");
    assert!(body["occur_at"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(
        body["event_data"]["resources"],
        json!([{"digest": DIGEST, "tag": "1.2.3", "resource_url": "harbor.example.com:8443/team-a/app:1.2.3"}])
    );
    let repo = &body["event_data"]["repository"];
    assert_eq!(repo["name"], "app");
    assert_eq!(repo["namespace"], "team-a");
    assert_eq!(repo["repo_full_name"], "team-a/app");
    assert_eq!(repo["repo_type"], "private");
    assert!(repo["date_created"].is_i64());
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(
        text.starts_with("{\"type\":\"PUSH_ARTIFACT\",\"occur_at\":"),
        "{text}"
    );

    // The execution and task as the API shows them.
    let execs = api.admin(Method::GET, &executions(pid), None).await;
    assert_eq!(execs.header("x-total-count"), Some("1"));
    let e = &execs.json()[0];
    assert_eq!(e["id"], d[0].execution_id);
    assert_eq!(e["status"], "Success");
    assert_eq!(e["trigger"], "EVENT");
    assert_eq!(e["vendor_type"], "WEBHOOK");
    assert_eq!(e["vendor_id"], pid);
    assert_eq!(e["extra_attrs"]["event_type"], "PUSH_ARTIFACT");
    assert_eq!(e["extra_attrs"]["payload"], text.as_str());
    assert_eq!(
        e["metrics"],
        json!({"success_task_count": 1, "task_count": 1})
    );
    let tasks = api
        .admin(Method::GET, &tasks(pid, d[0].execution_id), None)
        .await;
    let t = &tasks.json()[0];
    assert_eq!(t["id"], d[0].task_id);
    assert_eq!(t["status"], "Success");
    assert_eq!(t["run_count"], 1);
    let log = api
        .admin(
            Method::GET,
            &task_log(pid, d[0].execution_id, d[0].task_id),
            None,
        )
        .await;
    assert_eq!(log.header("content-type"), Some("text/plain"));
    let log = log.text();
    assert!(log.contains("[INFO] [/jobservice/job/impl/notification/webhook_job.go:73]: start to run webhook job"), "{log}");
    assert!(
        log.contains(&format!("send request to remote endpoint, body: {text}")),
        "{log}"
    );
    assert!(log.contains("success to run webhook job"), "{log}");
    assert!(
        !log.contains("t0ken"),
        "the auth header never reaches the log"
    );
}

#[tokio::test]
async fn cloudevents_format_by_digest() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![]).await;
    let pid = create(&api, policy("ce", &rx.url("/ce"), "CloudEvents", true)).await;
    let d = h
        .push(PushSpec::digest("team-a", "team-a/app", DIGEST))
        .unwrap();
    h.wait_deliveries_done(WAIT).await.unwrap();
    assert_eq!(d.len(), 1);
    let req = &rx.received()[0];
    assert_eq!(
        req.headers.get("content-type").unwrap(),
        "application/cloudevents+json"
    );
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(
        text.starts_with("{\"specversion\":\"1.0\",\"id\":\""),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
    assert!(uuid::Uuid::parse_str(v["requestid"].as_str().unwrap()).is_ok());
    assert_eq!(v["source"], format!("/projects/1/webhook/policies/{pid}"));
    assert_eq!(v["type"], "harbor.artifact.pushed");
    assert_eq!(v["datacontenttype"], "application/json");
    assert_eq!(v["operator"], "admin");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        v["data"]["resources"],
        json!([{"digest": DIGEST, "tag": DIGEST, "resource_url": format!("harbor.example.com:8443/team-a/app@{DIGEST}")}])
    );
    assert_eq!(v["data"]["repository"]["repo_full_name"], "team-a/app");
}

#[tokio::test]
async fn retries_resend_identical_bodies_until_success() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![Reply::status(500), Reply::status(503)]).await;
    let pid = create(&api, policy("ce", &rx.url("/hook"), "CloudEvents", true)).await;
    let (e, t) = push_and_wait(&h, PushSpec::tag("team-a", "app", "2.0.0")).await;
    assert_eq!(t.status, Status::Success);
    assert_eq!(t.run_count, 3);
    assert_eq!(e.status, Status::Success);
    let got = rx.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "byte-identical bodies, same CloudEvents id"
    );

    let tasks = api.admin(Method::GET, &tasks(pid, e.id), None).await.json();
    assert_eq!(tasks[0]["run_count"], 3);
    assert_eq!(tasks[0]["status"], "Success");
    let log = api
        .admin(Method::GET, &task_log(pid, e.id, t.id), None)
        .await
        .text();
    assert!(log.contains("success to run webhook job"), "{log}");
}

#[tokio::test]
async fn three_failures_end_in_error() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![
        Reply::status(500),
        Reply::status(404),
        Reply::status(302),
    ])
    .await;
    let pid = create(&api, policy("p", &rx.url("/hook"), "Default", true)).await;
    let (e, t) = push_and_wait(&h, PushSpec::tag("team-a", "app", "1.0.0")).await;
    h.wait_deliveries_done(WAIT).await.unwrap();
    assert_eq!((t.status, t.run_count), (Status::Error, 3));
    assert_eq!(e.status, Status::Error);
    assert!(e.end_time.is_some());
    assert_eq!(rx.received().len(), 3, "no fourth attempt");
    let execs = api.admin(Method::GET, &executions(pid), None).await.json();
    assert_eq!(execs[0]["status"], "Error");
    assert_eq!(
        execs[0]["metrics"],
        json!({"error_task_count": 1, "task_count": 1})
    );
    // The last attempt (a 302 without Location) wrote over the earlier, longer ones.
    assert!(
        t.log.contains(
            "exit webhook job, error: abnormal response code: 302, body: receiver says hi"
        ),
        "{}",
        t.log
    );
}

#[tokio::test]
async fn a_slow_target_times_out_and_counts_as_failure() {
    let opts = EmulatorOptions {
        projects: vec![ProjectSpec::private("team-a")],
        // Timeout 3 s × 0.01 = 30 ms; the receiver takes 2 s.
        time_scale: 0.01,
        ..EmulatorOptions::default()
    };
    let (h, api) = serve(opts).await;
    let slow = Reply::slow(200, Duration::from_secs(2));
    let rx = Receiver::start(vec![slow, slow, slow]).await;
    create(&api, policy("p", &rx.url("/hook"), "Default", true)).await;
    let (_, t) = push_and_wait(&h, PushSpec::tag("team-a", "app", "1.0.0")).await;
    assert_eq!((t.status, t.run_count), (Status::Error, 3));
    assert!(
        t.log
            .contains("Client.Timeout exceeded while awaiting headers"),
        "{}",
        t.log
    );
}

#[tokio::test]
async fn disabled_policies_and_other_projects_get_nothing() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![]).await;
    create(&api, policy("off", &rx.url("/hook"), "Default", false)).await;
    h.add_project(ProjectSpec::private("other"));
    let d = h.push(PushSpec::tag("team-a", "app", "1.0.0")).unwrap();
    assert!(d.is_empty());
    assert!(h
        .push(PushSpec::tag("other", "app", "1.0.0"))
        .unwrap()
        .is_empty());
    h.wait_deliveries_done(WAIT).await.unwrap();
    assert!(rx.received().is_empty());
    assert!(h.push(PushSpec::tag("nope", "app", "1")).is_err());
}

#[tokio::test]
async fn an_unreachable_target_is_a_failure_with_gos_wording() {
    let (h, api) = start(None).await;
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    create(
        &api,
        policy(
            "p",
            &format!("http://127.0.0.1:{port}/hook"),
            "Default",
            true,
        ),
    )
    .await;
    create(
        &api,
        policy("no-scheme", "receiver:8080/hook", "Default", true),
    )
    .await;
    let d = h.push(PushSpec::tag("team-a", "app", "1.0.0")).unwrap();
    assert_eq!(d.len(), 2);
    h.wait_deliveries_done(WAIT).await.unwrap();
    let logs: Vec<String> = d
        .iter()
        .map(|d| h.execution(d.execution_id).unwrap().1.log)
        .collect();
    assert!(
        logs.iter().any(|l| l.contains(&format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("unsupported protocol scheme \"receiver\"")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn https_targets_honour_skip_cert_verify_and_the_extra_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_pem = cert.cert.pem();
    let server_cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let url = format!("https://localhost:{port}/hook");

    // Without the CA: verification fails unless skip_cert_verify.
    let (h, api) = start(None).await;
    let mut verify = policy("verify", &url, "Default", true);
    verify["targets"][0]["skip_cert_verify"] = json!(false);
    create(&api, verify.clone()).await;
    let mut skip = policy("skip", &url, "Default", true);
    skip["targets"][0]["skip_cert_verify"] = json!(true);
    create(&api, skip).await;
    let d = h.push(PushSpec::tag("team-a", "app", "1")).unwrap();
    h.wait_deliveries_done(WAIT).await.unwrap();
    let results: Vec<(i64, Status, String)> = d
        .iter()
        .map(|d| {
            let (_, t) = h.execution(d.execution_id).unwrap();
            (d.policy_id, t.status, t.log)
        })
        .collect();
    let verified = results.iter().find(|r| r.0 == 1).unwrap();
    assert_eq!(verified.1, Status::Error);
    assert!(
        verified
            .2
            .contains("certificate signed by unknown authority"),
        "{}",
        verified.2
    );
    assert_eq!(
        results.iter().find(|r| r.0 == 2).unwrap().1,
        Status::Success
    );
    drop(h);

    // With the test CA configured, a verifying target is delivered.
    let (h, api) = start(Some(ca_pem)).await;
    create(&api, verify).await;
    let (_, t) = push_and_wait(&h, PushSpec::tag("team-a", "app", "1")).await;
    assert_eq!(t.status, Status::Success, "{}", t.log);
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn the_http_control_endpoint_pushes_for_the_demo() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![]).await;
    create(&api, policy("p", &rx.url("/hook"), "Default", true)).await;
    let r = api
        .control_push(r#"{"project":"team-a","repository":"app","tag":"1.2.3"}"#)
        .await;
    assert_eq!(r.json()["deliveries"][0]["policy_id"], 1);
    let r = api
        .send(
            Method::POST,
            "/_emulator/wait?timeout_ms=20000",
            None,
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(rx.received().len(), 1);
    assert!(h
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/_emulator")));
}

#[tokio::test]
async fn redirects_are_followed_like_gos_client() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![
        Reply::redirect(307, "/again"),
        Reply::redirect(303, "/see-other"),
    ])
    .await;
    create(&api, policy("p", &rx.url("/hook"), "Default", true)).await;
    let (_, t) = push_and_wait(&h, PushSpec::tag("team-a", "app", "1.0.0")).await;
    assert_eq!((t.status, t.run_count), (Status::Success, 1));
    let got = rx.received();
    let seen: Vec<(Method, &str, usize)> = got
        .iter()
        .map(|r| (r.method.clone(), r.path.as_str(), r.body.len()))
        .collect();
    assert_eq!(seen[0].0, Method::POST);
    // 307 keeps the method and the body; 303 turns it into a bodyless GET.
    assert_eq!((seen[1].0.clone(), seen[1].1), (Method::POST, "/again"));
    assert_eq!(seen[1].2, seen[0].2);
    assert_eq!(
        (seen[2].0.clone(), seen[2].1, seen[2].2),
        (Method::GET, "/see-other", 0)
    );
    assert_eq!(
        got[2].headers.get("authorization").unwrap(),
        "Bearer t0ken",
        "same host keeps it"
    );
    assert_eq!(
        got[2].headers.get("referer").unwrap().to_str().unwrap(),
        rx.url("/again")
    );
}

#[tokio::test]
async fn a_task_shows_error_while_its_retry_is_pending() {
    // Scale 1/10: the retry waits at least 1.6 s, ample time to look at the task.
    let opts = EmulatorOptions {
        projects: vec![ProjectSpec::private("team-a")],
        time_scale: 0.1,
        delivery: DeliveryOptions {
            timeout: Duration::from_secs(30),
            ..DeliveryOptions::default()
        },
        ..EmulatorOptions::default()
    };
    let (h, api) = serve(opts).await;
    let rx = Receiver::start(vec![Reply::status(500)]).await;
    create(&api, policy("p", &rx.url("/hook"), "Default", true)).await;
    let d = h.push(PushSpec::tag("team-a", "app", "1.0.0")).unwrap();
    let exec = d[0].execution_id;
    let mut changes = h.subscribe_changes();
    let mut seen_error_between = false;
    loop {
        let (e, t) = h.execution(exec).unwrap();
        if t.run_count == 1 && t.status == Status::Error {
            assert_eq!(e.status, Status::Error, "the execution follows its task");
            seen_error_between = true;
        }
        if t.status == Status::Success {
            break;
        }
        tokio::time::timeout(WAIT, changes.changed())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(seen_error_between);
    let (_, t) = h.execution(exec).unwrap();
    assert_eq!(t.run_count, 2);
}

#[tokio::test]
async fn executions_and_tasks_of_another_policy_or_execution_are_not_found() {
    let (h, api) = start(None).await;
    let rx = Receiver::start(vec![]).await;
    let first = create(&api, policy("a", &rx.url("/a"), "Default", true)).await;
    let second = create(&api, policy("b", &rx.url("/b"), "Default", true)).await;
    let d = h.push(PushSpec::tag("team-a", "app", "1.0.0")).unwrap();
    h.wait_deliveries_done(WAIT).await.unwrap();
    let of = |policy: i64| d.iter().find(|d| d.policy_id == policy).unwrap();
    let (a, b) = (of(first), of(second));
    let cases = [
        (tasks(first, 999), "execution 999 not found".to_string()),
        (
            tasks(second, a.execution_id),
            format!(
                "resource not found: execution {} not found in policy {second}",
                a.execution_id
            ),
        ),
        (
            task_log(first, a.execution_id, 999),
            "task 999 not found".to_string(),
        ),
        (
            task_log(first, a.execution_id, b.task_id),
            format!(
                "resource not found: task {} not found in execution {}",
                b.task_id, a.execution_id
            ),
        ),
    ];
    for (path, message) in cases {
        let r = api.admin(Method::GET, &path, None).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error(), ("NOT_FOUND".into(), message), "{path}");
    }
    // Found where they belong.
    let r = api
        .admin(
            Method::GET,
            &task_log(second, b.execution_id, b.task_id),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
