//! The REST API under `/api/v2.0` and the emulator's control endpoints under `/_emulator/`.
//!
//! Each handler follows the order of checks in Harbor's handler (they differ between
//! endpoints: e.g. `GET …/policies/{id}` resolves the project before checking access, so
//! an unknown project name answers 404 even to a caller without access, while the list
//! checks access first). Before any handler, go-openapi matches the route (404/405) and
//! binds the parameters (422 on a bad type, a missing body, a wrong `Content-Type` or
//! `Accept`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::auth::{Principal, RESOURCE_NOTIFICATION_POLICY, RESOURCE_PROJECT};
use crate::model::{now_micros, Execution, Policy, Project, Task};
use crate::payload::{SUPPORTED_EVENT_TYPES, SUPPORTED_FORMATS, SUPPORTED_NOTIFY_TYPES};
use crate::policy_body::{self, PolicyBody};
use crate::push::{self, PushSpec};
use crate::query::{self, Pattern, QValue};
use crate::server::{ApiFault, ApiRequest, ApiResponse, Shared};

const PREFIX: &str = "/api/v2.0";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ping,
    HeadProject,
    GetProject,
    ListPolicies,
    CreatePolicy,
    GetPolicy,
    UpdatePolicy,
    DeletePolicy,
    ListExecutions,
    ListTasks,
    TaskLog,
    Events,
    LastTrigger,
}

/// Match a path (segments after `/api/v2.0`) to the operations of that path by method.
fn operations(segs: &[&str]) -> Option<Vec<(Method, Op)>> {
    use Op::*;
    let ops = match segs {
        ["ping"] => vec![(Method::GET, Ping)],
        ["projects"] => vec![(Method::HEAD, HeadProject)],
        ["projects", _] => vec![(Method::GET, GetProject)],
        ["projects", _, "webhook", "policies"] => {
            vec![(Method::GET, ListPolicies), (Method::POST, CreatePolicy)]
        }
        ["projects", _, "webhook", "policies", _] => vec![
            (Method::DELETE, DeletePolicy),
            (Method::GET, GetPolicy),
            (Method::PUT, UpdatePolicy),
        ],
        ["projects", _, "webhook", "policies", _, "executions"] => {
            vec![(Method::GET, ListExecutions)]
        }
        ["projects", _, "webhook", "policies", _, "executions", _, "tasks"] => {
            vec![(Method::GET, ListTasks)]
        }
        ["projects", _, "webhook", "policies", _, "executions", _, "tasks", _, "log"] => {
            vec![(Method::GET, TaskLog)]
        }
        ["projects", _, "webhook", "events"] => vec![(Method::GET, Events)],
        ["projects", _, "webhook", "lasttrigger"] => vec![(Method::GET, LastTrigger)],
        _ => return None,
    };
    Some(ops)
}

/// The bound parameters of a request.
#[derive(Debug, Default)]
struct Params {
    project: Option<ProjectRef>,
    policy_id: i64,
    execution_id: i64,
    task_id: i64,
    q: String,
    sort: String,
    page: i64,
    page_size: i64,
    project_name: String,
    body: Option<PolicyBody>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProjectRef {
    Name(String),
    Id(i64),
}

fn percent_decode(s: &str) -> String {
    query::percent_unescape(&s.replace('+', "%2B")).unwrap_or_else(|| s.to_string())
}

/// go-openapi's `swag.ConvertBool`.
fn convert_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "ok" | "y" | "on" | "selected" | "checked" | "t" | "enabled" => {
            Some(true)
        }
        "false" | "0" | "no" | "n" | "off" | "f" | "disabled" => Some(false),
        _ => None,
    }
}

