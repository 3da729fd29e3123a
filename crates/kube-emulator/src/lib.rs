//! `kube-emulator`: an in-memory Kubernetes API server over plain HTTP, faithful to the
//! parts of the API that kube-rs (watcher, reflector, Controller, leases) and kubectl use.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kube_emulator::{Emulator, EmulatorOptions, Fault};
//! let handle = Emulator::start(EmulatorOptions::default()).await?;
//! println!("serving on {}; kubeconfig at {}", handle.url(), handle.kubeconfig_path().display());
//! handle.inject(Fault::new(500).path_contains("/status").times(2));
//! handle.drop_watches();
//! handle.shutdown();
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod discovery;
pub mod errors;
pub mod faults;
pub mod object;
pub mod patch;
pub mod protobuf;
pub mod requests;
pub mod resources;
pub mod schema;
pub mod selectors;
mod server;
pub mod store;
pub mod table;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use errors::ApiError;
pub use faults::Fault;
pub use requests::RequestRecord;

use server::Shared;

/// A CRD (or any manifest) to preload.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// A YAML or JSON file; multi-document YAML and `kind: List` are allowed.
    Path(PathBuf),
    /// An object.
    Value(Value),
}

impl From<PathBuf> for Manifest {
    fn from(p: PathBuf) -> Self {
        Manifest::Path(p)
    }
}

impl From<Value> for Manifest {
    fn from(v: Value) -> Self {
        Manifest::Value(v)
    }
}

/// Options for [`Emulator::start`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Listen address; default `127.0.0.1:0` (a free loopback port).
    pub listen: SocketAddr,
    /// Manifests (usually CRDs) created before serving.
    pub preload: Vec<Manifest>,
    /// Print each request via `tracing` (they are always kept in [`Handle::requests`]).
    pub log_requests: bool,
    /// Interval of BOOKMARK events on watches that allow them; default 5 s.
    pub bookmark_interval: Duration,
    /// Number of change events kept for resuming watches; older resourceVersions get
    /// 410 Expired. Default 10 000.
    pub history_retention: usize,
    /// Where to write the kubeconfig; default a temporary file owned by the handle.
    pub kubeconfig_path: Option<PathBuf>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            preload: Vec::new(),
            log_requests: false,
            bookmark_interval: Duration::from_secs(5),
            history_retention: 10_000,
            kubeconfig_path: None,
        }
    }
}

impl EmulatorOptions {
    /// Add Kargo-style CRD files (or any manifests) to preload.
    pub fn with_crd(mut self, m: impl Into<Manifest>) -> Self {
        self.preload.push(m.into());
        self
    }
}

/// Entry point.
pub struct Emulator;

/// Parse manifests (YAML/JSON, multi-document, `kind: List`) into objects.
pub fn parse_manifests(text: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).context("parsing manifest")?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = m.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            v => out.push(v),
        }
    }
    Ok(out)
}

/// The files of Kargo's CRDs in the shared reference directory (for tests and the demo).
pub fn kargo_crd_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/kargo-crds"
    ))
}

/// The type an object's `apiVersion` and `kind` name, and the namespace it goes to (its
/// own, else `default` for a namespaced type).
fn destination(
    store: &store::Store,
    obj: &Value,
) -> Option<(resources::ResourceType, Option<String>)> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let rt = store.resolve_kind(av, kind)?.clone();
    let ns = object::meta_str(obj, "namespace")
        .map(str::to_string)
        .or_else(|| rt.namespaced.then(|| "default".to_string()));
    Some((rt, ns))
}

fn create_or_update(store: &mut store::Store, obj: Value) -> anyhow::Result<()> {
    let Some((rt, ns)) = destination(store, &obj) else {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        anyhow::bail!("unknown kind {kind} in {av}");
    };
    let name = object::meta_str(&obj, "name").unwrap_or("").to_string();
    match store.create(&rt, ns.as_deref(), obj.clone()) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => {
            let mut o = obj;
            object::meta_mut(&mut o).remove("resourceVersion");
            store
                .update(&rt, ns.as_deref(), &name, o, None)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!(e.message))
        }
        Err(e) => Err(anyhow::anyhow!("{}: {}", name, e.message)),
    }
}

/// Why [`Handle::create_many`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The object's `apiVersion` and `kind` name no served type.
    #[error("object {index}: unknown kind {kind:?} in {api_version:?}")]
    UnknownKind {
        /// Position of the object in the input.
        index: usize,
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// The object was rejected as a POST of it would be (409 AlreadyExists, 422
    /// Invalid, 404 for a missing namespace, ...).
    #[error("object {index} ({name:?}): {source}")]
    Rejected {
        /// Position of the object in the input.
        index: usize,
        /// Its `metadata.name` (`""` when it has none).
        name: String,
        /// The answer a POST would have had.
        source: Box<ApiError>,
    },
}

/// Objects created per lock of the store by [`Handle::create_many`]: requests are
/// served between batches.
const CREATE_BATCH: usize = 1000;

fn create_one(store: &mut store::Store, index: usize, obj: Value) -> Result<(), CreateError> {
    let Some((rt, ns)) = destination(store, &obj) else {
        let field = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(CreateError::UnknownKind {
            index,
            api_version: field("apiVersion"),
            kind: field("kind"),
        });
    };
    let name = object::meta_str(&obj, "name").unwrap_or("").to_string();
    store
        .create(&rt, ns.as_deref(), obj)
        .map(|_| ())
        .map_err(|e| CreateError::Rejected {
            index,
            name,
            source: Box::new(e),
        })
}

