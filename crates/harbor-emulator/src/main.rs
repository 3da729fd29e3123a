//! `harbor-emulator` binary: serve the Harbor stand-in on loopback for the demo.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use harbor_emulator::{EmulatorOptions, HarborEmulator, Seed, TlsOptions};

/// A Harbor stand-in: webhook-policy REST API (v2.0) and webhook delivery.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HARBOR_EMULATOR_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Seed file (JSON or YAML): projects, admin password, robots, users.
    #[arg(long, env = "HARBOR_EMULATOR_SEED")]
    seed: Option<PathBuf>,
    /// Multiply Harbor's durations (delivery timeout and retry backoff, failed-login delay).
    #[arg(long, env = "HARBOR_EMULATOR_TIME_SCALE")]
    time_scale: Option<f64>,
    /// Admin password (overrides the seed file).
    #[arg(long, env = "HARBOR_EMULATOR_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// host[:port] of the external URL used in resource_url (default: the listen address).
    #[arg(long, env = "HARBOR_EMULATOR_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Serve the API over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "HARBOR_EMULATOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "HARBOR_EMULATOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the API over TLS with a generated self-signed certificate (for localhost and
    /// 127.0.0.1) and write that certificate (PEM) here, for the client's CA bundle.
    #[arg(
        long,
        env = "HARBOR_EMULATOR_TLS_SELF_SIGNED",
        conflicts_with = "tls_cert"
    )]
    tls_self_signed: Option<PathBuf>,
    /// Extra CA (PEM) trusted for https webhook targets.
    #[arg(long, env = "HARBOR_EMULATOR_TARGET_CA")]
    target_ca: Option<PathBuf>,
    /// Log every API request.
    #[arg(long, env = "HARBOR_EMULATOR_LOG_REQUESTS")]
    log_requests: bool,
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
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
    let mut opts = EmulatorOptions {
        listen: args.listen,
        log_requests: args.log_requests,
        ..EmulatorOptions::default()
    };
    if let Some(p) = &args.seed {
        Seed::from_file(p)?.apply(&mut opts);
    }
    if let Some(t) = args.time_scale {
        opts.time_scale = t;
    }
    if let Some(p) = args.admin_password {
        opts.admin_password = p;
    }
    if let Some(h) = args.external_host {
        opts.external_host = Some(h);
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        opts.tls = Some(TlsOptions::Pem {
            cert_pem: read(c)?,
            key_pem: read(k)?,
        });
    }
    if args.tls_self_signed.is_some() {
        opts.tls = Some(TlsOptions::Generate {
            subject_alt_names: vec!["localhost".into(), "127.0.0.1".into()],
        });
    }
    if let Some(ca) = &args.target_ca {
        opts.delivery.extra_ca_pem = Some(read(ca)?);
    }
    let handle = HarborEmulator::start(opts).await?;
    if let (Some(path), Some(pem)) = (&args.tls_self_signed, handle.ca_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("harbor-emulator listening on {}", handle.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown();
    // Let connection tasks see the shutdown before the runtime is dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}
