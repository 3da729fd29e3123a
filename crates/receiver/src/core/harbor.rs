//! Harbor webhook payloads: the "Default" format (`type: PUSH_ARTIFACT`,
//! `event_data`) and the "CloudEvents" format (`specversion`,
//! `type: harbor.artifact.pushed`, `data`). Pure parsing, no I/O.

use serde::Deserialize;
use thiserror::Error;

/// Event type of a push in Harbor's Default format.
pub const DEFAULT_PUSH: &str = "PUSH_ARTIFACT";
/// Event type of a push in Harbor's CloudEvents format.
pub const CLOUDEVENTS_PUSH: &str = "harbor.artifact.pushed";

/// Why a body is not a Harbor event.
#[derive(Debug, Error)]
pub enum PayloadError {
    /// Not JSON, or JSON of the wrong shape (a field of the wrong type, no
    /// event type, resources that are not a list …).
    #[error("not a Harbor event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A JSON object, but without an event type.
    #[error("not a Harbor event: no event type")]
    NoType,
}

/// Which of Harbor's two payload formats an event came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Harbor's native format.
    Default,
    /// CloudEvents 1.0 (structured mode).
    CloudEvents,
}

/// One pushed artifact reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// `host/namespace/name:tag` or `host/namespace/name@sha256:…`, as Harbor sends it.
    pub resource_url: String,
    /// The pushed tag; for a push by digest, the digest itself.
    pub tag: String,
}

/// A parsed Harbor event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Which format it came in.
    pub format: Format,
    /// The event type as sent (`PUSH_ARTIFACT`, `harbor.artifact.pushed`, …).
    pub event_type: String,
    /// The artifacts the event is about (possibly none).
    pub artifacts: Vec<Artifact>,
}

impl Event {
    /// Whether the event reports a push (the only event we act on).
    pub fn is_push(&self) -> bool {
        match self.format {
            Format::Default => self.event_type == DEFAULT_PUSH,
            Format::CloudEvents => self.event_type == CLOUDEVENTS_PUSH,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    specversion: Option<String>,
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(default)]
    event_data: Option<EventData>,
    #[serde(default)]
    data: Option<EventData>,
}

#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default)]
    resources: Option<Vec<Resource>>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    resource_url: Option<String>,
}

