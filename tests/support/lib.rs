#![forbid(unsafe_code)]
//! The shared end-to-end harness: kube-emulator with Kargo's real CRDs, a
//! `kube::Client` for it, test configurations, the app started in-process or
//! as the built binary, typed helpers to create objects, and polling waits.
//!
//! Rules for tests using it: never sleep-then-assert (use [`wait_for`] /
//! [`wait_until`]), and start a fresh emulator per test ([`Env::start`] is
//! cheap: a few milliseconds).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kargo_api::{ClusterConfig, ConfigStatus, ProjectConfig, Warehouse};
use kargo_harbor_receiver::app::Running;
use kargo_harbor_receiver::config::{Cli, Command, Config};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

pub use binary::{free_port, Binary};
pub use kube_emulator::{Emulator, EmulatorOptions, Fault, Handle, RequestRecord};
pub use webhook::{http_client, send, Answer, HttpClient, ANSWER_DEADLINE};

pub mod abuse;
mod binary;
pub mod harbor;
pub mod kargo;
pub mod rbac;
mod webhook;

/// The base URL every test configuration uses.
pub const BASE_URL: &str = "https://webhooks.example.com";

/// Directory of Kargo's real CRDs (shared reference, never copied).
pub fn kargo_crd_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/kargo-crds"
    ))
}

/// Kargo's CRD file for `plural` (`projectconfigs`, `clusterconfigs`, `warehouses`).
pub fn kargo_crd_path(plural: &str) -> PathBuf {
    kargo_crd_dir().join(format!("{plural}.yaml"))
}

/// The `openAPIV3Schema` of one of Kargo's CRDs (version v1alpha1), for
/// `kube_emulator::schema::validate`.
pub fn kargo_crd_schema(plural: &str) -> Value {
    let path = kargo_crd_path(plural);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs = kube_emulator::parse_manifests(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let crd = docs
        .into_iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .unwrap_or_else(|| panic!("no CRD in {}", path.display()));
    crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == "v1alpha1"))
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .unwrap_or_else(|| panic!("no v1alpha1 schema in {}", path.display()))
}

/// Process-wide setup: rustls crypto provider and a tracing subscriber that
/// both prints (test writer) and captures log lines (see [`captured_logs`]).
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn"));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(CaptureWriter),
            )
            .try_init();
    });
}

fn capture_buffer() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUF.get_or_init(|| Mutex::new(Vec::new()))
}

/// Everything logged through `tracing` in this test process so far (all
/// tests of the binary share it; tests run in parallel).
pub fn captured_logs() -> String {
    let buf = capture_buffer().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&buf).into_owned()
}

