//! One tag regex of a subscription (an `allowTagsRegexes` or
//! `ignoreTagsRegexes` entry), held by the index for as long as the
//! Warehouse is indexed, without a compiled automaton each.
//!
//! A compiled `regex::Regex` costs about 12 KiB; with a pattern unique to
//! each of 100,000 Warehouses that would be over a gigabyte. So:
//!
//! - at index time a pattern is only parsed (`regex-syntax`, the parser
//!   `regex` itself uses, with the same settings): a pattern that does not
//!   parse is reported then, as before;
//! - a pattern that is a plain literal, optionally anchored (`-rc`, `^v`,
//!   `^release-`, `\.0$`, `^1\.2\.3$`), is matched as a string search with
//!   the same answers, and never compiled;
//! - any other pattern is compiled when first matched: a pattern shared by
//!   several subscriptions (see [`Interner`](super::interner::Interner))
//!   keeps its compiled form, one per distinct pattern; a pattern used by
//!   one subscription goes through a bounded cache of compiled regexes
//!   ([`CACHE_CAPACITY`]), as Kargo compiles its patterns on every request.
//!
//! A pattern that parses but is too large for `regex` to compile (its size
//! limit) is found when first matched: it is logged once, and the
//! subscription then accepts every tag, as for a pattern that does not
//! parse.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use regex::Regex;
use regex_syntax::hir::{Hir, HirKind, Look};

use super::interner::Keyed;

/// Compiled regexes of unshared patterns kept at once (about 12 KiB each).
pub const CACHE_CAPACITY: usize = 256;

/// A compiled pattern, or `None` if it is too large to compile.
type Compiled = Option<Arc<Regex>>;

static CACHE: LazyLock<quick_cache::sync::Cache<String, Compiled>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(CACHE_CAPACITY));

/// A validated tag regex; see the module docs.
#[derive(Debug)]
pub struct TagRegex {
    source: Box<str>,
    matcher: Matcher,
    /// Whether the pattern compiles, once known (it is then sticky).
    compiles: AtomicU8,
    /// The compiled form of a pattern shared by several subscriptions.
    pinned: OnceLock<Compiled>,
}

#[derive(Debug)]
enum Matcher {
    /// An optionally anchored literal: `^` at `start`, `$` at `end`.
    Literal {
        text: Box<str>,
        start: bool,
        end: bool,
    },
    /// Anything else: matched by the compiled regex.
    Regex,
}

const UNKNOWN: u8 = 0;
const COMPILES: u8 = 1;
const TOO_BIG: u8 = 2;

impl Keyed for TagRegex {
    fn key(&self) -> &str {
        &self.source
    }
}

