//! Warehouse watch → index. No Warehouse cache: each event goes straight
//! into the index, which keeps only compiled subscriptions. A (re)list is
//! buffered and applied with one [`Index::replace_warehouses`] at `InitDone`
//! (one rebuild for thousands of Warehouses).

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

/// Logs what could not be evaluated in a Warehouse's subscriptions. The
/// index compiles a Warehouse once per generation (relists included) and
/// reports problems only then, so each generation's problems are logged once.
fn report(problems: IndexProblems) {
    for problem in problems {
        tracing::warn!("{problem}");
    }
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
                report(shared.index.replace_warehouses(buffer.iter()));
                tracing::info!(count = buffer.len(), "Warehouses indexed");
                buffer = Vec::new();
                synced.send_replace(true);
            }
            Ok(watcher::Event::Apply(w)) => {
                report(shared.index.upsert_warehouse(&w));
            }
            Ok(watcher::Event::Delete(w)) => {
                shared
                    .index
                    .remove_warehouse(&w.namespace().unwrap_or_default(), &w.name_any());
            }
            Err(e) => {
                restarts.inc();
                tracing::warn!(error = %e, "Warehouse watch failed; retrying");
            }
        }
    }
}
