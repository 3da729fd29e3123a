#![forbid(unsafe_code)]
//! `kargo-harbor-receiver`: parses configuration and wires the parts together.

use anyhow::Context;
use clap::Parser;
use kargo_harbor_receiver::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Human-readable lines by default, one JSON object per line with
/// `--log-format json`; `RUST_LOG` filters (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

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
            init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let result = runtime.block_on(kargo_harbor_receiver::run(*config));
            // Blocking work left over (a DNS lookup of an API server that
            // never answers) must not hold the exit: `run` is bounded already.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result?;
            Ok(())
        }
    }
}
