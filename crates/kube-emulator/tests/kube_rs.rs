//! kube-rs 5 against the emulator: reflector, Controller, watcher recovery, metadata
//! watches, status subresource, pruning, leases, errors and fault injection.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, kargo, start, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
#[allow(deprecated)]
use kube::runtime::metadata_watcher;
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube_emulator::{Fault, Handle};
use serde_json::json;
use tokio::task::JoinHandle;

async fn namespace(c: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(c.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("namespace created");
}

fn warehouse(name: &str, repo: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": "kargo-demo"},
        "spec": {"subscriptions": [{"image": {"repoURL": repo, "constraint": "^1.0.0"}}]}
    }))
    .unwrap()
}

/// A fresh emulator with the namespace `kargo-demo` and a dynamic API for
/// Kargo's `kind` in that namespace. Keep `h` bound (`h: _h`) for as long as
/// the test runs: dropping the handle stops the emulator.
struct Demo {
    h: Handle,
    ar: ApiResource,
    api: Api<DynamicObject>,
}

async fn demo(kind: &str, plural: &str) -> Demo {
    let h = start().await;
    let c = client(&h).await;
    namespace(&c, "kargo-demo").await;
    let ar = kargo(kind, plural);
    let api = Api::namespaced_with(c, "kargo-demo", &ar);
    Demo { h, ar, api }
}

/// A reflector over `api` running in a task: its store, once ready, and the task.
async fn spawn_reflector(
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    config: watcher::Config,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    let stream = reflector(writer, watcher(api.clone(), config))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.try_next().await.is_ok() {}
    });
    reader.wait_until_ready().await.unwrap();
    (reader, task)
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn try_default_and_discovery() {
    let h = start().await;
    // Only this test touches KUBECONFIG in this binary.
    std::env::set_var("KUBECONFIG", h.kubeconfig_path());
    let c = kube::Client::try_default().await.expect("try_default");
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "32");
    let d = kube::Discovery::new(c.clone())
        .run_aggregated()
        .await
        .unwrap();
    let g = d.get("kargo.akuity.io").expect("kargo group discovered");
    let (ar, caps) = g.recommended_kind("ProjectConfig").expect("ProjectConfig");
    assert_eq!(ar.plural, "projectconfigs");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "projectconfigs/status" || s.plural == "status"),
        "status subresource discovered: {:?}",
        caps.subresources
    );
    assert!(d.get("").is_some(), "core group discovered");
    let d = kube::Discovery::new(c).run().await.unwrap();
    assert!(d.get("coordination.k8s.io").is_some());
    assert!(d.get("kargo.akuity.io").is_some());
}

#[tokio::test]
async fn reflector_sees_create_update_delete() {
    let Demo { h: _h, ar, api, .. } = demo("Warehouse", "warehouses").await;
    let (reader, task) = spawn_reflector(&api, &ar, watcher::Config::default()).await;

    api.create(&PostParams::default(), &warehouse("w1", "ghcr.io/acme/app"))
        .await
        .unwrap();
    let t = wait_for("reflector sees create", || async {
        reader
            .state()
            .iter()
            .any(|o| o.metadata.name.as_deref() == Some("w1"))
    })
    .await;
    eprintln!("reflector create latency: {t:?}");

    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"kargo.akuity.io/refresh": "x"}}})),
    )
    .await
    .unwrap();
    let t = wait_for("reflector sees update", || async {
        reader.state().iter().any(|o| {
            o.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kargo.akuity.io/refresh"))
                .map(String::as_str)
                == Some("x")
        })
    })
    .await;
    eprintln!("reflector update latency: {t:?}");

    api.delete("w1", &DeleteParams::default()).await.unwrap();
    let t = wait_for("reflector sees delete", || async {
        reader.state().is_empty()
    })
    .await;
    eprintln!("reflector delete latency: {t:?}");
    task.abort();
}

