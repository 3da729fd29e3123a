//! Fixtures shared by the unit tests of several modules.

use crate::config::{Cli, Command, Config};
use crate::index::{Index, ReceiverEntry, Scope};
use crate::token::TokenDigest;
use clap::Parser;
use kargo_api::{ImageSubscription, Subscription, Warehouse, WarehouseSpec};

/// `kargo-harbor-receiver run <args>`, parsed as the binary would.
pub fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    let mut argv = vec!["kargo-harbor-receiver", "run"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Run(c) => *c,
        Command::Crds => unreachable!("parsed run"),
    })
}

/// A valid [`Config`] for `run <args>`.
pub fn config(args: &[&str]) -> Config {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A client for units that must hold one but never contact the API server.
pub fn offline_client() -> kube::Client {
    kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap()
}

/// A Warehouse in `namespace` with one image subscription, at generation 1.
pub fn image_warehouse(namespace: &str, name: &str, image: ImageSubscription) -> Warehouse {
    let mut w = Warehouse::new(
        name,
        WarehouseSpec {
            interval: None,
            subscriptions: vec![Subscription::image(image)],
        },
    );
    w.metadata.namespace = Some(namespace.into());
    w.metadata.generation = Some(1);
    w
}

/// Registers receiver `recv` of project `project` on `path` with `token`.
pub fn register_receiver(index: &Index, project: &str, path: &str, token: &[u8]) {
    let scope = Scope::Project(project.into());
    index.set_receivers(
        &scope,
        vec![(
            path.into(),
            ReceiverEntry {
                scope: scope.clone(),
                name: "recv".into(),
                token: TokenDigest::of(token),
            },
        )],
    );
}
