#![forbid(unsafe_code)]
//! Semantic versions and version constraints with exactly the semantics of
//! Go's [`github.com/Masterminds/semver/v3`](https://github.com/Masterminds/semver),
//! the library Kargo uses to decide which image tags and chart versions a
//! Warehouse subscription selects.
//!
//! # Why not an existing crate
//!
//! A webhook receiver that refreshes a Warehouse only when Kargo would pick the
//! pushed tag must evaluate constraints the way Kargo does, or it silently
//! misses pushes. No Rust crate we know of matches Masterminds:
//!
//! * Cargo's `semver` reads a bare `1.2` as `^1.2` (Masterminds: `~1.2`, i.e.
//!   `>=1.2.0 <1.3.0`), and rejects `||`, hyphen ranges (`1 - 2`) and space
//!   separated AND groups.
//! * `nodejs-semver` lets a prerelease match only comparators naming the same
//!   `major.minor.patch`; Masterminds lets a prerelease match a whole AND group
//!   as soon as *any* comparator of that group names a prerelease, across
//!   versions (`^1.2.3-beta.2` matches `1.2.4-beta.2`). It also differs on
//!   `!=`, on the `=>`/`=<` spellings and on partial versions such as `>1.4`
//!   (Masterminds: `>=1.5.0`, not `>1.4.0`).
//!
//! So this crate is a port of Masterminds' `version.go` and `constraints.go`
//! (v3.4/v3.5 behaviour), quirks included. Where Masterminds uses regular
//! expressions, this port uses the same expressions (Rust's `regex` and Go's
//! RE2 `regexp` share syntax and leftmost-first semantics; `\s` is spelled out
//! as Go's ASCII class because Rust's `\s` is Unicode-aware).
//!
//! # Example
//!
//! ```
//! use masterminds_semver::{Constraints, Version};
//!
//! let c = Constraints::parse(">= 1.2, < 2 || ^3.1").unwrap();
//! assert!(c.matches(&Version::parse("v1.4").unwrap()));
//! assert!(c.matches(&Version::parse("3.9.0").unwrap()));
//! assert!(!c.matches(&Version::parse("3.2.0-rc.1").unwrap())); // prerelease excluded
//! assert!(Version::parse_strict("v1.2.3").is_err()); // strict: no leading v
//! ```

mod constraints;
mod version;

pub use constraints::{Constraints, MAX_CONSTRAINT_GROUPS, MAX_CONSTRAINT_LEN};
pub use version::{Version, MAX_VERSION_LEN};

/// Why a version or a constraint could not be parsed. The variants mirror the
/// error values of Masterminds/semver so that messages read alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The version is not shaped like a (possibly partial) semantic version.
    #[error("invalid semantic version")]
    InvalidSemVer,
    /// An empty string was given to the strict parser.
    #[error("version string empty")]
    EmptyString,
    /// A numeric segment contains something other than digits (strict parser).
    #[error("invalid characters in version")]
    InvalidCharacters,
    /// A numeric segment or numeric prerelease identifier has a leading zero.
    #[error("version segment starts with 0")]
    SegmentStartsZero,
    /// The build metadata is not dot-separated `[0-9A-Za-z-]+` identifiers.
    #[error("invalid metadata string")]
    InvalidMetadata,
    /// The prerelease is not dot-separated `[0-9A-Za-z-]+` identifiers.
    #[error("invalid prerelease string")]
    InvalidPrerelease,
    /// A numeric segment is empty or does not fit in a `u64`.
    #[error("error parsing version segment {0:?}")]
    InvalidSegment(String),
    /// The version is longer than [`MAX_VERSION_LEN`] bytes.
    #[error("version string is too long (max {MAX_VERSION_LEN} bytes)")]
    VersionTooLong,
    /// The constraint is longer than [`MAX_CONSTRAINT_LEN`] bytes.
    #[error("constraint string is too long (max {MAX_CONSTRAINT_LEN} bytes)")]
    ConstraintTooLong,
    /// The constraint has more than [`MAX_CONSTRAINT_GROUPS`] `||` groups.
    #[error("too many constraint groups (max {MAX_CONSTRAINT_GROUPS})")]
    TooManyConstraintGroups,
    /// An `||` group or a single comparator is not a valid constraint.
    #[error("improper constraint: {0:?}")]
    ImproperConstraint(String),
    /// A comparator passed the syntax check but its version did not parse
    /// (e.g. `1x.2`, whose segment mixes digits and wildcards).
    #[error("constraint parser error")]
    ConstraintParser,
}