fn media_type(s: &str) -> String {
    s.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// go-openapi's negotiation of the answer's media type: `None` when `Accept` excludes the
/// offer (then the request's own content type, if any, is used instead).
fn negotiate(accept: &[&str], offer: &str) -> Option<bool> {
    if accept.is_empty() {
        return Some(true);
    }
    let ranges: Vec<(String, f32)> = accept
        .join(", ")
        .split(',')
        .filter_map(|r| {
            let mut parts = r.split(';');
            let mt = parts.next()?.trim().to_ascii_lowercase();
            if !mt.contains('/') {
                return None;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((mt, q))
        })
        .collect();
    if ranges.is_empty() {
        return None;
    }
    let (ot, os) = offer.split_once('/').unwrap_or((offer, ""));
    ranges
        .iter()
        .any(|(r, q)| {
            let (t, s) = r.split_once('/').unwrap_or((r, ""));
            *q > 0.0 && (t == "*" || t == ot) && (s == "*" || s == os)
        })
        .then_some(true)
}

fn bind(req: &ApiRequest, op: Op, segs: &[&str]) -> Result<Params, ApiError> {
    use Op::*;
    let has_body =
        !req.body.is_empty() || req.headers.contains_key(http::header::TRANSFER_ENCODING);
    let takes_body = matches!(op, CreatePolicy | UpdatePolicy);
    let mut request_content_type = String::new();
    if has_body {
        let ct = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type)
            .unwrap_or_else(|| "application/octet-stream".to_string());
        if ct != JSON {
            return Err(ApiError::validation(&[format!(
                "unsupported media type \"{ct}\", only [{JSON}] are allowed"
            )]));
        }
        request_content_type = ct;
    }
    let produces = if matches!(op, Ping | TaskLog) {
        TEXT
    } else {
        JSON
    };
    let accept: Vec<&str> = req
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if negotiate(&accept, produces).is_none() && request_content_type.is_empty() {
        return Err(ApiError::validation(&[format!(
            "unsupported media type requested, only [{produces}] are available"
        )]));
    }
    let mut failures = Vec::new();
    let mut p = Params {
        page: 1,
        page_size: 10,
        ..Params::default()
    };
    let mut is_name = false;
    if let Some(v) = req.headers.get("x-is-resource-name") {
        let raw = v.to_str().unwrap_or("");
        if !raw.is_empty() {
            match convert_bool(raw) {
                Some(b) => is_name = b,
                None => failures.push(format!(
                    "X-Is-Resource-Name in header must be of type bool: \"{raw}\""
                )),
            }
        }
    }
    if segs.len() >= 2 && segs[0] == "projects" {
        let raw = percent_decode(segs[1]);
        p.project = Some(match raw.parse::<i64>() {
            Ok(id) if !is_name => ProjectRef::Id(id),
            _ => ProjectRef::Name(raw),
        });
    }
    let mut int_path = |idx: usize, name: &str, out: &mut i64| {
        if let Some(raw) = segs.get(idx) {
            let raw = percent_decode(raw);
            match raw.parse::<i64>() {
                Ok(v) => *out = v,
                Err(_) => failures.push(format!("{name} in path must be of type int64: \"{raw}\"")),
            }
        }
    };
    if segs.len() >= 5 {
        int_path(4, "webhook_policy_id", &mut p.policy_id);
    }
    if segs.len() >= 7 {
        int_path(6, "execution_id", &mut p.execution_id);
    }
    if segs.len() >= 9 {
        int_path(8, "task_id", &mut p.task_id);
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
        .into_owned()
        .collect();
    // go-swagger binds the last value of a repeated parameter.
    let last = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    if matches!(op, ListPolicies | ListExecutions | ListTasks) {
        for (name, out) in [("page", &mut p.page), ("page_size", &mut p.page_size)] {
            if let Some(raw) = last(name).filter(|r| !r.is_empty()) {
                match raw.parse::<i64>() {
                    Ok(v) => *out = v,
                    Err(_) => {
                        failures.push(format!("{name} in query must be of type int64: \"{raw}\""))
                    }
                }
            }
        }
        if p.page_size > 100 {
            failures.push("page_size in query should be less than or equal to 100".to_string());
        }
        p.q = last("q").unwrap_or_default();
        p.sort = last("sort").unwrap_or_default();
    }
    if op == HeadProject {
        match last("project_name").filter(|v| !v.is_empty()) {
            Some(v) => p.project_name = v,
            None => failures.push("project_name in query is required".to_string()),
        }
    }
    if takes_body {
        let body: &[u8] = if has_body { &req.body } else { b"" };
        match policy_body::decode(body) {
            Ok(b) => p.body = Some(b),
            Err(f) => failures.push(f),
        }
    }
    if failures.is_empty() {
        Ok(p)
    } else {
        Err(ApiError::validation(&failures))
    }
}

fn with_request_id(mut resp: ApiResponse, request_id: &str) -> ApiResponse {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Harbor's error answer.
pub fn error_response(e: &ApiError, request_id: &str) -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::from(e.body())));
    *resp.status_mut() =
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    with_request_id(resp, request_id)
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> ApiResponse {
    // go-openapi's JSON producer: an encoder without HTML escaping, one value per line.
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

fn empty(status: StatusCode) -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn text(body: String) -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    resp
}

/// Answer an API request.
pub async fn route(shared: &Arc<Shared>, req: &ApiRequest, who: &Principal) -> ApiResponse {
    match route_inner(shared, req, who) {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(path = %req.path, detail = %e.message, "answering 500");
            }
            error_response(&e, "")
        }
    }
}