#[derive(Clone, Copy)]
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        capture_buffer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CaptureWriter {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// A fresh emulator with Kargo's three CRDs and the program's
/// HarborWebhookRegistration CRD, and a client for it.
pub struct Env {
    /// The emulator (request log, faults, watch drops, compaction).
    pub emulator: Handle,
    /// A client for it.
    pub client: Client,
}

impl Env {
    /// Starts an emulator with Kargo's CRDs preloaded.
    pub async fn start() -> Env {
        init();
        let mut opts = EmulatorOptions::default();
        for plural in ["projectconfigs", "clusterconfigs", "warehouses"] {
            opts = opts.with_crd(kargo_crd_path(plural));
        }
        // The program's own CRD, as the chart installs it.
        let registration = serde_json::to_value(harbor_registration_api::crd())
            .unwrap_or_else(|e| panic!("the HarborWebhookRegistration CRD: {e}"));
        opts = opts.with_crd(registration);
        let emulator = Emulator::start(opts)
            .await
            .unwrap_or_else(|e| panic!("starting kube-emulator: {e:#}"));
        let client = client_for(&emulator).await;
        Env { emulator, client }
    }

    /// Another client for the same emulator (e.g. one per replica).
    pub async fn new_client(&self) -> Client {
        client_for(&self.emulator).await
    }

    /// A client configured as the program configures its own
    /// ([`kargo_harbor_receiver::app::client_config`]: its User-Agent), for
    /// [`start_app`]. [`Env::client`] and [`Env::new_client`] send none, so
    /// the request log tells the program's requests from the test's.
    pub async fn program_client(&self) -> Client {
        Client::try_from(kargo_harbor_receiver::app::client_config(
            kube_config_for(&self.emulator).await,
        ))
        .unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// Starts the app in-process with [`test_config`] and `extra` arguments.
    pub async fn start_app(&self, extra: &[&str]) -> Running {
        start_app(test_config(extra), self.program_client().await).await
    }

    /// The emulator's request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.emulator.requests()
    }

    /// Typed API for ProjectConfigs in `ns`.
    pub fn project_configs(&self, ns: &str) -> Api<ProjectConfig> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Typed API for ClusterConfigs.
    pub fn cluster_configs(&self) -> Api<ClusterConfig> {
        Api::all(self.client.clone())
    }

    /// Typed API for Secrets in `ns`.
    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Typed API for Warehouses in `ns`.
    pub fn warehouses(&self, ns: &str) -> Api<Warehouse> {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// A `kube::Client` for an emulator (through its kubeconfig text), as the
/// test's own user: no User-Agent.
pub async fn client_for(emulator: &Handle) -> Client {
    Client::try_from(kube_config_for(emulator).await).unwrap_or_else(|e| panic!("client: {e}"))
}

async fn kube_config_for(emulator: &Handle) -> kube::Config {
    init();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(emulator.kubeconfig_yaml())
        .unwrap_or_else(|e| panic!("emulator kubeconfig: {e}"));
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("emulator kubeconfig: {e}"))
}

/// Whether a request came from the program (in-process or the binary): its
/// User-Agent is [`kargo_harbor_receiver::app::USER_AGENT`].
pub fn is_program_request(r: &RequestRecord) -> bool {
    r.user_agent.as_deref() == Some(kargo_harbor_receiver::app::USER_AGENT)
}

/// Where the end-to-end tests leave the program's API requests, one JSON file
/// per [`Env`] (`<test>-<pid>-<n>.json`), for the chart's RBAC check
/// (`tests/chart.rs`, run by `make test` after the other tests):
/// `$CARGO_TARGET_DIR/e2e-requests`, else `e2e-requests` in the target
/// directory that holds this test binary.
pub fn request_log_dir() -> PathBuf {
    let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => std::env::current_exe()
            .ok()
            .and_then(|exe| {
                // target/<profile>/deps/<test>: the first ancestor Cargo marks
                // as its target directory.
                exe.ancestors()
                    .skip(1)
                    .find(|d| d.join("CACHEDIR.TAG").is_file())
                    .map(Path::to_path_buf)
            })
            .unwrap_or_else(|| workspace.join("target")),
    };
    target.join("e2e-requests")
}

/// Every request log in `dir` (see [`request_log_dir`]): (file name, its
/// requests), sorted by file name.
pub fn read_request_logs(dir: &Path) -> anyhow::Result<Vec<(String, Vec<RequestRecord>)>> {
    use anyhow::Context;
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let requests =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        logs.push((name, requests));
    }
    logs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(logs)
}

