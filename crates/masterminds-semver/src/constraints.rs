//! Port of Masterminds/semver `constraints.go`.
//!
//! The grammar is defined by Masterminds' regular expressions, so they are
//! reused verbatim (apart from `\s`, see the crate docs): hand-written parsing
//! would risk accepting or rejecting a different set of strings than Kargo.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;

use crate::version::compare_prerelease;
use crate::{Error, Version};

/// Longest constraint string accepted, in bytes (Masterminds'
/// `MaxConstraintLen`).
pub const MAX_CONSTRAINT_LEN: usize = 512;

/// Most `||` groups accepted (Masterminds' `MaxConstraintGroups`).
pub const MAX_CONSTRAINT_GROUPS: usize = 32;

/// Go's RE2 `\s` is ASCII only; Rust's is Unicode-aware.
const WS: &str = r"[\t\n\f\r ]";

/// Operators, in Masterminds' alternation order. The order matters with
/// leftmost-first matching: `>=1` is tried as `>` + `=1` (which fails) before
/// `>=` + `1`.
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

/// A constraint version: `x`, `X` and `*` are wildcards. The `|` inside the
/// segment classes is a quirk of the original (`[0-9|x|X|\*]`), kept so that
/// the same strings are accepted; such segments fail later when the version is
/// parsed.
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

fn compile(pattern: String) -> Regex {
    // The patterns are constants of this module, not input; the unit tests
    // compile every one of them.
    Regex::new(&pattern).expect("constant constraint regex must compile")
}

/// One comparator: `^\s*(op)\s*(cv)\s*$`.
static CONSTRAINT_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(format!(r"^{WS}*({OPS}){WS}*({CV}){WS}*$")));

/// A hyphen range `a - b` (spaces around `-` required).
static RANGE_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(format!(r"{WS}*({CV}){WS}+-{WS}+({CV}){WS}*")));

/// Finds the comparators of a validated AND group.
static FIND_RE: LazyLock<Regex> = LazyLock::new(|| compile(format!(r"({OPS}){WS}*({CV})")));

/// A whole AND group: comparators separated by whitespace or one comma.
static VALID_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(format!(
        r"^({WS}*({OPS}){WS}*({CV}){WS}*)((?:{WS}+|,{WS}*)({OPS}){WS}*({CV}){WS}*)*$"
    ))
});

/// Constraint operators (Masterminds' `constraintOps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `""` and `=`: equality, or tilde semantics when the version has wildcards.
    TildeOrEqual,
    NotEqual,
    GreaterThan,
    LessThan,
    GreaterThanEqual,
    LessThanEqual,
    /// `~` and `~>`.
    Tilde,
    Caret,
}

impl Op {
    fn parse_op(s: &str) -> Option<Op> {
        Some(match s {
            "" | "=" => Op::TildeOrEqual,
            "!=" => Op::NotEqual,
            ">" => Op::GreaterThan,
            "<" => Op::LessThan,
            ">=" | "=>" => Op::GreaterThanEqual,
            "<=" | "=<" => Op::LessThanEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return None,
        })
    }
}

/// One comparator of an AND group.
#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    /// The constraint version with wildcards and missing segments set to 0.
    con: Version,
    /// The minor segment was a wildcard or missing (`1`, `1.x`).
    minor_dirty: bool,
    /// The patch segment was a wildcard or missing (`1.2`, `1.2.x`).
    patch_dirty: bool,
    /// Any segment was a wildcard or missing.
    dirty: bool,
}

/// Parsed constraints: `||`-separated groups of AND-ed comparators.
///
/// A prerelease version only satisfies a group if some comparator of that
/// group names a prerelease (or [`Constraints::with_include_prerelease`] is
/// set); this is Masterminds' rule since v3.4.0.
#[derive(Debug, Clone)]
pub struct Constraints {
    groups: Vec<Group>,
    include_prerelease: bool,
    source: String,
}

#[derive(Debug, Clone)]
struct Group {
    comparators: Vec<Comparator>,
    /// Some comparator names a prerelease, so prereleases are considered for
    /// the whole group.
    contains_pre: bool,
}

