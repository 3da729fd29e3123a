//! Receiver path and URL derivation.
//!
//! USERS DEPEND ON THIS BYTE FOR BYTE: the URL registered in Harbor is derived
//! here exactly as Kargo's management controller derives it, so that both
//! publish the same status entry and the URL in Harbor keeps working whichever
//! of them wrote it last. Any change must keep the golden tests below passing
//! unchanged.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Path segment naming the receiver kind, as in Kargo.
const HARBOR_SEGMENT: &str = "harbor";

/// Why a base URL is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BaseUrlError {
    /// The text is not a URL at all.
    #[error("base URL {0:?} is not a valid URL")]
    Invalid(String),
    /// Relative URLs, or schemes other than http/https.
    #[error("base URL {0:?} must be an absolute http:// or https:// URL")]
    NotHttp(String),
    /// Query strings and fragments have no place in a receiver URL.
    #[error("base URL {0:?} must not have a query or fragment")]
    HasQuery(String),
}

/// The externally visible base URL of the webhook server, split into the
/// origin (`scheme://authority`) and a normalised base path (no trailing
/// slash; empty for the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    origin: String,
    base_path: String,
}

impl BaseUrl {
    /// Parses and validates a base URL such as `https://kargo.example.com/webhook/`.
    pub fn parse(text: &str) -> Result<Self, BaseUrlError> {
        let trimmed = text.trim();
        if trimmed.contains('#') || trimmed.contains('?') {
            return Err(BaseUrlError::HasQuery(text.to_owned()));
        }
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|_| BaseUrlError::Invalid(text.to_owned()))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                s.to_ascii_lowercase()
            }
            _ => return Err(BaseUrlError::NotHttp(text.to_owned())),
        };
        let authority = match uri.authority() {
            Some(a) if !a.host().is_empty() => a.as_str().to_owned(),
            _ => return Err(BaseUrlError::NotHttp(text.to_owned())),
        };
        Ok(Self {
            origin: format!("{scheme}://{authority}"),
            base_path: clean_base_path(uri.path()),
        })
    }

    /// The base path without trailing slash (`""` for the root).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The full URL for a receiver path returned by [`receiver_path`].
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{}", self.origin, path)
    }
}

/// `join(basePath, "harbor", hex(sha256(project + receiverName + authHeader)))`.
///
/// `project` is the ProjectConfig's namespace, or `""` for a ClusterConfig
/// receiver. Hex is lowercase. The strings are concatenated without
/// separators, exactly as Kargo does. The auth header is hashed as the
/// Secret's bytes, valid UTF-8 or not: a Go string holds any bytes.
pub fn receiver_path(
    base: &BaseUrl,
    project: &str,
    receiver_name: &str,
    auth_header: impl AsRef<[u8]>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(project.as_bytes());
    hasher.update(receiver_name.as_bytes());
    hasher.update(auth_header.as_ref());
    let digest = hex::encode(hasher.finalize());
    format!("{}/{HARBOR_SEGMENT}/{digest}", base.base_path)
}

