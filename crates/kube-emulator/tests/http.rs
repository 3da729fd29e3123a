//! Wire-level behaviour checked with a raw HTTP client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube_emulator::{EmulatorOptions, Handle};
use serde_json::{json, Value};

struct Resp {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn lines(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

async fn req(
    h: &Handle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    req_at(h.addr(), method, path, headers, body).await
}

/// [`req`] to the emulator at `addr` (for a task that cannot borrow the handle).
async fn req_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = send
        .send_request(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = tokio::time::timeout(Duration::from_secs(10), r.into_body().collect())
        .await
        .expect("body completes")
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        content_type,
        body,
    }
}

async fn get(h: &Handle, path: &str, headers: &[(&str, &str)]) -> Resp {
    req(h, "GET", path, headers, "").await
}

const JSON: (&str, &str) = ("content-type", "application/json");
const MERGE_PATCH: (&str, &str) = ("content-type", "application/merge-patch+json");

async fn create_ns(h: &Handle, name: &str) {
    let r = req(
        h,
        "POST",
        "/api/v1/namespaces",
        &[JSON],
        json!({"metadata": {"name": name}}).to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
}

async fn create_cm(h: &Handle, name: &str, labels: Value) -> Value {
    let r = req(
        h,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[JSON],
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}).to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn discovery_documents() {
    let h = common::start().await;
    let agg =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = get(&h, "/apis", &[("accept", agg)]).await;
    assert_eq!(r.content_type, kube_emulator::discovery::AGGREGATED_V2);
    let v = r.json();
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let kargo = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "kargo.akuity.io")
        .unwrap();
    let pcs = kargo["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "projectconfigs")
        .unwrap();
    assert_eq!(pcs["scope"], "Namespaced");
    assert_eq!(pcs["subresources"][0]["subresource"], "status");
    let r = get(&h, "/apis", &[]).await;
    assert_eq!(r.json()["kind"], "APIGroupList");
    let r = get(&h, "/api/v1", &[]).await;
    let names: Vec<String> = r.json()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "namespaces",
        "namespaces/status",
        "secrets",
        "configmaps",
        "events",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    let r = get(&h, "/apis/coordination.k8s.io/v1", &[]).await;
    assert_eq!(r.json()["resources"][0]["name"], "leases");
    let r = get(
        &h,
        "/openapi/v2",
        &[("accept", kube_emulator::discovery::OPENAPI_V2_PROTO)],
    )
    .await;
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, kube_emulator::discovery::OPENAPI_V2_PROTO)
    );
    assert_eq!(&r.body[..5], b"\x0a\x032.0");
    let r = get(&h, "/version", &[]).await;
    assert_eq!(r.json()["minor"], "32");
    let r = get(&h, "/apis/nope/v1/things", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["kind"], "Status");
}

