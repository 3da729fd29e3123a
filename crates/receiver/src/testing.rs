//! Fixtures shared by the unit tests of several modules.

use crate::config::{Cli, Command, Config};
use clap::Parser;

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
