//! The request hot path, without sockets: parse a Harbor payload, normalise
//! its URL, match its tag against 100 compiled subscriptions, and the whole
//! handler decision (lookup, token check, parse, match).
//!
//! Then how the index's costs grow from 1,000 to 100,000 Warehouses.
//!
//! `cargo bench -p kargo-harbor-receiver --bench hot_path -- --quick`

use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use kargo_api::{ImageSubscription, Subscription, Warehouse, WarehouseSpec};
use kargo_harbor_receiver::core::harbor;
use kargo_harbor_receiver::core::repository::{normalize_chart, normalize_image};
use kargo_harbor_receiver::core::token::TokenDigest;
use kargo_harbor_receiver::index::{Index, ReceiverEntry, Route, RouteReason, Scope};
use kargo_harbor_receiver::request::{
    decide_body, decide_head, BodyDecision, BodyRead, Head, HeadDecision,
};

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
    let scope = Scope::project_of("p");
    index.routes.replace(
        &scope,
        vec![Route {
            path: PATH.into(),
            entry: ReceiverEntry {
                scope: scope.clone(),
                name: "harbor-wh-receiver".into(),
                token: TokenDigest::of(TOKEN),
                why: RouteReason::Current,
                counters: Default::default(),
                grace_until: None,
            },
        }],
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
    let problems = index.repositories.replace_all(&warehouses);
    assert!(problems.is_empty(), "{problems:?}");
    index
}

fn hot_path(c: &mut Criterion) {
    let body = sample("push-tag.json");
    let event = harbor::parse(&body).expect("sample parses");
    let url = event.artifacts[0].resource_url.clone();
    let index = index();
    let repositories = index.repositories.load();
    let scope = Scope::project_of("p");
    let matched = repositories.matching(&scope, &event.artifacts).len();
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
        b.iter(|| repositories.matching(black_box(&scope), black_box(&event.artifacts)))
    });
    c.bench_function("token check (sha256 + constant-time compare)", |b| {
        let digest = TokenDigest::of(TOKEN);
        b.iter(|| digest.verify(black_box(TOKEN)))
    });

    let bytes = Bytes::from(body.clone());
    let decide = |auth: &[u8]| {
        let head = Head {
            method: &Method::POST,
            path: PATH,
            authorization: Some(auth),
            declared_len: Some(bytes.len() as u64),
        };
        match decide_head(index.routes.lookup(PATH).as_ref(), &head) {
            HeadDecision::Answer { reply, .. } => BodyDecision::Answer(reply),
            HeadDecision::ReadBody { receiver, auth, .. } => decide_body(
                &index.repositories.load(),
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
            let path = black_box("/harbor/0000");
            let head = Head {
                method: &Method::POST,
                path,
                authorization: Some(TOKEN),
                declared_len: Some(10),
            };
            let receiver = index.routes.lookup(path);
            matches!(
                decide_head(receiver.as_ref(), &head),
                HeadDecision::Answer { .. }
            )
        })
    });
}

/// `n` Warehouses in 100 namespaces, each on its own repository, with a
/// semver constraint, one allow regex shared by all and one ignore regex
/// unique to each (the costliest shape of issue 11).
fn many(n: usize) -> Vec<Warehouse> {
    (0..n)
        .map(|i| {
            let mut w = Warehouse::new(
                &format!("w-{i}"),
                WarehouseSpec {
                    interval: None,
                    subscriptions: vec![Subscription::image(ImageSubscription {
                        repo_url: format!("harbor.example.com/team-{}/app-{i}", i % 100),
                        constraint: Some("^1".into()),
                        allow_tags_regexes: vec![r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$".into()],
                        ignore_tags_regexes: vec![format!(r"^[0-9]+\.[0-9]+\.{i}-(rc|beta)\.[0-9]+$")],
                        ..Default::default()
                    })],
                },
            );
            w.metadata.namespace = Some(format!("many-{}", i % 100));
            w.metadata.generation = Some(1);
            w
        })
        .collect()
}

/// How the index's costs grow with the Warehouses indexed (1,000, 10,000,
/// 100,000): building it from a list (ready time), the writes a Warehouse
/// watch event costs — a metadata-only change (every refresh PATCH comes
/// back as one) and a spec change (new generation: recompiled and
/// relinked) — and matching a push that selects one Warehouse. Only the
/// build may grow with the size (linearly); the others must not be O(all).
fn index_growth(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    for n in [1_000, 10_000, 100_000] {
        let warehouses = many(n);
        group.bench_function(format!("build from a list of {n}"), |b| {
            b.iter(|| {
                let index = Index::new();
                index.repositories.replace_all(black_box(&warehouses));
                index
            })
        });
        let index = Index::new();
        index.repositories.replace_all(&warehouses);
        let mut touched = warehouses[0].clone();
        touched
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("kargo.akuity.io/refresh".into(), "x".into());
        group.bench_function(format!("upsert, same generation, {n} indexed"), |b| {
            b.iter(|| index.repositories.upsert(black_box(&touched)))
        });
        let mut generation = 1;
        let mut changed = warehouses[1].clone();
        group.bench_function(format!("upsert, new generation, {n} indexed"), |b| {
            b.iter(|| {
                generation += 1;
                changed.metadata.generation = Some(generation);
                index.repositories.upsert(black_box(&changed))
            })
        });
        let pushed = [harbor::Artifact {
            resource_url: "harbor.example.com/team-7/app-7:1.2.3".into(),
            tag: "1.2.3".into(),
        }];
        let repositories = index.repositories.load();
        assert_eq!(repositories.matching(&Scope::Cluster, &pushed).len(), 1);
        group.bench_function(format!("match a push selecting 1 of {n}"), |b| {
            b.iter(|| repositories.matching(black_box(&Scope::Cluster), black_box(&pushed)))
        });
    }
    group.finish();
}

criterion_group!(benches, hot_path, index_growth);
criterion_main!(benches);
