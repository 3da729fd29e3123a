//! The `HarborWebhookRegistration` controller: keeps, in each Harbor
//! project a registration names, a webhook policy equal to the declared
//! state — event type `PUSH_ARTIFACT`, the receiver's current URL and auth
//! header, enabled — and deletes it when the registration goes (finalizer).
//!
//! Runs on every replica, acts on the leader only (becoming leader
//! reconciles every registration). A reconcile:
//!
//! 1. resolves the receiver: its config (ProjectConfig of the namespace or
//!    the ClusterConfig), its Secret (the auth header, read when needed and
//!    never kept or logged), the URL derived from it — and waits until the
//!    route table serves that URL, so Harbor is never pointed at a path
//!    that would answer 404;
//! 2. reads the credentials Secret and builds a client for that Harbor
//!    (its own timeout per request);
//! 3. syncs every project concurrently ([`crate::core::harbor_policy`]
//!    decides create / update / in sync / not ours), and deletes the
//!    policies of projects removed from the spec;
//! 4. writes status and Events ([`crate::core::registration`]).
//!
//! Triggers: the registration's spec, finalizers and deletion (status writes
//! are filtered out); its credentials Secret changing; the route table
//! changing such that the URL it registered is no longer the receiver's
//! current one (a rotation: re-registered within about a second); becoming
//! leader; and `--registration-resync`, which repairs edits made in Harbor
//! (drift). Failures retry with per-registration backoff. Registrations
//! are reconciled concurrently: one slow Harbor slows only its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use harbor_registration_api::{ConfigKind, HarborWebhookRegistration, PASSWORD_KEY, USERNAME_KEY};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kargo_api::{ClusterConfig, ProjectConfig, ReceiverKind, WebhookReceiverConfig};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, PredicateConfig, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::api_errors::{ApiErrors, Failure};
use super::configs::{became_leader, log_result, stops_even_if_never_listed};
use super::leader::Leadership;
use super::report;
use super::secrets::{secret_value, wipe_secret, AUTH_HEADER_KEY};
use super::SecretKey;
use crate::core::harbor_policy::{self, Desired, Plan};
use crate::core::receiver_path::{receiver_path, BaseUrl};
use crate::core::registration::{
    self, Change, Outcome, Problem, ProjectOutcome, REASON_CREDENTIALS_INVALID,
    REASON_POLICY_NAME_TAKEN, REASON_RECEIVER_NOT_FOUND, REASON_RECEIVER_NOT_READY,
};
use crate::harbor_api::{Credentials, Endpoint, HarborClient, HarborError};
use crate::index::{RouteTable, Scope};
use crate::metrics::{
    ErrorLabels, RegistrationMetrics, RegistrationResult, ResultLabels, WriteLabels,
};

/// First retry after a failed sync; doubles per failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay (also bounded by the resync interval).
const MAX_RETRY: Duration = Duration::from_secs(300);

/// How the controller is configured.
#[derive(Clone, Debug)]
pub struct RegistrationSettings {
    /// Full sync with Harbor this often (repairs edits made in Harbor).
    pub resync: Duration,
    /// Timeout of each Harbor API request.
    pub harbor_timeout: Duration,
}

/// What the controller works with.
pub struct RegistrationParts {
    /// The API server.
    pub client: kube::Client,
    /// Receiver URLs are derived from it.
    pub base_url: BaseUrl,
    /// Where ClusterConfig receivers' Secrets live.
    pub system_namespace: String,
    /// What the receivers serve (the URL registered must be served).
    pub routes: Arc<RouteTable>,
    /// Only the leader talks to Harbor.
    pub leadership: Arc<Leadership>,
    /// Events on registrations.
    pub recorder: Recorder,
    /// Its metrics.
    pub metrics: RegistrationMetrics,
    /// Settings.
    pub settings: RegistrationSettings,
}

