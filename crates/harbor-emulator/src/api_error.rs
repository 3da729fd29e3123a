//! Harbor's API error answers: `{"errors":[{"code":"…","message":"…"}]}`.
//!
//! Harbor maps an error code to a status (`src/lib/http/error.go`) and hides the detail of
//! every 5xx behind `internal server error` with code `UNKNOWN`. Validation failures that
//! go-swagger raises before a handler runs (bad path or query parameter types, an unparsable
//! body, a wrong `Content-Type` or `Accept`) are one composite error: 422 with the code
//! made from the status text, `UNPROCESSABLE_ENTITY`.

use serde::Serialize;

/// One API error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Harbor error code, e.g. `NOT_FOUND`.
    pub code: String,
    /// Message shown to the client (replaced by `internal server error` for 5xx).
    pub message: String,
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errors: [ErrorItem<'a>; 1],
}

impl ApiError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BAD_REQUEST", message)
    }

    /// 401 `UNAUTHORIZED` with Harbor's default message.
    pub fn unauthorized() -> Self {
        Self::new(401, "UNAUTHORIZED", "unauthorized")
    }

    /// 403 `FORBIDDEN` with Harbor's default message.
    pub fn forbidden() -> Self {
        Self::new(403, "FORBIDDEN", "forbidden")
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// 404 from `errors.NotFoundError(cause)`: Harbor prefixes the cause.
    pub fn not_found_wrapping(cause: impl std::fmt::Display) -> Self {
        Self::new(404, "NOT_FOUND", format!("resource not found: {cause}"))
    }

    /// 405 `METHOD_NOT_ALLOWED` as go-openapi's router words it.
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> Self {
        Self::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!(
                "method {method} is not allowed, but [{}] are",
                allowed.join(",")
            ),
        )
    }

    /// 409 `CONFLICT`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "CONFLICT", message)
    }

    /// 422 from go-swagger's parameter binding: a composite "validation failure list".
    pub fn validation(failures: &[String]) -> Self {
        let mut message = String::from("validation failure list:");
        for f in failures {
            message.push('\n');
            message.push_str(f);
        }
        Self::new(422, "UNPROCESSABLE_ENTITY", message)
    }

    /// 500; the detail is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(500, "UNKNOWN", "internal server error")
    }

    /// The JSON body Harbor sends (with the trailing newline of `fmt.Fprintln`).
    pub fn body(&self) -> String {
        let (code, message) = if self.status >= 500 {
            ("UNKNOWN", "internal server error")
        } else {
            (self.code.as_str(), self.message.as_str())
        };
        let body = ErrorBody {
            errors: [ErrorItem { code, message }],
        };
        let mut s = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string());
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_hundreds_hide_their_detail() {
        let mut e = ApiError::internal();
        e.message = "pq: relation does not exist".into();
        assert_eq!(
            e.body(),
            "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"internal server error\"}]}\n"
        );
    }

    #[test]
    fn validation_lists_every_failure() {
        let e =
            ApiError::validation(
                &["page_size in query should be less than or equal to 100".into()],
            );
        assert_eq!(e.status, 422);
        assert_eq!(
            e.message,
            "validation failure list:\npage_size in query should be less than or equal to 100"
        );
    }
}
