//! The real `/usr/bin/kubectl` against the emulator, without extra flags.

use std::path::Path;
use std::process::Stdio;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kube_emulator::{kargo_crd_dir, Emulator, EmulatorOptions, Handle};
use tokio::io::AsyncWriteExt;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(h: &Handle, home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", h.kubeconfig_path())
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl is installed");
    if let Some(s) = stdin {
        let mut i = child.stdin.take().unwrap();
        i.write_all(s.as_bytes()).await.unwrap();
        drop(i);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in time")
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run kubectl and require success with an empty stderr.
async fn ok(h: &Handle, home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = kubectl(h, home, args, stdin).await;
    assert!(
        o.ok && o.stderr.is_empty(),
        "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// `kubectl get RESOURCE NAME -n NS -o jsonpath=JSONPATH` (which must succeed).
async fn get_jsonpath(
    h: &Handle,
    home: &Path,
    resource: &str,
    name: &str,
    ns: &str,
    jsonpath: &str,
) -> String {
    let jsonpath = format!("jsonpath={jsonpath}");
    ok(
        h,
        home,
        &["get", resource, name, "-n", ns, "-o", &jsonpath],
        None,
    )
    .await
}

/// The `kubectl patch` arguments of a merge `patch` of the status of the
/// ProjectConfig `kargo-demo`.
fn status_merge_patch(patch: &str) -> [&str; 10] {
    [
        "patch",
        "projectconfig",
        "kargo-demo",
        "-n",
        "kargo-demo",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        patch,
    ]
}

async fn bare() -> (Handle, tempfile::TempDir) {
    let h = Emulator::start(EmulatorOptions::default()).await.unwrap();
    (h, tempfile::tempdir().unwrap())
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: kargo-demo
---
apiVersion: v1
kind: Secret
metadata:
  name: harbor-wh-secret
  namespace: kargo-demo
stringData:
  auth-header: test-auth-token-123
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata:
  name: kargo-demo
  namespace: kargo-demo
spec:
  webhookReceivers:
  - name: harbor-wh-receiver
    harbor:
      secretRef:
        name: harbor-wh-secret
"#;

#[tokio::test]
async fn apply_crds_and_objects_then_update() {
    let (h, home) = bare().await;
    let crds = kargo_crd_dir();
    let crds = crds.to_str().unwrap();
    let out = ok(&h, home.path(), &["apply", "-f", crds], None).await;
    assert_eq!(out.matches(" created").count(), 3, "{out}");
    let out = ok(&h, home.path(), &["apply", "-f", crds], None).await;
    assert_eq!(out.matches(" unchanged").count(), 3, "{out}");

    let out = ok(&h, home.path(), &["apply", "-f", "-"], Some(MANIFEST)).await;
    assert!(out.contains("namespace/kargo-demo created"), "{out}");
    assert!(out.contains("secret/harbor-wh-secret created"), "{out}");
    assert!(
        out.contains("projectconfig.kargo.akuity.io/kargo-demo created"),
        "{out}"
    );

    let changed = MANIFEST.replace("harbor-wh-receiver", "renamed-receiver");
    let out = ok(&h, home.path(), &["apply", "-f", "-"], Some(&changed)).await;
    assert!(out.contains("namespace/kargo-demo unchanged"), "{out}");
    assert!(
        out.contains("projectconfig.kargo.akuity.io/kargo-demo configured"),
        "{out}"
    );
    let name = get_jsonpath(
        &h,
        home.path(),
        "projectconfigs",
        "kargo-demo",
        "kargo-demo",
        "{.spec.webhookReceivers[0].name}",
    )
    .await;
    assert_eq!(name, "renamed-receiver");
    let gen = get_jsonpath(
        &h,
        home.path(),
        "projectconfig",
        "kargo-demo",
        "kargo-demo",
        "{.metadata.generation}",
    )
    .await;
    assert_eq!(gen, "2");
    let token = get_jsonpath(
        &h,
        home.path(),
        "secret",
        "harbor-wh-secret",
        "kargo-demo",
        "{.data.auth-header}",
    )
    .await;
    assert_eq!(token, BASE64.encode(b"test-auth-token-123"));
}

#[tokio::test]
async fn server_side_apply() {
    let (h, home) = bare().await;
    let crds = kargo_crd_dir();
    ok(
        &h,
        home.path(),
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        None,
    )
    .await;
    let out = ok(
        &h,
        home.path(),
        &["apply", "--server-side", "-f", "-"],
        Some(MANIFEST),
    )
    .await;
    assert_eq!(out.matches("serverside-applied").count(), 3, "{out}");
    let out = ok(
        &h,
        home.path(),
        &["apply", "--server-side", "-f", "-"],
        Some(MANIFEST),
    )
    .await;
    assert_eq!(out.matches("serverside-applied").count(), 3, "{out}");
    // Another manager changing a field owned by kubectl: conflict unless forced.
    let changed = MANIFEST.replace("harbor-wh-receiver", "other");
    let o = kubectl(
        &h,
        home.path(),
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "someone-else",
            "-f",
            "-",
        ],
        Some(&changed),
    )
    .await;
    assert!(!o.ok, "conflict expected: {}", o.stdout);
    assert!(o.stderr.contains("conflict"), "{}", o.stderr);
    ok(
        &h,
        home.path(),
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "someone-else",
            "-f",
            "-",
        ],
        Some(&changed),
    )
    .await;
    let name = get_jsonpath(
        &h,
        home.path(),
        "projectconfig",
        "kargo-demo",
        "kargo-demo",
        "{.spec.webhookReceivers[0].name}",
    )
    .await;
    assert_eq!(name, "other");
    assert!(h.requests().iter().any(|r| r.method == "PATCH"
        && r.content_type.as_deref() == Some("application/apply-patch+yaml")));
}

#[tokio::test]
async fn typed_create_commands_send_protobuf() {
    let (h, home) = bare().await;
    for (args, created) in [
        (
            &["create", "namespace", "kargo-demo"][..],
            "namespace/kargo-demo created",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "harbor-wh-secret",
                "-n",
                "kargo-demo",
                "--from-literal=auth-header=s3cret",
            ],
            "secret/harbor-wh-secret created",
        ),
        (
            &[
                "create",
                "configmap",
                "cm",
                "-n",
                "kargo-demo",
                "--from-literal=a=b",
            ],
            "configmap/cm created",
        ),
    ] {
        let out = ok(&h, home.path(), args, None).await;
        assert_eq!(out.trim(), created);
    }
    let protobuf_posts = h
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.content_type.as_deref().unwrap_or("").contains("protobuf")
                && r.status == 201
        })
        .count();
    assert_eq!(protobuf_posts, 3);
    let v = get_jsonpath(
        &h,
        home.path(),
        "secret",
        "harbor-wh-secret",
        "kargo-demo",
        "{.data.auth-header}",
    )
    .await;
    assert_eq!(v, BASE64.encode(b"s3cret"));
    let v = get_jsonpath(
        &h,
        home.path(),
        "configmap",
        "cm",
        "kargo-demo",
        "{.data.a}",
    )
    .await;
    assert_eq!(v, "b");
    let out = ok(
        &h,
        home.path(),
        &["get", "secrets", "-n", "kargo-demo"],
        None,
    )
    .await;
    assert!(
        out.contains("harbor-wh-secret") && out.contains("Opaque"),
        "{out}"
    );
    let o = kubectl(
        &h,
        home.path(),
        &["create", "namespace", "kargo-demo"],
        None,
    )
    .await;
    assert!(!o.ok && o.stderr.contains("AlreadyExists"), "{}", o.stderr);
}