#[tokio::test]
async fn controller_reconciles_after_status_patches() {
    let Demo { h, ar, api, .. } = demo("ProjectConfig", "projectconfigs").await;
    let pc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": "kargo-demo", "namespace": "kargo-demo"},
        "spec": {"webhookReceivers": [{"name": "r", "harbor": {"secretRef": {"name": "s"}}}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &pc).await.unwrap();

    let count = Arc::new(AtomicUsize::new(0));
    let ctl = Controller::new_with(api.clone(), watcher::Config::default(), ar.clone())
        .shutdown_on_signal()
        .run(
            |_obj: Arc<DynamicObject>, ctx: Arc<AtomicUsize>| async move {
                ctx.fetch_add(1, Ordering::SeqCst);
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_obj, _err, _ctx| Action::requeue(Duration::from_secs(1)),
            count.clone(),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(ctl);
    wait_for("initial reconcile", || async {
        count.load(Ordering::SeqCst) >= 1
    })
    .await;

    let before = count.load(Ordering::SeqCst);
    let cond = |reason: &str| {
        json!({"type": "Ready", "status": "True", "reason": reason, "message": "ok",
               "lastTransitionTime": "2025-01-01T00:00:00Z"})
    };
    api.patch_status(
        "kargo-demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [cond("Synced")]}})),
    )
    .await
    .unwrap();
    let t = wait_for("reconcile after merge status patch", || async {
        count.load(Ordering::SeqCst) > before
    })
    .await;
    eprintln!("controller latency after merge patch: {t:?}");

    let before = count.load(Ordering::SeqCst);
    let apply = json!({"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
        "status": {"conditions": [cond("Applied")], "observedGeneration": 1}});
    api.patch_status(
        "kargo-demo",
        &PatchParams::apply("test-controller").force(),
        &Patch::Apply(apply),
    )
    .await
    .unwrap();
    let t = wait_for("reconcile after apply status patch", || async {
        count.load(Ordering::SeqCst) > before
    })
    .await;
    eprintln!("controller latency after apply patch: {t:?}");
    let got = api.get_status("kargo-demo").await.unwrap();
    assert_eq!(got.data["status"]["conditions"][0]["reason"], "Applied");
    assert_eq!(got.data["status"]["observedGeneration"], 1);
    assert_eq!(
        got.data["spec"]["webhookReceivers"][0]["name"], "r",
        "status apply leaves spec alone"
    );

    // The request log tells status writes apart.
    let status_patches = h
        .requests()
        .iter()
        .filter(|r| r.rbac().as_deref() == Some("patch projectconfigs/status"))
        .count();
    assert_eq!(status_patches, 2);
    assert!(h
        .requests()
        .iter()
        .any(|r| r.verb.as_deref() == Some("watch")));
    assert!(h
        .requests()
        .iter()
        .any(|r| r.verb.as_deref() == Some("list")));
    task.abort();
}

#[tokio::test]
async fn watcher_resumes_after_drop_and_relists_after_compact() {
    let Demo { h, api, .. } = demo("Warehouse", "warehouses").await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let inits = Arc::new(AtomicUsize::new(0));
    let (s2, i2) = (seen.clone(), inits.clone());
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            match ev {
                Ok(watcher::Event::Init) => {
                    i2.fetch_add(1, Ordering::SeqCst);
                }
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => s2
                    .lock()
                    .unwrap()
                    .push(o.metadata.name.clone().unwrap_or_default()),
                _ => {}
            }
        }
    });
    wait_for("initial list", || async {
        inits.load(Ordering::SeqCst) == 1
    })
    .await;
    api.create(&PostParams::default(), &warehouse("a", "ghcr.io/acme/a"))
        .await
        .unwrap();
    wait_for("a seen", || async {
        seen.lock().unwrap().contains(&"a".to_string())
    })
    .await;

    h.clear_requests();
    h.drop_watches();
    api.create(&PostParams::default(), &warehouse("b", "ghcr.io/acme/b"))
        .await
        .unwrap();
    let t = wait_for("b seen after drop_watches", || async {
        seen.lock().unwrap().contains(&"b".to_string())
    })
    .await;
    eprintln!("resume after drop_watches: {t:?}");
    assert_eq!(inits.load(Ordering::SeqCst), 1, "resumed without a re-list");
    assert!(h
        .requests()
        .iter()
        .any(|r| r.verb.as_deref() == Some("watch")
            && r.query.contains("resourceVersion=")
            && !r.query.contains("resourceVersion=0")));

    h.compact();
    api.create(&PostParams::default(), &warehouse("c", "ghcr.io/acme/c"))
        .await
        .unwrap();
    let t = wait_for("re-list after 410", || async {
        inits.load(Ordering::SeqCst) >= 2
    })
    .await;
    eprintln!("re-list after compact + 410: {t:?}");
    wait_for("c seen after re-list", || async {
        seen.lock().unwrap().contains(&"c".to_string())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn streaming_list_watcher() {
    let Demo { h, ar, api, .. } = demo("Warehouse", "warehouses").await;
    api.create(
        &PostParams::default(),
        &warehouse("pre", "ghcr.io/acme/pre"),
    )
    .await
    .unwrap();
    let (reader, task) =
        spawn_reflector(&api, &ar, watcher::Config::default().streaming_lists()).await;
    assert_eq!(reader.state().len(), 1);
    api.create(
        &PostParams::default(),
        &warehouse("post", "ghcr.io/acme/post"),
    )
    .await
    .unwrap();
    wait_for("streamed watcher sees post", || async {
        reader.state().len() == 2
    })
    .await;
    assert!(h
        .requests()
        .iter()
        .any(|r| r.query.contains("sendInitialEvents=true")));
    task.abort();
}

#[tokio::test]
#[allow(deprecated)]
async fn metadata_watcher_on_secrets() {
    let h = start().await;
    let c = client(&h).await;
    namespace(&c, "kargo-demo").await;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "kargo-demo");
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, Option<String>)>::new()));
    let s2 = seen.clone();
    let stream = metadata_watcher(
        secrets.clone(),
        watcher::Config::default().labels("app=harbor"),
    )
    .default_backoff()
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Ok(Some(o)) = s.try_next().await {
            s2.lock().unwrap().push((
                o.metadata.name.clone().unwrap_or_default(),
                o.metadata.resource_version.clone(),
            ));
        }
    });
    let mk = |name: &str, app: &str| Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), app.to_string())].into()),
            ..Default::default()
        },
        string_data: Some([("auth-header".to_string(), "tok".to_string())].into()),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &mk("other", "x"))
        .await
        .unwrap();
    let created = secrets
        .create(&PostParams::default(), &mk("harbor-wh-secret", "harbor"))
        .await
        .unwrap();
    assert!(
        created.data.unwrap().contains_key("auth-header"),
        "stringData became data"
    );
    wait_for("metadata watcher sees the secret", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(n, _)| n == "harbor-wh-secret")
    })
    .await;
    secrets
        .patch(
            "harbor-wh-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"auth-header": "new"}})),
        )
        .await
        .unwrap();
    wait_for("metadata watcher sees the update", || async {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(n, _)| n == "harbor-wh-secret"),
        "label selector honoured"
    );
    let reqs = h.requests();
    assert!(reqs.iter().any(|r| r.verb.as_deref() == Some("watch")
        && r.resource.as_deref() == Some("secrets")
        && r.accept
            .as_deref()
            .unwrap_or("")
            .contains("PartialObjectMetadata")));
    task.abort();
}

