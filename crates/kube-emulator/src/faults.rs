//! Fault injection: make the next N matching requests fail with a chosen status.

use std::sync::Mutex;

use http::Method;
use regex::Regex;
use serde::Deserialize;

/// A fault to inject: the next `count` requests matching `method`, `path_contains`,
/// `path_regex` and `query_contains` (all optional; unset matches anything) fail with
/// HTTP `code` and a `Status` body (reason derived from the code).
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
    /// HTTP status code to answer with.
    pub code: u16,
    /// Adds `Retry-After` (seconds) and `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
    /// How many matching requests fail.
    pub count: usize,
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
            code,
            retry_after: None,
            count: 1,
            message: None,
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

    /// Fail `n` requests.
    pub fn times(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Send `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.count > 0
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

/// JSON form of a [`Fault`] for `POST /_emulator/faults`
/// (`{"method":"PATCH","path":"/status","pathRegex":"...","query":"watch=true","code":500,"retryAfter":1,"count":2}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// Method.
    pub method: Option<String>,
    /// Path substring.
    pub path: Option<String>,
    /// Path regex.
    pub path_regex: Option<String>,
    /// Query substring.
    pub query: Option<String>,
    /// HTTP code.
    pub code: u16,
    /// Retry-After seconds.
    pub retry_after: Option<u32>,
    /// Number of requests (default 1).
    pub count: Option<usize>,
    /// Message.
    pub message: Option<String>,
}

impl TryFrom<FaultSpec> for Fault {
    type Error = String;
    fn try_from(s: FaultSpec) -> Result<Self, String> {
        Ok(Fault {
            method: s
                .method
                .map(|m| Method::from_bytes(m.to_uppercase().as_bytes()).map_err(|e| e.to_string()))
                .transpose()?,
            path_contains: s.path,
            path_regex: s
                .path_regex
                .map(|r| Regex::new(&r).map_err(|e| e.to_string()))
                .transpose()?,
            query_contains: s.query,
            code: s.code,
            retry_after: s.retry_after,
            count: s.count.unwrap_or(1),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        crate::lock(&self.0)
    }

    /// If a pending fault matches, consume one use of it and return a copy.
    pub fn take(&self, method: &Method, path: &str, query: &str) -> Option<Fault> {
        let mut fs = self.lock();
        let f = fs.iter_mut().find(|f| f.matches(method, path, query))?;
        f.count -= 1;
        let out = f.clone();
        fs.retain(|f| f.count > 0);
        Some(out)
    }
}
