//! The REST API end to end over HTTP: auth, CRUD, validation, conflicts, pagination,
//! unknown projects, faults, TLS.

mod support;

use std::time::Duration;

use harbor_emulator::{
    ApiFault, EmulatorOptions, Handle, HarborEmulator, ProjectRole, ProjectSpec, RobotSpec,
    TlsOptions, UserSpec,
};
use http::Method;
use serde_json::{json, Value};
use support::{admin_auth, basic, policy, serve, Api, Resp};

const POLICIES: &str = "/api/v2.0/projects/team-a/webhook/policies";
const LIBRARY_POLICIES: &str = "/api/v2.0/projects/library/webhook/policies";
const NOPE_POLICIES: &str = "/api/v2.0/projects/nope/webhook/policies";

/// A POST of `body` as `content_type` to [`POLICIES`] by the admin.
async fn raw_post(api: &Api, content_type: &str, body: &[u8]) -> Resp {
    let admin = admin_auth();
    api.send(
        Method::POST,
        POLICIES,
        Some(&admin),
        &[("content-type", content_type)],
        Some(body.to_vec()),
    )
    .await
    .unwrap()
}

/// An enabled Default-format policy `name` for `http://r`.
fn named(name: &str) -> Option<Value> {
    Some(policy(name, "http://r", "Default", true))
}

async fn start() -> (Handle, Api) {
    let opts = EmulatorOptions {
        projects: vec![
            ProjectSpec::public("library"),
            ProjectSpec::private("team-a"),
        ],
        robots: vec![
            RobotSpec::project("team-a", "kargo", "s3cret").allow_webhooks("team-a"),
            RobotSpec::project("team-a", "reader", "r3ad").allow(
                "team-a",
                "notification-policy",
                &["list", "read"],
            ),
        ],
        time_scale: 0.01,
        ..EmulatorOptions::default()
    };
    serve(opts).await
}

#[tokio::test]
async fn ping_needs_no_credentials() {
    let (_h, api) = start().await;
    let r = api.anonymous(Method::GET, "/api/v2.0/ping").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Pong");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn admin_and_allowed_robot_may_manage_policies_a_reader_robot_may_not() {
    let (_h, api) = start().await;
    let robot: &str = &basic("robot$team-a+kargo", "s3cret");
    let reader: &str = &basic("robot$team-a+reader", "r3ad");
    let by_robot = Some(policy("by-robot", "http://r/hook", "Default", true));
    api.expect(Some(robot), Method::POST, POLICIES, by_robot, 201)
        .await;
    let r = api
        .expect(Some(robot), Method::GET, POLICIES, None, 200)
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    api.expect(Some(reader), Method::GET, POLICIES, None, 200)
        .await;
    let nope = Some(policy("nope", "http://r/hook", "Default", true));
    let r = api
        .expect(Some(reader), Method::POST, POLICIES, nope, 403)
        .await;
    assert_eq!(r.error(), ("FORBIDDEN".into(), "forbidden".into()));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let admin: &str = &admin_auth();
    api.expect_all(&[
        (Some(reader), Method::DELETE, &format!("{POLICIES}/1"), 403),
        // A robot of team-a has nothing on library (public: it may read the project itself).
        (Some(robot), Method::GET, LIBRARY_POLICIES, 403),
        (Some(robot), Method::GET, "/api/v2.0/projects/library", 200),
        (Some(admin), Method::GET, POLICIES, 200),
    ])
    .await;
}