/// The running test's name: libtest names the thread after the test (with
/// one test thread it may run on `main`; nextest then passes `--exact NAME`).
fn test_name() -> String {
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(n) if n != "main" && !n.starts_with("tokio-runtime") => n.to_string(),
        _ => {
            let args: Vec<String> = std::env::args().collect();
            args.iter()
                .position(|a| a == "--exact")
                .and_then(|i| args.get(i + 1))
                .or_else(|| args.iter().skip(1).find(|a| !a.starts_with('-')))
                .cloned()
                .unwrap_or_else(|| "unnamed".into())
        }
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Env {
    /// Writes the program's requests (see [`is_program_request`]) to a new
    /// file in [`request_log_dir`]; returns its path. [`Env`]'s `Drop` calls
    /// it, so every test leaves its log, failed ones included; nothing is
    /// written when the program made no request.
    pub fn write_request_log(&self) -> std::io::Result<Option<PathBuf>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let requests: Vec<RequestRecord> = self
            .emulator
            .requests()
            .into_iter()
            .filter(is_program_request)
            .collect();
        if requests.is_empty() {
            return Ok(None);
        }
        let dir = request_log_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{}-{}-{}.json",
            test_name(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let json = serde_json::to_vec_pretty(&requests).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        Ok(Some(path))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Never panic here: Drop also runs while a failed test unwinds.
        if let Err(e) = self.write_request_log() {
            eprintln!(
                "e2e: cannot write the request log to {}: {e}",
                request_log_dir().display()
            );
        }
    }
}

/// A unique identity for a replica in this process.
pub fn unique_identity() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "replica-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `run` arguments tests use, before `extra`: base URL ([`BASE_URL`]
/// unless `extra` has one), ephemeral listeners, lease in `default`, a
/// unique identity, a 2 s lease.
pub fn test_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["kargo-harbor-receiver", "run"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--base-url") {
        args.push("--base-url".into());
        args.push(BASE_URL.into());
    }
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--lease-namespace",
            "default",
            "--lease-duration",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if !extra.contains(&"--identity") {
        args.push("--identity".into());
        args.push(unique_identity());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A `Config` for tests (see [`test_args`]); `extra` flags override or add.
pub fn test_config(extra: &[&str]) -> Config {
    match Cli::try_parse_from(test_args(extra)) {
        Ok(Cli {
            command: Command::Run(config),
        }) => *config,
        Ok(_) => panic!("parsed something other than run"),
        Err(e) => panic!("test config {extra:?}: {e}"),
    }
}

/// Starts the app in-process.
pub async fn start_app(config: Config, client: Client) -> Running {
    kargo_harbor_receiver::app::start(config, client)
        .await
        .unwrap_or_else(|e| panic!("starting the app: {e}"))
}

/// The built binary, compiled from the receiver's `main.rs` as a bin target
/// of this test package (so Cargo builds it before the tests and sets
/// `CARGO_BIN_EXE_…`; a build from inside a test would deadlock on Cargo's
/// lock). Run it with `run` plus [`test_args`]`[2..]` and
/// `KUBECONFIG=emulator.kubeconfig_path()`.
pub fn binary_path() -> PathBuf {
    const NAME: &str = "kargo-harbor-receiver-e2e";
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{NAME}")) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/<bin>
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = dir.join(NAME);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p e2e --bins` (cargo test -p e2e builds it)",
        path.display()
    );
    path
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after
/// `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it is true; returns the time it took.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    wait_for(deadline, what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await;
    start.elapsed()
}

/// Creates a namespace (ignores "already exists").
pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap_or_else(|e| panic!("namespace object: {e}"));
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// A Secret with string data.
pub fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    s
}

/// Creates a Secret, or replaces its data if it exists.
pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let obj = secret(ns, name, data);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Unconditional replace (no resourceVersion): one request, so
            // that faults injected for the controller's reads never hit it.
            api.replace(name, &PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("replacing Secret {ns}/{name}: {e}"));
        }
        Err(e) => panic!("creating Secret {ns}/{name}: {e}"),
    }
}

/// Creates the usual Harbor Secret (`auth-header` = `token`).
pub async fn put_auth_secret(client: &Client, ns: &str, name: &str, token: &str) {
    put_secret(client, ns, name, &[("auth-header", token)]).await;
}

/// Deletes an object of any typed API, ignoring "not found".
pub async fn delete<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting {name}: {e}"),
    }
}

/// A Harbor receiver entry for `spec.webhookReceivers`.
pub fn harbor_receiver(name: &str, secret: &str) -> Value {
    json!({"name": name, "harbor": {"secretRef": {"name": secret}}})
}

/// A GitHub receiver entry (not ours: skipped).
pub fn github_receiver(name: &str, secret: &str) -> Value {
    json!({"name": name, "github": {"secretRef": {"name": secret}}})
}

/// Creates or replaces (server-side apply) the ProjectConfig of project `ns`
/// (named like the namespace, as Kargo requires) with `receivers`.
pub async fn apply_project_config(
    client: &Client,
    ns: &str,
    receivers: Vec<Value>,
) -> ProjectConfig {
    let api: Api<ProjectConfig> = Api::namespaced(client.clone(), ns);
    let body = json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "ProjectConfig",
        "metadata": {"name": ns, "namespace": ns},
        "spec": {"webhookReceivers": receivers},
    });
    api.patch(
        ns,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying ProjectConfig {ns}: {e}"))
}

