#![forbid(unsafe_code)]
//! `kargo-harbor-receiver`: parses the command line, sets up logging, runs
//! the chosen command; any error ends it with one line on stderr.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use kargo_harbor_receiver::config::{one_line_error, Cli, Command, LogFormat};
use kargo_harbor_receiver::error_text::one_line;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset or unusable.
const DEFAULT_FILTER: &str = "info";

/// kube's HTTP trace layer logs every failed API request at ERROR; the
/// program reports the same failures itself, once per cause (see
/// `watch::api_errors`). Added unless `RUST_LOG` mentions kube.
const QUIET_KUBE: &str = "kube_client::client::builder=off";

/// The filter directives for `RUST_LOG` (`None`: unset), and a warning when
/// the value is unusable: a value tracing cannot parse, or one that parses
/// but hides every line of the program itself (a misspelt level such as
/// `warning` reads as a target name) without saying `off`.
fn filter_directives(rust_log: Option<&str>) -> (String, Option<String>) {
    let Some(value) = rust_log.map(str::trim).filter(|v| !v.is_empty()) else {
        return (format!("{DEFAULT_FILTER},{QUIET_KUBE}"), None);
    };
    let quiet = |d: &str| {
        if value.contains("kube") {
            d.to_owned()
        } else {
            format!("{d},{QUIET_KUBE}")
        }
    };
    if let Err(e) = EnvFilter::builder().parse(value) {
        let warning = format!(
            "warning: RUST_LOG={value:?} does not parse ({e}); logging at {DEFAULT_FILTER:?}"
        );
        return (quiet(DEFAULT_FILTER), Some(warning));
    }
    // Span and field directives are beyond `Targets`; such a value is
    // deliberate enough to be taken as it is.
    let hides_us = value.parse::<Targets>().is_ok_and(|t| {
        !t.would_enable("kargo_harbor_receiver", &tracing::Level::ERROR)
            && !value.split(',').any(|d| d.trim().ends_with("off"))
    });
    if hides_us {
        let fallback = format!("{DEFAULT_FILTER},{value}");
        let warning = format!(
            "warning: RUST_LOG={value:?} hides every log line of kargo-harbor-receiver \
             (levels: error, warn, info, debug, trace, off); logging with {fallback:?}"
        );
        return (quiet(&fallback), Some(warning));
    }
    (quiet(value), None)
}

/// Human-readable lines by default (colours only on a terminal), one JSON
/// object per line with `--log-format json`; `RUST_LOG` filters.
fn init_logging(format: LogFormat) {
    let (directives, warning) = filter_directives(std::env::var("RUST_LOG").ok().as_deref());
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    let filter = EnvFilter::builder()
        .parse(&directives)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    tokio::runtime::Runtime::new()
}

fn print_crds() -> Result<(), BoxError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for crd in kargo_harbor_receiver::crds() {
        let yaml = serde_yaml::to_string(&crd)?;
        match write!(out, "---\n{yaml}") {
            Ok(()) => {}
            // The reader had enough (`| head`): not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => match one_line_error(&err) {
            Some(line) => {
                eprintln!("{line}");
                return ExitCode::from(2);
            }
            None => err.exit(),
        },
    };
    let logged = matches!(cli.command, Command::Run(_));
    let result: Result<(), BoxError> = match cli.command {
        Command::Crds => print_crds(),
        Command::Run(config) => {
            init_logging(config.log_format);
            runtime().map_err(BoxError::from).and_then(|rt| {
                let result = rt.block_on(kargo_harbor_receiver::run(*config));
                // Blocking work left over (a DNS lookup of an API server that
                // never answers) must not hold the exit: `run` is bounded already.
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
                result.map_err(Into::into)
            })
        }
        Command::Explain(args) => runtime().map_err(BoxError::from).and_then(|rt| {
            rt.block_on(kargo_harbor_receiver::explain::run(args))
                .map_err(Into::into)
        }),
        Command::SendTest(args) => runtime().map_err(BoxError::from).and_then(|rt| {
            rt.block_on(kargo_harbor_receiver::send_test::run(args))
                .map_err(Into::into)
        }),
        Command::Deliveries(args) => runtime().map_err(BoxError::from).and_then(|rt| {
            let report = rt.block_on(kargo_harbor_receiver::deliveries::run(args))?;
            print!("{report}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let line = one_line(err.as_ref());
            if logged {
                tracing::error!(error = %line, "stopped");
            } else {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_that_is_unusable_warns_and_falls_back() {
        let quiet = format!(",{QUIET_KUBE}");
        let cases: &[(Option<&str>, &str, bool)] = &[
            (None, "info", false),
            (Some(""), "info", false),
            (Some("debug"), "debug", false),
            (
                Some("info,kargo_harbor_receiver=debug"),
                "info,kargo_harbor_receiver=debug",
                false,
            ),
            (Some("warn"), "warn", false),
            (Some("off"), "off", false),
            (Some("kube=debug,info"), "kube=debug,info", false),
            // Does not parse.
            (Some("info,foo=loud"), "info", true),
            // Parses, but as a target: every line of ours hidden.
            (Some("warning"), "info,warning", true),
            (Some("hyper=debug"), "info,hyper=debug", true),
        ];
        for (value, directives, warns) in cases {
            let (got, warning) = filter_directives(*value);
            let want = if value.is_some_and(|v| v.contains("kube")) {
                directives.to_string()
            } else {
                format!("{directives}{quiet}")
            };
            assert_eq!(got, want, "{value:?}");
            assert_eq!(warning.is_some(), *warns, "{value:?}: {warning:?}");
            if let Some(w) = warning {
                assert!(w.starts_with("warning: RUST_LOG="), "{w}");
                assert!(!w.contains('\n'), "{w}");
            }
            assert!(EnvFilter::builder().parse(&got).is_ok(), "{got}");
        }
    }
}