fn route_inner(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    who: &Principal,
) -> Result<ApiResponse, ApiError> {
    let not_found = || ApiError::not_found(format!("path {} was not found", req.path));
    let Some(rest) = req.path.strip_prefix(PREFIX) else {
        return Err(not_found());
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<&str> = rest.split('/').collect();
    let ops = operations(&segs).ok_or_else(not_found)?;
    let Some(op) = ops.iter().find(|(m, _)| *m == req.method).map(|(_, o)| *o) else {
        let allowed: Vec<&str> = ops.iter().map(|(m, _)| m.as_str()).collect();
        return Err(ApiError::method_not_allowed(req.method.as_str(), &allowed));
    };
    let params = bind(req, op, &segs)?;
    shared.with_state(|st| {
        Handler {
            st,
            who,
            params,
            req,
        }
        .run(op)
    })
}

struct Handler<'a> {
    st: &'a mut crate::state::State,
    who: &'a Principal,
    params: Params,
    req: &'a ApiRequest,
}

/// `found`, the `what` (kind, ID) looked up, when it belongs to `parent`
/// (kind, ID) by `parent_of`; Harbor's two "not found" answers otherwise.
fn require_in<T: Clone>(
    found: Option<&T>,
    (kind, id): (&str, i64),
    (parent_kind, parent_id): (&str, i64),
    parent_of: impl Fn(&T) -> i64,
) -> Result<T, ApiError> {
    let item = found.ok_or_else(|| ApiError::not_found(format!("{kind} {id} not found")))?;
    if parent_of(item) != parent_id {
        return Err(ApiError::not_found_wrapping(format!(
            "{kind} {id} not found in {parent_kind} {parent_id}"
        )));
    }
    Ok(item.clone())
}

fn policy_not_in_project(project_id: i64, policy_id: i64) -> ApiError {
    ApiError::not_found_wrapping(format!(
        "project id:{project_id}, webhook policy id: {policy_id} not found"
    ))
}

#[derive(Serialize)]
struct PayloadFormatJson {
    formats: &'static [&'static str],
    notify_type: &'static str,
}

#[derive(Serialize)]
struct EventTypesJson {
    event_type: &'static [&'static str],
    notify_type: &'static [&'static str],
    payload_formats: [PayloadFormatJson; 1],
}

#[derive(Serialize)]
struct LastTriggerJson<'a> {
    creation_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    enabled: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    event_type: &'a str,
    last_trigger_time: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    policy_name: &'a str,
}

