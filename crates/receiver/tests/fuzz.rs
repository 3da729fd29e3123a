#![forbid(unsafe_code)]
//! Property tests ("fuzzing" on stable Rust, bounded): the payload parser
//! and the repository normalisers take untrusted input — a webhook body, a
//! pushed `resource_url` — and must never panic on any of it.
//!
//! `PROPTEST_CASES` raises the case count (default below, so that CI stays
//! fast); a failure prints the minimal input that caused it.

use kargo_harbor_receiver::core::harbor;
use kargo_harbor_receiver::core::repository::{normalize_chart, normalize_image};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        // Failures are reported with their input; nothing to persist.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The Harbor samples of the shared reference, as seeds for mutation.
fn samples() -> Vec<Vec<u8>> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/harbor-payloads"
    );
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    // Without the reference checkout the properties still run on these.
    out.push(br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1.0.0","resource_url":"h/a:1.0.0"}]}}"#.to_vec());
    out.push(br#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[{"tag":"v1","resource_url":"h/a:v1"}]}}"#.to_vec());
    out
}

/// Fragments a payload or a reference is made of, odd ones included.
const WORDS: &[&str] = &[
    "PUSH_ARTIFACT",
    "harbor.artifact.pushed",
    "PULL_ARTIFACT",
    "type",
    "event_data",
    "data",
    "resources",
    "tag",
    "digest",
    "resource_url",
    "repository",
    "specversion",
    "1.0",
    "",
    "sha256:",
    "oci://",
    "https://",
    "http://",
    "docker.io/",
    "library/",
    "index.docker.io",
    "registry-1.docker.io",
    ":",
    "@",
    "/",
    "//",
    "..",
    ".",
    "%2F",
    "[::1]",
    ":5000",
    "LOCALHOST",
    "Ünïcödé",
    "\u{0}",
    "\u{202e}",
    " ",
    "\t",
    "\\",
    "\"",
    "?",
    "#",
    "a",
    "1.2.3",
    "v1",
    "latest",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS).prop_map(str::to_owned)
}

/// Strings made of the fragments above.
fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..12).prop_map(|w| w.concat())
}

/// JSON values built from the fragments: near-valid payloads.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        fragments().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A payload shaped like Harbor's, its values arbitrary.
fn payload_like() -> impl Strategy<Value = Value> {
    (
        word(),
        json_value(),
        prop::collection::vec((json_value(), json_value(), json_value()), 0..4),
    )
        .prop_map(|(kind, extra, resources)| {
            let resources: Vec<Value> = resources
                .into_iter()
                .map(
                    |(tag, url, digest)| json!({"tag": tag, "resource_url": url, "digest": digest}),
                )
                .collect();
            json!({
                "type": kind,
                "specversion": extra,
                "event_data": {"resources": resources.clone()},
                "data": {"resources": resources},
            })
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = harbor::parse(&body);
    }

    #[test]
    fn the_parser_never_panics_on_near_valid_json(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        let _ = harbor::parse(&body);
    }

    #[test]
    fn the_parser_never_panics_on_harbor_shaped_payloads(value in payload_like()) {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        if let Ok(event) = harbor::parse(&body) {
            let _ = event.is_push();
            for artifact in &event.artifacts {
                let _ = format!("{artifact:?}");
            }
        }
    }

    #[test]
    fn the_parser_never_panics_on_mutated_samples(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..16),
    ) {
        let samples = samples();
        let mut body = samples[pick.index(samples.len())].clone();
        for (at, byte, op) in edits {
            let len = body.len();
            match op {
                0 if len > 0 => body[at.index(len)] = byte,
                1 => body.insert(at.index(len + 1), byte),
                _ if len > 0 => { body.remove(at.index(len)); }
                _ => body.push(byte),
            }
        }
        let _ = harbor::parse(&body);
    }

    #[test]
    fn the_normalisers_never_panic_and_are_deterministic(reference in fragments()) {
        prop_assert_eq!(normalize_image(&reference), normalize_image(&reference));
        prop_assert_eq!(normalize_chart(&reference), normalize_chart(&reference));
    }

    #[test]
    fn the_normalisers_never_panic_on_any_string(reference in any::<String>()) {
        let _ = normalize_image(&reference);
        let _ = normalize_chart(&reference);
    }
}

#[test]
fn the_mutation_seeds_include_the_reference_samples() {
    // Seven Harbor samples in the shared reference, plus the two built in.
    assert!(samples().len() >= 9, "{}", samples().len());
}