/// Why a reconcile must be retried (Kubernetes API errors; Harbor's are
/// reported in status and retried from there).
#[derive(Debug, Error)]
pub enum RegistrationError {
    /// Reading the receiver's config or a Secret failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What (`ProjectConfig ns/name`, `Secret ns/name`).
        what: String,
        /// The API error (carries no Secret data).
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("writing status: {0}")]
    StatusWrite(#[source] kube::Error),
    /// Deleting a policy failed; the finalizer stays.
    #[error("deleting the webhook policy in Harbor project {project:?}: {source}")]
    Cleanup {
        /// The project.
        project: String,
        /// Harbor's error.
        #[source]
        source: HarborError,
    },
}

/// What the controller remembers per registration.
#[derive(Default)]
struct State {
    /// Consecutive failed syncs (retry backoff).
    failures: HashMap<ObjectRef<HarborWebhookRegistration>, u32>,
    /// The receiver path last registered (the route trigger compares it
    /// with what the route table serves).
    registered: HashMap<ObjectRef<HarborWebhookRegistration>, String>,
}

struct Context {
    parts: RegistrationParts,
    state: Mutex<State>,
}

impl Context {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `reg` should be re-registered after a route table change:
    /// never registered, or its registered path no longer current.
    fn needs_registration(&self, reg: &HarborWebhookRegistration) -> bool {
        let path = self
            .state()
            .registered
            .get(&ObjectRef::from_obj(reg))
            .cloned();
        path.is_none_or(|p| {
            self.parts
                .routes
                .lookup(&p)
                .is_none_or(|e| e.grace_until.is_some())
        })
    }
}

/// The receiver as Harbor must be told about it. No `Debug`: it holds the
/// auth header, wiped when dropped.
struct Receiver {
    path: String,
    url: String,
    auth_header: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        crate::core::token::wipe_str(&mut self.auth_header);
    }
}

/// `Kind/namespace/name`, for logs.
fn key_of(reg: &HarborWebhookRegistration) -> String {
    format!(
        "HarborWebhookRegistration/{}/{}",
        reg.namespace().unwrap_or_default(),
        reg.name_any()
    )
}

fn problem(reason: &'static str, message: String) -> Problem {
    Problem { reason, message }
}

/// Either a state the registration reports, or an API error to retry.
pub(crate) enum Blocker {
    /// Reported in status.
    Problem(Problem),
    /// Retried.
    Api(RegistrationError),
}

impl From<Problem> for Blocker {
    fn from(p: Problem) -> Self {
        Blocker::Problem(p)
    }
}

/// A Secret read for its values; wiped when dropped (`core::token`).
struct Wiped(Secret);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe_secret(&mut self.0);
    }
}

async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Result<Wiped, String>, RegistrationError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(Ok(Wiped(s))),
        Ok(None) => Ok(Err(format!("Secret {namespace}/{name} not found"))),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Err(format!(
            "not allowed to read Secret {namespace}/{name}"
        ))),
        Err(source) => Err(RegistrationError::Read {
            what: format!("Secret {namespace}/{name}"),
            source,
        }),
    }
}

/// A text value of a Secret key (trimmed of nothing: used verbatim).
fn text_value(secret: &Secret, key: &str) -> Result<String, String> {
    match secret_value(secret, key) {
        None | Some([]) => Err(format!("has no (or an empty) key {key:?}")),
        Some(bytes) => {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("key {key:?} is not UTF-8 text"))
        }
    }
}

