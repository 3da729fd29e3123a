//! The request log.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One served request. It reads back from its JSON (the end-to-end tests'
/// request logs); durations round-trip to the microsecond at least.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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

/// A duration as milliseconds (a JSON number with a fraction).
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_from_its_json() {
        let record = RequestRecord {
            method: "PATCH".into(),
            path: "/apis/g/v1/namespaces/n/things/t/status".into(),
            status: 200,
            duration: Duration::from_nanos(1_234_567_891),
            verb: Some("patch".into()),
            group: Some("g".into()),
            resource: Some("things".into()),
            subresource: Some("status".into()),
            namespace: Some("n".into()),
            name: Some("t".into()),
            injected_fault: true,
            injected_delay: Duration::from_millis(150),
            ..RequestRecord::default()
        };
        let json = serde_json::to_string(&record).unwrap();
        let back: RequestRecord = serde_json::from_str(&json).unwrap();
        let close = |a: Duration, b: Duration| a.abs_diff(b) <= Duration::from_micros(1);
        assert!(close(back.duration, record.duration), "{back:?}");
        assert!(
            close(back.injected_delay, record.injected_delay),
            "{back:?}"
        );
        let same_durations = RequestRecord {
            duration: record.duration,
            injected_delay: record.injected_delay,
            ..back
        };
        assert_eq!(same_durations, record);
        let negative = json.replace("\"injectedDelay\":150.0", "\"injectedDelay\":-1.0");
        assert_ne!(negative, json);
        assert!(serde_json::from_str::<RequestRecord>(&negative).is_err());
    }
}