/// Lock a mutex; a panic elsewhere while it was held does not poison it for us.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Emulator {
    /// Bind, preload manifests, write the kubeconfig and start serving on the current
    /// tokio runtime.
    pub async fn start(opts: EmulatorOptions) -> anyhow::Result<Handle> {
        let mut store = store::Store::new(opts.history_retention);
        for m in &opts.preload {
            let objs = match m {
                Manifest::Path(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    parse_manifests(&text).with_context(|| format!("parsing {}", p.display()))?
                }
                Manifest::Value(v) => vec![v.clone()],
            };
            for o in objs {
                create_or_update(&mut store, o)?;
            }
        }
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("binding {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let (drop_tx, _) = tokio::sync::watch::channel(0u64);
        let (shutdown_tx, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            faults: Default::default(),
            log: Default::default(),
            log_requests: opts.log_requests,
            drop_watches: drop_tx,
            shutdown: shutdown_tx,
            bookmark_interval: opts.bookmark_interval.max(Duration::from_millis(10)),
            addr: addr.to_string(),
        });
        let kubeconfig = kubeconfig_yaml(&format!("http://{addr}"));
        let (kc_path, kc_temp) = match &opts.kubeconfig_path {
            Some(p) => {
                std::fs::write(p, &kubeconfig)
                    .with_context(|| format!("writing {}", p.display()))?;
                (p.clone(), None)
            }
            None => {
                let mut f = tempfile::Builder::new()
                    .prefix("kube-emulator-")
                    .suffix(".kubeconfig")
                    .tempfile()?;
                std::io::Write::write_all(&mut f, kubeconfig.as_bytes())?;
                (f.path().to_path_buf(), Some(f.into_temp_path()))
            }
        };
        let accept_shared = shared.clone();
        let mut shutdown_rx = shared.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = shutdown_rx.changed() => return,
                };
                let Ok((stream, _)) = conn else { continue };
                let _ = stream.set_nodelay(true);
                let s = accept_shared.clone();
                let mut conn_shutdown = accept_shared.shutdown.subscribe();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| server::handle(s.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_shutdown.changed() => {}
                    }
                });
            }
        });
        Ok(Handle {
            shared,
            addr,
            kubeconfig,
            kubeconfig_path: kc_path,
            _kubeconfig_temp: kc_temp,
        })
    }
}

/// A kubeconfig pointing at `server` with an empty user (no credentials needed).
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-emulator
  cluster:
    server: {server}
contexts:
- name: kube-emulator
  context:
    cluster: kube-emulator
    user: kube-emulator
    namespace: default
current-context: kube-emulator
users:
- name: kube-emulator
  user: {{}}
"
    )
}

/// A running emulator. Dropping it shuts the server down (and removes a temporary
/// kubeconfig).
pub struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: String,
    kubeconfig_path: PathBuf,
    _kubeconfig_temp: Option<tempfile::TempPath>,
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig text (`server: http://…`, `user: {}`).
    pub fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig
    }

    /// Where the kubeconfig was written.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Make matching requests fail, take longer, or both (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    /// The faults still pending, with what is left of their counts (a fault used up is
    /// gone; one that applies [`always`](Fault::always) stays until cleared).
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.faults.pending()
    }

    /// Remove all pending faults (requests already held by a delay finish as they were).
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// End all open watch streams (clients re-watch from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// Discard the watch history and end open watches: a client resuming from any
    /// resourceVersion seen so far gets 410 Expired (as an ERROR event) and must re-list.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// All requests served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.all()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock_store().current_rv()
    }

    /// Direct access to the store (e.g. to seed objects without HTTP).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut store::Store) -> R) -> R {
        f(&mut self.shared.lock_store())
    }

    /// Create objects as POSTs of them would (type and name checks, defaults, pruning
    /// and validation against a CRD's schema, ADDED events for watchers), without HTTP:
    /// the fast way to seed many objects. Each goes to its `metadata.namespace` (else
    /// `default` for a namespaced type), which must exist. The store is locked for
    /// batches of objects, so that requests are served in between. Stops at the first
    /// object a POST would reject (those before it stay created); returns how many
    /// objects were created.
    pub fn create_many<I>(&self, objects: I) -> Result<usize, CreateError>
    where
        I: IntoIterator<Item = Value>,
    {
        let mut objects = objects.into_iter().enumerate().peekable();
        let mut created = 0;
        while objects.peek().is_some() {
            let mut store = self.shared.lock_store();
            for (index, obj) in objects.by_ref().take(CREATE_BATCH) {
                create_one(&mut store, index, obj)?;
                created += 1;
            }
        }
        Ok(created)
    }

    /// Create (or replace) objects from manifest text, like `kubectl apply` of a file.
    pub fn load_manifests(&self, text: &str) -> anyhow::Result<()> {
        let objs = parse_manifests(text)?;
        let mut store = self.shared.lock_store();
        for o in objs {
            create_or_update(&mut store, o)?;
        }
        Ok(())
    }

    /// Stop accepting connections and end open connections and watches.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
