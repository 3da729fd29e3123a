//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use kube::api::ApiResource;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kube_emulator::{kargo_crd_dir, Emulator, EmulatorOptions, Handle};

/// Generous deadline for eventual conditions.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn start() -> Handle {
    start_with(EmulatorOptions::default()).await
}

pub async fn start_with(opts: EmulatorOptions) -> Handle {
    let dir = kargo_crd_dir();
    let opts = opts
        .with_crd(dir.join("projectconfigs.yaml"))
        .with_crd(dir.join("warehouses.yaml"))
        .with_crd(dir.join("clusterconfigs.yaml"));
    Emulator::start(opts).await.expect("emulator starts")
}

pub async fn client(h: &Handle) -> Client {
    let kc = Kubeconfig::from_yaml(h.kubeconfig_yaml()).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

pub fn kargo(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "kargo.akuity.io".into(),
        version: "v1alpha1".into(),
        api_version: "kargo.akuity.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Poll `cond` until it is true or the deadline passes; returns the elapsed time.
pub async fn wait_for<F, Fut>(what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
