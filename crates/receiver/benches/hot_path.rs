//! The request hot path, without sockets: parse a Harbor payload, normalise
//! its URL, match its tag against 100 compiled subscriptions, and the whole
//! handler decision (lookup, token check, parse, match).
//!
//! `cargo bench -p kargo-harbor-receiver --bench hot_path -- --quick`

use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use kargo_api::{ImageSubscription, Subscription, Warehouse, WarehouseSpec};
use kargo_harbor_receiver::handler::{
    decide_body, decide_head, BodyDecision, BodyRead, Head, HeadDecision,
};
use kargo_harbor_receiver::harbor;
use kargo_harbor_receiver::index::{Index, ReceiverEntry, Scope};
use kargo_harbor_receiver::repository::{normalize_chart, normalize_image};
use kargo_harbor_receiver::token::TokenDigest;

const PATH: &str = "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";
const TOKEN: &[u8] = b"test-auth-token-123";

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/harbor-payloads")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 100 Warehouses in project `p`, all subscribed to the pushed repository,
/// with a mix of rules: every fourth has no constraint, the others carry
/// semver constraints (a third of which accept 1.2.3) or tag regexes.
fn index() -> Index {
    let index = Index::new();
    let scope = Scope::Project("p".into());
    index.set_receivers(
        &scope,
        vec![(
            PATH.into(),
            ReceiverEntry {
                scope: scope.clone(),
                name: "harbor-wh-receiver".into(),
                token: TokenDigest::of(TOKEN),
            },
        )],
    );
    let warehouses: Vec<Warehouse> = (0..100)
        .map(|i| {
            let sub = match i % 4 {
                0 => ImageSubscription {
                    repo_url: "harbor.example.com/library/app".into(),
                    ..Default::default()
                },
                1 => ImageSubscription {
                    repo_url: "harbor.example.com/library/app".into(),
                    constraint: Some(format!("^{}.0.0", i % 3 + 1)),
                    ..Default::default()
                },
                2 => ImageSubscription {
                    repo_url: "harbor.example.com/library/app".into(),
                    constraint: Some(format!(">= 1.{} < 2 || ~0.{i}", i % 5)),
                    ignore_tags_regexes: vec!["-rc\\d+$".into()],
                    ..Default::default()
                },
                _ => ImageSubscription {
                    repo_url: "harbor.example.com/library/app".into(),
                    image_selection_strategy: Some("Lexical".into()),
                    allow_tags_regexes: vec![format!("^release-{i}-")],
                    ..Default::default()
                },
            };
            let mut w = Warehouse::new(
                &format!("w{i:03}"),
                WarehouseSpec {
                    interval: None,
                    subscriptions: vec![Subscription::image(sub)],
                },
            );
            w.metadata.namespace = Some("p".into());
            w.metadata.generation = Some(1);
            w
        })
        .collect();
    let problems = index.replace_warehouses(&warehouses);
    assert!(problems.is_empty(), "{problems:?}");
    index
}

fn hot_path(c: &mut Criterion) {
    let body = sample("push-tag.json");
    let event = harbor::parse(&body).expect("sample parses");
    let url = event.artifacts[0].resource_url.clone();
    let index = index();
    let snapshot = index.snapshot();
    let scope = Scope::Project("p".into());
    let matched = snapshot.matching(&scope, &event.artifacts).len();
    assert!(matched > 0 && matched < 100, "{matched} of 100 match");

    c.bench_function("parse push-tag.json", |b| {
        b.iter(|| harbor::parse(black_box(&body)).unwrap())
    });
    c.bench_function("normalise resource_url (image + chart)", |b| {
        b.iter(|| {
            (
                normalize_image(black_box(&url)),
                normalize_chart(black_box(&url)),
            )
        })
    });
    c.bench_function("match 1 tag against 100 subscriptions", |b| {
        b.iter(|| snapshot.matching(black_box(&scope), black_box(&event.artifacts)))
    });
    c.bench_function("token check (sha256 + constant-time compare)", |b| {
        let digest = TokenDigest::of(TOKEN);
        b.iter(|| digest.verify(black_box(TOKEN)))
    });

    let bytes = Bytes::from(body.clone());
    let decide = |auth: &[u8]| {
        let snapshot = index.snapshot();
        let head = Head {
            method: &Method::POST,
            path: PATH,
            authorization: Some(auth),
            declared_len: Some(bytes.len() as u64),
        };
        match decide_head(&snapshot, &head) {
            HeadDecision::Answer { reply, .. } => BodyDecision::Answer(reply),
            HeadDecision::ReadBody { receiver, auth, .. } => decide_body(
                &snapshot,
                &receiver,
                auth,
                &BodyRead::Complete(bytes.clone()),
            ),
        }
    };
    assert!(matches!(decide(TOKEN), BodyDecision::Refresh(m) if m.len() == matched));
    c.bench_function("whole decision, authorised push (100 subscriptions)", |b| {
        b.iter(|| decide(black_box(TOKEN)))
    });
    c.bench_function("whole decision, bad token", |b| {
        b.iter(|| decide(black_box(b"wrong-token")))
    });
    c.bench_function("whole decision, unknown path", |b| {
        b.iter(|| {
            let snapshot = index.snapshot();
            let head = Head {
                method: &Method::POST,
                path: black_box("/harbor/0000"),
                authorization: Some(TOKEN),
                declared_len: Some(10),
            };
            matches!(decide_head(&snapshot, &head), HeadDecision::Answer { .. })
        })
    });
}

/// The index write a Warehouse watch event costs when only annotations
/// changed (every refresh PATCH comes back as such an event), with 10,000
/// Warehouses indexed.
fn index_update(c: &mut Criterion) {
    let index = Index::new();
    let warehouses: Vec<Warehouse> = (0..10_000)
        .map(|i| {
            let mut w = Warehouse::new(
                &format!("w-{i}"),
                WarehouseSpec {
                    interval: None,
                    subscriptions: vec![Subscription::image(ImageSubscription {
                        repo_url: format!("harbor.example.com/team-{}/app-{i}", i % 100),
                        constraint: Some("^1".into()),
                        ..Default::default()
                    })],
                },
            );
            w.metadata.namespace = Some(format!("many-{}", i % 100));
            w.metadata.generation = Some(1);
            w
        })
        .collect();
    index.replace_warehouses(&warehouses);
    let mut touched = warehouses[0].clone();
    touched
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("kargo.akuity.io/refresh".into(), "x".into());
    c.bench_function("index upsert, same generation, 10,000 indexed", |b| {
        b.iter(|| index.upsert_warehouse(black_box(&touched)))
    });
}

criterion_group!(benches, hot_path, index_update);
criterion_main!(benches);
