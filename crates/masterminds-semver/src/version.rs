//! Port of Masterminds/semver `version.go`: parsing (coercing and strict) and
//! precedence.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::Error;

/// Longest version string accepted, in bytes (Masterminds' `MaxVersionLen`).
/// It bounds work on untrusted input; real tags are at most 128 bytes.
pub const MAX_VERSION_LEN: usize = 256;

/// A semantic version: `MAJOR.MINOR.PATCH[-PRERELEASE][+METADATA]`.
///
/// Equality and ordering follow Masterminds' `Compare`: build metadata is
/// ignored (`1.0.0+a == 1.0.0+b`), a prerelease sorts before its release, and
/// prerelease identifiers compare numerically when both are numbers.
#[derive(Debug, Clone)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    metadata: String,
    original: String,
}

impl Version {
    /// Parses like Masterminds' `NewVersion` (with its default
    /// `CoerceNewVersion = true`): an optional leading `v`, one to three
    /// numeric segments (missing ones are 0; leading zeros are tolerated), then
    /// optional `-prerelease` and `+metadata`. `v1`, `1.2`, `01.2.3` and
    /// `1.2.3-rc.1+build.5` all parse.
    pub fn parse(v: &str) -> Result<Version, Error> {
        if v.len() > MAX_VERSION_LEN {
            return Err(Error::VersionTooLong);
        }
        let (segs, pre, metadata) = loose_parts(v).ok_or(Error::InvalidSemVer)?;
        let mut nums = [0u64; 3];
        for (slot, seg) in nums.iter_mut().zip(&segs) {
            *slot = parse_u64(seg)?;
        }
        // The characters are known to be valid; this rejects numeric
        // identifiers with a leading zero, which NewVersion does not coerce.
        if !pre.is_empty() {
            validate_prerelease(pre)?;
        }
        Ok(Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre: pre.to_owned(),
            metadata: metadata.to_owned(),
            original: v.to_owned(),
        })
    }

    /// Parses like Masterminds' `StrictNewVersion`: exactly
    /// `MAJOR.MINOR.PATCH` without leading zeros, optional prerelease and
    /// metadata, and no leading `v`.
    pub fn parse_strict(v: &str) -> Result<Version, Error> {
        if v.is_empty() {
            return Err(Error::EmptyString);
        }
        if v.len() > MAX_VERSION_LEN {
            return Err(Error::VersionTooLong);
        }
        // Split into major, minor and "patch[-pre][+meta]" on the first two
        // dots, as Masterminds does; later dots belong to the prerelease or
        // metadata.
        let mut it = v.splitn(3, '.');
        let (Some(major), Some(minor), Some(mut patch)) = (it.next(), it.next(), it.next()) else {
            return Err(Error::InvalidSemVer);
        };
        let mut metadata = "";
        let mut pre = "";
        // Metadata first: a `-` is a legal character inside metadata.
        if let Some((p, m)) = patch.split_once('+') {
            validate_metadata(m)?;
            metadata = m;
            patch = p;
        }
        if let Some((p, pr)) = patch.split_once('-') {
            validate_prerelease(pr)?;
            pre = pr;
            patch = p;
        }
        let parts = [major, minor, patch];
        for p in parts {
            // An empty part passes this check (as in Go) and fails in
            // parse_u64 below.
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::InvalidCharacters);
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(Error::SegmentStartsZero);
            }
        }
        Ok(Version {
            major: parse_u64(major)?,
            minor: parse_u64(minor)?,
            patch: parse_u64(patch)?,
            pre: pre.to_owned(),
            metadata: metadata.to_owned(),
            original: v.to_owned(),
        })
    }

    /// The major version.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor version (0 when the parsed string omitted it).
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch version (0 when the parsed string omitted it).
    pub fn patch(&self) -> u64 {
        self.patch
    }

    /// The prerelease without its leading `-`, or `""`.
    pub fn prerelease(&self) -> &str {
        &self.pre
    }

    /// The build metadata without its leading `+`, or `""`.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// The string this version was parsed from (keeps a leading `v` and
    /// omitted segments, unlike `Display`).
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Masterminds' `Compare`: precedence ignoring metadata.
    fn compare(&self, o: &Version) -> Ordering {
        self.major
            .cmp(&o.major)
            .then(self.minor.cmp(&o.minor))
            .then(self.patch.cmp(&o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &o.pre),
            })
    }
}

