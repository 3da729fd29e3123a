//! Auth-header verification without keeping or comparing the secret itself.
//!
//! The index keeps only a SHA-256 digest of each receiver's `auth-header`.
//! A request's `Authorization` value is hashed and the two digests are
//! compared in constant time, so neither the secret's content nor its length
//! leaks through timing.
//!
//! # What stays in memory
//! What this program owns is wiped: the Secret object a reconcile reads
//! (`data` and `stringData` values, see [`wipe`]) is zeroed before it is
//! freed, and only the digest and the receiver path are kept. What it does
//! not own is not: the copies made on the way in — kube's and hyper's
//! response buffers and serde's base64 decoding of the Secret, rustls'
//! record buffers, hyper's request-head buffer and `HeaderMap` holding a
//! request's `Authorization` (right or wrong), and the SHA-256 hasher's
//! block buffer — are freed without wiping and may linger in freed heap
//! until reused. So a heap dump taken while such buffers linger can hold
//! a token; one taken later holds none that this program put there.
//!
//! The registration controller (and `deliveries`) follows the same rule:
//! the Secrets it reads, the auth header and robot password it holds and
//! the policies it reads back are wiped when dropped; the JSON bodies and
//! the `Authorization` header handed to hyper for Harbor are not.

use zeroize::Zeroize;

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

/// Zeroes secret bytes this program owns before they are freed.
pub fn wipe(bytes: &mut Vec<u8>) {
    bytes.zeroize();
}

/// Zeroes a secret string this program owns before it is freed.
pub fn wipe_str(text: &mut String) {
    text.zeroize();
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
    fn wiping_zeroes_and_empties() {
        let mut bytes = b"s3cret".to_vec();
        wipe(&mut bytes);
        assert!(bytes.is_empty());
        let mut text = String::from("s3cret");
        wipe_str(&mut text);
        assert!(text.is_empty());
    }

    #[test]
    fn debug_never_shows_the_digest() {
        let d = TokenDigest::of(b"secret");
        assert_eq!(format!("{d:?}"), "TokenDigest(<redacted>)");
    }
}