impl Constraints {
    /// Parses like Masterminds' `NewConstraint`. Examples: `>= 1.2, < 2`,
    /// `>=1.2 <2`, `1.2 - 1.4.5`, `^1.2 || ~3`, `2.x`, `!=1.3.0`, `*`.
    pub fn parse(c: &str) -> Result<Constraints, Error> {
        if c.len() > MAX_CONSTRAINT_LEN {
            return Err(Error::ConstraintTooLong);
        }
        let rewritten = rewrite_range(c);
        let ors: Vec<&str> = rewritten.split("||").collect();
        if ors.len() > MAX_CONSTRAINT_GROUPS {
            return Err(Error::TooManyConstraintGroups);
        }
        let mut groups = Vec::with_capacity(ors.len());
        for or in ors {
            if !VALID_RE.is_match(or) {
                return Err(Error::ImproperConstraint(or.to_owned()));
            }
            let mut found: Vec<&str> = FIND_RE.find_iter(or).map(|m| m.as_str()).collect();
            if found.is_empty() {
                // Unreachable after validation; kept because Go has it.
                found.push(or);
            }
            let comparators = found
                .into_iter()
                .map(parse_comparator)
                .collect::<Result<Vec<_>, _>>()?;
            let contains_pre = comparators.iter().any(|c| !c.con.prerelease().is_empty());
            groups.push(Group {
                comparators,
                contains_pre,
            });
        }
        Ok(Constraints {
            groups,
            include_prerelease: false,
            source: c.to_owned(),
        })
    }

    /// Masterminds' `IncludePrerelease`: consider prerelease versions in every
    /// group, not only in groups that name a prerelease. Kargo leaves it off.
    pub fn with_include_prerelease(mut self, include: bool) -> Constraints {
        self.include_prerelease = include;
        self
    }

    /// Masterminds' `Check`: does any `||` group accept the version?
    pub fn matches(&self, v: &Version) -> bool {
        self.groups.iter().any(|g| {
            let include_pre = self.include_prerelease || g.contains_pre;
            g.comparators.iter().all(|c| c.check(v, include_pre))
        })
    }

