//! HTTP routing and request handling (hyper 1).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::discovery;
use crate::errors::{ApiError, ApiResult};
use crate::faults::{Fault, FaultSpec, Faults};
use crate::requests::{RequestLog, RequestRecord};
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{PageRequest, Store};
use crate::table;
use crate::watch::{self, WatchParams};

/// Response body type.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 64 * 1024 * 1024;

/// State shared by all connections.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub faults: Faults,
    pub log: RequestLog,
    pub log_requests: bool,
    pub drop_watches: tokio::sync::watch::Sender<u64>,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub bookmark_interval: Duration,
    pub addr: String,
}

impl Shared {
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        crate::lock(&self.store)
    }

    /// End all open watch streams.
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|g| *g += 1);
    }

    /// Discard the watch history and end open watches: resuming clients get 410.
    pub fn compact(&self) {
        self.lock_store().compact();
        self.drop_watches();
    }
}

/// Reduce an object to `PartialObjectMetadata`.
pub(crate) fn to_partial(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(ra) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&ra.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Decode a query string as Go's `url.ParseQuery` does (`+` is a space, `%XX` escapes);
/// a repeated key keeps its last value.
fn parse_query(q: &str) -> HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// A resolved resource request path.
#[derive(Debug, Clone)]
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    legacy_watch: bool,
}

fn parse_target(store: &Store, segs: &[&str]) -> Option<Result<Target, ApiError>> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] if !r.is_empty() => (true, r),
        r => (false, r),
    };
    let lookup = |plural: &str| store.resolve(group, version, plural).cloned();
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, r @ ..]
            if *plural != "status"
                && *plural != "finalize"
                && lookup(plural).is_some_and(|t| t.namespaced) =>
        {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(r);
                v
            })
        }
        r => (None, r.to_vec()),
    };
    let plural = *rest.first()?;
    let Some(rt) = lookup(plural) else {
        return Some(Err(not_found_path()));
    };
    if rest.len() > 3 {
        return Some(Err(not_found_path()));
    }
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    if let Some(s) = &subresource {
        if !(s == "status" && rt.status_subresource) {
            return Some(Err(not_found_path()));
        }
    }
    Some(Ok(Target {
        rt,
        namespace,
        name,
        subresource,
        legacy_watch,
    }))
}