impl Context {
    /// The config's Harbor receivers, its scope and where its Secrets live.
    async fn config_receivers(
        &self,
        reg: &HarborWebhookRegistration,
    ) -> Result<(Scope, Vec<WebhookReceiverConfig>, String, String), Blocker> {
        let client = self.parts.client.clone();
        let ns = reg.namespace().unwrap_or_default();
        let (found, scope, secret_ns, label) = match reg.spec.receiver.config {
            ConfigKind::ProjectConfig => {
                let api: Api<ProjectConfig> = Api::namespaced(client, &ns);
                let label = format!("ProjectConfig {ns}/{ns}");
                let found = api
                    .get_opt(&ns)
                    .await
                    .map(|o| o.map(|pc| pc.spec.webhook_receivers));
                (found, Scope::project_of(&ns), ns.clone(), label)
            }
            ConfigKind::ClusterConfig => {
                let api: Api<ClusterConfig> = Api::all(client);
                let name = kargo_api::CLUSTER_CONFIG_NAME;
                let found = api
                    .get_opt(name)
                    .await
                    .map(|o| o.map(|cc| cc.spec.webhook_receivers));
                let ns = self.parts.system_namespace.clone();
                (found, Scope::Cluster, ns, format!("ClusterConfig {name}"))
            }
        };
        match found {
            Ok(Some(receivers)) => Ok((scope, receivers, secret_ns, label)),
            Ok(None) => {
                Err(problem(REASON_RECEIVER_NOT_FOUND, format!("{label} not found")).into())
            }
            Err(source) => Err(Blocker::Api(RegistrationError::Read {
                what: label,
                source,
            })),
        }
    }

    /// Step 1: the receiver's current URL and auth header, once served.
    async fn receiver(&self, reg: &HarborWebhookRegistration) -> Result<Receiver, Blocker> {
        let name = &reg.spec.receiver.name;
        let (scope, receivers, secret_ns, label) = self.config_receivers(reg).await?;
        let secret_name = match receivers.iter().find(|r| &r.name == name).map(|r| r.kind()) {
            Some(ReceiverKind::Harbor(h)) => h.secret_ref.name.clone(),
            _ => {
                return Err(problem(
                    REASON_RECEIVER_NOT_FOUND,
                    format!("{label} has no Harbor receiver named {name:?}"),
                )
                .into())
            }
        };
        let not_ready = |why: String| Blocker::from(problem(REASON_RECEIVER_NOT_READY, why));
        let secret = read_secret(&self.parts.client, &secret_ns, &secret_name)
            .await
            .map_err(Blocker::Api)?
            .map_err(|why| not_ready(format!("receiver {name:?}: {why}")))?;
        let auth_header = text_value(&secret.0, AUTH_HEADER_KEY).map_err(|why| {
            not_ready(format!(
                "receiver {name:?}: Secret {secret_ns}/{secret_name} {why}"
            ))
        })?;
        let base = &self.parts.base_url;
        let path = receiver_path(base, scope.project(), name, auth_header.as_bytes());
        let served = self.parts.routes.lookup(&path).is_some_and(|e| {
            e.scope == scope
                && e.name == *name
                && e.grace_until.is_none()
                && e.token.verify(auth_header.as_bytes())
        });
        if !served {
            return Err(not_ready(format!(
                "receiver {name:?} does not serve its current URL yet"
            )));
        }
        Ok(Receiver {
            url: base.url_for(&path),
            path,
            auth_header,
        })
    }

    /// Step 2: a client for the registration's Harbor.
    async fn harbor(&self, reg: &HarborWebhookRegistration) -> Result<HarborClient, Blocker> {
        harbor_client(&self.parts.client, reg, self.parts.settings.harbor_timeout)
            .await
            .map_err(|e| match e {
                HarborClientError::Blocked(b) => b,
                HarborClientError::Harbor(e) => self.harbor_problem(&e).into(),
            })
    }

    /// A Harbor error as a problem, counted.
    fn harbor_problem(&self, e: &HarborError) -> Problem {
        self.parts
            .metrics
            .harbor_errors
            .get_or_create(&ErrorLabels {
                error: e.metric_label(),
            })
            .inc();
        problem(e.reason(), e.to_string())
    }

    fn count_write(&self, action: &'static str) {
        self.parts
            .metrics
            .policy_writes
            .get_or_create(&WriteLabels { action })
            .inc();
    }
}