impl TagRegex {
    /// Parses `pattern` as `regex::Regex::new` would.
    pub fn parse(pattern: &str) -> Result<TagRegex, Box<regex_syntax::Error>> {
        let hir = regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(Box::new)?;
        let matcher = literal(&hir).unwrap_or(Matcher::Regex);
        let compiles = match matcher {
            Matcher::Literal { .. } => COMPILES,
            Matcher::Regex => UNKNOWN,
        };
        Ok(TagRegex {
            source: pattern.into(),
            matcher,
            compiles: AtomicU8::new(compiles),
            pinned: OnceLock::new(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern can be evaluated: false for a pattern too large
    /// to compile. Compiles it the first time it is asked.
    pub fn compiles(self: &Arc<Self>) -> bool {
        match self.compiles.load(Ordering::Relaxed) {
            UNKNOWN => self.compiled().is_some(),
            state => state == COMPILES,
        }
    }

    /// Whether the pattern matches somewhere in `tag` (Go's `MatchString`,
    /// unanchored). A pattern that does not [compile](Self::compiles)
    /// matches nothing.
    pub fn is_match(self: &Arc<Self>, tag: &str) -> bool {
        match &self.matcher {
            Matcher::Literal { text, start, end } => match (start, end) {
                (false, false) => tag.contains(&**text),
                (true, false) => tag.starts_with(&**text),
                (false, true) => tag.ends_with(&**text),
                (true, true) => tag == &**text,
            },
            Matcher::Regex => self.compiled().is_some_and(|r| r.is_match(tag)),
        }
    }

    /// The compiled regex: pinned if the pattern is shared (the interner
    /// and two or more subscriptions hold it), else from the cache.
    fn compiled(self: &Arc<Self>) -> Compiled {
        let compiled = if Arc::strong_count(self) > 2 {
            self.pinned.get_or_init(|| self.compile()).clone()
        } else {
            let fresh: Result<Compiled, std::convert::Infallible> =
                CACHE.get_or_insert_with(&*self.source, || Ok(self.compile()));
            match fresh {
                Ok(compiled) => compiled,
                Err(never) => match never {},
            }
        };
        let state = if compiled.is_some() {
            COMPILES
        } else {
            TOO_BIG
        };
        self.compiles.store(state, Ordering::Relaxed);
        compiled
    }

    fn compile(&self) -> Compiled {
        match Regex::new(&self.source) {
            Ok(regex) => Some(Arc::new(regex)),
            Err(error) => {
                // Reached only on the request path, hence logged here.
                tracing::warn!(
                    pattern = %self.source,
                    %error,
                    "tag regex cannot be compiled; its subscription accepts every tag"
                );
                None
            }
        }
    }
}

/// `Some` for `[^] literal [$]` (start and end of text, not of line).
fn literal(hir: &Hir) -> Option<Matcher> {
    let parts = match hir.kind() {
        HirKind::Concat(parts) => parts.as_slice(),
        _ => std::slice::from_ref(hir),
    };
    let is = |part: &Hir, look: Look| matches!(part.kind(), HirKind::Look(l) if *l == look);
    let (start, rest) = match parts.split_first() {
        Some((first, rest)) if is(first, Look::Start) => (true, rest),
        _ => (false, parts),
    };
    let (end, middle) = match rest.split_last() {
        Some((last, middle)) if is(last, Look::End) => (true, middle),
        _ => (false, rest),
    };
    let mut text = String::new();
    for part in middle {
        match part.kind() {
            HirKind::Literal(literal) => text.push_str(std::str::from_utf8(&literal.0).ok()?),
            HirKind::Empty => {}
            _ => return None,
        }
    }
    Some(Matcher::Literal {
        text: text.into(),
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATTERNS: &[&str] = &[
        "-rc",
        "^v",
        "^nightly-",
        "^1\\.",
        "^1\\.0\\.",
        "\\.0$",
        "^1\\.2\\.3$",
        "^$",
        "^",
        "$",
        "",
        "a^b",
        "^release-42-",
        "-rc\\d+$",
        "^v?[0-9]+\\.[0-9]+\\.[0-9]+$",
        "(?i)^V",
        "(?m)^v",
        "^(v)1",
        "latest|stable",
        "\\bv1\\b",
        "^sha256:",
        "é$",
        "\\x41",
        "^a.c$",
        "^[a]$",
    ];

    const TAGS: &[&str] = &[
        "",
        "v1.2.3",
        "1.2.3",
        "1.0.5",
        "1.2.3-rc1",
        "1.2.3-rc",
        "nightly-20240101",
        "release-42-x",
        "latest",
        "V1",
        "a^b",
        "abc",
        "a",
        "café",
        "A",
        "sha256:4a5f",
        "2.0",
    ];

    /// Every answer is the `regex` crate's, literal fast path or not.
    #[test]
    fn matches_like_the_regex_crate() {
        let mut failures = Vec::new();
        for pattern in PATTERNS {
            let expected = Regex::new(pattern).unwrap();
            let ours = Arc::new(TagRegex::parse(pattern).unwrap());
            assert!(ours.compiles());
            for tag in TAGS {
                if ours.is_match(tag) != expected.is_match(tag) {
                    failures.push(format!("{pattern:?} on {tag:?}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn literals_are_recognised() {
        let literal =
            |p: &str| matches!(TagRegex::parse(p).unwrap().matcher, Matcher::Literal { .. });
        for p in ["-rc", "^v", "^1\\.2\\.3$", "\\.0$", "^$", ""] {
            assert!(literal(p), "{p:?}");
        }
        for p in ["-rc\\d+$", "(?i)v", "(?m)^v", "a^b", "^(v)", "a|b"] {
            assert!(!literal(p), "{p:?}");
        }
    }

    #[test]
    fn rejects_what_the_regex_crate_rejects() {
        let rejected = [
            "(",
            "[a-",
            "\\Q1.2\\E",
            "a{2,1}",
            "(?<n>a)(?<n>b)",
            "\\p{Nope}",
            "(?-u:\\xFF)",
        ];
        for pattern in rejected {
            assert!(Regex::new(pattern).is_err(), "{pattern:?}");
            assert!(TagRegex::parse(pattern).is_err(), "{pattern:?}");
        }
    }

    #[test]
    fn a_pattern_too_big_to_compile_matches_nothing_and_says_so() {
        // Parses, but exceeds `regex`'s default size limit.
        let pattern = "\\w{1000}{1000}";
        assert!(Regex::new(pattern).is_err());
        let big = Arc::new(TagRegex::parse(pattern).unwrap());
        assert!(!big.compiles());
        assert!(!big.is_match("anything"));
    }

    #[test]
    fn shared_patterns_keep_their_compiled_form() {
        let shared = Arc::new(TagRegex::parse("^x[0-9]+$").unwrap());
        let (_a, _b) = (shared.clone(), shared.clone());
        assert!(shared.is_match("x12"));
        assert!(shared.pinned.get().is_some_and(Option::is_some));
        let unique = Arc::new(TagRegex::parse("^y[0-9]+$").unwrap());
        assert!(unique.is_match("y3"));
        assert!(unique.pinned.get().is_none());
    }
}