#[tokio::test]
async fn a_bad_password_is_401_after_harbors_delay_and_never_logged() {
    let (h, api) = start().await;
    let wrong_password: &str = &basic("admin", "wrong-password");
    let r = api
        .expect(Some(wrong_password), Method::GET, POLICIES, None, 401)
        .await;
    assert_eq!(r.error(), ("UNAUTHORIZED".into(), "unauthorized".into()));
    let wrong_secret: &str = &basic("robot$team-a+kargo", "wrong-secret");
    api.expect_all(&[
        (None, Method::GET, POLICIES, 401),
        (Some(wrong_secret), Method::GET, POLICIES, 401),
    ])
    .await;

    let log = h.requests();
    assert_eq!(log[0].user, None);
    assert_eq!(log[0].failed_login.as_deref(), Some("admin"));
    assert_eq!(log[0].status, 401);
    assert_eq!(log[1].failed_login, None);
    let all = serde_json::to_string(&log).unwrap();
    assert!(!all.contains("wrong-password") && !all.contains("wrong-secret"));

    let admin: &str = &admin_auth();
    api.expect(Some(admin), Method::GET, POLICIES, None, 200)
        .await;
    assert_eq!(h.requests().last().unwrap().user.as_deref(), Some("admin"));
}

#[tokio::test]
async fn create_get_replace_delete() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    let one = &format!("{POLICIES}/1");
    let mut body = policy("kargo", "http://receiver:8080/hook", "CloudEvents", true);
    body.as_object_mut().unwrap().remove("enabled");
    let r = api
        .expect(Some(admin), Method::POST, POLICIES, Some(body), 201)
        .await;
    assert_eq!(
        r.header("location"),
        Some("/api/v2.0/projects/team-a/webhook/policies/1")
    );
    assert_eq!(r.header("content-type"), None);
    assert!(r.body.is_empty());

    let got = api
        .expect(Some(admin), Method::GET, one, None, 200)
        .await
        .json();
    assert_eq!(got["id"], 1);
    assert_eq!(got["project_id"], 2);
    assert_eq!(got["name"], "kargo");
    assert_eq!(
        got["enabled"], false,
        "an omitted enabled is stored as false"
    );
    assert_eq!(got["targets"][0]["auth_header"], "Bearer t0ken");
    assert_eq!(got["targets"][0]["payload_format"], "CloudEvents");
    assert!(
        got["targets"][0].get("skip_cert_verify").is_none(),
        "false is omitted"
    );
    assert!(got.get("creator").is_none());
    let created = got["creation_time"].as_str().unwrap().to_string();
    let updated = got["update_time"].as_str().unwrap().to_string();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");

    // The same policy through the project ID.
    let r = api
        .admin(Method::GET, "/api/v2.0/projects/2/webhook/policies/1", None)
        .await;
    assert_eq!(r.json(), got);

    let replacement = json!({
        "name": "kargo-renamed",
        "enabled": true,
        "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
        "targets": [{"type": "http", "address": "https://other/hook"}],
    });
    api.expect(Some(admin), Method::PUT, one, Some(replacement), 200)
        .await;
    let got = api.admin(Method::GET, one, None).await.json();
    assert_eq!(got["name"], "kargo-renamed");
    assert_eq!(got["enabled"], true);
    assert!(
        got.get("description").is_none(),
        "a PUT replaces everything"
    );
    assert_eq!(
        got["targets"],
        json!([{"address": "https://other/hook", "payload_format": "Default", "type": "http"}])
    );
    // Harbor's ORM writes creation_time from the body (zero here) and leaves update_time.
    assert_eq!(got["creation_time"], "0001-01-01T00:00:00.000Z");
    assert_eq!(got["update_time"], updated.as_str());

    api.expect(Some(admin), Method::DELETE, one, None, 200)
        .await;
    let r = api.expect(Some(admin), Method::GET, one, None, 404).await;
    assert_eq!(
        r.error(),
        ("NOT_FOUND".into(), "notificationPolicy 1 not found".into())
    );
    api.expect(Some(admin), Method::DELETE, one, None, 404)
        .await;
}

#[tokio::test]
async fn a_policy_of_another_project_is_not_found() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    api.expect(Some(admin), Method::POST, LIBRARY_POLICIES, named("p"), 201)
        .await;
    let one = &format!("{POLICIES}/1");
    let r = api.expect(Some(admin), Method::GET, one, None, 404).await;
    assert_eq!(
        r.error().1,
        "resource not found: project id:2, webhook policy id: 1 not found"
    );
}

