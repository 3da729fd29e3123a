//! The `kube-emulator` binary: serves, writes a kubeconfig, preloads CRDs, exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .arg("--crd")
        .arg(kube_emulator::kargo_crd_dir().join("projectconfigs.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("kube-emulator listening on http://127.0.0.1:"),
        "{line}"
    );
    let out = Command::new("kubectl")
        .args([
            "get",
            "crd",
            "projectconfigs.kargo.akuity.io",
            "-o",
            "jsonpath={.spec.names.kind}",
        ])
        .env("KUBECONFIG", &kc)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ProjectConfig",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    drop(stdout);
    assert!(code.success(), "exit status {code:?}");
}
