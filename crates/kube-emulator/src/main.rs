//! `kube-emulator` binary: serve an in-memory Kubernetes API on loopback.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_emulator::{Emulator, EmulatorOptions, Manifest};

/// An in-memory Kubernetes API server for tests and demos.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "KUBE_EMULATOR_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig for this server here.
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Preload manifests (CRDs) from this file (repeatable; multi-document YAML allowed).
    #[arg(long = "crd", env = "KUBE_EMULATOR_CRDS", value_delimiter = ',')]
    crds: Vec<PathBuf>,
    /// Log every request.
    #[arg(long, env = "KUBE_EMULATOR_LOG_REQUESTS")]
    log_requests: bool,
    /// Seconds between watch bookmarks.
    #[arg(long, env = "KUBE_EMULATOR_BOOKMARK_SECONDS", default_value_t = 5)]
    bookmark_seconds: u64,
    /// Number of change events retained for resuming watches.
    #[arg(long, env = "KUBE_EMULATOR_HISTORY", default_value_t = 10_000)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let opts = EmulatorOptions {
        listen: args.listen,
        preload: args.crds.into_iter().map(Manifest::Path).collect(),
        log_requests: args.log_requests,
        bookmark_interval: Duration::from_secs(args.bookmark_seconds.max(1)),
        history_retention: args.history,
        kubeconfig_path: args.kubeconfig.clone(),
    };
    let handle = Emulator::start(opts).await?;
    println!("kube-emulator listening on {}", handle.url());
    if args.kubeconfig.is_some() {
        println!(
            "kubeconfig written to {}",
            handle.kubeconfig_path().display()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown();
    Ok(())
}