#[tokio::test]
async fn validation_errors_are_harbors() {
    let (h, api) = start().await;
    let admin: &str = &admin_auth();
    let cases = [
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": []}),
            "empty notification target with policy x",
        ),
        (
            json!({"name": "x", "targets": [{"type": "http", "address": "http://r"}]}),
            "empty event type",
        ),
        (
            json!({"name": "x", "event_types": ["PUSH_IMAGE"], "targets": [{"type": "http", "address": "http://r"}]}),
            "unsupported event type PUSH_IMAGE",
        ),
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "email", "address": "http://r"}]}),
            "unsupported target type email with policy x",
        ),
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": "http://r", "payload_format": "Xml"}]}),
            "unsupported payload format type: Xml",
        ),
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": "ftp://r/x"}]}),
            "invalid scheme: ftp",
        ),
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "slack", "address": "https://hooks.slack", "payload_format": "Default"}]}),
            "set payload format is not allowed for slack",
        ),
    ];
    for (body, message) in cases {
        let r = api.admin(Method::POST, POLICIES, Some(body)).await;
        assert_eq!(r.status, 400, "{message}");
        assert_eq!(r.error(), ("BAD_REQUEST".into(), message.into()));
    }
    // Binding errors come before any handler check: 422.
    let r = raw_post(&api, "application/json", b"{\"enabled\":\"yes\"}").await;
    assert_eq!(r.status, 422);
    assert_eq!(r.error(), ("UNPROCESSABLE_ENTITY".into(), "validation failure list:\nparsing policy body from \"\" failed, because json: cannot unmarshal string into Go struct field WebhookPolicy.enabled of type bool".into()));
    let r = raw_post(&api, "text/plain", b"{}").await;
    assert_eq!(r.status, 422);
    assert!(
        r.error()
            .1
            .contains("unsupported media type \"text/plain\""),
        "{}",
        r.error().1
    );
    let abc = &format!("{POLICIES}/abc");
    let r = api.expect(Some(admin), Method::GET, abc, None, 422).await;
    assert_eq!(
        r.error().1,
        "validation failure list:\nwebhook_policy_id in path must be of type int64: \"abc\""
    );

    // A missing scheme passes validation and is stored as sent.
    let no_scheme = Some(policy("no-scheme", "receiver:8080/hook", "Default", true));
    api.expect(Some(admin), Method::POST, POLICIES, no_scheme, 201)
        .await;
    assert_eq!(
        h.policies(Some("team-a"))[0].targets[0].address,
        "receiver:8080/hook"
    );
}

#[tokio::test]
async fn a_duplicate_name_is_a_conflict() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    api.expect(Some(admin), Method::POST, POLICIES, named("kargo"), 201)
        .await;
    let second = Some(policy("kargo", "http://r2", "Default", true));
    let r = api
        .expect(Some(admin), Method::POST, POLICIES, second, 409)
        .await;
    assert_eq!(
        r.error(),
        (
            "CONFLICT".into(),
            "notification policy named kargo already exists".into()
        )
    );
    // Unique per project only.
    let third = &format!("{POLICIES}/3");
    for (method, path, body, status) in [
        (Method::POST, LIBRARY_POLICIES, named("kargo"), 201),
        (Method::POST, POLICIES, named("other"), 201),
        (Method::PUT, third, named("kargo"), 409),
    ] {
        api.expect(Some(admin), method, path, body, status).await;
    }
}