impl Handler<'_> {
    fn project_ref(&self) -> ProjectRef {
        self.params
            .project
            .clone()
            .unwrap_or(ProjectRef::Name(String::new()))
    }

    fn lookup(&self, r: &ProjectRef) -> Option<Project> {
        match r {
            ProjectRef::Name(n) => self.st.project_by_name(n).cloned(),
            ProjectRef::Id(id) => self.st.project_by_id(*id).cloned(),
        }
    }

    /// `getProjectID`: a name must exist; an ID is taken as is (Harbor does not check it).
    fn project_id(&self, r: &ProjectRef) -> Result<i64, ApiError> {
        match r {
            ProjectRef::Name(n) => self
                .st
                .project_by_name(n)
                .map(|p| p.id)
                .ok_or_else(|| ApiError::not_found(format!("project {n} not found"))),
            ProjectRef::Id(id) => Ok(*id),
        }
    }

    /// `RequireProjectAccess`.
    fn require(&self, r: &ProjectRef, resource: &str, action: &str) -> Result<(), ApiError> {
        let project = self.lookup(r);
        if self.who.can(project.as_ref(), resource, action) {
            Ok(())
        } else if self.who.is_authenticated() {
            Err(ApiError::forbidden())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    /// `requirePolicyInProject`.
    fn require_policy(&self, r: &ProjectRef, policy_id: i64) -> Result<Policy, ApiError> {
        let project_id = self.project_id(r)?;
        let p = self.st.policies.get(&policy_id).ok_or_else(|| {
            ApiError::not_found(format!("notificationPolicy {policy_id} not found"))
        })?;
        if p.project_id != project_id {
            return Err(policy_not_in_project(project_id, policy_id));
        }
        Ok(p.clone())
    }

    /// The path's policy as the handlers that read one find it: the project
    /// resolved first (404 before 403), then `read` on it, then the policy.
    fn readable_policy(&self) -> Result<Policy, ApiError> {
        let project_id = self.project_id(&self.project_ref())?;
        let id_ref = ProjectRef::Id(project_id);
        self.require(&id_ref, RESOURCE_NOTIFICATION_POLICY, "read")?;
        self.require_policy(&id_ref, self.params.policy_id)
    }

    fn require_execution(&self, exec_id: i64, policy_id: i64) -> Result<Execution, ApiError> {
        let found = self.st.executions.get(&exec_id);
        require_in(found, ("execution", exec_id), ("policy", policy_id), |e| {
            e.vendor_id
        })
    }

    fn require_task(&self, task_id: i64, exec_id: i64) -> Result<Task, ApiError> {
        let found = self.st.tasks.get(&task_id);
        require_in(found, ("task", task_id), ("execution", exec_id), |t| {
            t.execution_id
        })
    }

    fn query(&self) -> Result<query::Query, ApiError> {
        query::build(
            &self.params.q,
            &self.params.sort,
            self.params.page,
            self.params.page_size,
        )
    }

    fn list<T: Serialize>(&self, total: i64, q: &query::Query, items: Vec<T>) -> ApiResponse {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(self.req.query.as_bytes())
            .into_owned()
            .collect();
        let mut resp = json(StatusCode::OK, &items);
        let link = query::links(&self.req.path, &pairs, total, q.page, q.page_size);
        if !link.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&link) {
                resp.headers_mut().insert(http::header::LINK, v);
            }
        }
        resp.headers_mut()
            .insert("x-total-count", HeaderValue::from(total));
        resp
    }

    fn run(self, op: Op) -> Result<ApiResponse, ApiError> {
        match op {
            Op::Ping => Ok(text("Pong".to_string())),
            Op::HeadProject => {
                if !self.who.is_authenticated() {
                    return Err(ApiError::unauthorized());
                }
                let name = &self.params.project_name;
                self.st
                    .project_by_name(name)
                    .ok_or_else(|| ApiError::not_found(format!("project {name} not found")))?;
                Ok(empty(StatusCode::OK))
            }
            Op::GetProject => {
                let r = self.project_ref();
                self.require(&r, RESOURCE_PROJECT, "read")?;
                let p = self.lookup(&r).ok_or_else(|| match &r {
                    ProjectRef::Name(n) => ApiError::not_found(format!("project {n} not found")),
                    ProjectRef::Id(id) => ApiError::not_found(format!("project {id} not found")),
                })?;
                let count = self.st.repo_count(&p.name);
                Ok(json(
                    StatusCode::OK,
                    &p.to_json(self.who.role_ids(&p), count),
                ))
            }
            Op::ListPolicies => {
                let r = self.project_ref();
                self.require(&r, RESOURCE_NOTIFICATION_POLICY, "list")?;
                let project_id = self.project_id(&r)?;
                let q = self.query()?;
                let extra = [(
                    "ProjectID".to_string(),
                    Pattern::Exact(QValue::Int(project_id)),
                )];
                let (total, rows) = query::apply(self.st.policies.values().cloned(), &q, &extra)
                    .map_err(|_| ApiError::internal())?;
                let items: Vec<_> = rows.iter().map(Policy::to_json).collect();
                Ok(self.list(total, &q, items))
            }
            Op::CreatePolicy => self.create(),
            Op::GetPolicy => {
                let p = self.readable_policy()?;
                Ok(json(StatusCode::OK, &p.to_json()))
            }
            Op::UpdatePolicy => self.update(),
            Op::DeletePolicy => {
                let r = self.project_ref();
                self.require(&r, RESOURCE_NOTIFICATION_POLICY, "delete")?;
                let p = self.require_policy(&r, self.params.policy_id)?;
                self.st.delete_policy(p.id);
                Ok(empty(StatusCode::OK))
            }
            Op::ListExecutions => {
                let p = self.readable_policy()?;
                let q = self.query()?;
                let extra = [
                    (
                        "vendor_type".to_string(),
                        Pattern::OrList(vec![
                            QValue::Str("WEBHOOK".into()),
                            QValue::Str("SLACK".into()),
                        ]),
                    ),
                    ("vendor_id".to_string(), Pattern::Exact(QValue::Int(p.id))),
                ];
                let (total, rows) = query::apply(self.st.executions.values().cloned(), &q, &extra)
                    .map_err(|_| ApiError::internal())?;
                let metrics: Vec<_> = rows.iter().map(|e| self.st.metrics(e.id)).collect();
                let items: Vec<_> = rows
                    .iter()
                    .zip(metrics)
                    .map(|(e, m)| e.to_json(m))
                    .collect();
                Ok(self.list(total, &q, items))
            }
            Op::ListTasks => {
                let p = self.readable_policy()?;
                let e = self.require_execution(self.params.execution_id, p.id)?;
                let q = self.query()?;
                let extra = [(
                    "execution_id".to_string(),
                    Pattern::Exact(QValue::Int(e.id)),
                )];
                let (total, rows) = query::apply(self.st.tasks.values().cloned(), &q, &extra)
                    .map_err(|_| ApiError::internal())?;
                let items: Vec<_> = rows.iter().map(Task::to_json).collect();
                Ok(self.list(total, &q, items))
            }
            Op::TaskLog => {
                let p = self.readable_policy()?;
                let e = self.require_execution(self.params.execution_id, p.id)?;
                let t = self.require_task(self.params.task_id, e.id)?;
                Ok(text(t.log))
            }
            Op::Events => {
                let r = self.project_ref();
                self.require(&r, RESOURCE_NOTIFICATION_POLICY, "read")?;
                Ok(json(
                    StatusCode::OK,
                    &EventTypesJson {
                        event_type: SUPPORTED_EVENT_TYPES,
                        notify_type: SUPPORTED_NOTIFY_TYPES,
                        payload_formats: [PayloadFormatJson {
                            formats: SUPPORTED_FORMATS,
                            notify_type: "http",
                        }],
                    },
                ))
            }
            Op::LastTrigger => {
                let r = self.project_ref();
                self.require(&r, RESOURCE_NOTIFICATION_POLICY, "read")?;
                let project_id = self.project_id(&r)?;
                let q = query::Query::default();
                let extra = [(
                    "ProjectID".to_string(),
                    Pattern::Exact(QValue::Int(project_id)),
                )];
                let (_, policies) = query::apply(self.st.policies.values().cloned(), &q, &extra)
                    .map_err(|_| ApiError::internal())?;
                let mut out = Vec::new();
                for p in &policies {
                    for t in &p.event_types {
                        let last = self
                            .st
                            .executions
                            .values()
                            .filter(|e| e.vendor_id == p.id && &e.event_type == t)
                            .map(|e| e.start_time)
                            .max();
                        out.push(LastTriggerJson {
                            creation_time: crate::model::strfmt_time(p.creation_time),
                            enabled: p.enabled,
                            event_type: t,
                            last_trigger_time: crate::model::strfmt_time(last),
                            policy_name: &p.name,
                        });
                    }
                }
                Ok(json(StatusCode::OK, &out))
            }
        }
    }

    /// Postgres column limits (`varchar(256)`) fail the insert: Harbor answers 500.
    fn check_columns(body: &PolicyBody) -> Result<(), ApiError> {
        if body.name.chars().count() > 256 || body.creator.chars().count() > 256 {
            return Err(ApiError::internal());
        }
        Ok(())
    }

    fn name_taken(&self, project_id: i64, name: &str, except: i64) -> bool {
        self.st
            .policies
            .values()
            .any(|p| p.project_id == project_id && p.name == name && p.id != except)
    }

    fn create(mut self) -> Result<ApiResponse, ApiError> {
        let r = self.project_ref();
        self.require(&r, RESOURCE_NOTIFICATION_POLICY, "create")?;
        let mut body = self.params.body.take().unwrap_or_default();
        policy_body::validate(&mut body)?;
        let project_id = self.project_id(&r)?;
        Self::check_columns(&body)?;
        if self.name_taken(project_id, &body.name, 0) {
            return Err(ApiError::conflict(format!(
                "notification policy named {} already exists",
                body.name
            )));
        }
        let id = self.st.next_policy_id();
        let now = now_micros();
        self.st.policies.insert(
            id,
            Policy {
                id,
                name: body.name,
                description: body.description,
                project_id,
                targets: body.targets,
                event_types: body.event_types,
                creator: body.creator,
                creation_time: Some(now),
                update_time: Some(now),
                enabled: body.enabled,
            },
        );
        let mut resp = empty(StatusCode::CREATED);
        let location = format!("{}/{id}", self.req.path.trim_end_matches('/'));
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        Ok(resp)
    }

    fn update(mut self) -> Result<ApiResponse, ApiError> {
        let r = self.project_ref();
        self.require(&r, RESOURCE_NOTIFICATION_POLICY, "update")?;
        let project_id = self.project_id(&r)?;
        let policy_id = self.params.policy_id;
        self.require_policy(&ProjectRef::Id(project_id), policy_id)?;
        let mut body = self.params.body.take().unwrap_or_default();
        policy_body::validate(&mut body)?;
        Self::check_columns(&body)?;
        if self.name_taken(project_id, &body.name, policy_id) {
            return Err(ApiError::conflict(format!(
                "notification policy named {} already exists",
                body.name
            )));
        }
        if let Some(p) = self.st.policies.get_mut(&policy_id) {
            // beego's Update writes every column from the request but drops the last
            // auto_now_add column (update_time): creation_time and creator come from the
            // body, update_time stays.
            p.name = body.name;
            p.description = body.description;
            p.targets = body.targets;
            p.event_types = body.event_types;
            p.creator = body.creator;
            p.creation_time = body.creation_time;
            p.enabled = body.enabled;
        }
        Ok(empty(StatusCode::OK))
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    fault: Option<ApiFault>,
    #[serde(default)]
    for_ms: Option<u64>,
}

