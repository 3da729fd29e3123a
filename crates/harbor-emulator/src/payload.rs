//! Webhook payloads as Harbor renders them (`src/controller/event/handler/webhook/artifact`,
//! `src/pkg/notifier/formats`).
//!
//! An artifact event carries one resource: the first tag of the push, or the digest when
//! pushed by digest. `Default` is `json.Marshal` of Harbor's `Payload`; `CloudEvents` is
//! the cloudevents SDK's JSON (context attributes, then `data`, then the extensions
//! `operator` and `requestid` in sorted order), with a new UUID `id` for every target.
//! Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029 in strings; so do we.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Harbor's event type for a push.
pub const PUSH_ARTIFACT: &str = "PUSH_ARTIFACT";
/// `Content-Type` of the Default format.
pub const CONTENT_TYPE_DEFAULT: &str = "application/json";
/// `Content-Type` of the CloudEvents format.
pub const CONTENT_TYPE_CLOUDEVENTS: &str = "application/cloudevents+json";

/// The event types Harbor supports for webhooks, in the order `GET …/webhook/events` lists them.
pub const SUPPORTED_EVENT_TYPES: &[&str] = &[
    "PUSH_ARTIFACT",
    "PULL_ARTIFACT",
    "DELETE_ARTIFACT",
    "QUOTA_EXCEED",
    "QUOTA_WARNING",
    "SCANNING_FAILED",
    "SCANNING_STOPPED",
    "SCANNING_COMPLETED",
    "REPLICATION",
    "TAG_RETENTION",
];
/// Supported notify types.
pub const SUPPORTED_NOTIFY_TYPES: &[&str] = &["http", "slack"];
/// Supported payload formats (for http targets).
pub const SUPPORTED_FORMATS: &[&str] = &["Default", "CloudEvents"];

/// The CloudEvents `type` for a Harbor event type.
pub fn cloudevents_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "DELETE_ARTIFACT" => "harbor.artifact.deleted",
        "PULL_ARTIFACT" => "harbor.artifact.pulled",
        "PUSH_ARTIFACT" => "harbor.artifact.pushed",
        "QUOTA_EXCEED" => "harbor.quota.exceeded",
        "QUOTA_WARNING" => "harbor.quota.warned",
        "REPLICATION" => "harbor.replication.status.changed",
        "SCANNING_FAILED" => "harbor.scan.failed",
        "SCANNING_COMPLETED" => "harbor.scan.completed",
        "SCANNING_STOPPED" => "harbor.scan.stopped",
        "TAG_RETENTION" => "harbor.tag_retention.finished",
        _ => return None,
    })
}

/// An artifact event, before it is rendered per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEvent {
    /// e.g. `PUSH_ARTIFACT`.
    pub event_type: String,
    /// Project name (the repository namespace).
    pub project: String,
    /// Whether the project is public (`repo_type`).
    pub public: bool,
    /// `project/repo`.
    pub repo_full_name: String,
    /// When the repository was created (first push); omitted when `None`.
    pub repo_created: Option<DateTime<Utc>>,
    /// The manifest digest.
    pub digest: String,
    /// The tag, or the digest for a push by digest.
    pub reference: String,
    /// `host[:port]/project/repo:tag` or `…@sha256:…`.
    pub resource_url: String,
    /// Who pushed.
    pub operator: String,
    /// When (one-second resolution in the payload).
    pub occur_at: DateTime<Utc>,
    /// The push request's `X-Request-Id` (CloudEvents `requestid`).
    pub request_id: String,
}

/// `resource_url` as Harbor builds it from its external URL without scheme.
pub fn resource_url(external_host: &str, repo_full_name: &str, reference: &str) -> String {
    if is_digest(reference) {
        format!("{external_host}/{repo_full_name}@{reference}")
    } else {
        format!("{external_host}/{repo_full_name}:{reference}")
    }
}

/// Whether a reference is a digest (`algorithm:hex`), as `distribution.IsDigest`.
pub fn is_digest(reference: &str) -> bool {
    match reference.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[derive(Serialize)]
struct Resource<'a> {
    digest: &'a str,
    tag: &'a str,
    resource_url: &'a str,
}

#[derive(Serialize)]
struct Repository<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    date_created: Option<i64>,
    name: &'a str,
    namespace: &'a str,
    repo_full_name: &'a str,
    repo_type: &'a str,
}

#[derive(Serialize)]
struct EventData<'a> {
    resources: [Resource<'a>; 1],
    repository: Repository<'a>,
}

#[derive(Serialize)]
struct DefaultPayload<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    occur_at: i64,
    operator: &'a str,
    event_data: EventData<'a>,
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'a str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: &'a str,
    datacontenttype: &'a str,
    time: String,
    data: EventData<'a>,
    operator: &'a str,
    requestid: &'a str,
}