#[tokio::test]
async fn watch_semantics() {
    let h = common::start_with(EmulatorOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let a = create_cm(&h, "a", json!({"app": "x"})).await;
    let rv_a: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    create_cm(&h, "b", json!({"app": "y"})).await;

    // Events strictly after the given resourceVersion, then bookmarks, until timeoutSeconds.
    let path = format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv_a}&allowWatchBookmarks=true&timeoutSeconds=1");
    let r = get(&h, &path, &[]).await;
    let evs = r.lines();
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "b");
    assert!(evs.iter().skip(1).all(|e| e["type"] == "BOOKMARK"));
    assert!(evs.len() >= 3, "bookmarks were sent: {evs:?}");

    // Label-selected watch: a relabelled object leaves the selection as DELETED.
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}&labelSelector=app%3Dx&timeoutSeconds=1",
        h.resource_version()
    );
    let addr = h.addr();
    let handle = tokio::spawn(async move { req_at(addr, "GET", &path, &[], "").await });
    // No wait needed: the watch starts from an explicit resourceVersion, so later events are replayed.
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/a",
        &[MERGE_PATCH],
        r#"{"metadata":{"labels":{"app":"z"}}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/b",
        &[MERGE_PATCH],
        r#"{"metadata":{"labels":{"app":"x"}}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let evs = handle.await.unwrap().lines();
    let seen: Vec<(String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![("DELETED".into(), "a".into()), ("ADDED".into(), "b".into())]
    );

    // Streaming list.
    let r = get(&h, "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1", &[]).await;
    let evs = r.lines();
    assert_eq!(evs.iter().filter(|e| e["type"] == "ADDED").count(), 2);
    assert_eq!(evs[2]["type"], "BOOKMARK");
    assert_eq!(
        evs[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // Metadata-only watch.
    let r = get(
        &h,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1",
        &[(
            "accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )],
    )
    .await;
    let evs = r.lines();
    assert_eq!(evs[0]["object"]["kind"], "PartialObjectMetadata");
    assert!(evs[0]["object"].get("data").is_none());

    // Table watch (kubectl get -w).
    let r = get(
        &h,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1",
        &[(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
    )
    .await;
    let evs = r.lines();
    assert_eq!(evs[0]["object"]["kind"], "Table");
    assert_eq!(evs[0]["object"]["rows"][0]["cells"][0], "a");

    // 410 after compaction, as an ERROR event in a 200 stream.
    h.compact();
    let r = get(
        &h,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv_a}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let evs = r.lines();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn watch_with_a_huge_timeout_keeps_streaming() {
    let h = common::start().await;
    // timeoutSeconds beyond what an Instant can hold: the watch simply has no deadline.
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}&timeoutSeconds={}",
        h.resource_version(),
        u64::MAX
    );
    let addr = h.addr();
    let watch = tokio::spawn(async move { req_at(addr, "GET", &path, &[], "").await });
    // Let the watch start and pass its replay, so the event comes live.
    tokio::time::sleep(Duration::from_millis(300)).await;
    create_cm(&h, "late", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.drop_watches();
    let r = watch.await.unwrap();
    assert_eq!(r.status, 200);
    let evs = r.lines();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "late");
}

#[tokio::test]
async fn removing_the_last_finalizer_deletes_what_a_delete_would() {
    let h = common::start().await;
    let r = req(
        &h,
        "POST",
        "/api/v1/namespaces",
        &[JSON],
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}).to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = req(
        &h,
        "POST",
        "/api/v1/namespaces/held/configmaps",
        &[JSON],
        json!({"metadata": {"name": "inside"}}).to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = req(&h, "DELETE", "/api/v1/namespaces/held", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    let before = h.resource_version();
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/held",
        &[MERGE_PATCH],
        r#"{"metadata":{"finalizers":null}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&h, "/api/v1/namespaces/held", &[]).await.status, 404);
    // The namespace's contents went with it, before it (events in resourceVersion order).
    let names: Vec<Value> = get(&h, "/api/v1/configmaps", &[]).await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, Vec::<Value>::new());
    let r = get(
        &h,
        &format!("/api/v1/namespaces?watch=true&resourceVersion={before}&timeoutSeconds=1"),
        &[],
    )
    .await;
    let evs = r.lines();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["type"], "DELETED");
    assert_eq!(evs[0]["object"]["status"]["phase"], "Terminating");
    let r = get(
        &h,
        &format!("/api/v1/configmaps?watch=true&resourceVersion={before}&timeoutSeconds=1"),
        &[],
    )
    .await;
    let cm_rv: u64 = r.lines()[0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ns_rv: u64 = evs[0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cm_rv < ns_rv, "{cm_rv} < {ns_rv}");
}

#[tokio::test]
async fn history_retention_expires_old_versions() {
    let h = kube_emulator::Emulator::start(EmulatorOptions {
        history_retention: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let first = create_cm(&h, "c0", json!({})).await;
    for i in 1..5 {
        create_cm(&h, &format!("c{i}"), json!({})).await;
    }
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap();
    let r = get(
        &h,
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
        &[],
    )
    .await;
    assert_eq!(r.lines()[0]["object"]["code"], 410);
}

#[tokio::test]
async fn lists_tables_and_metadata() {
    let h = common::start().await;
    for i in 0..5 {
        create_cm(
            &h,
            &format!("cm{i}"),
            json!({"n": i.to_string(), "even": (i % 2 == 0).to_string()}),
        )
        .await;
    }
    let r = req(
        &h,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=even%3Dtrue,n+notin+(4)",
        &[],
        "",
    )
    .await;
    let v = r.json();
    assert_eq!(v["kind"], "ConfigMapList");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let r = get(
        &h,
        "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm3",
        &[],
    )
    .await;
    assert_eq!(r.json()["items"][0]["metadata"]["name"], "cm3");
    let r = get(&h, "/api/v1/namespaces/default/configmaps?limit=2", &[]).await;
    let v = r.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let cont = v["metadata"]["continue"].as_str().unwrap().to_string();
    let r = get(
        &h,
        &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={cont}"),
        &[],
    )
    .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 3);
    let r = get(
        &h,
        "/api/v1/namespaces/default/configmaps",
        &[(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )],
    )
    .await;
    let v = r.json();
    assert_eq!(v["kind"], "PartialObjectMetadataList");
    assert!(v["items"][0].get("data").is_none());
    let r = get(
        &h,
        "/api/v1/namespaces/default/configmaps",
        &[(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
    )
    .await;
    let v = r.json();
    assert_eq!(v["kind"], "Table");
    assert_eq!(v["rows"].as_array().unwrap().len(), 5);
    let r = get(
        &h,
        "/api/v1/namespaces/default/configmaps?labelSelector=in+in",
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
}

const TABLE: (&str, &str) = (
    "accept",
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
);
const PARTIAL_LIST: (&str, &str) = (
    "accept",
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
);

/// The names in a list answer of any form (full, metadata-only or Table).
fn names(list: &Value) -> Vec<String> {
    let entries = list["items"]
        .as_array()
        .or_else(|| list["rows"].as_array())
        .unwrap();
    entries
        .iter()
        .map(|e| {
            e["metadata"]["name"]
                .as_str()
                .or_else(|| e["object"]["metadata"]["name"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Follow `continue` tokens from `path` (which has a `limit`) to the end: the names in
/// order and each page's metadata.
async fn all_pages(h: &Handle, path: &str, headers: &[(&str, &str)]) -> (Vec<String>, Vec<Value>) {
    let (mut seen, mut metas) = (Vec::new(), Vec::new());
    let mut next = path.to_string();
    loop {
        let r = get(h, &next, headers).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        seen.extend(names(&v));
        metas.push(v["metadata"].clone());
        match v["metadata"]["continue"].as_str() {
            Some(c) => next = format!("{path}&continue={c}"),
            None => return (seen, metas),
        }
        assert!(metas.len() < 100, "pagination ends");
    }
}

#[tokio::test]
async fn pages_carry_continue_in_every_form() {
    let h = common::start().await;
    create_ns(&h, "a-other").await;
    create_ns(&h, "z-other").await;
    for ns in ["a-other", "z-other"] {
        let r = req(
            &h,
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            &[JSON],
            json!({"metadata": {"name": "elsewhere"}}).to_string(),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let want: Vec<String> = (0..5).map(|i| format!("cm{i}")).collect();
    for (i, n) in want.iter().enumerate() {
        create_cm(&h, n, json!({"even": (i % 2 == 0).to_string()})).await;
    }
    let path = "/api/v1/namespaces/default/configmaps?limit=2";

    // A Table page (what kubectl get asks for) says where to go on, and how much is left.
    let first = get(&h, path, &[TABLE]).await.json();
    assert_eq!(first["kind"], "Table");
    assert_eq!(names(&first), ["cm0", "cm1"]);
    assert!(first["metadata"]["continue"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    assert!(first["metadata"]["resourceVersion"].as_str().is_some());

    // Every form pages through the namespace, and only it, in order; the last page has
    // no continue token.
    for headers in [&[][..], &[PARTIAL_LIST][..], &[TABLE][..]] {
        let (seen, metas) = all_pages(&h, path, headers).await;
        assert_eq!(seen, want, "{headers:?}");
        assert_eq!(metas.len(), 3);
        assert!(metas[2].get("continue").is_none());
        assert_eq!(metas[1]["remainingItemCount"], 1);
    }

    // With a selector, pages still continue; the remaining count is unknown (as on a
    // real server).
    let (seen, metas) = all_pages(
        &h,
        "/api/v1/namespaces/default/configmaps?limit=1&labelSelector=even%3Dtrue",
        &[TABLE],
    )
    .await;
    assert_eq!(seen, ["cm0", "cm2", "cm4"]);
    assert!(metas.iter().all(|m| m.get("remainingItemCount").is_none()));

    // Cluster-wide pages go by namespace, then name.
    let (seen, _) = all_pages(&h, "/api/v1/configmaps?limit=2", &[]).await;
    assert_eq!(seen.len(), 7);
    assert_eq!(
        (seen[0].as_str(), seen[6].as_str()),
        ("elsewhere", "elsewhere")
    );

    // The token names the last object returned: deleting it, or anything before it,
    // between pages skips nothing.
    let page = get(&h, path, &[]).await.json();
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    for n in ["cm0", "cm1"] {
        let r = req(
            &h,
            "DELETE",
            &format!("/api/v1/namespaces/default/configmaps/{n}"),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let next = get(&h, &format!("{path}&continue={cont}"), &[])
        .await
        .json();
    assert_eq!(names(&next), ["cm2", "cm3"]);

    let r = get(&h, &format!("{path}&continue=not-a-token"), &[]).await;
    assert_eq!(r.status, 400);
}

fn warehouse(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"subscriptions": [{"image": {"repoURL": "example.com/app"}}], "junk": 1}
    })
}

#[tokio::test]
async fn create_many_admits_objects_like_posts() {
    let h = common::start().await;
    create_ns(&h, "seeded").await;
    // A watch from now on sees the seeded objects as ADDED events.
    let rv = h.resource_version();
    let created = h
        .create_many((0..3).map(|i| warehouse("seeded", &format!("wh{i}"))))
        .unwrap();
    assert_eq!(created, 3);
    let w = get(
        &h,
        "/apis/kargo.akuity.io/v1alpha1/namespaces/seeded/warehouses/wh1",
        &[],
    )
    .await
    .json();
    assert_eq!(
        w["spec"]["interval"], "5m0s",
        "defaulted from the CRD schema"
    );
    assert!(w["spec"].get("junk").is_none(), "pruned");
    assert_eq!(w["metadata"]["generation"], 1);
    assert!(w["metadata"]["uid"].as_str().is_some());
    let r = get(
        &h,
        &format!("/apis/kargo.akuity.io/v1alpha1/namespaces/seeded/warehouses?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        &[],
    )
    .await;
    let added: Vec<Value> = r
        .lines()
        .into_iter()
        .filter(|e| e["type"] == "ADDED")
        .collect();
    assert_eq!(added.len(), 3);

    // What a POST would reject stops the load; the objects before it stay.
    let mut invalid = warehouse("seeded", "bad");
    invalid["spec"]["subscriptions"] = json!("not a list");
    let objs = vec![
        warehouse("seeded", "wh3"),
        invalid,
        warehouse("seeded", "wh4"),
    ];
    match h.create_many(objs) {
        Err(kube_emulator::CreateError::Rejected {
            index,
            name,
            source,
        }) => {
            assert_eq!((index, name.as_str(), source.code), (1, "bad", 422));
        }
        other => panic!("expected a 422 rejection, got {other:?}"),
    }
    let list = get(
        &h,
        "/apis/kargo.akuity.io/v1alpha1/namespaces/seeded/warehouses",
        &[],
    )
    .await
    .json();
    assert_eq!(names(&list), ["wh0", "wh1", "wh2", "wh3"]);
    match h.create_many([warehouse("seeded", "wh0")]) {
        Err(kube_emulator::CreateError::Rejected { source, .. }) => {
            assert_eq!(source.reason, "AlreadyExists")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match h.create_many([warehouse("missing", "wh0")]) {
        Err(kube_emulator::CreateError::Rejected { source, .. }) => assert_eq!(source.code, 404),
        other => panic!("expected a missing namespace, got {other:?}"),
    }
    let mut unknown = warehouse("seeded", "x");
    unknown["kind"] = json!("Nope");
    assert!(matches!(
        h.create_many([unknown]),
        Err(kube_emulator::CreateError::UnknownKind { index: 0, .. })
    ));
}

#[tokio::test]
async fn writes_and_errors() {
    let h = common::start().await;
    create_ns(&h, "p").await;
    // Namespaces have a status subresource: PUT of the main resource keeps status.
    let ns = get(&h, "/api/v1/namespaces/p", &[]).await.json();
    let mut changed = ns.clone();
    changed["status"] = json!({"phase": "Terminating"});
    changed["metadata"]["labels"] = json!({"a": "b"});
    let r = req(
        &h,
        "PUT",
        "/api/v1/namespaces/p",
        &[JSON],
        changed.to_string(),
    )
    .await
    .json();
    assert_eq!(r["status"]["phase"], "Active");
    assert_eq!(r["metadata"]["labels"]["a"], "b");
    // Stale PUT: 409 Conflict Status.
    let r = req(
        &h,
        "PUT",
        "/api/v1/namespaces/p",
        &[JSON],
        changed.to_string(),
    )
    .await;
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(
        (
            s["kind"].as_str(),
            s["status"].as_str(),
            s["reason"].as_str(),
            s["code"].as_u64()
        ),
        (Some("Status"), Some("Failure"), Some("Conflict"), Some(409))
    );
    assert_eq!(s["details"]["kind"], "namespaces");

    // Server-side apply: needs fieldManager; YAML body; create then merge.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n";
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied",
        &[("content-type", "application/apply-patch+yaml")],
        yaml,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied?fieldManager=me",
        &[("content-type", "application/apply-patch+yaml")],
        yaml,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let yaml2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  b: '2'\n";
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied?fieldManager=me",
        &[("content-type", "application/apply-patch+yaml")],
        yaml2,
    )
    .await;
    assert_eq!(
        r.json()["data"],
        json!({"b": "2"}),
        "fields no longer applied by the manager are removed"
    );
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied?fieldManager=other",
        &[("content-type", "application/apply-patch+yaml")],
        yaml,
    )
    .await;
    assert_eq!(r.json()["data"], json!({"a": "1", "b": "2"}));

    // dryRun=All: validated and answered, never stored.
    let before = get(&h, "/api/v1/namespaces/p/configmaps/applied", &[])
        .await
        .json();
    let rv_before = h.resource_version();
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied?dryRun=All",
        &[MERGE_PATCH],
        r#"{"data":{"dry":"run"}}"#,
    )
    .await;
    assert_eq!(r.json()["data"]["dry"], "run");
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    let r = req(
        &h,
        "POST",
        "/api/v1/namespaces/p/configmaps?dryRun=All",
        &[JSON],
        r#"{"metadata":{"name":"dry"}}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        get(&h, "/api/v1/namespaces/p/configmaps/dry", &[])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&h, "/api/v1/namespaces/p/configmaps/applied", &[])
            .await
            .json(),
        before
    );
    assert_eq!(h.resource_version(), rv_before);

    // Unsupported patch type: 415.
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied",
        &[("content-type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
    // Strategic merge patch on a built-in: treated as a merge patch.
    let r = req(
        &h,
        "PATCH",
        "/api/v1/namespaces/p/configmaps/applied",
        &[("content-type", "application/strategic-merge-patch+json")],
        r#"{"data":{"c":"3"}}"#,
    )
    .await;
    assert_eq!(r.json()["data"]["c"], "3");
    // JSON patch (RFC 6902): operations in order; a failing `test` rejects the whole
    // patch with 422 and changes nothing; a body that is not a list of operations too.
    const JSON_PATCH: (&str, &str) = ("content-type", "application/json-patch+json");
    let path = "/api/v1/namespaces/p/configmaps/applied";
    let r = req(
        &h,
        "PATCH",
        path,
        &[JSON_PATCH],
        r#"[{"op":"test","path":"/data/c","value":"3"},{"op":"add","path":"/data/d","value":"4"},{"op":"remove","path":"/data/a"},{"op":"copy","from":"/data/d","path":"/data/e~1f"}]"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["data"],
        json!({"b": "2", "c": "3", "d": "4", "e/f": "4"})
    );
    let rv = h.resource_version();
    for bad in [
        r#"[{"op":"add","path":"/data/x","value":"1"},{"op":"test","path":"/data/c","value":"nope"}]"#,
        r#"[{"op":"replace","path":"/data/missing","value":"1"}]"#,
        r#"{"op":"add","path":"/data/x","value":"1"}"#,
    ] {
        let r = req(&h, "PATCH", path, &[JSON_PATCH], bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["reason"], "Invalid");
    }
    assert_eq!(
        h.resource_version(),
        rv,
        "a rejected JSON patch stores nothing"
    );
    // JSON merge patch (RFC 7386): null removes a key, objects merge.
    let r = req(
        &h,
        "PATCH",
        path,
        &[MERGE_PATCH],
        r#"{"data":{"d":null,"e/f":null,"b":"20"}}"#,
    )
    .await;
    assert_eq!(r.json()["data"], json!({"b": "20", "c": "3"}));
    // Method not allowed.
    let r = req(&h, "PUT", "/api/v1/namespaces/p/configmaps", &[JSON], "{}").await;
    assert_eq!(r.status, 405);
    // Invalid name: 422.
    let r = req(
        &h,
        "POST",
        "/api/v1/namespaces/p/configmaps",
        &[JSON],
        r#"{"metadata":{"name":"Not_Valid"}}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    // Malformed JSON: 400.
    let r = req(&h, "POST", "/api/v1/namespaces/p/configmaps", &[JSON], "{").await;
    assert_eq!(r.status, 400);

    // DELETE with a protobuf DeleteOptions body (as kubectl may send).
    let mut opts = Vec::new();
    kube_emulator::protobuf::encode_bytes_field(&mut opts, 4, b"Background");
    let mut tm = Vec::new();
    kube_emulator::protobuf::encode_bytes_field(&mut tm, 1, b"v1");
    kube_emulator::protobuf::encode_bytes_field(&mut tm, 2, b"DeleteOptions");
    let mut unknown = Vec::new();
    kube_emulator::protobuf::encode_bytes_field(&mut unknown, 1, &tm);
    kube_emulator::protobuf::encode_bytes_field(&mut unknown, 2, &opts);
    let mut body = kube_emulator::protobuf::MAGIC.to_vec();
    body.extend(unknown);
    let r = req(
        &h,
        "DELETE",
        "/api/v1/namespaces/p/configmaps/applied",
        &[("content-type", "application/vnd.kubernetes.protobuf")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "Success");
    let r = get(&h, "/api/v1/namespaces/p/configmaps/applied", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "configmaps \"applied\" not found");
}

#[tokio::test]
async fn admin_endpoints() {
    let h = common::start().await;
    let r = req(&h, "POST", "/_emulator/faults", &[JSON], r#"{"method":"GET","path":"/api/v1/namespaces/default","code":503,"retryAfter":2,"count":1}"#).await;
    assert_eq!(r.status, 201);
    let r = get(&h, "/api/v1/namespaces/default", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["details"]["retryAfterSeconds"], 2);
    let r = get(&h, "/api/v1/namespaces/default", &[]).await;
    assert_eq!(r.status, 200);
    let log = get(&h, "/_emulator/requests", &[]).await.json();
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["injectedFault"] == true && r["verb"] == "get"));

    // A pure latency fault for every request until cleared ("count": null), and an
    // always-failing one ("always": true) with a delay.
    let r = req(
        &h,
        "POST",
        "/_emulator/faults",
        &[JSON],
        r#"{"method":"GET","path":"/api/v1/namespaces/kube-public","delayMs":150,"count":null}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = req(&h, "POST", "/_emulator/faults", &[JSON], r#"{"method":"GET","path":"/api/v1/namespaces/kube-system","code":503,"delayMs":100,"always":true}"#).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for _ in 0..3 {
        assert_eq!(
            get(&h, "/api/v1/namespaces/kube-public", &[]).await.status,
            200
        );
        assert_eq!(
            get(&h, "/api/v1/namespaces/kube-system", &[]).await.status,
            503
        );
    }
    let log = get(&h, "/_emulator/requests", &[]).await.json();
    let of = |path: &str| -> Vec<Value> {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"] == path)
            .cloned()
            .collect()
    };
    let slow = of("/api/v1/namespaces/kube-public");
    assert_eq!(slow.len(), 3);
    for r in &slow {
        assert_eq!(
            (r["status"].as_u64(), r["injectedFault"].as_bool()),
            (Some(200), Some(false))
        );
        assert_eq!(r["injectedDelay"], 150.0);
        assert!(r["duration"].as_f64().unwrap() >= 150.0, "{r}");
    }
    let failing = of("/api/v1/namespaces/kube-system");
    assert!(failing
        .iter()
        .all(|r| r["injectedFault"] == true && r["injectedDelay"] == 100.0));
    assert_eq!(h.pending_faults().len(), 2);
    assert_eq!(
        req(&h, "DELETE", "/_emulator/faults", &[], "").await.status,
        200
    );
    assert_eq!(
        get(&h, "/api/v1/namespaces/kube-system", &[]).await.status,
        200
    );
    // Faults that would do nothing, or say two things, are refused.
    for bad in [
        r#"{"path":"/api"}"#,
        r#"{"code":500,"always":true,"count":2}"#,
        r#"{"code":500,"delay":100}"#,
        r#"{"code":500,"pathRegex":"("}"#,
    ] {
        let r = req(&h, "POST", "/_emulator/faults", &[JSON], bad).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert!(h.pending_faults().is_empty());

    assert_eq!(
        req(&h, "POST", "/_emulator/compact", &[], "").await.status,
        200
    );
    assert_eq!(
        req(&h, "POST", "/_emulator/drop-watches", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        req(&h, "DELETE", "/_emulator/requests", &[], "")
            .await
            .status,
        200
    );
    assert!(h.requests().len() <= 1);
}
