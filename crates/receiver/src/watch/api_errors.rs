//! Failures to reach the API server, reported once per outage.
//!
//! With the API server unreachable every watch, the Lease renewal and each
//! reconcile fail and retry on their own schedule; logging each attempt
//! buried the one useful fact (which server, why) under a line per retry.
//! Here the first failure names the server and the cause, later ones are
//! counted and summarised at most every [`SUMMARY_EVERY`], and the first
//! success after them says how long it lasted. Errors the API server
//! answered (403, 404, 409 …) are not outages: their callers log them as
//! before, each with its own context.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error_text::one_line;

/// How often a continuing outage is summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// The outage bookkeeping of one API server.
#[derive(Debug)]
pub struct ApiErrors {
    server: String,
    state: Mutex<Outage>,
}

#[derive(Debug, Default)]
struct Outage {
    /// When the first failure of the current outage happened.
    since: Option<Instant>,
    /// Failures since then.
    failures: u64,
    /// Failures since the last line.
    unreported: u64,
    /// When the last line was written.
    reported_at: Option<Instant>,
    last_cause: String,
}

/// What [`ApiErrors::failed`] made of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The API server was not reached (or its connection broke): counted
    /// here; the caller logs nothing more than a debug line.
    Unreachable,
    /// The API server answered with an error, or the error is not about
    /// the connection: the caller logs it.
    Other,
}

/// What to log now about an outage, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Started {
        cause: String,
    },
    Continues {
        failures: u64,
        over: Duration,
        cause: String,
    },
    Ended {
        failures: u64,
        over: Duration,
    },
}

impl ApiErrors {
    /// Bookkeeping for `server` (its URL, for the log lines).
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            state: Mutex::new(Outage::default()),
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        // Only counters behind it: a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failed API request made for `what` (e.g. "Warehouse
    /// watch") and logs the outage line due, if any.
    pub fn failed(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> Failure {
        let Some(cause) = transport_cause(error) else {
            return Failure::Other;
        };
        tracing::debug!(%what, error = %cause, "API request failed");
        let line = self.outage().fail(cause, Instant::now());
        self.log(line);
        Failure::Unreachable
    }

    /// Records that an API request succeeded (a watch event arrived, a
    /// write went through); ends an outage.
    pub fn succeeded(&self) {
        let line = self.outage().succeed(Instant::now());
        self.log(line);
    }

    fn log(&self, line: Option<Line>) {
        let server = self.server.as_str();
        match line {
            None => {}
            Some(Line::Started { cause }) => tracing::warn!(
                %server,
                error = %cause,
                "cannot reach the API server; retrying (repeats are summarised every {}s)",
                SUMMARY_EVERY.as_secs()
            ),
            Some(Line::Continues {
                failures,
                over,
                cause,
            }) => tracing::warn!(
                %server,
                failures,
                over = %humantime::format_duration(round(over)),
                error = %cause,
                "still cannot reach the API server"
            ),
            Some(Line::Ended { failures, over }) => tracing::info!(
                %server,
                failures,
                over = %humantime::format_duration(round(over)),
                "the API server is reachable again"
            ),
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

impl Outage {
    fn fail(&mut self, cause: String, now: Instant) -> Option<Line> {
        self.failures += 1;
        let changed = cause != self.last_cause;
        self.last_cause = cause.clone();
        let Some(since) = self.since else {
            self.since = Some(now);
            self.reported_at = Some(now);
            self.unreported = 0;
            return Some(Line::Started { cause });
        };
        self.unreported += 1;
        let due = self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= SUMMARY_EVERY);
        // A new cause (refused → TLS error) is news; a repeat waits.
        if !due && !changed {
            return None;
        }
        self.reported_at = Some(now);
        let failures = std::mem::take(&mut self.unreported);
        Some(Line::Continues {
            failures,
            over: now.duration_since(since),
            cause,
        })
    }

    fn succeed(&mut self, now: Instant) -> Option<Line> {
        let since = self.since.take()?;
        let line = Line::Ended {
            failures: self.failures,
            over: now.duration_since(since),
        };
        *self = Outage::default();
        Some(line)
    }
}

/// The cause, in one line, when `error` is about reaching the API server
/// (connecting, TLS, a broken connection, a timeout) rather than an answer
/// of it; `None` otherwise.
fn transport_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(kube_error) = e.downcast_ref::<kube::Error>() {
            return match kube_error {
                kube::Error::Api(_) => None,
                kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::ReadEvents(_) => {
                    // kube's own text ("ServiceError: client error
                    // (Connect)") says little; its causes say why.
                    Some(match std::error::Error::source(kube_error) {
                        Some(inner) => one_line(inner),
                        None => kube_error.to_string(),
                    })
                }
                _ => None,
            };
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_named_once_summarised_and_its_end_said() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut o = Outage::default();
        let refused = || "tcp connect error: Connection refused (os error 111)".to_owned();
        assert_eq!(
            o.fail(refused(), at(0)),
            Some(Line::Started { cause: refused() })
        );
        // Retries within the summary period: silent.
        for s in 1..30 {
            assert_eq!(o.fail(refused(), at(s)), None, "{s}");
        }
        assert_eq!(
            o.fail(refused(), at(30)),
            Some(Line::Continues {
                failures: 30,
                over: Duration::from_secs(30),
                cause: refused()
            })
        );
        // A different cause is reported at once.
        let tls = "invalid peer certificate: UnknownIssuer".to_owned();
        assert_eq!(
            o.fail(tls.clone(), at(31)),
            Some(Line::Continues {
                failures: 1,
                over: Duration::from_secs(31),
                cause: tls
            })
        );
        assert_eq!(
            o.succeed(at(40)),
            Some(Line::Ended {
                failures: 32,
                over: Duration::from_secs(40)
            })
        );
        // Success without an outage says nothing; the next outage starts anew.
        assert_eq!(o.succeed(at(41)), None);
        assert!(matches!(
            o.fail(refused(), at(50)),
            Some(Line::Started { .. })
        ));
    }

    #[tokio::test]
    async fn connection_errors_are_outages_answers_are_not() {
        // A real connection failure, as kube reports it.
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(crate::testing::offline_client(), "default");
        let err = api.get("x").await.unwrap_err();
        let cause = transport_cause(&err).expect("a connection failure");
        assert!(cause.contains("Connection refused"), "{cause}");
        assert!(!cause.contains("ServiceError"), "{cause}");
        let wrapped = kube::runtime::watcher::Error::InitialListFailed(err);
        assert!(transport_cause(&wrapped).is_some());

        let answered = kube::Error::Api(Box::new(kube::core::Status::failure(
            "forbidden",
            "Forbidden",
        )));
        assert_eq!(transport_cause(&answered), None);
        let errors = ApiErrors::new("http://127.0.0.1:1");
        assert_eq!(errors.failed("test", &answered), Failure::Other);
        assert_eq!(errors.failed("test", &wrapped), Failure::Unreachable);
    }
}