#[tokio::test]
async fn patch_status_get_table_and_delete() {
    let h = Emulator::start(
        EmulatorOptions::default()
            .with_crd(kargo_crd_dir().join("projectconfigs.yaml"))
            .with_crd(kargo_crd_dir().join("warehouses.yaml")),
    )
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(&h, home, &["apply", "-f", "-"], Some(MANIFEST)).await;
    let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Synced","message":"all good","lastTransitionTime":"2025-01-01T00:00:00Z"}]}}"#;
    let out = ok(&h, home, &status_merge_patch(patch), None).await;
    assert!(out.contains("patched"), "{out}");
    let r = get_jsonpath(
        &h,
        home,
        "projectconfigs",
        "kargo-demo",
        "kargo-demo",
        "{.status.conditions[0].reason}",
    )
    .await;
    assert_eq!(r, "Synced");
    // Printer columns from the CRD.
    let table = ok(
        &h,
        home,
        &["get", "projectconfigs", "-n", "kargo-demo"],
        None,
    )
    .await;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.contains("READY") && header.contains("STATUS") && header.contains("AGE"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains("kargo-demo") && row.contains("True") && row.contains("all good"),
        "{table}"
    );

    // An invalid condition (empty reason) is rejected with 422.
    let bad = patch.replace("Synced", "");
    let o = kubectl(&h, home, &status_merge_patch(&bad), None).await;
    assert!(
        !o.ok
            && o.stderr.contains("is invalid")
            && o.stderr.contains("status.conditions[0].reason"),
        "{}",
        o.stderr
    );

    let out = ok(
        &h,
        home,
        &["delete", "projectconfig", "kargo-demo", "-n", "kargo-demo"],
        None,
    )
    .await;
    assert!(out.contains("deleted"), "{out}");
    let o = kubectl(
        &h,
        home,
        &["get", "projectconfig", "kargo-demo", "-n", "kargo-demo"],
        None,
    )
    .await;
    assert!(!o.ok && o.stderr.contains("NotFound"), "{}", o.stderr);
    let out = ok(&h, home, &["delete", "namespace", "kargo-demo"], None).await;
    assert!(out.contains("deleted"), "{out}");
    let o = kubectl(
        &h,
        home,
        &["get", "secret", "harbor-wh-secret", "-n", "kargo-demo"],
        None,
    )
    .await;
    assert!(!o.ok && o.stderr.contains("NotFound"), "{}", o.stderr);
}

