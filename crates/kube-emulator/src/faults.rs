//! Fault injection: make matching requests fail with a chosen status, take longer, or
//! both; for the next N of them or until the faults are cleared.

use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use regex::Regex;
use serde::{Deserialize, Deserializer};

/// A fault to inject. It applies to requests matching `method`, `path_contains`,
/// `path_regex` and `query_contains` (all optional; unset matches anything): each is
/// held for `delay`, then answered with HTTP `code` and a `Status` body (reason derived
/// from the code) or, without a code, served normally. It applies `count` times, or to
/// every matching request until [`crate::Handle::clear_faults`] when `count` is `None`.
///
/// ```
/// # use std::time::Duration;
/// use kube_emulator::Fault;
/// // Every PATCH of a Warehouse takes 0.4 s, and is then served.
/// let slow = Fault::latency(Duration::from_millis(400))
///     .method(http::Method::PATCH)
///     .path_contains("/warehouses/")
///     .always();
/// // Every PATCH fails with 503 until the faults are cleared.
/// let down = Fault::new(503).method(http::Method::PATCH).always();
/// // The next two GETs wait a second, then fail with 500.
/// let flaky = Fault::new(500).method(http::Method::GET).delay(Duration::from_secs(1)).times(2);
/// # let _ = (slow, down, flaky);
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests with this method.
    pub method: Option<Method>,
    /// Only paths containing this substring.
    pub path_contains: Option<String>,
    /// Only paths matching this regex.
    pub path_regex: Option<Regex>,
    /// Only query strings containing this substring (e.g. `watch=true`).
    pub query_contains: Option<String>,
    /// HTTP status code to answer with; `None` serves the request (a pure latency fault).
    pub code: Option<u16>,
    /// Adds `Retry-After` (seconds) and `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
    /// How many matching requests it applies to; `None`: all of them, until cleared.
    pub count: Option<usize>,
    /// How long each matching request is held before it is answered.
    pub delay: Duration,
    /// Status message (a default one names the fault).
    pub message: Option<String>,
}

impl Fault {
    /// A fault failing the next matching request with `code`.
    pub fn new(code: u16) -> Self {
        Fault {
            method: None,
            path_contains: None,
            path_regex: None,
            query_contains: None,
            code: Some(code),
            retry_after: None,
            count: Some(1),
            delay: Duration::ZERO,
            message: None,
        }
    }

    /// A pure latency fault: the next matching request is held for `delay`, then served
    /// as usual.
    pub fn latency(delay: Duration) -> Self {
        Fault {
            code: None,
            delay,
            ..Fault::new(0)
        }
    }

    /// Restrict to a method.
    pub fn method(mut self, m: Method) -> Self {
        self.method = Some(m);
        self
    }

    /// Restrict to paths containing `s`.
    pub fn path_contains(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    /// Restrict to paths matching `re`.
    pub fn path_regex(mut self, re: Regex) -> Self {
        self.path_regex = Some(re);
        self
    }

    /// Restrict to query strings containing `s`.
    pub fn query_contains(mut self, s: impl Into<String>) -> Self {
        self.query_contains = Some(s.into());
        self
    }

    /// Apply to `n` requests.
    pub fn times(mut self, n: usize) -> Self {
        self.count = Some(n);
        self
    }

    /// Apply to every matching request until the faults are cleared.
    pub fn always(mut self) -> Self {
        self.count = None;
        self
    }

    /// Hold each matching request for `d` before answering (with the fault's code, or
    /// normally for a [`Fault::latency`]).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Send `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Use this `Status` message.
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(m.into());
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.count != Some(0)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|p| path.contains(p.as_str()))
            && self.path_regex.as_ref().is_none_or(|r| r.is_match(path))
            && self
                .query_contains
                .as_ref()
                .is_none_or(|q| query.contains(q.as_str()))
    }
}

/// JSON form of a [`Fault`] for `POST /_emulator/faults`, e.g.
/// `{"method":"PATCH","path":"/status","pathRegex":"...","query":"watch=true","code":500,"retryAfter":1,"count":2,"delayMs":400,"message":"..."}`.
/// `code` or `delayMs` is required; `count` defaults to 1, and `"count": null` or
/// `"always": true` applies the fault until it is cleared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// Method.
    pub method: Option<String>,
    /// Path substring.
    pub path: Option<String>,
    /// Path regex.
    pub path_regex: Option<String>,
    /// Query substring.
    pub query: Option<String>,
    /// HTTP code (none: a pure latency fault).
    pub code: Option<u16>,
    /// Retry-After seconds.
    pub retry_after: Option<u32>,
    /// Number of requests: absent for 1, `Some(None)` (`null`) for all until cleared.
    #[serde(default, deserialize_with = "present")]
    pub count: Option<Option<usize>>,
    /// `true`: all matching requests until cleared.
    pub always: Option<bool>,
    /// Delay in milliseconds.
    pub delay_ms: Option<u64>,
    /// Message.
    pub message: Option<String>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