#[tokio::test]
async fn status_subresource_rules_and_generation() {
    let Demo { h, api, .. } = demo("Warehouse", "warehouses").await;
    let mut w = warehouse("w", "ghcr.io/acme/app");
    w.data["status"] = json!({"observedGeneration": 7});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status dropped on create"
    );
    let rv0 = created.metadata.resource_version.clone().unwrap();

    // Main-resource write of .status is ignored; metadata change does not bump generation.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"observedGeneration": 3}}),
            ),
        )
        .await
        .unwrap();
    assert!(p.data.get("status").is_none());
    assert_eq!(p.metadata.generation, Some(1));
    assert_ne!(p.metadata.resource_version.as_deref(), Some(rv0.as_str()));

    // Spec change bumps generation.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"interval": "1m0s"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));

    // Status write changes only status.
    let s = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "z"}}, "spec": {"interval": "9m"}, "status": {"observedGeneration": 2}})))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["observedGeneration"], 2);
    assert_eq!(s.data["spec"]["interval"], "1m0s");
    assert_eq!(s.metadata.labels.unwrap()["a"], "b");
    assert_eq!(s.metadata.generation, Some(2));

    // A no-op patch stores nothing.
    let rv = s.metadata.resource_version.clone();
    let again = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    assert_eq!(h.resource_version().to_string(), rv.unwrap());

    // Strategic merge patch on a custom resource: 415.
    let e = api_error(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"interval": "2m"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 415);

    // JSON patch works, including test.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/spec/interval", "value": "1m0s"},
                    {"op": "replace", "path": "/spec/interval", "value": "3m0s"}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.data["spec"]["interval"], "3m0s");
}