impl fmt::Display for Version {
    /// Canonical form, without a leading `v`: `1.2` prints as `1.2.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.metadata.is_empty() {
            write!(f, "+{}", self.metadata)?;
        }
        Ok(())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.compare(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare(other)
    }
}

impl Hash for Version {
    /// Hashes what `Eq` compares. Prerelease identifiers are compared
    /// numerically only as whole identifiers, and numeric identifiers cannot
    /// have leading zeros after validation, so the prerelease text is a
    /// faithful key.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.major, self.minor, self.patch, &self.pre).hash(state);
    }
}

/// Splits a loose version into its numeric segments (1 to 3, padded with
/// `"0"`), prerelease and metadata. `None` when it does not have the shape of
/// Masterminds' loose regex
/// `v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-ids)?(\+ids)?`.
fn loose_parts(v: &str) -> Option<([&str; 3], &str, &str)> {
    let mut s = v.strip_prefix('v').unwrap_or(v);
    let mut metadata = "";
    let mut pre = "";
    // Metadata is everything after the first `+`; it is cut first because a
    // `-` may appear inside it.
    if let Some((rest, m)) = s.split_once('+') {
        if !valid_identifiers(m) {
            return None;
        }
        metadata = m;
        s = rest;
    }
    if let Some((rest, p)) = s.split_once('-') {
        if !valid_identifiers(p) {
            return None;
        }
        pre = p;
        s = rest;
    }
    let mut segs = ["0"; 3];
    for (n, seg) in s.split('.').enumerate() {
        if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *segs.get_mut(n)? = seg;
    }
    Some((segs, pre, metadata))
}

fn parse_u64(s: &str) -> Result<u64, Error> {
    s.parse::<u64>()
        .map_err(|_| Error::InvalidSegment(s.to_owned()))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`.
fn valid_identifiers(s: &str) -> bool {
    s.split('.')
        .all(|part| !part.is_empty() && part.bytes().all(is_ident_byte))
}

/// SemVer 2.0 prerelease rules: valid identifiers, and numeric identifiers
/// without leading zeros.
pub(crate) fn validate_prerelease(p: &str) -> Result<(), Error> {
    if !valid_identifiers(p) {
        return Err(Error::InvalidPrerelease);
    }
    let leading_zero = p.split('.').any(|part| {
        part.len() > 1 && part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit())
    });
    if leading_zero {
        return Err(Error::SegmentStartsZero);
    }
    Ok(())
}

fn validate_metadata(m: &str) -> Result<(), Error> {
    if valid_identifiers(m) {
        Ok(())
    } else {
        Err(Error::InvalidMetadata)
    }
}

/// Masterminds' `comparePrerelease`: identifier by identifier; a missing
/// identifier sorts first.
pub(crate) fn compare_prerelease(v: &str, o: &str) -> Ordering {
    let mut vs = v.split('.');
    let mut os = o.split('.');
    loop {
        match (vs.next(), os.next()) {
            (None, None) => return Ordering::Equal,
            (s, t) => {
                let d = compare_pre_part(s.unwrap_or(""), t.unwrap_or(""));
                if d != Ordering::Equal {
                    return d;
                }
            }
        }
    }
}

/// Masterminds' `comparePrePart`: numbers compare numerically and sort before
/// alphanumerics; alphanumerics compare bytewise. A number too large for a
/// `u64` is treated as alphanumeric, as in Go.
fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    let num = |x: &str| -> Option<u64> {
        if x.bytes().all(|b| b.is_ascii_digit()) {
            x.parse().ok()
        } else {
            None
        }
    };
    match (num(s), num(o)) {
        (None, None) => s.cmp(o),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(&b),
    }
}