/// Why [`harbor_client`] gave no client.
pub(crate) enum HarborClientError {
    /// The credentials Secret is unusable, or reading it failed.
    Blocked(Blocker),
    /// The Harbor URL or CA bundle is unusable.
    Harbor(HarborError),
}

/// A client for a registration's Harbor, as the account of its credentials
/// Secret; each request bounded by `timeout`.
pub(crate) async fn harbor_client(
    client: &kube::Client,
    reg: &HarborWebhookRegistration,
    timeout: Duration,
) -> Result<HarborClient, HarborClientError> {
    let ns = reg.namespace().unwrap_or_default();
    let name = &reg.spec.harbor.credentials_secret_ref.name;
    let invalid =
        |why: String| HarborClientError::Blocked(problem(REASON_CREDENTIALS_INVALID, why).into());
    let secret = read_secret(client, &ns, name)
        .await
        .map_err(|e| HarborClientError::Blocked(Blocker::Api(e)))?
        .map_err(|why| invalid(format!("credentials: {why}")))?;
    let field = |key| {
        text_value(&secret.0, key)
            .map_err(|why| invalid(format!("credentials: Secret {ns}/{name} {why}")))
    };
    let credentials = Credentials {
        username: field(USERNAME_KEY)?,
        password: field(PASSWORD_KEY)?,
    };
    let endpoint = Endpoint {
        url: reg.spec.harbor.url.clone(),
        ca_bundle: reg.spec.harbor.ca_bundle.clone(),
        insecure_skip_tls_verify: reg.spec.harbor.insecure_skip_tls_verify,
    };
    HarborClient::new(&endpoint, &credentials, timeout).map_err(HarborClientError::Harbor)
}

/// The policy a registration wants.
fn desired(reg: &HarborWebhookRegistration, receiver: &Receiver) -> Desired {
    let ns = reg.namespace().unwrap_or_default();
    let name = reg.name_any();
    Desired {
        name: policy_name(reg),
        description: harbor_policy::description(&ns, &name, &reg.spec.receiver.name),
        address: receiver.url.clone(),
        auth_header: receiver.auth_header.clone(),
        skip_cert_verify: reg.spec.policy.skip_cert_verify,
        payload_format: reg.spec.policy.payload_format.as_str(),
    }
}

/// Why one project did not sync.
enum SyncError {
    /// Harbor said no, or could not be asked.
    Harbor(HarborError),
    /// A policy with our name exists there and is not ours.
    NotOurs,
}

impl From<HarborError> for SyncError {
    fn from(e: HarborError) -> Self {
        SyncError::Harbor(e)
    }
}

/// The delay before retry number `n` (from 1): doubling from
/// [`FIRST_RETRY`], at most `max`.
fn retry_delay(n: u32, max: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(max)
}

/// The policy found for a project: by the ID status remembers if it is
/// still ours, else by name. A missing project is
/// [`HarborError::ProjectNotFound`]: `HEAD /projects` says 404 and the list
/// is refused (403: it checks access first), or the list says 404; a 403
/// on a project that exists is a missing permission.
async fn find(
    harbor: &HarborClient,
    project: &str,
    name: &str,
    marker: &str,
    known: Option<i64>,
) -> Result<Option<harbor_policy::WebhookPolicy>, HarborError> {
    let exists = harbor.project_exists(project).await?;
    let found = async {
        if let Some(id) = known {
            if let Some(p) = harbor.get_policy(project, id).await? {
                if harbor_policy::is_ours(&p, marker) {
                    return Ok(Some(p));
                }
            }
        }
        harbor.find_policy(project, name).await
    }
    .await;
    match found {
        Err(HarborError::Forbidden { .. }) if exists == Some(false) => {
            Err(HarborError::ProjectNotFound(project.to_owned()))
        }
        other => other,
    }
}

