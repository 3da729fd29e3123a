//! Bounded logging of rejected requests (every 4xx answer: 401, 404, 405,
//! 413, 400, 408): per receiver and outcome, the first rejection of each
//! [`WINDOW`] is logged as a line of its own; the others of that window
//! are only counted, and the count is logged as one summary line when the
//! window ends (a timer armed by the window's first counted rejection), or
//! with the next rejection if that comes first, or when the server's log
//! is dropped at shutdown (the request metrics count every one). A flood
//! of wrong tokens thus logs about two lines per window, not one per
//! request. Successful pushes and 5xx answers are logged one line each by
//! the handler.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
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

/// One window of one (project, receiver, outcome).
struct Window {
    started: Instant,
    suppressed: u64,
    /// Named in the summary line (owned: the timer logs it later).
    project: String,
    receiver: String,
    outcome: Outcome,
}

impl Window {
    fn new(r: &Rejected<'_>, started: Instant) -> Self {
        Window {
            started,
            suppressed: 0,
            project: r.project.to_owned(),
            receiver: r.receiver.to_owned(),
            outcome: r.outcome,
        }
    }

    /// Logs the window's count, if any, and zeroes it: each count is
    /// logged once, by whoever comes first.
    fn flush(&mut self) {
        if self.suppressed == 0 {
            return;
        }
        tracing::info!(
            receiver = self.receiver.as_str(),
            project = self.project.as_str(),
            outcome = self.outcome.metric_label(),
            suppressed = self.suppressed,
            window_s = WINDOW.as_secs(),
            "webhook requests rejected like the one logged before (summary)"
        );
        self.suppressed = 0;
    }
}

type Windows = Mutex<HashMap<u64, Window>>;

fn lock(windows: &Windows) -> MutexGuard<'_, HashMap<u64, Window>> {
    windows.lock().unwrap_or_else(|p| p.into_inner())
}

/// The rejection log of one server.
#[derive(Default)]
pub(crate) struct Rejections {
    /// By a hash of (project, receiver, outcome): a collision only merges
    /// two summaries. Bounded by receivers × outcomes. Shared (weakly) with
    /// the window-end timers.
    windows: Arc<Windows>,
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
        {
            let mut windows = lock(&self.windows);
            match windows.get_mut(&key) {
                Some(w) if now.duration_since(w.started) < WINDOW => {
                    w.suppressed += 1;
                    if w.suppressed == 1 {
                        arm_flush(Arc::downgrade(&self.windows), key, w.started);
                    }
                    return false;
                }
                Some(w) => {
                    // The timer has not run yet: the count goes out now.
                    w.flush();
                    *w = Window::new(r, now);
                }
                None => {
                    windows.insert(key, Window::new(r, now));
                }
            }
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

/// At the end of the window of `key` that started at `started`, logs its
/// count unless a later rejection (or the drop of the log) already did.
/// One task per window that counted anything, sleeping on the runtime's
/// timer; without a runtime the count waits for the next rejection or the
/// drop.
fn arm_flush(windows: Weak<Windows>, key: u64, started: Instant) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep_until(started + WINDOW).await;
        let Some(windows) = windows.upgrade() else {
            return;
        };
        let mut open = lock(&windows);
        if let Some(w) = open.get_mut(&key).filter(|w| w.started == started) {
            w.flush();
        }
    });
}

impl Drop for Rejections {
    /// The counts of the windows still open reach the log at shutdown.
    fn drop(&mut self) {
        for w in lock(&self.windows).values_mut() {
            w.flush();
        }
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

    /// What the `tracing` events of this thread write while the guard lives.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn start() -> (Self, tracing::subscriber::DefaultGuard) {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .without_time()
                .finish();
            (captured, tracing::subscriber::set_default(subscriber))
        }

        fn summaries(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .filter(|l| l.contains("(summary)"))
                .map(str::to_owned)
                .collect()
        }

        /// Lets the runtime run the timers that are due, until `n`
        /// summaries are logged (a bounded number of turns).
        async fn wait_summaries(&self, n: usize) -> Vec<String> {
            for _ in 0..1000 {
                if self.summaries().len() >= n {
                    break;
                }
                tokio::task::yield_now().await;
            }
            self.summaries()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_of_a_window_reaches_the_log_when_the_window_ends() {
        let (captured, _guard) = Captured::start();
        let log = Rejections::default();
        let wrong = rejected("a", Outcome::Unauthorized);
        assert!(log.record(&wrong));
        for _ in 0..5 {
            assert!(!log.record(&wrong));
        }
        tokio::time::advance(WINDOW - Duration::from_millis(1)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(captured.summaries().is_empty(), "not before the end");
        // No further rejection: the timer logs the count.
        tokio::time::advance(Duration::from_millis(1)).await;
        let summaries = captured.wait_summaries(1).await;
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert!(summaries[0].contains("suppressed=5"), "{summaries:?}");
        assert!(summaries[0].contains("receiver=\"a\""), "{summaries:?}");
        // The next rejection opens a window and has no count to add.
        assert!(log.record(&wrong));
        drop(log);
        assert_eq!(captured.summaries().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_is_logged_once_by_whoever_comes_first() {
        let (captured, _guard) = Captured::start();
        let log = Rejections::default();
        let wrong = rejected("a", Outcome::Unauthorized);
        assert!(log.record(&wrong));
        for _ in 0..3 {
            assert!(!log.record(&wrong));
        }
        tokio::time::advance(WINDOW).await;
        // A rejection before the timer ran: it logs the count itself.
        assert!(log.record(&wrong));
        assert_eq!(captured.summaries().len(), 1);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let summaries = captured.summaries();
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert!(summaries[0].contains("suppressed=3"), "{summaries:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn open_windows_log_their_counts_when_the_log_is_dropped() {
        let (captured, _guard) = Captured::start();
        let log = Rejections::default();
        for (receiver, n) in [("a", 2), ("b", 0), ("c", 7)] {
            let r = rejected(receiver, Outcome::Unauthorized);
            assert!(log.record(&r));
            for _ in 0..n {
                assert!(!log.record(&r));
            }
        }
        drop(log);
        let mut summaries = captured.summaries();
        summaries.sort();
        assert_eq!(summaries.len(), 2, "{summaries:?}");
        assert!(summaries[0].contains("receiver=\"a\"") && summaries[0].contains("suppressed=2"));
        assert!(summaries[1].contains("receiver=\"c\"") && summaries[1].contains("suppressed=7"));
        // The timers find nothing left to log.
        tokio::time::advance(WINDOW).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(captured.summaries().len(), 2);
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::POST), "POST");
        let long = Method::from_bytes(&[b'X'; 5000]).unwrap();
        assert_eq!(method_label(&long), "OTHER");
    }
}