#[tokio::test]
async fn pagination_headers_are_harbors() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    for i in 0..12 {
        let name = format!("p{i:02}");
        api.expect(Some(admin), Method::POST, POLICIES, named(&name), 201)
            .await;
    }
    let r = api.admin(Method::GET, POLICIES, None).await;
    assert_eq!(r.header("x-total-count"), Some("12"));
    assert_eq!(
        r.json().as_array().unwrap().len(),
        10,
        "page_size defaults to 10"
    );
    assert_eq!(
        r.header("link"),
        Some("</api/v2.0/projects/team-a/webhook/policies?page=2&page_size=10>; rel=\"next\"")
    );
    // Newest first by default.
    assert_eq!(r.json()[0]["name"], "p11");

    let r = api
        .admin(
            Method::GET,
            &format!("{POLICIES}?page=2&page_size=5&sort=name"),
            None,
        )
        .await;
    assert_eq!(r.header("x-total-count"), Some("12"));
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["p05", "p06", "p07", "p08", "p09"]);
    assert_eq!(
        r.header("link"),
        Some("</api/v2.0/projects/team-a/webhook/policies?page=1&page_size=5&sort=name>; rel=\"prev\" , </api/v2.0/projects/team-a/webhook/policies?page=3&page_size=5&sort=name>; rel=\"next\"")
    );

    let r = api
        .admin(Method::GET, &format!("{POLICIES}?q=name%3D~p1"), None)
        .await;
    assert_eq!(r.header("x-total-count"), Some("2"));
    assert_eq!(r.header("link"), None);

    let too_big = &format!("{POLICIES}?page_size=101");
    let r = api
        .expect(Some(admin), Method::GET, too_big, None, 422)
        .await;
    assert_eq!(
        r.error().1,
        "validation failure list:\npage_size in query should be less than or equal to 100"
    );
    let bad_query = &format!("{POLICIES}?q=name");
    api.expect(Some(admin), Method::GET, bad_query, None, 400)
        .await;
}

#[tokio::test]
async fn unknown_projects_answer_like_harbor() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    let robot: &str = &basic("robot$team-a+kargo", "s3cret");
    let nope_one = &format!("{NOPE_POLICIES}/1");
    // The list checks access first: a robot sees 403, the admin 404.
    api.expect(Some(robot), Method::GET, NOPE_POLICIES, None, 403)
        .await;
    let r = api
        .expect(Some(admin), Method::GET, NOPE_POLICIES, None, 404)
        .await;
    assert_eq!(
        r.error(),
        ("NOT_FOUND".into(), "project nope not found".into())
    );
    api.expect_all(&[
        // A single policy resolves the project first: 404 for anyone.
        (Some(robot), Method::GET, nope_one, 404),
        (None, Method::GET, nope_one, 404),
        // Project checks.
        (Some(admin), Method::GET, "/api/v2.0/projects/nope", 404),
    ])
    .await;
    let r = api
        .expect(
            Some(admin),
            Method::GET,
            "/api/v2.0/projects/team-a",
            None,
            200,
        )
        .await;
    assert_eq!(r.json()["project_id"], 2);
    assert_eq!(r.json()["metadata"]["public"], "false");
    let by_name = |name: &str| format!("/api/v2.0/projects?project_name={name}");
    api.expect(Some(admin), Method::HEAD, &by_name("team-a"), None, 200)
        .await;
    let r = api
        .expect(Some(admin), Method::HEAD, &by_name("nope"), None, 404)
        .await;
    assert!(r.body.is_empty());
    api.expect(None, Method::HEAD, &by_name("team-a"), None, 401)
        .await;
    // Unknown paths and methods.
    let r = api.admin(Method::GET, "/api/v2.0/nothing", None).await;
    assert_eq!(
        r.error(),
        (
            "NOT_FOUND".into(),
            "path /api/v2.0/nothing was not found".into()
        )
    );
    let one = &format!("{POLICIES}/1");
    let r = api.expect(Some(admin), Method::PATCH, one, None, 405).await;
    assert_eq!(
        r.error().1,
        "method PATCH is not allowed, but [DELETE,GET,PUT] are"
    );
}

