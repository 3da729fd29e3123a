//! What can go wrong talking to Harbor, and the ONE mapping from each case
//! to the condition reason a registration reports ([`HarborError::reason`]).
//!
//! Harbor's answers, as its handlers give them (`webhook.go`, `project.go`):
//! a wrong password makes the request anonymous, hence 401 where access is
//! needed; 403 is an authenticated caller lacking a permission; 404 on
//! `HEAD /projects?project_name=` (which needs authentication only) is a
//! missing project; every 5xx says only `internal server error`. Messages
//! never carry a secret: Harbor's own texts are kept only for 400, 409 and
//! 422, with whatever we sent that is secret cut out first.

use std::time::Duration;

use thiserror::Error;

/// Condition reason: Harbor refused the credentials.
pub const REASON_INVALID_CREDENTIALS: &str = "InvalidCredentials";
/// Condition reason: the account lacks a `notification-policy` permission.
pub const REASON_MISSING_PERMISSION: &str = "MissingPermission";
/// Condition reason: Harbor could not be reached or did not answer in time.
pub const REASON_HARBOR_UNREACHABLE: &str = "HarborUnreachable";
/// Condition reason: the Harbor project does not exist.
pub const REASON_PROJECT_NOT_FOUND: &str = "HarborProjectNotFound";
/// Condition reason: Harbor refused the policy (400, 409, 422).
pub const REASON_REJECTED: &str = "HarborRejected";
/// Condition reason: Harbor failed (5xx) or answered something unexpected.
pub const REASON_HARBOR_ERROR: &str = "HarborError";
/// Condition reason: the Harbor URL or CA bundle is unusable.
pub const REASON_INVALID_HARBOR_SETTINGS: &str = "InvalidHarborSettings";

/// A Harbor API call that failed.
#[derive(Debug, Error)]
pub enum HarborError {
    /// Connection refused, DNS, TLS handshake, connection reset.
    #[error("cannot reach Harbor at {url}: {cause}")]
    Unreachable {
        /// Harbor's base URL.
        url: String,
        /// Why (no secret: transport errors carry none).
        cause: String,
    },
    /// No complete answer within the timeout.
    #[error("Harbor at {url} did not answer within {timeout:?}")]
    Timeout {
        /// Harbor's base URL.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
    },
    /// 401: the username or password is wrong (Harbor then treats the
    /// request as anonymous).
    #[error(
        "Harbor refused the credentials (401): check the robot account's username and password"
    )]
    Unauthorized,
    /// 403: authenticated, but not allowed.
    #[error(
        "the account may not {action} webhook policies in Harbor project {project:?} (403): \
         it needs notification-policy list, read, create, update and delete there"
    )]
    Forbidden {
        /// The project.
        project: String,
        /// `list`, `read`, `create`, `update` or `delete`.
        action: &'static str,
    },
    /// The project does not exist.
    #[error("Harbor project {0:?} does not exist")]
    ProjectNotFound(String),
    /// 400, 409 or 422 with Harbor's message (secrets cut out).
    #[error("Harbor refused to {action} the webhook policy ({status}): {message}")]
    Rejected {
        /// What we asked.
        action: &'static str,
        /// HTTP status.
        status: u16,
        /// Harbor's message, redacted.
        message: String,
    },
    /// Another status, 5xx included (Harbor says no more than that).
    #[error("Harbor answered {status} to {operation}")]
    Status {
        /// What we asked.
        operation: &'static str,
        /// HTTP status.
        status: u16,
    },
    /// A 2xx whose body is not what the API documents.
    #[error("unexpected answer from Harbor to {operation}: {detail}")]
    Protocol {
        /// What we asked.
        operation: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The URL or CA bundle cannot be used.
    #[error("{0}")]
    Settings(String),
}