fn parse_body(ct: &str, body: &[u8]) -> ApiResult<Value> {
    if body.starts_with(crate::protobuf::MAGIC) || ct.contains("protobuf") {
        return crate::protobuf::decode(body).map_err(ApiError::bad_request);
    }
    if ct.contains("yaml") {
        return serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

#[derive(PartialEq)]
enum As {
    Full,
    Partial,
    Table,
}

fn output_as(accept: &str) -> As {
    // Take the first acceptable option, in order.
    for part in accept.split(',') {
        if part.contains("as=Table") {
            return As::Table;
        }
        if part.contains("as=PartialObjectMetadata") {
            return As::Partial;
        }
        let mime = part.split(';').next().unwrap_or("").trim();
        if mime == "application/json" || mime == "*/*" || mime.is_empty() {
            return As::Full;
        }
    }
    As::Full
}

/// Handle one HTTP request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let hdr = |h: header::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut rec = RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: hdr(header::CONTENT_TYPE),
        accept: hdr(header::ACCEPT),
        user_agent: hdr(header::USER_AGENT),
        ..RequestRecord::default()
    };
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let e = ApiError::new(413, "RequestEntityTooLarge", "request body too large");
            return Ok(finish(&shared, rec, started, error_response(&e)));
        }
    };
    let q = parse_query(&query);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Describe the request for the log before anything can fail.
    let target = {
        let store = shared.lock_store();
        parse_target(&store, &segs)
    };
    if let Some(Ok(t)) = &target {
        let watch = t.legacy_watch || truthy(&q, "watch");
        rec.verb = Some(
            match (&parts.method, t.name.is_some()) {
                (&Method::GET, true) if watch => "watch",
                (&Method::GET, true) => "get",
                (&Method::GET, false) if watch => "watch",
                (&Method::GET, false) => "list",
                (&Method::POST, _) => "create",
                (&Method::PUT, _) => "update",
                (&Method::PATCH, _) => "patch",
                (&Method::DELETE, true) => "delete",
                (&Method::DELETE, false) => "deletecollection",
                _ => "unknown",
            }
            .to_string(),
        );
        rec.group = Some(t.rt.group.clone());
        rec.resource = Some(t.rt.plural.clone());
        rec.subresource = t.subresource.clone();
        rec.namespace = t.namespace.clone();
        rec.name = t.name.clone();
    }
    if !path.starts_with("/_emulator") {
        if let Some(f) = shared.faults.take(&parts.method, &path, &query) {
            // No lock is held here: other requests go on while this one waits.
            if !f.delay.is_zero() {
                tokio::time::sleep(f.delay).await;
                rec.injected_delay = f.delay;
            }
            if let Some(code) = f.code {
                rec.injected_fault = true;
                return Ok(finish(&shared, rec, started, fault_response(code, &f)));
            }
        }
    }
    let ct = rec.content_type.clone().unwrap_or_default();
    let accept = rec.accept.clone().unwrap_or_default();
    let resp = match (segs.as_slice(), target) {
        (["_emulator", rest @ ..], _) => admin(&shared, &parts.method, rest, &body),
        (_, Some(Ok(t))) => match resource(
            &shared,
            &parts.method,
            t,
            &q,
            (&ct, &accept, rec.user_agent.as_deref().unwrap_or("")),
            &body,
        ) {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
        (_, Some(Err(e))) => error_response(&e),
        (segs, None) => match discovery_response(&shared, &parts.method, segs, &accept) {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    };
    Ok(finish(&shared, rec, started, resp))
}

fn finish(
    shared: &Shared,
    mut rec: RequestRecord,
    started: Instant,
    resp: Response<Body>,
) -> Response<Body> {
    rec.status = resp.status().as_u16();
    rec.duration = started.elapsed();
    if shared.log_requests {
        tracing::info!(
            method = %rec.method, path = %rec.path, query = %rec.query, status = rec.status,
            duration_ms = rec.duration.as_secs_f64() * 1000.0,
            user_agent = rec.user_agent.as_deref().unwrap_or(""),
            "request"
        );
    }
    shared.log.push(rec);
    resp
}

fn fault_response(code: u16, f: &Fault) -> Response<Body> {
    let mut e = ApiError::new(
        code,
        ApiError::reason_for_code(code),
        f.message
            .clone()
            .unwrap_or_else(|| format!("injected fault: {code}")),
    );
    e.retry_after = f.retry_after;
    error_response(&e)
}

fn admin(shared: &Shared, method: &Method, rest: &[&str], body: &[u8]) -> Response<Body> {
    match (method, rest) {
        (&Method::GET, ["requests"]) => json_response(200, &json!(shared.log.all())),
        (&Method::DELETE, ["requests"]) => {
            shared.log.clear();
            json_response(200, &json!({}))
        }
        (&Method::POST, ["faults"]) => {
            let spec = serde_json::from_slice::<FaultSpec>(body).map_err(|e| e.to_string());
            match spec.and_then(|s| Fault::try_from(s).map_err(|e| e.to_string())) {
                Ok(f) => {
                    shared.faults.add(f);
                    json_response(201, &json!({}))
                }
                Err(e) => error_response(&ApiError::bad_request(e)),
            }
        }
        (&Method::DELETE, ["faults"]) => {
            shared.faults.clear();
            json_response(200, &json!({}))
        }
        (&Method::POST, ["drop-watches"]) => {
            shared.drop_watches();
            json_response(200, &json!({}))
        }
        (&Method::POST, ["compact"]) => {
            shared.compact();
            json_response(200, &json!({}))
        }
        _ => error_response(&not_found_path()),
    }
}

fn discovery_response(
    shared: &Shared,
    method: &Method,
    segs: &[&str],
    accept: &str,
) -> ApiResult<Response<Body>> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not supported here"
        )));
    }
    let store = shared.lock_store();
    let types = store.types();
    let aggregated = |v: Value| {
        let mut r = json_response(200, &v);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(discovery::AGGREGATED_V2),
        );
        r
    };
    Ok(match segs {
        ["version"] => json_response(200, &discovery::version()),
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        ["api"] if discovery::wants_aggregated(accept) => {
            aggregated(discovery::aggregated(types, true))
        }
        ["api"] => json_response(200, &discovery::api_versions(&shared.addr)),
        ["apis"] if discovery::wants_aggregated(accept) => {
            aggregated(discovery::aggregated(types, false))
        }
        ["apis"] => json_response(200, &discovery::api_group_list(types)),
        ["api", v] => json_response(
            200,
            &discovery::api_resource_list(types, "", v).ok_or_else(not_found_path)?,
        ),
        ["apis", g] => json_response(
            200,
            &discovery::api_group(types, g).ok_or_else(not_found_path)?,
        ),
        ["apis", g, v] => json_response(
            200,
            &discovery::api_resource_list(types, g, v).ok_or_else(not_found_path)?,
        ),
        ["openapi", "v2"] => {
            if accept.contains("protobuf") {
                let mut r = Response::new(full(crate::protobuf::minimal_openapi_v2(
                    discovery::GIT_VERSION,
                )));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(discovery::OPENAPI_V2_PROTO),
                );
                r
            } else {
                json_response(200, &discovery::openapi_v2_json())
            }
        }
        _ => return Err(not_found_path()),
    })
}

