//! Harbor for the end-to-end tests: the harbor-emulator with a project and a
//! robot account allowed to manage its webhook policies, a forwarder that
//! gives the program's webhook listener a URL known before the program
//! starts (its `--base-url`), HarborWebhookRegistration helpers, and admin
//! calls to edit Harbor behind the program's back.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use harbor_emulator::{EmulatorOptions, Handle, HarborEmulator, ProjectSpec, RobotSpec};
use harbor_registration_api::{HarborWebhookRegistration, RegistrationStatus};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{http_client, send, Answer};

/// The host Harbor puts in `resource_url`.
pub const HARBOR_HOST: &str = "harbor.example.com";
/// The Harbor project the tests register in.
pub const HARBOR_PROJECT: &str = "library";
/// The robot account's name in [`HARBOR_PROJECT`] (`robot$library+kargo`).
pub const ROBOT: &str = "kargo";
/// Its secret.
pub const ROBOT_SECRET: &str = "Robot-s3cret-0123";
/// Harbor's admin password.
pub const ADMIN_PASSWORD: &str = "Harbor12345";

/// The robot's login name in `project`.
pub fn robot_login(project: &str) -> String {
    format!("robot${project}+{ROBOT}")
}

/// The robot of `project` allowed every `notification-policy` action there.
pub fn webhook_robot(project: &str) -> RobotSpec {
    RobotSpec::project(project, ROBOT, ROBOT_SECRET).allow_webhooks(project)
}

/// A Harbor with [`HARBOR_PROJECT`] and its webhook robot; delivery times
/// scaled by `time_scale`.
pub async fn start_harbor(time_scale: f64) -> Handle {
    HarborEmulator::start(EmulatorOptions {
        projects: vec![ProjectSpec::private(HARBOR_PROJECT)],
        robots: vec![webhook_robot(HARBOR_PROJECT)],
        external_host: Some(HARBOR_HOST.into()),
        admin_password: ADMIN_PASSWORD.into(),
        time_scale,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("starting the Harbor emulator: {e}"))
}

/// A loopback address whose connections go to wherever [`Forward::to`]
/// says, so that the program's `--base-url` can name it before the
/// program has bound its (ephemeral) webhook port.
pub struct Forward {
    addr: SocketAddr,
    target: watch::Sender<Option<SocketAddr>>,
}

impl Forward {
    /// Binds the address and starts forwarding (connections wait for a
    /// target).
    pub async fn bind() -> Forward {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the forwarder: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (target, rx) = watch::channel(None::<SocketAddr>);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(to) = rx
                        .wait_for(Option::is_some)
                        .await
                        .map(|t| t.unwrap_or(addr))
                    else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forward { addr, target }
    }

    /// `http://127.0.0.1:PORT`: the program's `--base-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forwards to `target` from now on.
    pub fn to(&self, target: SocketAddr) {
        self.target.send_replace(Some(target));
    }
}

/// The spec of a registration of `receiver` (of the ProjectConfig) in
/// `projects` of the Harbor at `harbor_url`, with credentials `secret`.
pub fn registration_spec(
    harbor_url: &str,
    projects: &[&str],
    secret: &str,
    receiver: &str,
) -> Value {
    json!({
        "receiver": {"name": receiver},
        "harbor": {
            "url": harbor_url,
            "projects": projects,
            "credentialsSecretRef": {"name": secret},
        },
    })
}

/// Creates or replaces (server-side apply) a registration.
pub async fn apply_registration(
    client: &Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> HarborWebhookRegistration {
    let api: Api<HarborWebhookRegistration> = Api::namespaced(client.clone(), ns);
    let body = json!({
        "apiVersion": "kargo-harbor-receiver.io/v1alpha1",
        "kind": "HarborWebhookRegistration",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying HarborWebhookRegistration {ns}/{name}: {e}"))
}

/// A registration's status, if it exists and has one.
pub async fn registration_status(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<RegistrationStatus> {
    let api: Api<HarborWebhookRegistration> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.status)
}

/// Its `Ready` condition.
pub fn ready(status: &RegistrationStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == "Ready")
}

/// A Harbor REST call as the admin (`path` under `/api/v2.0`).
pub async fn harbor_admin(
    harbor: &Handle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let authorization = format!("Basic {basic}");
    let mut headers = vec![
        ("Authorization", authorization.as_str()),
        ("Accept", "application/json"),
    ];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let url = format!("{}{path}", harbor.api_url());
    tokio::time::timeout(
        Duration::from_secs(30),
        send(&http_client(), method, &url, &headers, body),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer from Harbor to {path}"))
}