impl HarborError {
    /// The condition reason (and Event reason) for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            HarborError::Unreachable { .. } | HarborError::Timeout { .. } => {
                REASON_HARBOR_UNREACHABLE
            }
            HarborError::Unauthorized => REASON_INVALID_CREDENTIALS,
            HarborError::Forbidden { .. } => REASON_MISSING_PERMISSION,
            HarborError::ProjectNotFound(_) => REASON_PROJECT_NOT_FOUND,
            HarborError::Rejected { .. } => REASON_REJECTED,
            HarborError::Status { .. } | HarborError::Protocol { .. } => REASON_HARBOR_ERROR,
            HarborError::Settings(_) => REASON_INVALID_HARBOR_SETTINGS,
        }
    }

    /// The label of `harbor_api_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            HarborError::Unreachable { .. } => "unreachable",
            HarborError::Timeout { .. } => "timeout",
            HarborError::Unauthorized => "unauthorized",
            HarborError::Forbidden { .. } => "forbidden",
            HarborError::ProjectNotFound(_) => "project_not_found",
            HarborError::Rejected { .. } => "rejected",
            HarborError::Status { .. } => "status",
            HarborError::Protocol { .. } => "protocol",
            HarborError::Settings(_) => "settings",
        }
    }
}

/// Harbor's error body: `{"errors":[{"code":"…","message":"…"}]}`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: String,
}

/// The longest Harbor message kept.
const MAX_MESSAGE: usize = 300;

/// Harbor's messages in `body`, joined, with every `secret` replaced by
/// `<redacted>` and cut to a readable length.
pub(super) fn harbor_message(body: &[u8], secrets: &[&str]) -> String {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let mut message = parsed
        .errors
        .iter()
        .map(|e| e.message.trim())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if message.is_empty() {
        message = "no message".to_owned();
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret, "<redacted>");
    }
    shortened(message, MAX_MESSAGE)
}

/// `text` cut to at most `max` bytes (at a character boundary), `…` marking
/// the cut.
pub(crate) fn shortened(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_one_reason() {
        let url = "https://harbor.example.com".to_owned();
        let cases = [
            (
                HarborError::Unreachable {
                    url: url.clone(),
                    cause: "connection refused".into(),
                },
                REASON_HARBOR_UNREACHABLE,
            ),
            (
                HarborError::Timeout {
                    url,
                    timeout: Duration::from_secs(10),
                },
                REASON_HARBOR_UNREACHABLE,
            ),
            (HarborError::Unauthorized, REASON_INVALID_CREDENTIALS),
            (
                HarborError::Forbidden {
                    project: "p".into(),
                    action: "create",
                },
                REASON_MISSING_PERMISSION,
            ),
            (
                HarborError::ProjectNotFound("p".into()),
                REASON_PROJECT_NOT_FOUND,
            ),
            (
                HarborError::Rejected {
                    action: "create",
                    status: 400,
                    message: "m".into(),
                },
                REASON_REJECTED,
            ),
            (
                HarborError::Status {
                    operation: "list policies",
                    status: 500,
                },
                REASON_HARBOR_ERROR,
            ),
            (
                HarborError::Settings("bad".into()),
                REASON_INVALID_HARBOR_SETTINGS,
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error}");
        }
    }

    #[test]
    fn harbor_messages_lose_their_secrets() {
        let body = br#"{"errors":[{"code":"BAD_REQUEST","message":"invalid endpoint https://r/harbor/abc with header tok"}]}"#;
        assert_eq!(
            harbor_message(body, &["https://r/harbor/abc", "tok", ""]),
            "invalid endpoint <redacted> with header <redacted>"
        );
        assert_eq!(harbor_message(b"not json", &[]), "no message");
        let long = format!(
            r#"{{"errors":[{{"message":"{}"}}]}}"#,
            "é".repeat(MAX_MESSAGE)
        );
        assert!(harbor_message(long.as_bytes(), &[]).len() <= MAX_MESSAGE + 3);
    }
}