#[tokio::test]
async fn x_is_resource_name_makes_a_numeric_name_a_name() {
    let (h, api) = start().await;
    h.add_project(ProjectSpec::private("2024"));
    let path = "/api/v2.0/projects/2024/webhook/policies";
    let auth: &str = &admin_auth();
    let r = api
        .send(
            Method::POST,
            path,
            Some(auth),
            &[
                ("content-type", "application/json"),
                ("x-is-resource-name", "true"),
            ],
            Some(serde_json::to_vec(&policy("n", "http://r", "Default", true)).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(h.policies(Some("2024")).len(), 1);
    // Without the header "2024" is a project ID, which Harbor does not check on a list.
    let r = api.expect(Some(auth), Method::GET, path, None, 200).await;
    assert_eq!(r.header("x-total-count"), Some("0"));
}

#[tokio::test]
async fn supported_events() {
    let (_h, api) = start().await;
    let admin: &str = &admin_auth();
    let events = "/api/v2.0/projects/team-a/webhook/events";
    let v = api
        .expect(Some(admin), Method::GET, events, None, 200)
        .await
        .json();
    assert_eq!(v["event_type"][0], "PUSH_ARTIFACT");
    assert_eq!(v["notify_type"], json!(["http", "slack"]));
    assert_eq!(
        v["payload_formats"],
        json!([{"formats": ["Default", "CloudEvents"], "notify_type": "http"}])
    );
}

#[tokio::test]
async fn faults_make_harbor_fail_and_recover() {
    let (h, api) = start().await;
    h.set_fault(Some(ApiFault::InternalError));
    let r = api.admin(Method::GET, POLICIES, None).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"internal server error\"}]}\n"
    );
    assert!(h.requests().last().unwrap().fault);

    h.set_fault(Some(ApiFault::Refuse));
    // A fresh client: nothing pooled.
    let fresh = Api::new(h.url());
    let mut refused = false;
    for _ in 0..100 {
        if fresh.ping().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "connections are refused while Harbor is down");

    h.set_fault(Some(ApiFault::Hang));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = Api::new(h.url());
        match tokio::time::timeout(Duration::from_millis(300), attempt.ping()).await {
            Err(_) => break,
            // The listener is being bound again after the refuse fault.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(Ok(r)) => panic!("a hung Harbor answered {}", r.status),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener came back"
        );
    }

    h.set_fault(None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = Api::new(h.url()).ping().await {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_api_can_be_served_over_tls() {
    let opts = EmulatorOptions {
        tls: Some(TlsOptions::Generate {
            subject_alt_names: vec!["localhost".into()],
        }),
        ..EmulatorOptions::default()
    };
    let h = HarborEmulator::start(opts).await.unwrap();
    assert!(h.url().starts_with("https://"));
    let pem = h.ca_pem().unwrap().to_string();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let uri = format!("https://localhost:{}/api/v2.0/ping", h.addr().port());
    let resp = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn project_roles_of_local_users() {
    let (h, api) = start().await;
    let user = |username: &str, role: ProjectRole| UserSpec {
        username: username.into(),
        password: "pw".into(),
        sysadmin: false,
        roles: [("team-a".to_string(), role)].into(),
    };
    h.add_user(user("maint", ProjectRole::Maintainer));
    h.add_user(user("dev", ProjectRole::Developer));
    let maint: &str = &basic("maint", "pw");
    let dev: &str = &basic("dev", "pw");
    api.expect(Some(maint), Method::GET, POLICIES, None, 200)
        .await;
    api.expect(Some(maint), Method::POST, POLICIES, named("m"), 403)
        .await;
    api.expect(Some(dev), Method::GET, POLICIES, None, 403)
        .await;
    let r = api
        .expect(
            Some(dev),
            Method::GET,
            "/api/v2.0/projects/team-a",
            None,
            200,
        )
        .await;
    assert_eq!(r.json()["current_user_role_ids"], json!([2]));
    assert_eq!(r.json()["current_user_role_id"], 2);
}
