#![forbid(unsafe_code)]
//! Golden test: `charts/kargo-harbor-receiver/files/crds.yaml` (installed by
//! the chart) is exactly what `kargo_harbor_receiver::crds()` generates, and
//! what `kargo-harbor-receiver crds` prints.
//!
//! Regenerate the file after changing `crates/kargo-api` or
//! `crates/registration-api` with
//! `make update-crds` (`UPDATE_CRDS=1 cargo test -p e2e --test crds`).

use std::path::PathBuf;

/// The header of the committed file; the CRDs follow it.
const HEADER: &str = "\
# GENERATED FILE - do not edit.
# The program's CRDs, generated from crates/kargo-api (ProjectConfig,
# ClusterConfig, Warehouse) and crates/registration-api
# (HarborWebhookRegistration): kargo_harbor_receiver::crds(), what
# `kargo-harbor-receiver crds` prints. tests/crds.rs fails when this file is
# stale; `make update-crds` rewrites it. The chart installs Kargo's three only
# with crds.install=true, HarborWebhookRegistration with
# crds.installRegistration=true (the default).
";

const REGENERATE: &str = "make update-crds  (UPDATE_CRDS=1 cargo test -p e2e --test crds)";

fn chart_crds_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/kargo-harbor-receiver/files/crds.yaml"
    ))
}

/// The CRDs as the `crds` subcommand prints them: one `---` document each.
fn generated_documents() -> String {
    kargo_harbor_receiver::crds()
        .iter()
        .map(|crd| format!("---\n{}", serde_yaml::to_string(crd).unwrap()))
        .collect()
}

/// A unified diff of `have` (the file) against `want` (generated).
fn diff(have: &str, want: &str) -> String {
    similar::TextDiff::from_lines(have, want)
        .unified_diff()
        .context_radius(3)
        .header(
            "files/crds.yaml (committed)",
            "kargo_harbor_receiver::crds() (generated)",
        )
        .to_string()
}

#[test]
fn the_chart_ships_the_crds_the_program_generates() {
    let path = chart_crds_path();
    let want = format!("{HEADER}{}", generated_documents());
    if std::env::var_os("UPDATE_CRDS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; regenerate with {REGENERATE}",
            path.display()
        )
    });
    assert!(
        have == want,
        "{} is stale: it is not what kargo_harbor_receiver::crds() generates.\n\
         Regenerate it with {REGENERATE}.\n\n{}",
        path.display(),
        diff(&have, &want)
    );
}

#[test]
fn the_crds_subcommand_prints_the_generated_crds() {
    let out = std::process::Command::new(e2e::binary_path())
        .arg("crds")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let want = generated_documents();
    assert!(printed == want, "{}", diff(&printed, &want));
}

#[test]
fn the_diff_names_what_changed() {
    let d = diff("a\nb\nc\n", "a\nB\nc\n");
    assert!(d.contains("-b\n") && d.contains("+B\n"), "{d}");
    assert!(d.contains("files/crds.yaml (committed)"), "{d}");
}
