//! End-to-end tests of the controller against kube-emulator.

use std::time::Duration;

use e2e::*;

#[tokio::test]
async fn harness_smoke() {
    let env = Env::start().await;
    create_namespace(&env.client, "kargo-demo").await;
    put_auth_secret(&env.client, "kargo-demo", "s", "t").await;
    put_auth_secret(&env.client, "kargo-demo", "s", "t2").await;
    apply_project_config(&env.client, "kargo-demo", vec![harbor_receiver("r", "s")]).await;
    apply_warehouse(
        &env.client,
        "kargo-demo",
        "w",
        serde_json::json!([image_subscription("nginx")]),
    )
    .await;
    let waited = wait_until(Duration::from_secs(5), "the ProjectConfig", || async {
        env.project_configs("kargo-demo")
            .get_opt("kargo-demo")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert!(waited < Duration::from_secs(5));
    assert!(binary_path().exists());
    let _ = test_config(&["--secret-access", "get"]);
}