/// Collapses repeated slashes and drops the trailing one, as Go's
/// `path.Join` does for the base part: `/` and `` become ``, `/a//b/` becomes `/a/b`.
fn clean_base_path(path: &str) -> String {
    path.split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .fold(String::new(), |mut acc, segment| {
            acc.push('/');
            acc.push_str(segment);
            acc
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_HEX: &str = "17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec";

    #[test]
    fn design_vector_is_pinned() {
        let base = BaseUrl::parse("https://webhooks.example.com").unwrap();
        let path = receiver_path(
            &base,
            "kargo-demo",
            "harbor-wh-receiver",
            "test-auth-token-123",
        );
        assert_eq!(path, format!("/harbor/{VECTOR_HEX}"));
        assert_eq!(
            base.url_for(&path),
            format!("https://webhooks.example.com/harbor/{VECTOR_HEX}")
        );
    }

    #[test]
    fn base_url_joining() {
        // (base URL, expected URL for the vector)
        let cases = [
            (
                "https://webhooks.example.com",
                "https://webhooks.example.com/harbor/",
            ),
            (
                "https://webhooks.example.com/",
                "https://webhooks.example.com/harbor/",
            ),
            (
                "https://kargo.example.com/webhook/",
                "https://kargo.example.com/webhook/harbor/",
            ),
            (
                "https://kargo.example.com/webhook",
                "https://kargo.example.com/webhook/harbor/",
            ),
            (
                "https://kargo.example.com/a/b/",
                "https://kargo.example.com/a/b/harbor/",
            ),
            (
                "https://kargo.example.com//a//b//",
                "https://kargo.example.com/a/b/harbor/",
            ),
            ("http://localhost:8080", "http://localhost:8080/harbor/"),
            (
                "http://127.0.0.1:8080/hooks/",
                "http://127.0.0.1:8080/hooks/harbor/",
            ),
            ("https://[::1]:8443/x", "https://[::1]:8443/x/harbor/"),
            (
                "HTTPS://Kargo.Example.com/Webhook/",
                "https://Kargo.Example.com/Webhook/harbor/",
            ),
            (
                "  https://webhooks.example.com/  ",
                "https://webhooks.example.com/harbor/",
            ),
        ];
        for (base, want_prefix) in cases {
            let b = BaseUrl::parse(base).unwrap_or_else(|e| panic!("{base}: {e}"));
            let path = receiver_path(
                &b,
                "kargo-demo",
                "harbor-wh-receiver",
                "test-auth-token-123",
            );
            assert_eq!(
                b.url_for(&path),
                format!("{want_prefix}{VECTOR_HEX}"),
                "{base}"
            );
            assert!(path.ends_with(VECTOR_HEX));
            assert!(!path.contains("//"), "{base}: {path}");
        }
    }

    #[test]
    fn cluster_receivers_hash_an_empty_project() {
        let base = BaseUrl::parse("https://webhooks.example.com").unwrap();
        let cluster = receiver_path(&base, "", "harbor-wh-receiver", "test-auth-token-123");
        let want = hex::encode(Sha256::digest(b"harbor-wh-receivertest-auth-token-123"));
        assert_eq!(cluster, format!("/harbor/{want}"));
        assert_ne!(
            cluster,
            receiver_path(
                &base,
                "kargo-demo",
                "harbor-wh-receiver",
                "test-auth-token-123"
            )
        );
    }

    #[test]
    fn a_token_that_is_not_utf8_is_hashed_as_its_bytes() {
        let base = BaseUrl::parse("https://webhooks.example.com").unwrap();
        let token: &[u8] = b"tok\xffen";
        let want = hex::encode(Sha256::digest(b"kargo-demorecvtok\xffen"));
        assert_eq!(
            receiver_path(&base, "kargo-demo", "recv", token),
            format!("/harbor/{want}")
        );
    }

    #[test]
    fn every_input_changes_the_path() {
        let base = BaseUrl::parse("https://h").unwrap();
        let p = |a, b, c| receiver_path(&base, a, b, c);
        let reference = p("proj", "recv", "token");
        assert_ne!(reference, p("proj2", "recv", "token"));
        assert_ne!(reference, p("proj", "recv2", "token"));
        assert_ne!(reference, p("proj", "recv", "token2"));
        // Concatenation without separators, as in Kargo: boundaries do not matter.
        assert_eq!(reference, p("pro", "jrecv", "token"));
    }

    #[test]
    fn bad_base_urls_are_rejected() {
        let cases = [
            ("", BaseUrlError::Invalid(String::new())),
            (
                "webhooks.example.com",
                BaseUrlError::NotHttp("webhooks.example.com".into()),
            ),
            (
                "/relative/path",
                BaseUrlError::NotHttp("/relative/path".into()),
            ),
            (
                "ftp://example.com",
                BaseUrlError::NotHttp("ftp://example.com".into()),
            ),
            (
                "https://example.com/?a=b",
                BaseUrlError::HasQuery("https://example.com/?a=b".into()),
            ),
            (
                "https://example.com/#frag",
                BaseUrlError::HasQuery("https://example.com/#frag".into()),
            ),
            (
                "https://exa mple.com",
                BaseUrlError::Invalid("https://exa mple.com".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(BaseUrl::parse(input), Err(want), "{input:?}");
        }
    }
}
