//! Kubernetes `Status` errors with the HTTP codes and reasons a real API server uses.

use serde_json::{json, Value};

/// An API error, rendered as a `Status` object (`kind: Status`, `status: Failure`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
    /// Value for a `Retry-After` header (also `details.retryAfterSeconds`).
    pub retry_after: Option<u32>,
}

/// Result type for API operations.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A bare error with code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        self.details = Some(Value::Object(d));
        self
    }

    /// 404 NotFound for `resource` (plural) in `group`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", qualified(group, plural), name),
        )
        .with_details(name, group, plural)
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", qualified(group, plural), name),
        )
        .with_details(name, group, plural)
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, plural),
                name
            ),
        )
        .with_details(name, group, plural)
    }

    /// 409 Conflict with a custom message.
    pub fn conflict_msg(group: &str, plural: &str, name: &str, msg: impl Into<String>) -> Self {
        ApiError::new(409, "Conflict", msg).with_details(name, group, plural)
    }

    /// 422 Invalid with field causes.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[String]) -> Self {
        let qk = qualified(group, kind);
        let msg = if errors.len() == 1 {
            format!("{qk} \"{name}\" is invalid: {}", errors[0])
        } else {
            format!("{qk} \"{name}\" is invalid: [{}]", errors.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                let (field, m) = match e.split_once(": ") {
                    Some((f, m)) => (f.to_string(), m.to_string()),
                    None => (String::new(), e.clone()),
                };
                let reason = if m.starts_with("Required value") {
                    "FieldValueRequired"
                } else if m.starts_with("Unsupported value") {
                    "FieldValueNotSupported"
                } else {
                    "FieldValueInvalid"
                };
                json!({"reason": reason, "message": m, "field": field})
            })
            .collect();
        let mut e = ApiError::new(422, "Invalid", msg).with_details(name, group, kind);
        if let Some(Value::Object(d)) = e.details.as_mut() {
            d.insert("causes".into(), Value::Array(causes));
        }
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", msg)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", msg)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(ct: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct})"),
        )
    }

    /// 410 Expired (too old resource version).
    pub fn expired(msg: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", msg)
    }

    /// 500 InternalError.
    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", msg)
    }

    /// The conventional reason for an HTTP code (used by fault injection).
    pub fn reason_for_code(code: u16) -> &'static str {
        match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            406 => "NotAcceptable",
            409 => "Conflict",
            410 => "Gone",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        }
    }

    /// Render as a `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = self.details.clone();
        if let Some(ra) = self.retry_after {
            let d = details.get_or_insert_with(|| json!({}));
            if let Value::Object(m) = d {
                m.insert("retryAfterSeconds".into(), json!(ra));
            }
        }
        if let (Some(d), Value::Object(m)) = (details, &mut s) {
            m.insert("details".into(), d);
        }
        s
    }
}

/// `plural.group` (or just `plural` for the core group).
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}
