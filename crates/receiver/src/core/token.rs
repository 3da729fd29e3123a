//! Auth-header verification without keeping or comparing the secret itself.
//!
//! The index keeps only a SHA-256 digest of each receiver's `auth-header`.
//! A request's `Authorization` value is hashed and the two digests are
//! compared in constant time, so neither the secret's content nor its length
//! leaks through timing, and a heap dump holds no usable token.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a token. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Digests a token.
    pub fn of(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    /// Whether `presented` is the token this digest was made from; constant
    /// time in the content of both.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let other = Self::of(presented);
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_table() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"test-auth-token-123", b"test-auth-token-123", true),
            (b"test-auth-token-123", b"test-auth-token-124", false),
            (b"test-auth-token-123", b"test-auth-token-12", false),
            (b"test-auth-token-123", b"test-auth-token-1234", false),
            (b"test-auth-token-123", b"", false),
            (b"", b"", true),
            (b"Bearer x", b"bearer x", false),
            (b"\xff\x00binary", b"\xff\x00binary", true),
        ];
        for (secret, presented, want) in cases {
            assert_eq!(
                TokenDigest::of(secret).verify(presented),
                *want,
                "{presented:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_digest() {
        let d = TokenDigest::of(b"secret");
        assert_eq!(format!("{d:?}"), "TokenDigest(<redacted>)");
    }
}