impl Env {
    /// Sets up project `ns` the way most tests need it: the namespace, the
    /// Harbor Secret `secret` (`auth-header` = `token`, see
    /// [`put_auth_secret`]) and the ProjectConfig with one Harbor receiver
    /// `receiver` using that Secret (see [`apply_project_config`]).
    pub async fn create_harbor_project(
        &self,
        ns: &str,
        receiver: &str,
        secret: &str,
        token: &str,
    ) -> ProjectConfig {
        create_namespace(&self.client, ns).await;
        put_auth_secret(&self.client, ns, secret, token).await;
        apply_project_config(&self.client, ns, vec![harbor_receiver(receiver, secret)]).await
    }
}

/// Creates or replaces the ClusterConfig `cluster` with `receivers`.
pub async fn apply_cluster_config(client: &Client, receivers: Vec<Value>) -> ClusterConfig {
    let api: Api<ClusterConfig> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "ClusterConfig",
        "metadata": {"name": "cluster"},
        "spec": {"webhookReceivers": receivers},
    });
    api.patch(
        "cluster",
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying ClusterConfig: {e}"))
}

/// Sets `kargo.akuity.io/refresh` on a ProjectConfig.
pub async fn request_refresh(client: &Client, ns: &str, value: &str) {
    let api: Api<ProjectConfig> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {kargo_api::REFRESH_ANNOTATION: value}}});
    api.patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotating ProjectConfig {ns}: {e}"));
}

/// Creates or replaces a Warehouse with raw `subscriptions` JSON.
pub async fn apply_warehouse(
    client: &Client,
    ns: &str,
    name: &str,
    subscriptions: Value,
) -> Warehouse {
    let api: Api<Warehouse> = Api::namespaced(client.clone(), ns);
    let body = json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subscriptions": subscriptions},
    });
    api.patch(
        name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying Warehouse {ns}/{name}: {e}"))
}

/// An image subscription entry for a Warehouse.
pub fn image_subscription(repo_url: &str) -> Value {
    json!({"image": {"repoURL": repo_url}})
}

/// The status of the ProjectConfig of project `ns`, if it exists.
pub async fn project_status(client: &Client, ns: &str) -> Option<ConfigStatus> {
    let api: Api<ProjectConfig> = Api::namespaced(client.clone(), ns);
    api.get_opt(ns)
        .await
        .ok()
        .flatten()
        .and_then(|pc| pc.status)
}

/// The status of the ClusterConfig, if it exists.
pub async fn cluster_status(client: &Client) -> Option<ConfigStatus> {
    let api: Api<ClusterConfig> = Api::all(client.clone());
    api.get_opt("cluster")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.status)
}

/// The condition `type_` of a status.
pub fn condition<'a>(
    status: &'a ConfigStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the status says Ready=True.
pub fn is_ready(status: &ConfigStatus) -> bool {
    condition(status, "Ready").is_some_and(|c| c.status == "True")
}

/// The expected receiver path for the base URL used in tests.
pub fn expected_path(project: &str, receiver: &str, token: &str) -> String {
    let base = kargo_harbor_receiver::core::receiver_path::BaseUrl::parse(BASE_URL)
        .unwrap_or_else(|e| panic!("{e}"));
    kargo_harbor_receiver::core::receiver_path::receiver_path(&base, project, receiver, token)
}

/// Requests in the log that are status writes (`patch|update …/status`) on
/// `resource` (`projectconfigs`, `clusterconfigs`).
pub fn status_writes(requests: &[RequestRecord], resource: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.resource.as_deref() == Some(resource)
                && r.subresource.as_deref() == Some("status")
                && matches!(r.verb.as_deref(), Some("patch") | Some("update"))
        })
        .count()
}

/// A self-signed certificate for `localhost` and its key, written to
/// `dir/<name>.crt` and `dir/<name>.key`; returns both paths.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap_or_else(|e| panic!("generating a certificate: {e}"));
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem())
        .unwrap_or_else(|e| panic!("writing {}: {e}", cert.display()));
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .unwrap_or_else(|e| panic!("writing {}: {e}", key.display()));
    (cert, key)
}

/// Shared handle for tests that need to hand a `Running` to a task.
pub type SharedRunning = Arc<tokio::sync::Mutex<Option<Running>>>;