/// One object of each built-in kind a Helm chart like ours renders.
const WORKLOAD_MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: apps
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
status:
  loadBalancer: {ingress: [{ip: 192.0.2.1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: example.com/web:1.0.0
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: apps
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: web}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: apps
spec:
  rules:
    - host: web.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {name: http}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: web
  namespace: apps
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web
  namespace: apps
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects: [{kind: ServiceAccount, name: web, namespace: apps}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "apps:web"
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: "apps:web"
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "apps:web"}
subjects: [{kind: ServiceAccount, name: web, namespace: apps}]
"#;

#[tokio::test]
async fn apply_workload_and_rbac_kinds() {
    let (h, home) = bare().await;
    let home = home.path();
    let out = ok(&h, home, &["apply", "-f", "-"], Some(WORKLOAD_MANIFEST)).await;
    for line in [
        "namespace/apps created",
        "serviceaccount/web created",
        "service/web created",
        "deployment.apps/web created",
        "poddisruptionbudget.policy/web created",
        "ingress.networking.k8s.io/web created",
        "role.rbac.authorization.k8s.io/web created",
        "rolebinding.rbac.authorization.k8s.io/web created",
        "clusterrole.rbac.authorization.k8s.io/apps:web created",
        "clusterrolebinding.rbac.authorization.k8s.io/apps:web created",
    ] {
        assert!(out.contains(line), "{line} missing in:\n{out}");
    }
    // Re-applying changes nothing, but kubectl still sends two patches, as against a
    // real server: the Service's `.status` (dropped on create) and the PDB's selector
    // (patch strategy `replace`: always part of the patch).
    let out = ok(&h, home, &["apply", "-f", "-"], Some(WORKLOAD_MANIFEST)).await;
    assert_eq!(out.matches(" unchanged").count(), 8, "{out}");
    assert!(
        out.contains("service/web configured")
            && out.contains("poddisruptionbudget.policy/web configured"),
        "{out}"
    );

    // Everything reads back, by kind, short name and from the file.
    let names = ok(
        &h,
        home,
        &["get", "-f", "-", "-o", "name"],
        Some(WORKLOAD_MANIFEST),
    )
    .await;
    assert_eq!(names.lines().count(), 10, "{names}");
    let out = ok(
        &h,
        home,
        &[
            "get",
            "sa,svc,deploy,pdb,ing,role,rolebinding",
            "-n",
            "apps",
            "-o",
            "name",
        ],
        None,
    )
    .await;
    assert_eq!(out.lines().count(), 7, "{out}");
    let out = ok(&h, home, &["get", "all", "-n", "apps", "-o", "name"], None).await;
    assert!(
        out.contains("service/web") && out.contains("deployment.apps/web"),
        "{out}"
    );
    let image = get_jsonpath(
        &h,
        home,
        "deployment",
        "web",
        "apps",
        "{.spec.template.spec.containers[0].image} {.metadata.generation}",
    )
    .await;
    assert_eq!(image, "example.com/web:1.0.0 1");
    // ClusterRoles and ClusterRoleBindings are cluster-scoped.
    let out = ok(
        &h,
        home,
        &["get", "clusterroles,clusterrolebindings", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(
        out,
        "clusterrole.rbac.authorization.k8s.io/apps:web\nclusterrolebinding.rbac.authorization.k8s.io/apps:web\n"
    );
    let req = h
        .requests()
        .into_iter()
        .rfind(|r| r.resource.as_deref() == Some("clusterroles"))
        .unwrap();
    assert_eq!(
        (req.path.as_str(), req.namespace),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", None)
    );

    // Status subresources: create ignores .status, /status writes change only .status.
    let lb = get_jsonpath(&h, home, "service", "web", "apps", "{.status}").await;
    assert!(!lb.contains("192.0.2.1"), "{lb}");
    ok(
        &h,
        home,
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            "apps",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"readyReplicas":2},"spec":{"replicas":5}}"#,
        ],
        None,
    )
    .await;
    let out = get_jsonpath(
        &h,
        home,
        "deployment",
        "web",
        "apps",
        "{.status.readyReplicas} {.spec.replicas} {.metadata.generation}",
    )
    .await;
    assert_eq!(out, "2 2 1");

    // Discovery lists them with their scope.
    let out = ok(&h, home, &["api-resources", "--no-headers"], None).await;
    for (kind, namespaced) in [
        ("ServiceAccount", true),
        ("Service", true),
        ("Deployment", true),
        ("PodDisruptionBudget", true),
        ("Ingress", true),
        ("Role", true),
        ("RoleBinding", true),
        ("ClusterRole", false),
        ("ClusterRoleBinding", false),
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().last() == Some(kind))
            .unwrap_or_else(|| panic!("{kind} missing in:\n{out}"));
        assert!(
            line.contains(if namespaced { " true " } else { " false " }),
            "{line}"
        );
    }
}

