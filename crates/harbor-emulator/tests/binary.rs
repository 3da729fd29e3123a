//! The `harbor-emulator` binary: seed file, listening line, SIGTERM exits 0.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use http::Method;
use support::{basic, policy, Api, Receiver};

#[tokio::test]
async fn serves_the_seed_and_exits_cleanly_on_sigterm() {
    let mut seed = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    write!(
        seed,
        "admin_password: seeded-pw\nexternal_host: harbor.local:8443\nprojects: [{{name: team-a}}]\nrobots:\n  - name: kargo\n    project: team-a\n    secret: s3cret\n    permissions:\n      - namespace: team-a\n        access:\n          - {{resource: notification-policy, action: list}}\n          - {{resource: notification-policy, action: create}}\n"
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harbor-emulator"))
        .args(["--listen", "127.0.0.1:0", "--time-scale", "0.01", "--seed"])
        .arg(seed.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("harbor-emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let api = Api::new(url);
    let policies = "/api/v2.0/projects/team-a/webhook/policies";
    let admin = basic("admin", "seeded-pw");
    api.expect(Some(&admin), Method::GET, policies, None, 200)
        .await;
    let rx = Receiver::start(vec![]).await;
    let robot = basic("robot$team-a+kargo", "s3cret");
    let hook = Some(policy("p", &rx.url("/hook"), "Default", true));
    api.expect(Some(&robot), Method::POST, policies, hook, 201)
        .await;
    api.control_push(r#"{"project":"team-a","repository":"app","tag":"1.0.0"}"#)
        .await;
    let got = rx.wait_for(1).await;
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        body["event_data"]["resources"][0]["resource_url"],
        "harbor.local:8443/team-a/app:1.0.0"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let exit = tokio::time::timeout(Duration::from_secs(20), exit)
        .await
        .expect("the binary exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
