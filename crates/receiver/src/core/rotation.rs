//! Zero-downtime rotation: after a receiver's auth header changes, the path
//! and token it had before keep being accepted for a grace period.
//!
//! Why: Harbor fixes a delivery's URL and `Authorization` header when it
//! queues the event, and retries a failed delivery up to about 3 minutes
//! later (`harbor-delivery.md`: 3 attempts, 16–74 s then 31–118 s apart).
//! A rotation therefore meets deliveries already queued with the old URL
//! and token, and pushes made before Harbor's policy was updated (by hand,
//! or by the registration controller a moment later). Without a grace
//! period each of those is lost.
//!
//! This is the pure memory behind it: per receiver, what it serves now and
//! what it served before, with the instant each previous path stops being
//! accepted. The caller passes the clock; nothing here reads one.
//!
//! Rules:
//! - a change of the current path (a new token) starts a grace period for
//!   the path and token served until then;
//! - a receiver that serves nothing any more (its Secret or key gone, the
//!   receiver removed) is a revocation: its previous paths go at once;
//! - a path that becomes current again leaves the previous ones;
//! - at most [`MAX_PREVIOUS`] previous paths per receiver (rotating in a
//!   loop cannot grow memory);
//! - a grace period of zero disables all of it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::core::token::TokenDigest;

/// Previous paths kept per receiver at most.
pub const MAX_PREVIOUS: usize = 4;

/// A path a receiver answered on before its latest rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    /// The full request path.
    pub path: String,
    /// Digest of the token accepted on it.
    pub token: TokenDigest,
    /// When it stops being accepted.
    pub until: Instant,
}

#[derive(Clone, Debug, Default)]
struct History {
    current: Option<(String, TokenDigest)>,
    previous: Vec<Previous>,
}

/// What every receiver serves and served, keyed by `K` (a receiver's
/// owner and name).
#[derive(Debug)]
pub struct GracePeriods<K> {
    period: Duration,
    receivers: HashMap<K, History>,
}

impl<K: Clone + Eq + Hash> GracePeriods<K> {
    /// A memory granting `period` to each previous path.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            receivers: HashMap::new(),
        }
    }

    /// Records that `key` now serves `current` (`None`: nothing) and returns
    /// its previous paths still accepted at `now`, newest first.
    pub fn observe(
        &mut self,
        key: &K,
        current: Option<(&str, &TokenDigest)>,
        now: Instant,
    ) -> Vec<Previous> {
        let Some((path, token)) = current else {
            self.receivers.remove(key);
            return Vec::new();
        };
        let history = self.receivers.entry(key.clone()).or_default();
        let changed = history
            .current
            .as_ref()
            .is_none_or(|(p, t)| p != path || t != token);
        if changed {
            if let Some((old_path, old_token)) = history.current.take() {
                if !self.period.is_zero() {
                    history.previous.insert(
                        0,
                        Previous {
                            path: old_path,
                            token: old_token,
                            until: now + self.period,
                        },
                    );
                }
            }
            history.current = Some((path.to_owned(), token.clone()));
        }
        history.previous.retain(|p| p.until > now && p.path != path);
        history.previous.truncate(MAX_PREVIOUS);
        history.previous.clone()
    }

    /// Forgets every receiver for which `keep` is false (revocations: a
    /// receiver or config removed).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.receivers.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(300);

    fn token(t: &str) -> TokenDigest {
        TokenDigest::of(t.as_bytes())
    }

    /// Applies `steps` (seconds since start, path/token served or none) and
    /// returns, after each, the previous paths accepted.
    fn run(period: Duration, steps: &[(u64, Option<(&str, &str)>)]) -> Vec<Vec<(String, u64)>> {
        let start = Instant::now();
        let mut memory = GracePeriods::new(period);
        steps
            .iter()
            .map(|(at, current)| {
                let digest = current.map(|(_, t)| token(t));
                let served = current.zip(digest.as_ref()).map(|((p, _), d)| (p, d));
                memory
                    .observe(&"r", served, start + Duration::from_secs(*at))
                    .into_iter()
                    .map(|p| (p.path, (p.until - start).as_secs()))
                    .collect()
            })
            .collect()
    }

    fn paths(after: &[(&str, u64)]) -> Vec<(String, u64)> {
        after.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    #[test]
    fn a_rotation_keeps_the_previous_path_for_the_grace_period() {
        let got = run(
            GRACE,
            &[
                (0, Some(("/a", "ta"))),
                (10, Some(("/b", "tb"))),
                (200, Some(("/b", "tb"))),
                (309, Some(("/b", "tb"))),
                (310, Some(("/b", "tb"))),
            ],
        );
        assert_eq!(
            got,
            vec![
                vec![],
                paths(&[("/a", 310)]),
                paths(&[("/a", 310)]),
                paths(&[("/a", 310)]),
                vec![],
            ]
        );
    }

    #[test]
    fn rotations_in_a_row_keep_each_previous_path_newest_first_and_bounded() {
        let got = run(
            GRACE,
            &[
                (0, Some(("/a", "ta"))),
                (1, Some(("/b", "tb"))),
                (2, Some(("/c", "tc"))),
                (3, Some(("/d", "td"))),
                (4, Some(("/e", "te"))),
                (5, Some(("/f", "tf"))),
            ],
        );
        assert_eq!(got[2], paths(&[("/b", 302), ("/a", 301)]));
        assert_eq!(
            got[5],
            paths(&[("/e", 305), ("/d", 304), ("/c", 303), ("/b", 302)])
        );
    }

    #[test]
    fn a_path_current_again_is_not_also_a_previous_one() {
        let got = run(
            GRACE,
            &[
                (0, Some(("/a", "ta"))),
                (1, Some(("/b", "tb"))),
                (2, Some(("/a", "ta"))),
            ],
        );
        assert_eq!(got[2], paths(&[("/b", 302)]));
    }

    #[test]
    fn a_revocation_ends_every_grace_period_at_once() {
        let got = run(
            GRACE,
            &[
                (0, Some(("/a", "ta"))),
                (1, Some(("/b", "tb"))),
                (2, None),
                (3, Some(("/c", "tc"))),
            ],
        );
        assert_eq!(got[1], paths(&[("/a", 301)]));
        assert_eq!(got[2], vec![]);
        // /b was revoked, not rotated: it gets no grace when /c arrives.
        assert_eq!(got[3], vec![]);
    }

    #[test]
    fn the_same_path_with_another_token_is_a_rotation_too() {
        // Not possible with Kargo's derivation (the path hashes the token),
        // but the memory must not depend on it.
        let got = run(GRACE, &[(0, Some(("/a", "t1"))), (1, Some(("/a", "t2")))]);
        assert_eq!(got[1], vec![]);
    }

    #[test]
    fn a_zero_grace_period_disables_it() {
        let got = run(
            Duration::ZERO,
            &[(0, Some(("/a", "ta"))), (1, Some(("/b", "tb")))],
        );
        assert_eq!(got[1], vec![]);
    }

    #[test]
    fn forgotten_receivers_get_no_grace() {
        let start = Instant::now();
        let mut memory = GracePeriods::new(GRACE);
        let (ta, tb) = (token("ta"), token("tb"));
        memory.observe(&"gone", Some(("/a", &ta)), start);
        memory.retain(|k| *k != "gone");
        assert_eq!(memory.observe(&"gone", Some(("/b", &tb)), start), vec![]);
    }
}