    /// The string the constraints were parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Rewrites hyphen ranges `a - b` into `>= a, <= b `, like Masterminds'
/// `rewriteRange` (including its replace-first-occurrence-of-the-text quirk).
fn rewrite_range(i: &str) -> String {
    if !i.contains('-') {
        return i.to_owned();
    }
    let mut o = i.to_owned();
    for caps in RANGE_RE.captures_iter(i) {
        let (Some(whole), Some(from), Some(to)) = (caps.get(0), caps.get(1), caps.get(11)) else {
            continue;
        };
        let t = format!(">= {}, <= {} ", from.as_str(), to.as_str());
        o = o.replacen(whole.as_str(), &t, 1);
    }
    o
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

/// Masterminds' `parseConstraint` for one comparator string.
fn parse_comparator(s: &str) -> Result<Comparator, Error> {
    let m = CONSTRAINT_RE
        .captures(s)
        .ok_or_else(|| Error::ImproperConstraint(s.to_owned()))?;
    let group = |i: usize| m.get(i).map_or("", |g| g.as_str());
    let op = Op::parse_op(group(1)).ok_or_else(|| Error::ImproperConstraint(s.to_owned()))?;
    let (major, minor, patch, pre) = (group(3), group(4), group(5), group(6));

    let mut ver = group(2).to_owned();
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    // A wildcard or missing segment zeroes it and everything after it; the
    // prerelease is kept and the metadata dropped, as in Go.
    if is_x(major) || major.is_empty() {
        ver = format!("0.0.0{pre}");
        dirty = true;
    } else if is_x(minor.trim_start_matches('.')) || minor.is_empty() {
        minor_dirty = true;
        dirty = true;
        ver = format!("{major}.0.0{pre}");
    } else if is_x(patch.trim_start_matches('.')) || patch.is_empty() {
        dirty = true;
        patch_dirty = true;
        ver = format!("{major}{minor}.0{pre}");
    }
    // Go uses strings.TrimPrefix (one dot); the captures hold exactly one.
    let con = Version::parse(&ver).map_err(|_| Error::ConstraintParser)?;
    Ok(Comparator {
        op,
        con,
        minor_dirty,
        patch_dirty,
        dirty,
    })
}

impl Comparator {
    fn check(&self, v: &Version, include_pre: bool) -> bool {
        // Every Masterminds predicate starts with this: prereleases only
        // match when the group asks for them.
        if !v.prerelease().is_empty() && !include_pre {
            return false;
        }
        match self.op {
            Op::NotEqual => self.not_equal(v),
            Op::GreaterThan => self.greater_than(v),
            Op::LessThan => v < &self.con,
            Op::GreaterThanEqual => v >= &self.con,
            Op::LessThanEqual => self.less_than_equal(v),
            Op::Tilde => self.tilde(v),
            Op::TildeOrEqual => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v == &self.con
                }
            }
            Op::Caret => self.caret(v),
        }
    }

    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.con;
        if self.dirty {
            if c.major() != v.major() {
                return true;
            }
            if c.minor() != v.minor() && !self.minor_dirty {
                return true;
            } else if self.minor_dirty {
                return false;
            } else if c.patch() != v.patch() && !self.patch_dirty {
                return true;
            } else if self.patch_dirty {
                if !v.prerelease().is_empty() || !c.prerelease().is_empty() {
                    return compare_prerelease(v.prerelease(), c.prerelease()) != Ordering::Equal;
                }
                return false;
            }
        }
        v != c
    }

    fn greater_than(&self, v: &Version) -> bool {
        let c = &self.con;
        if !self.dirty {
            return v > c;
        }
        if v.major() > c.major() {
            true
        } else if v.major() < c.major() || self.minor_dirty {
            // `>11` means 12 or higher, so 11.1.0 is not greater.
            false
        } else if self.patch_dirty {
            // `>11.1` means 11.2 or higher.
            v.minor() > c.minor()
        } else {
            v > c
        }
    }

    fn less_than_equal(&self, v: &Version) -> bool {
        let c = &self.con;
        if !self.dirty {
            return v <= c;
        }
        // `<=1.1` admits any 1.1.z; `<=1` any 1.y.z.
        !(v.major() > c.major()
            || (v.major() == c.major() && v.minor() > c.minor() && !self.minor_dirty))
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v < c {
            return false;
        }
        // `~0.0.0` (and `~*`, `x.2.3`) accept everything from 0.0.0 up.
        if c.major() == 0
            && c.minor() == 0
            && c.patch() == 0
            && !self.minor_dirty
            && !self.patch_dirty
        {
            return true;
        }
        if v.major() != c.major() {
            return false;
        }
        v.minor() == c.minor() || self.minor_dirty
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.con;
        // This comparison takes prereleases into account.
        if v < c {
            return false;
        }
        // Major > 0 (or `^0`, `^0.x`): same major.
        if c.major() > 0 || self.minor_dirty {
            return v.major() == c.major();
        }
        if v.major() > 0 {
            return false;
        }
        // `^0.y` with y > 0, or `^0.0`: same minor.
        if c.minor() > 0 || self.patch_dirty {
            return v.minor() == c.minor();
        }
        if v.minor() > 0 {
            return false;
        }
        // `^0.0.z`: exactly that patch.
        c.patch() == v.patch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_regexes_compile() {
        LazyLock::force(&CONSTRAINT_RE);
        LazyLock::force(&RANGE_RE);
        LazyLock::force(&FIND_RE);
        LazyLock::force(&VALID_RE);
    }

    /// Masterminds' TestRewriteRange (constraints_test.go).
    #[test]
    fn rewrite_range_table() {
        let rows = [
            ("2 - 3", ">= 2, <= 3 "),
            ("2 - 3, 2 - 3", ">= 2, <= 3 ,>= 2, <= 3 "),
            ("2 - 3, 4.0.0 - 5.1", ">= 2, <= 3 ,>= 4.0.0, <= 5.1 "),
            ("2 - 3 4.0.0 - 5.1", ">= 2, <= 3 >= 4.0.0, <= 5.1 "),
            ("1.0.0 - 2.0.0 <=2.0.0", ">= 1.0.0, <= 2.0.0 <=2.0.0"),
        ];
        for (input, want) in rows {
            assert_eq!(rewrite_range(input), want, "{input:?}");
        }
    }

    /// Masterminds' TestParseConstraint: operator and zero-filled version.
    #[test]
    fn parse_comparator_table() {
        let rows = [
            (">= 1.2", Op::GreaterThanEqual, "1.2.0"),
            ("1.0", Op::TildeOrEqual, "1.0.0"),
            ("<= 1.2", Op::LessThanEqual, "1.2.0"),
            ("=< 1.2", Op::LessThanEqual, "1.2.0"),
            ("=> 1.2", Op::GreaterThanEqual, "1.2.0"),
            ("v1.2", Op::TildeOrEqual, "1.2.0"),
            ("=1.5", Op::TildeOrEqual, "1.5.0"),
            ("> 1.3", Op::GreaterThan, "1.3.0"),
            ("< 1.4.1", Op::LessThan, "1.4.1"),
            ("< 40.50.10", Op::LessThan, "40.50.10"),
            ("~> 1.2", Op::Tilde, "1.2.0"),
            ("2.x-beta", Op::TildeOrEqual, "2.0.0-beta"),
        ];
        for (input, op, con) in rows {
            let c = parse_comparator(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(c.op, op, "{input:?}");
            assert_eq!(c.con.to_string(), con, "{input:?}");
        }
        assert!(parse_comparator("foo").is_err());
    }
}
