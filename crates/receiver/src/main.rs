#![forbid(unsafe_code)]
//! `kargo-harbor-receiver`: parses configuration and wires the parts together.

use anyhow::Context;
use clap::Parser;
use kargo_harbor_receiver::config::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            for crd in kargo_api::crds() {
                let yaml = serde_yaml::to_string(&crd).context("serialising a CRD")?;
                print!("---\n{yaml}");
            }
            Ok(())
        }
        Command::Run(config) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(kargo_harbor_receiver::run(*config))?;
            Ok(())
        }
    }
}