fn event_data(ev: &ArtifactEvent) -> EventData<'_> {
    let name = ev
        .repo_full_name
        .split_once('/')
        .map(|(_, n)| n)
        .unwrap_or("");
    EventData {
        resources: [Resource {
            digest: &ev.digest,
            tag: &ev.reference,
            resource_url: &ev.resource_url,
        }],
        repository: Repository {
            date_created: ev.repo_created.map(|t| t.timestamp()),
            name,
            namespace: &ev.project,
            repo_full_name: &ev.repo_full_name,
            repo_type: if ev.public { "public" } else { "private" },
        },
    }
}

/// Escape what Go's `json.Marshal` escapes beyond serde_json (HTML-sensitive characters and
/// the JavaScript line separators); they can only occur inside strings.
pub fn go_json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The Default format body.
pub fn render_default(ev: &ArtifactEvent) -> String {
    let p = DefaultPayload {
        kind: &ev.event_type,
        occur_at: ev.occur_at.timestamp(),
        operator: &ev.operator,
        event_data: event_data(ev),
    };
    go_json_escape(&serde_json::to_string(&p).unwrap_or_default())
}

/// The CloudEvents format body for one target of one policy; `None` for an event type the
/// formatter does not know.
pub fn render_cloudevents(
    ev: &ArtifactEvent,
    project_id: i64,
    policy_id: i64,
    id: &str,
) -> Option<String> {
    let kind = cloudevents_type(&ev.event_type)?;
    let secs = ev.occur_at.timestamp();
    let time = DateTime::from_timestamp(secs, 0)?
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let ce = CloudEvent {
        specversion: "1.0",
        id,
        source: format!("/projects/{project_id}/webhook/policies/{policy_id}"),
        kind,
        datacontenttype: "application/json",
        time,
        data: event_data(ev),
        operator: &ev.operator,
        requestid: &ev.request_id,
    };
    Some(go_json_escape(&serde_json::to_string(&ce).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sample_dir() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/harbor-payloads"
        ))
    }

    fn event(reference: &str, digest: &str) -> ArtifactEvent {
        ArtifactEvent {
            event_type: PUSH_ARTIFACT.into(),
            project: "library".into(),
            public: false,
            repo_full_name: "library/app".into(),
            repo_created: DateTime::from_timestamp(1_764_300_000, 0),
            digest: digest.into(),
            reference: reference.into(),
            resource_url: resource_url("harbor.example.com", "library/app", reference),
            operator: "admin".into(),
            occur_at: DateTime::from_timestamp(1_764_383_400, 0).unwrap(),
            request_id: "a1c5a3f0-3b7e-4f0e-9d8a-6b2f7c1e9d40".into(),
        }
    }

    const DIGEST: &str = "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6";

    #[test]
    fn default_matches_the_push_tag_sample() {
        let sample: Value = serde_json::from_str(
            &std::fs::read_to_string(sample_dir().join("push-tag.json")).unwrap(),
        )
        .unwrap();
        let ours: Value = serde_json::from_str(&render_default(&event("1.2.3", DIGEST))).unwrap();
        assert_eq!(ours, sample);
    }

    #[test]
    fn default_keeps_go_field_order() {
        let s = render_default(&event("1.2.3", DIGEST));
        assert!(s.starts_with(r#"{"type":"PUSH_ARTIFACT","occur_at":1764383400,"operator":"admin","event_data":{"resources":[{"digest":"sha256:"#));
    }

    #[test]
    fn a_push_by_digest_uses_the_digest_as_tag_and_at_in_the_url() {
        let d = "sha256:9b2a28eb47540823042a2ba401386845089bb7b62a9637d55816132c4c3c36eb";
        let v: Value = serde_json::from_str(&render_default(&event(d, d))).unwrap();
        assert_eq!(v["event_data"]["resources"][0]["tag"], d);
        assert_eq!(
            v["event_data"]["resources"][0]["resource_url"],
            format!("harbor.example.com/library/app@{d}")
        );
    }

    #[test]
    fn cloudevents_matches_the_sample_in_sdk_order() {
        let sample: Value = serde_json::from_str(
            &std::fs::read_to_string(sample_dir().join("cloudevents-push.json")).unwrap(),
        )
        .unwrap();
        let mut ev = event("1.2.3", DIGEST);
        ev.occur_at = DateTime::from_timestamp(1_764_383_400, 0).unwrap();
        let s = render_cloudevents(&ev, 3, 7, "0f3c9e4e-8d1a-4c55-a0b2-6e3d1f7a9c21").unwrap();
        let ours: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(ours, sample);
        assert!(s.starts_with(r#"{"specversion":"1.0","id":"0f3c9e4e-8d1a-4c55-a0b2-6e3d1f7a9c21","source":"/projects/3/webhook/policies/7","type":"harbor.artifact.pushed","datacontenttype":"application/json","time":"2025-11-29T02:30:00Z","data":{"#));
        assert!(s.ends_with(
            r#","operator":"admin","requestid":"a1c5a3f0-3b7e-4f0e-9d8a-6b2f7c1e9d40"}"#
        ));
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(
            go_json_escape(r#"{"a":"<&>"}"#),
            r#"{"a":"\u003c\u0026\u003e"}"#
        );
    }
}