impl Context {
    /// Step 3, one project.
    async fn sync_project(
        &self,
        harbor: &HarborClient,
        project: &str,
        desired: &Desired,
        marker: &str,
        known: Option<i64>,
    ) -> ProjectOutcome {
        let result: Result<(i64, Change), SyncError> = async {
            let found = find(harbor, project, &desired.name, marker, known).await?;
            match harbor_policy::plan(found.as_ref(), desired, marker) {
                Plan::Create => {
                    let id = harbor
                        .create_policy(project, &desired.create_body())
                        .await?;
                    self.count_write("create");
                    let id = match id {
                        Some(id) => id,
                        // No Location header: find it by name.
                        None => harbor
                            .find_policy(project, &desired.name)
                            .await?
                            .and_then(|p| p.id)
                            .ok_or(SyncError::Harbor(HarborError::Protocol {
                                operation: "create a policy",
                                detail: "the created policy cannot be found".into(),
                            }))?,
                    };
                    Ok((id, Change::Created))
                }
                Plan::Update { id, changed } => {
                    let current = found.unwrap_or_default();
                    harbor
                        .update_policy(project, id, &desired.update_body(&current))
                        .await?;
                    self.count_write("update");
                    Ok((id, Change::Updated(changed)))
                }
                Plan::InSync { id } => Ok((id, Change::Unchanged)),
                Plan::NotOurs { .. } => Err(SyncError::NotOurs),
            }
        }
        .await;
        match result {
            Ok((policy_id, change)) => ProjectOutcome::Synced { policy_id, change },
            Err(SyncError::NotOurs) => ProjectOutcome::Failed {
                policy_id: None,
                problem: problem(
                    REASON_POLICY_NAME_TAKEN,
                    format!(
                        "a webhook policy named {:?} exists there and was not created for this \
                         registration: it is left alone; set spec.policy.name to another name",
                        desired.name
                    ),
                ),
            },
            Err(SyncError::Harbor(e)) => ProjectOutcome::Failed {
                policy_id: known,
                problem: self.harbor_problem(&e),
            },
        }
    }

