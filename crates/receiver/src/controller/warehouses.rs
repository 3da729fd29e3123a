//! Warehouse watch → index. No Warehouse cache: each event goes straight
//! into the index, which keeps only compiled subscriptions. A (re)list is
//! buffered and applied with one [`Index::replace_warehouses`] at `InitDone`
//! (one rebuild for thousands of Warehouses).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kargo_api::Warehouse;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::index::IndexProblems;
use crate::metrics::ResourceLabels;

/// Remembers the generation whose problems were logged, per Warehouse, so
/// that each generation's problems are logged once.
#[derive(Default)]
struct ProblemLog {
    logged: HashMap<(String, String), Option<i64>>,
}

impl ProblemLog {
    fn report(&mut self, warehouses: &[(String, String, Option<i64>)], problems: IndexProblems) {
        if problems.is_empty() {
            return;
        }
        for (ns, name, generation) in warehouses {
            let prefix = format!("Warehouse {ns}/{name} ");
            let mine: Vec<&String> = problems.iter().filter(|p| p.starts_with(&prefix)).collect();
            if mine.is_empty() {
                continue;
            }
            let key = (ns.clone(), name.clone());
            if self.logged.get(&key) == Some(generation) {
                continue;
            }
            self.logged.insert(key, *generation);
            for p in mine {
                tracing::warn!(warehouse = %format!("{ns}/{name}"), "{p}");
            }
        }
    }

    fn forget(&mut self, ns: &str, name: &str) {
        self.logged.remove(&(ns.to_owned(), name.to_owned()));
    }
}

fn id(w: &Warehouse) -> (String, String, Option<i64>) {
    (
        w.namespace().unwrap_or_default(),
        w.name_any(),
        w.metadata.generation,
    )
}

/// Watches Warehouses in all namespaces and keeps the index current until
/// `shutdown`. `synced` turns true after the first full list is applied.
pub async fn run(shared: Arc<Shared>, synced: watch::Sender<bool>, shutdown: CancellationToken) {
    let api: Api<Warehouse> = Api::all(shared.client.clone());
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|w: &mut Warehouse| {
            w.managed_fields_mut().clear();
            w.status = None;
        });
    let mut stream = std::pin::pin!(stream);
    let mut buffer: Vec<Warehouse> = Vec::new();
    let mut log = ProblemLog::default();
    let restarts = shared
        .metrics
        .watch_restarts
        .get_or_create(&ResourceLabels {
            resource: "warehouses",
        })
        .clone();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Init) => buffer.clear(),
            Ok(watcher::Event::InitApply(w)) => buffer.push(w),
            Ok(watcher::Event::InitDone) => {
                let problems = shared.index.replace_warehouses(buffer.iter());
                let ids: Vec<_> = buffer.iter().map(id).collect();
                log.report(&ids, problems);
                tracing::info!(count = buffer.len(), "Warehouses indexed");
                buffer = Vec::new();
                synced.send_replace(true);
            }
            Ok(watcher::Event::Apply(w)) => {
                let problems = shared.index.upsert_warehouse(&w);
                log.report(&[id(&w)], problems);
            }
            Ok(watcher::Event::Delete(w)) => {
                let (ns, name, _) = id(&w);
                shared.index.remove_warehouse(&ns, &name);
                log.forget(&ns, &name);
            }
            Err(e) => {
                restarts.inc();
                tracing::warn!(error = %e, "Warehouse watch failed; retrying");
            }
        }
    }
}