/// Why a [`FaultSpec`] is not a fault.
#[derive(Debug, thiserror::Error)]
pub enum FaultSpecError {
    /// `method` is not an HTTP method.
    #[error("invalid method {0:?}")]
    Method(String),
    /// `pathRegex` does not compile.
    #[error("invalid pathRegex: {0}")]
    Regex(#[from] regex::Error),
    /// Neither `code` nor `delayMs`: the fault would do nothing.
    #[error("a fault needs a code, a delayMs, or both")]
    NoEffect,
    /// `always: true` together with a number in `count`.
    #[error("always: true contradicts count: {0}")]
    AlwaysWithCount(usize),
}

impl TryFrom<FaultSpec> for Fault {
    type Error = FaultSpecError;
    fn try_from(s: FaultSpec) -> Result<Self, FaultSpecError> {
        if s.code.is_none() && s.delay_ms.is_none() {
            return Err(FaultSpecError::NoEffect);
        }
        let count = match (s.always, s.count) {
            (Some(true), Some(Some(n))) => return Err(FaultSpecError::AlwaysWithCount(n)),
            (Some(true), _) | (_, Some(None)) => None,
            (_, Some(Some(n))) => Some(n),
            (_, None) => Some(1),
        };
        let method = s
            .method
            .map(|m| {
                Method::from_bytes(m.to_uppercase().as_bytes())
                    .map_err(|_| FaultSpecError::Method(m))
            })
            .transpose()?;
        Ok(Fault {
            method,
            path_contains: s.path,
            path_regex: s.path_regex.as_deref().map(Regex::new).transpose()?,
            query_contains: s.query,
            code: s.code,
            retry_after: s.retry_after,
            count,
            delay: Duration::from_millis(s.delay_ms.unwrap_or(0)),
            message: s.message,
        })
    }
}

/// The set of pending faults.
#[derive(Debug, Default)]
pub struct Faults(Mutex<Vec<Fault>>);

impl Faults {
    /// Add a fault.
    pub fn add(&self, f: Fault) {
        self.lock().push(f);
    }

    /// Remove all faults.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A copy of the pending faults (with what is left of their counts).
    pub fn pending(&self) -> Vec<Fault> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        crate::lock(&self.0)
    }

    /// If a pending fault matches, use it once (the first one added, if several match)
    /// and return a copy. The lock is released before the caller waits out a delay.
    pub fn take(&self, method: &Method, path: &str, query: &str) -> Option<Fault> {
        let mut fs = self.lock();
        let f = fs.iter_mut().find(|f| f.matches(method, path, query))?;
        if let Some(n) = &mut f.count {
            *n -= 1;
        }
        let out = f.clone();
        fs.retain(|f| f.count != Some(0));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Fault, FaultSpecError> {
        Fault::try_from(serde_json::from_str::<FaultSpec>(json).unwrap())
    }

    #[test]
    fn specs() {
        let f = spec(r#"{"code":503}"#).unwrap();
        assert_eq!(
            (f.code, f.count, f.delay),
            (Some(503), Some(1), Duration::ZERO)
        );
        let f = spec(r#"{"delayMs":400,"count":null}"#).unwrap();
        assert_eq!((f.code, f.count), (None, None));
        assert_eq!(f.delay, Duration::from_millis(400));
        let f = spec(r#"{"code":500,"always":true,"delayMs":5}"#).unwrap();
        assert_eq!(f.count, None);
        assert_eq!(spec(r#"{"code":500,"count":3}"#).unwrap().count, Some(3));
        assert!(matches!(
            spec(r#"{"path":"/x"}"#),
            Err(FaultSpecError::NoEffect)
        ));
        assert!(matches!(
            spec(r#"{"code":500,"always":true,"count":2}"#),
            Err(FaultSpecError::AlwaysWithCount(2))
        ));
        assert!(matches!(
            spec(r#"{"code":500,"pathRegex":"("}"#),
            Err(FaultSpecError::Regex(_))
        ));
        assert!(matches!(
            spec(r#"{"code":500,"method":"NO PE"}"#),
            Err(FaultSpecError::Method(_))
        ));
    }

    #[test]
    fn counted_faults_run_out_and_always_faults_do_not() {
        let fs = Faults::default();
        fs.add(Fault::new(500).method(Method::GET).times(2));
        fs.add(Fault::new(503).always());
        let code = |m: &Method| fs.take(m, "/api", "").and_then(|f| f.code);
        assert_eq!(code(&Method::GET), Some(500));
        assert_eq!(code(&Method::GET), Some(500));
        for _ in 0..5 {
            assert_eq!(code(&Method::GET), Some(503));
        }
        assert_eq!(fs.pending().len(), 1);
        fs.clear();
        assert_eq!(code(&Method::GET), None);
    }
}
