//! The request log.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// One served request.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string (`""` when none).
    pub query: String,
    /// Request `Content-Type`.
    pub content_type: Option<String>,
    /// Request `Accept`.
    pub accept: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Response status code.
    pub status: u16,
    /// Time to produce the response head (for watches: until the stream started),
    /// including any injected delay.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// Kubernetes verb for resource requests: get, list, watch, create, update, patch,
    /// delete, deletecollection (`None` for discovery and other paths).
    pub verb: Option<String>,
    /// API group of the resource (`""` for core).
    pub group: Option<String>,
    /// Plural resource name.
    pub resource: Option<String>,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Whether an injected fault answered (with its code; a pure latency fault does not).
    pub injected_fault: bool,
    /// How long an injected fault held the request (included in `duration`).
    #[serde(with = "millis")]
    pub injected_delay: Duration,
}

impl RequestRecord {
    /// `verb resource[/subresource]`, e.g. `patch projectconfigs/status`.
    pub fn rbac(&self) -> Option<String> {
        let verb = self.verb.as_ref()?;
        let res = self.resource.as_ref()?;
        Some(match &self.subresource {
            Some(s) => format!("{verb} {res}/{s}"),
            None => format!("{verb} {res}"),
        })
    }
}

mod millis {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// The shared log.
#[derive(Debug, Default)]
pub struct RequestLog(Mutex<Vec<RequestRecord>>);

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        crate::lock(&self.0)
    }
    /// Append a record.
    pub fn push(&self, r: RequestRecord) {
        self.lock().push(r);
    }
    /// A copy of all records.
    pub fn all(&self) -> Vec<RequestRecord> {
        self.lock().clone()
    }
    /// Forget all records.
    pub fn clear(&self) {
        self.lock().clear();
    }
}