#[tokio::test]
async fn pruning_and_validation_with_kargo_crds() {
    let Demo { h: _h, api, .. } = demo("ProjectConfig", "projectconfigs").await;
    let pc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": "kargo-demo", "namespace": "kargo-demo"},
        "spec": {"webhookReceivers": [{"name": "r", "harbor": {"secretRef": {"name": "s"}}, "bogus": 1}], "alsoBogus": true}
    }))
    .unwrap();
    let got = api.create(&PostParams::default(), &pc).await.unwrap();
    assert!(got.data["spec"].get("alsoBogus").is_none());
    assert!(got.data["spec"]["webhookReceivers"][0]
        .get("bogus")
        .is_none());

    let cond = json!({"type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
                      "lastTransitionTime": "2025-01-01T00:00:00Z"});
    let s = api
        .patch_status(
            "kargo-demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [cond], "notInSchema": "x"}})),
        )
        .await
        .unwrap();
    assert!(
        s.data["status"].get("notInSchema").is_none(),
        "undeclared status field pruned"
    );
    assert_eq!(s.data["status"]["conditions"][0]["reason"], "Synced");

    for bad in [
        json!({"type": "Ready", "status": "True", "reason": "", "message": "ok", "lastTransitionTime": "2025-01-01T00:00:00Z"}),
        json!({"type": "Ready", "status": "True", "message": "ok", "lastTransitionTime": "2025-01-01T00:00:00Z"}),
        json!({"type": "Ready", "status": "True", "reason": "X", "message": "ok", "lastTransitionTime": "yesterday"}),
    ] {
        let e = api_error(
            api.patch_status(
                "kargo-demo",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": [bad]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 422, "{e:?}");
        assert_eq!(e.reason, "Invalid");
        assert!(e.message.contains("status.conditions[0]"), "{}", e.message);
    }
    // The failed writes changed nothing.
    let now = api.get_status("kargo-demo").await.unwrap();
    assert_eq!(now.data["status"]["conditions"][0]["reason"], "Synced");
}

#[tokio::test]
async fn lease_optimistic_concurrency() {
    let h = start().await;
    let c = client(&h).await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "default");
    let l: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).unwrap();
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let e = api_error(leases.create(&PostParams::default(), &l).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let replaced = leases
        .replace("leader", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().holder_identity.as_deref(), Some("b"));

    // Stale resourceVersion: 409 Conflict.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let e = api_error(
        leases
            .replace("leader", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));

    // Without resourceVersion: unconditional.
    stale.metadata.resource_version = None;
    let r = leases
        .replace("leader", &PostParams::default(), &stale)
        .await
        .unwrap();
    assert_eq!(r.spec.unwrap().holder_identity.as_deref(), Some("c"));
    let _ = h;
}

