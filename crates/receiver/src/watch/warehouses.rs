//! Warehouse watch → repository index. No Warehouse cache: each event goes
//! straight into the index, which keeps only compiled subscriptions. A
//! (re)list is compiled as it arrives and published at `InitDone` in one
//! version, so thousands of Warehouses cost one rebuild and the full
//! objects are never held all at once.

use std::sync::Arc;

use futures::StreamExt;
use kargo_api::Warehouse;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api_errors::{ApiErrors, Failure};
use crate::index::{IndexProblems, Relist, RepositoryIndex};

/// Logs what could not be evaluated in a Warehouse's subscriptions. The
/// index compiles a Warehouse once per generation (relists included) and
/// reports problems only then, so each generation's problems are logged once.
fn report(problems: IndexProblems) {
    for problem in problems {
        tracing::warn!("{problem}");
    }
}

/// Watches Warehouses through `api` and keeps `index` current until
/// `shutdown`. `synced` turns true after the first full list is applied.
pub async fn run(
    api: Api<Warehouse>,
    index: Arc<RepositoryIndex>,
    restarts: Counter,
    api_errors: Arc<ApiErrors>,
    synced: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|w: &mut Warehouse| {
            w.managed_fields_mut().clear();
            w.status = None;
        });
    let mut stream = std::pin::pin!(stream);
    let mut relist = Relist::default();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Init) => relist = Relist::default(),
            Ok(watcher::Event::InitApply(w)) => report(index.relist_add(&mut relist, &w)),
            Ok(watcher::Event::InitDone) => {
                let relist = std::mem::take(&mut relist);
                let count = relist.len();
                index.finish_relist(relist);
                tracing::info!(count, "Warehouses indexed");
                api_errors.succeeded();
                synced.send_replace(true);
            }
            Ok(watcher::Event::Apply(w)) => report(index.upsert(&w)),
            Ok(watcher::Event::Delete(w)) => {
                index.remove(&w.namespace().unwrap_or_default(), &w.name_any());
            }
            Err(e) => {
                restarts.inc();
                if api_errors.failed("Warehouse watch", &e) == Failure::Other {
                    tracing::warn!(error = %e, "Warehouse watch failed; retrying");
                }
            }
        }
    }
}
