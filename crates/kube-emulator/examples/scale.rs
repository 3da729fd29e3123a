//! How the emulator copes with many Warehouses: time to create them (without HTTP and
//! through HTTP POSTs) and for a kube-rs `watcher` (default config: pages of 500) to
//! reach `InitDone` over them. Not a test: it prints numbers.
//!
//! `cargo run --release -p kube-emulator --example scale -- 100000 [http-count]`
#![forbid(unsafe_code)]

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use kube_emulator::{kargo_crd_dir, Emulator, EmulatorOptions, Handle};
use serde_json::{json, Value};

const NAMESPACE: &str = "scale";

fn warehouse(i: usize) -> Value {
    json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": format!("wh-{i:06}"), "namespace": NAMESPACE},
        "spec": {"subscriptions": [{"image": {
            "repoURL": format!("harbor.example.com/project-{}/app-{i}", i % 100),
            "constraint": "^1.0.0"
        }}]}
    })
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn client(h: &Handle) -> anyhow::Result<Client> {
    let kc = Kubeconfig::from_yaml(h.kubeconfig_yaml())?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn start() -> anyhow::Result<Handle> {
    let h = Emulator::start(
        EmulatorOptions::default().with_crd(kargo_crd_dir().join("warehouses.yaml")),
    )
    .await?;
    h.load_manifests(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    ))?;
    Ok(h)
}

/// Time for a default-config watcher to see every object and `InitDone`.
async fn watch_init(h: &Handle, expected: usize) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client(h).await?, NAMESPACE, &warehouses());
    let started = Instant::now();
    let mut seen = 0usize;
    let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    while let Some(ev) = events.try_next().await? {
        match ev {
            Event::InitApply(_) => seen += 1,
            Event::InitDone => break,
            _ => {}
        }
    }
    anyhow::ensure!(seen == expected, "watcher saw {seen} of {expected}");
    println!(
        "watcher InitDone over {seen}: {:.2} s (list requests: {})",
        started.elapsed().as_secs_f64(),
        h.requests()
            .iter()
            .filter(|r| r.verb.as_deref() == Some("list"))
            .count()
    );
    Ok(())
}

fn warehouses() -> ApiResource {
    ApiResource {
        group: "kargo.akuity.io".into(),
        version: "v1alpha1".into(),
        api_version: "kargo.akuity.io/v1alpha1".into(),
        kind: "Warehouse".into(),
        plural: "warehouses".into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let http_n: usize = args.next().map_or(Ok(n), |s| s.parse())?;

    let h = start().await?;
    let rss_before = rss_mib();
    let started = Instant::now();
    let created = h.create_many((0..n).map(warehouse))?;
    println!(
        "create_many {created}: {:.2} s; RSS {rss_before:.0} -> {:.0} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );
    watch_init(&h, n).await?;
    drop(h);

    let h = start().await?;
    println!(
        "RSS before the HTTP emulator is filled: {:.0} MiB",
        rss_mib()
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client(&h).await?, NAMESPACE, &warehouses());
    let started = Instant::now();
    let mut window = Instant::now();
    let pp = PostParams::default();
    let mut posts = futures::stream::iter((0..http_n).map(|i| {
        let api = api.clone();
        let pp = pp.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(warehouse(i))?;
            api.create(&pp, &obj).await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(8);
    let mut done = 0usize;
    while let Some(r) = posts.next().await {
        r?;
        done += 1;
        if done.is_multiple_of(20_000) {
            println!(
                "  POSTs {}..{done}: {:.2} s",
                done - 20_000,
                window.elapsed().as_secs_f64()
            );
            window = Instant::now();
        }
    }
    println!(
        "HTTP POST {done} (8 in flight, kube-rs client): {:.2} s; RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );
    watch_init(&h, http_n).await?;
    Ok(())
}