    /// Deletes our policy in a project, if there is one; `Ok(false)`: none.
    async fn delete_in(
        &self,
        harbor: &HarborClient,
        project: &str,
        name: &str,
        marker: &str,
        known: Option<i64>,
    ) -> Result<bool, HarborError> {
        let policy = match find(harbor, project, name, marker, known).await {
            Ok(Some(policy)) => policy,
            Ok(None) | Err(HarborError::ProjectNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match policy
            .id
            .filter(|_| harbor_policy::is_ours(&policy, marker))
        {
            Some(id) => {
                let deleted = harbor.delete_policy(project, id).await?;
                if deleted {
                    self.count_write("delete");
                }
                Ok(deleted)
            }
            None => Ok(false),
        }
    }
}

fn now() -> Time {
    let ts = Timestamp::now();
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// The name of a registration's policy.
pub(crate) fn policy_name(reg: &HarborWebhookRegistration) -> String {
    reg.spec.policy.name.clone().unwrap_or_else(|| {
        harbor_policy::default_name(&reg.namespace().unwrap_or_default(), &reg.name_any())
    })
}

fn marker_of(reg: &HarborWebhookRegistration) -> String {
    harbor_policy::marker(&reg.namespace().unwrap_or_default(), &reg.name_any())
}

/// The projects of a registration: the spec's (deduplicated, in order).
fn spec_projects(reg: &HarborWebhookRegistration) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &reg.spec.harbor.projects {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

impl Context {
    /// Steps 1–3: what the registration's state is now.
    async fn sync(
        &self,
        reg: &HarborWebhookRegistration,
    ) -> Result<(Outcome, Option<String>), RegistrationError> {
        let receiver = match self.receiver(reg).await {
            Ok(r) => r,
            Err(Blocker::Problem(p)) => return Ok((Outcome::Blocked(p), None)),
            Err(Blocker::Api(e)) => return Err(e),
        };
        let harbor = match self.harbor(reg).await {
            Ok(h) => h,
            Err(Blocker::Problem(p)) => return Ok((Outcome::Blocked(p), None)),
            Err(Blocker::Api(e)) => return Err(e),
        };
        let desired = desired(reg, &receiver);
        let marker = marker_of(reg);
        let status = reg.status.as_ref();
        let known = |project: &str| {
            status
                .and_then(|s| s.projects.iter().find(|p| p.name == project))
                .and_then(|p| p.policy_id)
        };
        let projects = spec_projects(reg);
        let synced =
            futures::future::join_all(projects.iter().map(|project| {
                self.sync_project(&harbor, project, &desired, &marker, known(project))
            }))
            .await;
        let mut outcomes: Vec<(String, ProjectOutcome)> =
            projects.iter().cloned().zip(synced).collect();
        // Projects removed from the spec: delete our policy there.
        let removed: Vec<(String, i64)> = status
            .map(|s| s.projects.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|p| !projects.contains(&p.name))
            .filter_map(|p| Some((p.name.clone(), p.policy_id?)))
            .collect();
        for (project, id) in removed {
            match self
                .delete_in(&harbor, &project, &desired.name, &marker, Some(id))
                .await
            {
                Ok(_) => {
                    tracing::info!(registration = %key_of(reg), project, "project removed from the spec: webhook policy deleted")
                }
                Err(e) => {
                    let mut p = self.harbor_problem(&e);
                    p.message = format!("removing the webhook policy: {}", p.message);
                    outcomes.push((
                        project,
                        ProjectOutcome::Failed {
                            policy_id: Some(id),
                            problem: p,
                        },
                    ));
                }
            }
        }
        let outcome = Outcome::Synced {
            url: receiver.url.clone(),
            policy_name: desired.name.clone(),
            projects: outcomes,
        };
        Ok((outcome, Some(receiver.path.clone())))
    }

    /// The finalizer's `Apply`: sync, report, schedule the next one.
    async fn apply(
        &self,
        reg: Arc<HarborWebhookRegistration>,
    ) -> Result<Action, RegistrationError> {
        let key = ObjectRef::from_obj(reg.as_ref());
        let (outcome, path) = self.sync(&reg).await?;
        for (project, o) in match &outcome {
            Outcome::Synced { projects, .. } => projects.as_slice(),
            Outcome::Blocked(_) => &[],
        } {
            match o {
                ProjectOutcome::Synced {
                    policy_id,
                    change: Change::Created,
                } => {
                    tracing::info!(registration = %key_of(&reg), project, policy_id, "webhook policy created")
                }
                ProjectOutcome::Synced {
                    policy_id,
                    change: Change::Updated(fields),
                } => {
                    tracing::info!(registration = %key_of(&reg), project, policy_id, changed = %fields.join(", "), "webhook policy updated")
                }
                _ => {}
            }
        }
        let current = reg.status.as_ref();
        let desired =
            registration::desired_status(current, reg.meta().generation, &outcome, &now());
        let events = registration::events(current, &outcome);
        if let Some(patch) = registration::status_patch(current, &desired) {
            let api: Api<HarborWebhookRegistration> = Api::namespaced(
                self.parts.client.clone(),
                &reg.namespace().unwrap_or_default(),
            );
            report::patch_status(&api, &reg.name_any(), &patch)
                .await
                .map_err(RegistrationError::StatusWrite)?;
        }
        report::publish_events(&self.parts.recorder, reg.as_ref(), events).await;

        let problem = outcome.problem();
        let result = match (&problem, &outcome) {
            (None, _) => RegistrationResult::Synced,
            (Some(_), Outcome::Blocked(_)) => RegistrationResult::Blocked,
            (Some(_), Outcome::Synced { .. }) => RegistrationResult::NotSynced,
        };
        self.parts
            .metrics
            .reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        let mut state = self.state();
        if let Some(path) = path {
            state.registered.insert(key.clone(), path);
        }
        let resync = self.parts.settings.resync;
        match problem {
            None => {
                state.failures.remove(&key);
                Ok(Action::requeue(resync))
            }
            Some(p) => {
                let n = state.failures.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                let delay = retry_delay(*n, MAX_RETRY.min(resync));
                tracing::warn!(registration = %key_of(&reg), reason = p.reason, message = %p.message, ?delay, "registration not synced; retrying");
                Ok(Action::requeue(delay))
            }
        }
    }

    /// The finalizer's `Cleanup`: delete our policy in every project we
    /// know of. What cannot be reached for good (credentials Secret gone,
    /// project gone) is left, with a Warning Event: a namespace being
    /// deleted must not hang on it.
    async fn cleanup(
        &self,
        reg: Arc<HarborWebhookRegistration>,
    ) -> Result<Action, RegistrationError> {
        let mut projects = spec_projects(&reg);
        let status = reg
            .status
            .as_ref()
            .map(|s| s.projects.as_slice())
            .unwrap_or_default();
        for p in status {
            if !projects.contains(&p.name) {
                projects.push(p.name.clone());
            }
        }
        let known = |project: &str| {
            status
                .iter()
                .find(|p| p.name == project)
                .and_then(|p| p.policy_id)
        };
        let harbor = match self.harbor(&reg).await {
            Ok(h) => h,
            Err(Blocker::Api(e)) => return Err(e),
            Err(Blocker::Problem(p)) => {
                let note = format!(
                    "cannot delete the webhook policies in Harbor ({}): delete {:?} in project(s) {} by hand",
                    p.message,
                    policy_name(&reg),
                    projects.join(", ")
                );
                tracing::warn!(registration = %key_of(&reg), %note, "registration deleted");
                report::publish_events(
                    &self.parts.recorder,
                    reg.as_ref(),
                    vec![crate::core::status::EventSpec {
                        warning: true,
                        reason: registration::EVENT_POLICY_LEFT,
                        note,
                    }],
                )
                .await;
                return Ok(Action::await_change());
            }
        };
        let (name, marker) = (policy_name(&reg), marker_of(&reg));
        for project in &projects {
            match self
                .delete_in(&harbor, project, &name, &marker, known(project))
                .await
            {
                Ok(deleted) => {
                    if deleted {
                        tracing::info!(registration = %key_of(&reg), project, "webhook policy deleted");
                        report::publish_events(
                            &self.parts.recorder,
                            reg.as_ref(),
                            vec![crate::core::status::EventSpec {
                                warning: false,
                                reason: registration::EVENT_POLICY_DELETED,
                                note: format!(
                                    "deleted webhook policy {name:?} in Harbor project {project:?}"
                                ),
                            }],
                        )
                        .await;
                    }
                }
                Err(source) => {
                    self.harbor_problem(&source);
                    return Err(RegistrationError::Cleanup {
                        project: project.clone(),
                        source,
                    });
                }
            }
        }
        let key = ObjectRef::from_obj(reg.as_ref());
        let mut state = self.state();
        state.failures.remove(&key);
        state.registered.remove(&key);
        Ok(Action::await_change())
    }
}

/// The finalizer's errors, as the controller sees them.
type ReconcileError = finalizer::Error<RegistrationError>;

async fn reconcile(
    reg: Arc<HarborWebhookRegistration>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.parts.leadership.is_leader() {
        // Becoming leader reconciles every registration.
        return Ok(Action::await_change());
    }
    let api: Api<HarborWebhookRegistration> = Api::namespaced(
        ctx.parts.client.clone(),
        &reg.namespace().unwrap_or_default(),
    );
    finalizer(
        &api,
        harbor_registration_api::FINALIZER,
        reg,
        |event| async {
            match event {
                finalizer::Event::Apply(reg) => ctx.apply(reg).await,
                finalizer::Event::Cleanup(reg) => ctx.cleanup(reg).await,
            }
        },
    )
    .await
}

fn error_policy(
    reg: Arc<HarborWebhookRegistration>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    ctx.parts
        .metrics
        .reconciles
        .get_or_create(&ResultLabels {
            result: RegistrationResult::Error,
        })
        .inc();
    let n = {
        let mut state = ctx.state();
        let n = state
            .failures
            .entry(ObjectRef::from_obj(reg.as_ref()))
            .or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = retry_delay(n, MAX_RETRY);
    tracing::warn!(registration = %key_of(&reg), error = %error, ?delay, "registration reconcile failed; retrying");
    Action::requeue(delay)
}

/// Changed Secrets → the registrations using them as credentials.
fn secret_triggers(
    rx: mpsc::UnboundedReceiver<SecretKey>,
    store: Store<HarborWebhookRegistration>,
) -> BoxStream<'static, ObjectRef<HarborWebhookRegistration>> {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
        .flat_map(move |(ns, name)| {
            let affected: Vec<_> = store
                .state()
                .into_iter()
                .filter(|r| {
                    r.namespace().as_deref() == Some(ns.as_str())
                        && r.spec.harbor.credentials_secret_ref.name == name
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect();
            stream::iter(affected)
        })
        .boxed()
}

/// Route table changes → registrations whose registered URL is no longer
/// their receiver's current one (or that never registered).
fn route_triggers(
    ctx: Arc<Context>,
    store: Store<HarborWebhookRegistration>,
) -> BoxStream<'static, ObjectRef<HarborWebhookRegistration>> {
    let changes = ctx.parts.routes.changes();
    stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
    .flat_map(move |()| {
        let affected: Vec<_> = store
            .state()
            .into_iter()
            .filter(|r| r.meta().deletion_timestamp.is_none() && ctx.needs_registration(r))
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect();
        stream::iter(affected)
    })
    .boxed()
}

/// What a registration's watch event must change to trigger a reconcile:
/// its spec (generation), finalizers or deletion — not its status.
fn spec_or_lifecycle(reg: &HarborWebhookRegistration) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    reg.meta().generation.hash(&mut h);
    reg.meta().deletion_timestamp.is_some().hash(&mut h);
    reg.finalizers().hash(&mut h);
    Some(h.finish())
}

/// The controller; runs until `shutdown`.
pub fn controller(
    parts: RegistrationParts,
    secret_changes: mpsc::UnboundedReceiver<SecretKey>,
    watch_restarts: prometheus_client::metrics::counter::Counter,
    api_errors: Arc<ApiErrors>,
    shutdown: &CancellationToken,
) -> impl std::future::Future<Output = ()> + Send {
    let api: Api<HarborWebhookRegistration> = Api::all(parts.client.clone());
    let (store, writer) = reflector::store();
    let leader = became_leader(&parts.leadership);
    let ctx = Arc::new(Context {
        parts,
        state: Mutex::new(State::default()),
    });
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|r: &mut HarborWebhookRegistration| r.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => api_errors.succeeded(),
            Ok(_) => {}
            Err(e) => {
                watch_restarts.inc();
                if api_errors.failed("HarborWebhookRegistration watch", e) == Failure::Other {
                    tracing::warn!(error = %e, "HarborWebhookRegistration watch failed; retrying");
                }
            }
        })
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, PredicateConfig::default());
    let run = Controller::for_stream(stream, store.clone())
        .reconcile_on(secret_triggers(secret_changes, store.clone()))
        .reconcile_on(route_triggers(ctx.clone(), store.clone()))
        .reconcile_all_on(leader)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(log_result);
    stops_even_if_never_listed(run, store, shutdown, "harbor_webhook_registration")
}