/// Parses a webhook body in either format; unknown fields are ignored.
///
/// Resources without a `resource_url` cannot be routed and are skipped. A
/// resource without a tag but with a digest is treated as a push by digest.
pub fn parse(body: &[u8]) -> Result<Event, PayloadError> {
    let envelope: Envelope = serde_json::from_slice(body)?;
    let event_type = envelope
        .event_type
        .filter(|t| !t.is_empty())
        .ok_or(PayloadError::NoType)?;
    let (format, data) = if envelope.specversion.is_some() {
        (Format::CloudEvents, envelope.data)
    } else {
        (Format::Default, envelope.event_data)
    };
    let artifacts = data
        .and_then(|d| d.resources)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            let resource_url = r.resource_url.filter(|u| !u.trim().is_empty())?;
            let tag = r
                .tag
                .filter(|t| !t.is_empty())
                .or(r.digest)
                .unwrap_or_default();
            Some(Artifact { resource_url, tag })
        })
        .collect();
    Ok(Event {
        format,
        event_type,
        artifacts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(name: &str) -> Vec<u8> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/harbor-payloads");
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn every_shared_sample_parses() {
        // (file, format, is push, [(resource_url, tag)])
        let app = "harbor.example.com/library/app:1.2.3";
        let digest = "sha256:9b2a28eb47540823042a2ba401386845089bb7b62a9637d55816132c4c3c36eb";
        type Row<'a> = (&'a str, Format, bool, Vec<(String, &'a str)>);
        let cases: Vec<Row> = vec![
            (
                "push-tag.json",
                Format::Default,
                true,
                vec![(app.into(), "1.2.3")],
            ),
            (
                "pull-artifact.json",
                Format::Default,
                false,
                vec![(app.into(), "1.2.3")],
            ),
            (
                "delete-artifact.json",
                Format::Default,
                false,
                vec![(app.into(), "1.2.3")],
            ),
            (
                "scanning-completed.json",
                Format::Default,
                false,
                vec![(app.into(), "1.2.3")],
            ),
            (
                "push-digest.json",
                Format::Default,
                true,
                vec![(format!("harbor.example.com/library/app@{digest}"), digest)],
            ),
            (
                "push-multi-tag.json",
                Format::Default,
                true,
                vec![
                    ("harbor.example.com/team-a/api:v2.0.0".into(), "v2.0.0"),
                    ("harbor.example.com/team-a/api:latest".into(), "latest"),
                ],
            ),
            (
                "push-chart.json",
                Format::Default,
                true,
                vec![("harbor.example.com/charts/my-chart:1.4.0".into(), "1.4.0")],
            ),
            (
                "cloudevents-push.json",
                Format::CloudEvents,
                true,
                vec![(app.into(), "1.2.3")],
            ),
            (
                "cloudevents-pull.json",
                Format::CloudEvents,
                false,
                vec![(app.into(), "1.2.3")],
            ),
        ];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/harbor-payloads");
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(
            files,
            cases.len(),
            "a shared sample is not covered by this table"
        );
        for (file, format, push, want) in cases {
            let event = parse(&sample(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(event.format, format, "{file}");
            assert_eq!(event.is_push(), push, "{file}");
            let got: Vec<(String, &str)> = event
                .artifacts
                .iter()
                .map(|a| (a.resource_url.clone(), a.tag.as_str()))
                .collect();
            assert_eq!(got, want, "{file}");
        }
    }

    #[test]
    fn shapes() {
        // (body, Ok(artifact count) or Err)
        let cases: &[(&str, Result<usize, ()>)] = &[
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#,
                Ok(0),
            ),
            (r#"{"type":"PUSH_ARTIFACT"}"#, Ok(0)),
            (r#"{"type":"PUSH_ARTIFACT","event_data":{}}"#, Ok(0)),
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":null}}"#,
                Ok(0),
            ),
            (
                r#"{"type":"PUSH_ARTIFACT","new_field":[1],"event_data":{"resources":[{"resource_url":"h/a:1","tag":"1","x":{}}]}}"#,
                Ok(1),
            ),
            // A resource without resource_url cannot be routed.
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1"}]}}"#,
                Ok(0),
            ),
            // Digest only: treated as a push by digest.
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"resource_url":"h/a@sha256:ab","digest":"sha256:ab"}]}}"#,
                Ok(1),
            ),
            (
                r#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[{"resource_url":"h/a:1","tag":"1"}]}}"#,
                Ok(1),
            ),
            ("", Err(())),
            ("not json", Err(())),
            ("[]", Err(())),
            ("null", Err(())),
            ("42", Err(())),
            ("{}", Err(())),
            (r#"{"type":""}"#, Err(())),
            (r#"{"type":7}"#, Err(())),
            (r#"{"type":"PUSH_ARTIFACT","event_data":"x"}"#, Err(())),
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":{}}}"#,
                Err(()),
            ),
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":5}]}}"#,
                Err(()),
            ),
            (
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[7]}}"#,
                Err(()),
            ),
            (r#"{"type":"PUSH_ARTIFACT""#, Err(())),
        ];
        for (body, want) in cases {
            let got = parse(body.as_bytes())
                .map(|e| e.artifacts.len())
                .map_err(|_| ());
            assert_eq!(&got, want, "{body}");
        }
    }

    #[test]
    fn digest_push_uses_digest_as_tag() {
        let body = r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"resource_url":"h/a@sha256:ab","digest":"sha256:ab","tag":""}]}}"#;
        assert_eq!(
            parse(body.as_bytes()).unwrap().artifacts[0].tag,
            "sha256:ab"
        );
    }

    #[test]
    fn push_type_depends_on_format() {
        let ce_with_default_type = r#"{"specversion":"1.0","type":"PUSH_ARTIFACT","data":{}}"#;
        assert!(!parse(ce_with_default_type.as_bytes()).unwrap().is_push());
        let default_with_ce_type = r#"{"type":"harbor.artifact.pushed","event_data":{}}"#;
        assert!(!parse(default_with_ce_type.as_bytes()).unwrap().is_push());
    }
}