/// `kubectl get` reads in chunks of 500 (Table pages): all 503 Warehouses show, in
/// table form and as names, each chunk following the previous one's continue token.
#[tokio::test]
async fn get_follows_table_pages_past_500() {
    let h = Emulator::start(
        EmulatorOptions::default().with_crd(kargo_crd_dir().join("warehouses.yaml")),
    )
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    h.load_manifests("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: many\n")
        .unwrap();
    let created = h
        .create_many((0..503).map(|i| {
            serde_json::json!({
                "apiVersion": "kargo.akuity.io/v1alpha1",
                "kind": "Warehouse",
                "metadata": {"name": format!("wh-{i:03}"), "namespace": "many"},
                "spec": {"subscriptions": [{"image": {"repoURL": format!("example.com/app-{i}")}}]}
            })
        }))
        .unwrap();
    assert_eq!(created, 503);

    let table = ok(&h, home, &["get", "warehouses", "-n", "many"], None).await;
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    let rows: Vec<&str> = lines
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let want: Vec<String> = (0..503).map(|i| format!("wh-{i:03}")).collect();
    assert_eq!(rows, want);

    let names = ok(
        &h,
        home,
        &["get", "warehouses", "-n", "many", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(names.lines().count(), 503);

    let table_lists: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| {
            r.verb.as_deref() == Some("list")
                && r.accept.as_deref().is_some_and(|a| a.contains("as=Table"))
        })
        .collect();
    assert_eq!(table_lists.len(), 2, "two chunks: {table_lists:?}");
    assert!(
        table_lists[1].query.contains("continue="),
        "{:?}",
        table_lists[1]
    );
}