#[tokio::test]
async fn errors_finalizers_and_faults() {
    let h = start().await;
    let c = client(&h).await;
    let ar = kargo("Warehouse", "warehouses");
    // Namespaced object in a missing namespace: 404.
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "kargo-demo", &ar);
    let e = api_error(
        api.create(&PostParams::default(), &warehouse("w", "x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert!(
        e.message.contains("namespaces \"kargo-demo\" not found"),
        "{}",
        e.message
    );
    namespace(&c, "kargo-demo").await;
    let e = api_error(api.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "warehouses.kargo.akuity.io \"nope\" not found");

    // Finalizers: delete sets deletionTimestamp; removing the last finalizer deletes.
    let mut w = warehouse("w", "x");
    w.metadata.finalizers = Some(vec!["kargo.akuity.io/finalizer".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let got = api.get("w").await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let e = api_error(api.get("w").await.unwrap_err());
    assert_eq!(e.code, 404);

    // generateName.
    let mut g = warehouse("", "x");
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));

    // Fault injection: next two PATCHes of /status fail with 500, then succeed.
    api.create(&PostParams::default(), &warehouse("f", "x"))
        .await
        .unwrap();
    h.inject(
        Fault::new(500)
            .method(http::Method::PATCH)
            .path_contains("/status")
            .times(2),
    );
    let pp = PatchParams::default();
    let body = Patch::Merge(json!({"status": {"observedGeneration": 1}}));
    for _ in 0..2 {
        let e = api_error(api.patch_status("f", &pp, &body).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    }
    api.patch_status("f", &pp, &body).await.unwrap();
    // kube 5's default client retries 429 (honouring Retry-After): the GET succeeds.
    h.inject(
        Fault::new(429)
            .retry_after(1)
            .path_contains("/warehouses/f"),
    );
    api.get("f").await.unwrap();
    let last: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/warehouses/f"))
        .collect();
    assert_eq!(last.len(), 2);
    assert_eq!((last[0].status, last[0].injected_fault), (429, true));
    assert_eq!((last[1].status, last[1].injected_fault), (200, false));
    let faults = h.requests().iter().filter(|r| r.injected_fault).count();
    assert_eq!(faults, 3);
}

/// A pure latency fault on Warehouse PATCHes: each takes at least the delay and then
/// succeeds, the log records the delay in the duration, and while one PATCH is held
/// other requests (a GET, a PATCH of something else) are served.
#[tokio::test]
async fn latency_faults_hold_only_the_matching_requests() {
    let Demo { h, api, .. } = demo("Warehouse", "warehouses").await;
    api.create(&PostParams::default(), &warehouse("slow", "x"))
        .await
        .unwrap();
    let others: Api<Secret> = Api::namespaced(client(&h).await, "kargo-demo");
    others
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    let delay = Duration::from_millis(400);
    h.inject(
        Fault::latency(delay)
            .method(http::Method::PATCH)
            .path_contains("/warehouses/")
            .always(),
    );
    let pp = PatchParams::default();
    for i in 0..2 {
        let started = std::time::Instant::now();
        let patched = api
            .patch(
                "slow",
                &pp,
                &Patch::Merge(json!({"metadata": {"annotations": {"n": i.to_string()}}})),
            )
            .await
            .unwrap();
        assert!(
            started.elapsed() >= delay,
            "PATCH {i} took {:?}",
            started.elapsed()
        );
        assert_eq!(patched.metadata.annotations.unwrap()["n"], i.to_string());
    }
    let held: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.verb.as_deref() == Some("patch"))
        .collect();
    assert_eq!(held.len(), 2);
    for r in &held {
        assert_eq!(
            (r.status, r.injected_fault, r.injected_delay),
            (200, false, delay)
        );
        assert!(r.duration >= delay, "{r:?}");
    }
    assert_eq!(h.pending_faults().len(), 1, "an always-fault stays");

    // A long hold on one PATCH does not hold anything else.
    h.clear_faults();
    let long = Duration::from_secs(3);
    h.inject(
        Fault::latency(long)
            .method(http::Method::PATCH)
            .path_contains("/warehouses/slow"),
    );
    let held_api = api.clone();
    let started = std::time::Instant::now();
    let held = tokio::spawn(async move {
        held_api
            .patch(
                "slow",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"held": "yes"}}})),
            )
            .await
    });
    // The fault is used up once the PATCH has reached the emulator and is being held.
    wait_for("the PATCH to be held", || async {
        h.pending_faults().is_empty()
    })
    .await;
    api.get("slow").await.unwrap();
    others
        .patch(
            "s",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"during": "hold"}}})),
        )
        .await
        .unwrap();
    assert!(
        !held.is_finished(),
        "the GET and the other PATCH did not wait for the held one"
    );
    held.await.unwrap().unwrap();
    assert!(started.elapsed() >= long);
}

