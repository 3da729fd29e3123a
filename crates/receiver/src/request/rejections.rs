//! Bounded logging of rejected requests (every 4xx answer: 401, 404, 405,
//! 413, 400, 408): per receiver and outcome, the first rejection of each
//! [`WINDOW`] is logged as a line of its own; the others of that window
//! are only counted, and the count is logged as one summary line with the
//! next rejection after the window (the request metrics count every one).
//! A flood of wrong tokens thus logs about two lines per window, not one
//! per request. Successful pushes and 5xx answers are logged one line each
//! by the handler.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use crate::metrics::Outcome;

/// Length of a summary window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The method as a bounded value: its standard name, or `OTHER` (an
/// extension method can be as long as the head allows).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

struct Window {
    started: Instant,
    suppressed: u64,
}

/// The rejection log of one server.
#[derive(Default)]
pub(crate) struct Rejections {
    /// By a hash of (project, receiver, outcome): a collision only merges
    /// two summaries. Bounded by receivers × outcomes.
    windows: Mutex<HashMap<u64, Window>>,
}

/// One rejected request, as logged.
pub(crate) struct Rejected<'a> {
    pub project: &'a str,
    pub receiver: &'a str,
    pub outcome: Outcome,
    pub status: u16,
    pub method: &'static str,
    pub duration_ms: f64,
}

impl Rejections {
    /// Logs `r` or counts it (see the module docs); returns whether it was
    /// logged as a line of its own.
    pub fn record(&self, r: &Rejected<'_>) -> bool {
        let mut hasher = DefaultHasher::new();
        (r.project, r.receiver, r.outcome).hash(&mut hasher);
        let key = hasher.finish();
        let now = Instant::now();
        let suppressed = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            match windows.get_mut(&key) {
                Some(w) if now.duration_since(w.started) < WINDOW => {
                    w.suppressed += 1;
                    return false;
                }
                Some(w) => {
                    let suppressed = w.suppressed;
                    *w = Window {
                        started: now,
                        suppressed: 0,
                    };
                    suppressed
                }
                None => {
                    windows.insert(
                        key,
                        Window {
                            started: now,
                            suppressed: 0,
                        },
                    );
                    0
                }
            }
        };
        if suppressed > 0 {
            tracing::info!(
                receiver = r.receiver,
                project = r.project,
                outcome = r.outcome.metric_label(),
                suppressed,
                window_s = WINDOW.as_secs(),
                "webhook requests rejected like the one logged before (summary)"
            );
        }
        tracing::info!(
            receiver = r.receiver,
            project = r.project,
            method = r.method,
            outcome = r.outcome.metric_label(),
            status = r.status,
            duration_ms = r.duration_ms,
            "webhook request"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(receiver: &str, outcome: Outcome) -> Rejected<'_> {
        Rejected {
            project: "p",
            receiver,
            outcome,
            status: 401,
            method: "POST",
            duration_ms: 0.1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_per_receiver_outcome_and_window() {
        let log = Rejections::default();
        let wrong = rejected("a", Outcome::Unauthorized);
        assert!(log.record(&wrong));
        for _ in 0..1000 {
            assert!(!log.record(&wrong));
        }
        // Another receiver, or another outcome, has its own window.
        assert!(log.record(&rejected("b", Outcome::Unauthorized)));
        assert!(log.record(&rejected("a", Outcome::NotFound)));
        tokio::time::advance(WINDOW).await;
        assert!(log.record(&wrong), "a new window logs again");
        assert!(!log.record(&wrong));
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::POST), "POST");
        let long = Method::from_bytes(&[b'X'; 5000]).unwrap();
        assert_eq!(method_label(&long), "OTHER");
    }
}