fn selectors(q: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let l = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let f = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    Ok((l, f))
}

fn parse_rv(q: &HashMap<String, String>) -> ApiResult<Option<u64>> {
    match q.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}"))),
    }
}

fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    t: Target,
    q: &HashMap<String, String>,
    (ct, accept, user_agent): (&str, &str, &str),
    body: &[u8],
) -> ApiResult<Response<Body>> {
    // Non-apply writes without fieldManager are owned by the user agent's program name,
    // as on a real server.
    let ua_manager = user_agent.split('/').next().unwrap_or("").to_string();
    let manager = q.get("fieldManager").cloned().unwrap_or(ua_manager);
    let is_apply = ct.starts_with("application/apply-patch");
    let ns = t.namespace.as_deref();
    let rt = &t.rt;
    if rt.namespaced && t.name.is_some() && ns.is_none() && *method != Method::POST {
        return Err(not_found_path());
    }
    let out_as = output_as(accept);
    let render_one = |o: Value| -> Value {
        match out_as {
            As::Partial => to_partial(&o),
            As::Table => table::table(rt, &[o], ""),
            As::Full => o,
        }
    };
    let sub = t.subresource.as_deref();
    match (method, &t.name) {
        (&Method::GET, _) if t.legacy_watch || truthy(q, "watch") => {
            let (labels, mut fields) = selectors(q)?;
            if let Some(n) = &t.name {
                fields = FieldSelector::name(n);
            }
            let p = WatchParams {
                rt: rt.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
                rv: parse_rv(q)?,
                send_initial_events: truthy(q, "sendInitialEvents"),
                bookmarks: truthy(q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_secs),
                meta_only: out_as == As::Partial,
                table: out_as == As::Table,
            };
            Ok(watch::start(shared.clone(), p))
        }
        (&Method::GET, Some(name)) => {
            let o = shared.lock_store().get(rt, ns, name)?;
            Ok(json_response(200, &render_one(o)))
        }
        (&Method::GET, None) => list(shared, rt, ns, q, &out_as),
        (&Method::POST, None) => {
            let obj = parse_body(ct, body)?;
            let o = write(shared, q, |s| s.create_as(rt, ns, obj, Some(&manager)))?;
            Ok(json_response(201, &render_one(o)))
        }
        (&Method::PUT, Some(name)) => {
            let obj = parse_body(ct, body)?;
            let o = write(shared, q, |s| {
                s.update_as(rt, ns, name, obj, sub, Some(&manager))
            })?;
            Ok(json_response(200, &render_one(o)))
        }
        (&Method::PATCH, Some(name)) => {
            let o = write(shared, q, |s| {
                s.patch(
                    rt,
                    ns,
                    name,
                    ct,
                    body,
                    sub,
                    if is_apply {
                        q.get("fieldManager").map(String::as_str)
                    } else {
                        Some(manager.as_str())
                    },
                    truthy(q, "force"),
                )
            })?;
            Ok(json_response(200, &render_one(o)))
        }
        (&Method::DELETE, Some(name)) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                parse_body(ct, body)?
            };
            let (o, gone) = write(shared, q, |s| s.delete(rt, ns, name, &opts))?;
            if gone
                && !rt.custom
                && rt.plural != "namespaces"
                && rt.plural != "customresourcedefinitions"
            {
                return Ok(json_response(
                    200,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                    "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)}
                    }),
                ));
            }
            Ok(json_response(200, &render_one(o)))
        }
        (&Method::DELETE, None) => {
            let (labels, fields) = selectors(q)?;
            let mut store = shared.lock_store();
            let items: Vec<Value> = store
                .list(rt, ns)
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            let mut out = Vec::new();
            for o in items {
                let n = crate::object::meta_str(&o, "name")
                    .unwrap_or("")
                    .to_string();
                let ons = crate::object::meta_str(&o, "namespace").map(str::to_string);
                if let Ok((d, _)) = store.delete(rt, ons.as_deref(), &n, &json!({})) {
                    out.push(d);
                }
            }
            let rv = store.current_rv();
            Ok(json_response(
                200,
                &json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                        "metadata": {"resourceVersion": rv.to_string()}, "items": out}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// A LIST answer: one page (`limit`, `continue`) of the selected objects as a full
/// list, a `PartialObjectMetadataList` or a `Table`, with the continue token and
/// remaining count in `metadata` in each form.
fn list(
    shared: &Shared,
    rt: &ResourceType,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    out_as: &As,
) -> ApiResult<Response<Body>> {
    let (labels, fields) = selectors(q)?;
    let req = PageRequest {
        namespace: ns,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").map(String::as_str),
    };
    // Field selectors see the object as served (events.k8s.io names its fields apart);
    // label selectors only read labels, which are the same in every form.
    let selected = |o: &Value| {
        labels.matches(o) && (fields.is_empty() || fields.matches(&Store::render(rt, o)))
    };
    let filter: Option<&dyn Fn(&Value) -> bool> = if labels.is_empty() && fields.is_empty() {
        None
    } else {
        Some(&selected)
    };
    // Only pointers are taken under the lock; rendering happens after it is released.
    let page = shared.lock_store().list_page(rt, &req, filter)?;
    let items: Vec<Value> = page.items.iter().map(|o| Store::render(rt, o)).collect();
    let rv = page.resource_version.to_string();
    let mut md = json!({"resourceVersion": rv});
    if let Some(c) = &page.continue_token {
        md["continue"] = json!(c);
        if let Some(n) = page.remaining {
            md["remainingItemCount"] = json!(n);
        }
    }
    let out = match out_as {
        As::Table => {
            let mut t = table::table(rt, &items, &rv);
            t["metadata"] = md;
            t
        }
        As::Partial => {
            let items: Vec<Value> = items.iter().map(to_partial).collect();
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": md, "items": items})
        }
        As::Full => {
            json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": md, "items": items})
        }
    };
    Ok(json_response(200, &out))
}

/// Run a write against the store, or against a throw-away copy for `dryRun=All`.
fn write<T>(
    shared: &Shared,
    q: &HashMap<String, String>,
    f: impl FnOnce(&mut Store) -> ApiResult<T>,
) -> ApiResult<T> {
    let mut store = shared.lock_store();
    if q.get("dryRun").is_some_and(|v| v == "All") {
        let mut copy = store.dry_run_copy();
        drop(store);
        f(&mut copy)
    } else {
        f(&mut store)
    }
}