#[derive(Serialize)]
struct ControlError {
    error: String,
}

fn control_error(status: StatusCode, msg: impl Into<String>) -> ApiResponse {
    json(status, &ControlError { error: msg.into() })
}

/// The emulator's own endpoints (no authentication, not in the request log, not subject
/// to faults): `POST /_emulator/push`, `POST /_emulator/fault`, `GET /_emulator/requests`,
/// `POST /_emulator/wait?timeout_ms=N`.
pub async fn control(shared: &Arc<Shared>, req: ApiRequest) -> ApiResponse {
    match (req.method.clone(), req.path.as_str()) {
        (Method::POST, "/_emulator/push") => {
            let spec: PushSpec = match serde_json::from_slice(&req.body) {
                Ok(s) => s,
                Err(e) => return control_error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            match push::push(shared, spec) {
                Ok(d) => {
                    let mut m = BTreeMap::new();
                    m.insert("deliveries", d);
                    json(StatusCode::OK, &m)
                }
                Err(e @ push::PushError::UnknownProject(_)) => {
                    control_error(StatusCode::NOT_FOUND, e.to_string())
                }
                Err(e) => control_error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (Method::POST, "/_emulator/fault") => {
            let f: FaultRequest = match serde_json::from_slice(&req.body) {
                Ok(f) => f,
                Err(e) => return control_error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            shared.fault.send_replace(f.fault);
            if let (Some(ms), Some(fault)) = (f.for_ms, f.fault) {
                let s = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    s.fault.send_if_modified(|cur| {
                        let same = *cur == Some(fault);
                        if same {
                            *cur = None;
                        }
                        same
                    });
                });
            }
            empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, "/_emulator/requests") => json(StatusCode::OK, &shared.requests()),
        (Method::POST, "/_emulator/wait") => {
            let ms = form_urlencoded::parse(req.query.as_bytes())
                .find(|(k, _)| k == "timeout_ms")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(30_000);
            let mut rx = shared.active.subscribe();
            let done = tokio::time::timeout(Duration::from_millis(ms), rx.wait_for(|n| *n == 0))
                .await
                .is_ok();
            if done {
                empty(StatusCode::NO_CONTENT)
            } else {
                control_error(StatusCode::GATEWAY_TIMEOUT, "deliveries still running")
            }
        }
        _ => control_error(StatusCode::NOT_FOUND, "unknown control endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(&[], JSON), Some(true));
        assert_eq!(
            negotiate(&["application/json, text/plain"], JSON),
            Some(true)
        );
        assert_eq!(negotiate(&["*/*"], TEXT), Some(true));
        assert_eq!(negotiate(&["text/html"], JSON), None);
        assert_eq!(negotiate(&["application/json;q=0"], JSON), None);
        assert_eq!(negotiate(&[""], JSON), None);
    }

    #[test]
    fn routes_and_methods() {
        assert!(operations(&["projects", "p", "webhook", "policies"]).is_some());
        assert!(operations(&["projects", "p", "webhook", "nope"]).is_none());
    }
}