/// An always-fault fails every matching request until it is cleared.
#[tokio::test]
async fn always_faults_fail_until_cleared() {
    let Demo { h, api, .. } = demo("Warehouse", "warehouses").await;
    api.create(&PostParams::default(), &warehouse("w", "x"))
        .await
        .unwrap();
    h.inject(Fault::new(500).method(http::Method::PATCH).always());
    let pp = PatchParams::default();
    let body = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    for _ in 0..5 {
        let e = api_error(api.patch("w", &pp, &body).await.unwrap_err());
        assert_eq!(e.code, 500);
    }
    // Other methods are not affected.
    api.get("w").await.unwrap();
    h.clear_faults();
    let w = api.patch("w", &pp, &body).await.unwrap();
    assert_eq!(w.metadata.labels.unwrap()["a"], "b");
    let failed = h.requests().iter().filter(|r| r.injected_fault).count();
    assert_eq!(failed, 5);
}

/// kube-lease-manager's protocol: apply (no force) to take a free lease, strategic-merge
/// renewals, release by nulling fields. Two managers must exclude each other, and the
/// second must take over once the first releases.
#[tokio::test]
async fn lease_manager_protocol_by_hand() {
    let h = start().await;
    let c = client(&h).await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "default");
    let empty: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {}})).unwrap();
    leases.create(&PostParams::default(), &empty).await.unwrap();
    let take = |who: &str| {
        Patch::Apply(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "spec": {"holderIdentity": who, "leaseDurationSeconds": 5,
                     "acquireTime": "2025-01-01T00:00:00.000000Z", "renewTime": "2025-01-01T00:00:00.000000Z"}}),
        )
    };
    let pp = |who: &str| PatchParams {
        field_manager: Some(format!("klm-{who}")),
        ..Default::default()
    };
    leases.patch("l", &pp("a"), &take("a")).await.unwrap();
    let e = api_error(leases.patch("l", &pp("b"), &take("b")).await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str()),
        (409, "Conflict"),
        "{}",
        e.message
    );
    // Renewal by the holder.
    let renew = Patch::Strategic(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"renewTime": "2025-01-01T00:00:05.000000Z", "leaseTransitions": 1}}),
    );
    leases.patch("l", &pp("a"), &renew).await.unwrap();
    let e = api_error(leases.patch("l", &pp("b"), &take("b")).await.unwrap_err());
    assert_eq!(e.code, 409);
    // Release by nulling the fields: nobody owns them any more.
    let release = Patch::Strategic(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null}}),
    );
    leases.patch("l", &pp("a"), &release).await.unwrap();
    let got = leases.patch("l", &pp("b"), &take("b")).await.unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

/// The real kube-lease-manager: two instances, one leader at a time, hand-over on release.
#[tokio::test]
async fn kube_lease_manager_leader_election() {
    use kube_lease_manager::LeaseManagerBuilder;
    let h = start().await;
    let c = client(&h).await;
    let a = LeaseManagerBuilder::new(c.clone(), "leader")
        .with_namespace("default")
        .with_identity("a")
        .with_duration(3)
        .with_grace(1)
        .build()
        .await
        .unwrap();
    let b = LeaseManagerBuilder::new(c.clone(), "leader")
        .with_namespace("default")
        .with_identity("b")
        .with_duration(3)
        .with_grace(1)
        .build()
        .await
        .unwrap();
    let (a_rx, a_task) = a.watch().await;
    let (b_rx, b_task) = b.watch().await;
    let t = wait_for("one leader", || async { *a_rx.borrow() || *b_rx.borrow() }).await;
    eprintln!("first leader elected after {t:?}");
    assert!(!(*a_rx.borrow() && *b_rx.borrow()), "never two leaders");
    // Hand over: the leader's watch channel is dropped, which releases the lease.
    let (leader_rx, leader_task, other_rx) = if *a_rx.borrow() {
        (a_rx, a_task, b_rx)
    } else {
        (b_rx, b_task, a_rx)
    };
    drop(leader_rx);
    let _ = tokio::time::timeout(Duration::from_secs(10), leader_task).await;
    let t = wait_for("the other instance takes over", || async {
        *other_rx.borrow()
    })
    .await;
    eprintln!("hand-over after {t:?}");
}

/// events.k8s.io/v1 Events (what kube's Recorder writes) and core v1 Events (what
/// `kubectl get events` / `describe` read) are one store with field conversion.
#[tokio::test]
async fn events_are_shared_between_api_groups() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let h = start().await;
    let c = client(&h).await;
    namespace(&c, "kargo-demo").await;
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "w.1", "namespace": "kargo-demo"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "kargo-harbor-receiver",
        "reportingInstance": "pod-1",
        "action": "Refresh",
        "reason": "RefreshRequested",
        "type": "Normal",
        "note": "refreshed by harbor push",
        "regarding": {"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse", "name": "w", "namespace": "kargo-demo"}
    }))
    .unwrap();
    let events: Api<Event> = Api::namespaced(c.clone(), "kargo-demo");
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "kargo-demo");
    let watch_core = watcher(core.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(watch_core);
        while let Ok(Some(e)) = s.try_next().await {
            s2.lock().unwrap().push(e.message.unwrap_or_default());
        }
    });
    let created = events.create(&PostParams::default(), &ev).await.unwrap();
    assert_eq!(created.note.as_deref(), Some("refreshed by harbor push"));
    let as_core = core.get("w.1").await.unwrap();
    assert_eq!(as_core.message.as_deref(), Some("refreshed by harbor push"));
    assert_eq!(as_core.involved_object.name.as_deref(), Some("w"));
    assert_eq!(
        as_core.reporting_component.as_deref(),
        Some("kargo-harbor-receiver")
    );
    wait_for("core watcher sees the events.k8s.io event", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|m| m == "refreshed by harbor push")
    })
    .await;
    // And back: a patch through the events.k8s.io view.
    let p = events
        .patch(
            "w.1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "again"})),
        )
        .await
        .unwrap();
    assert_eq!(p.note.as_deref(), Some("again"));
    assert_eq!(
        core.get("w.1").await.unwrap().message.as_deref(),
        Some("again")
    );
    let home = tempfile::tempdir().unwrap();
    // An async child process: the emulator runs on this test's (single) thread.
    let out = tokio::process::Command::new("kubectl")
        .args([
            "get",
            "events",
            "-n",
            "kargo-demo",
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .env("KUBECONFIG", h.kubeconfig_path())
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "again",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    task.abort();
}
