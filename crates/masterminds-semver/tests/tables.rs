//! Table tests. Rows marked `MM` are taken from Masterminds/semver's own
//! `constraints_test.go` (TestConstraintsCheck / TestConstraintCheck /
//! TestNewConstraint) and `version_test.go`; the expected values are
//! Masterminds' (v3.4+ group prerelease rule). Other rows were derived by
//! reading `constraints.go`; comments say where Cargo's `semver` or
//! `nodejs-semver` would answer differently.

use masterminds_semver::{Constraints, Error, Version};

/// (constraint, version, expected)
const CHECK: &[(&str, &str, bool)] = &[
    // --- wildcards and x-ranges ---
    ("*", "1.2.3", true),           // MM
    ("*", "1.2.3-alpha.1", false),  // MM: prereleases need a prerelease comparator
    ("*-0", "1.2.3-alpha.1", true), // MM
    ("~0.0.0", "1.2.3", true),      // MM
    ("0.x.x", "1.2.3", false),      // MM
    ("0.0.x", "1.2.3", false),      // MM
    ("0.0.0", "1.2.3", false),      // MM
    ("4.1.x", "4.1.3", true),       // MM
    ("1.x", "1.4", true),           // MM: partial version 1.4 = 1.4.0
    ("2.*", "2.1.1", true),         // MM
    ("2.*", "3.4.5", false),        // MM
    ("2.1.*", "2.2.1", false),      // MM
    ("1.2.X", "1.2.9", true),       // capital X is a wildcard too
    ("1.2.X", "1.3.0", false),
    // --- bare and `=` partial versions mean tilde ---
    ("= 2.0", "1.2.3", false), // MM
    ("= 2.0", "2.0.0", true),  // MM
    ("=2.0", "2.0.1", true),   // MM
    ("4.1", "4.1.0", true),    // MM
    ("1.2", "1.2.9", true),
    ("1.2", "1.9.0", false),   // Cargo semver: `1.2` is `^1.2`, true
    ("1.2.3", "1.2.4", false), // Cargo semver: `1.2.3` is `^1.2.3`, true
    ("2", "2.1.1", true),      // MM
    ("2", "3.4.5", false),     // MM
    ("=0", "1", false),        // MM (TestConstraintCheck)
    // --- != ---
    ("!=4.1", "4.1.0", false),             // MM
    ("!=4.1", "4.1.1", false),             // MM: !=4.1 excludes all of 4.1.x
    ("!=4.1", "5.1.0", true),              // MM
    ("!=4.1-alpha", "4.1.0-alpha", false), // MM
    ("!=4.1-alpha", "4.1.0", true),        // MM
    ("!=4.x", "4.1.0", false),             // MM
    ("!=4.x", "5.1.0", true),              // MM
    ("!=4.1.x", "4.2.0", true),            // MM
    ("!=4.2.x", "4.2.3", false),           // MM
    ("!=1.2.3+a", "1.2.3+b", false),       // metadata is ignored; nodejs-semver has no `!=`
    // --- > >= < <= with partial versions ---
    (">1.1", "4.1.0", true),                   // MM
    (">1.1", "1.1.0", false),                  // MM
    (">11.1", "11.1.1", false),                // MM: >11.1 means >=11.2.0
    (">11.1", "11.2.1", true),                 // MM
    (">11", "11.1.0", false),                  // MM: >11 means >=12.0.0
    (">0", "0.0.1-alpha", false),              // MM
    (">0.0.0-0", "0.0.0-alpha", true),         // MM
    (">1.2.3-alpha.1", "1.2.3-alpha.2", true), // MM
    (">=1.1", "4.1.0", true),                  // MM
    (">=1.1", "4.1.0-beta", false),            // MM
    (">=1.1", "0.0.9", false),                 // MM
    (">=11.1", "11.0.2", false),               // MM
    (">=0-0", "0.0.1-alpha", true),            // MM
    (">=1.2", "1", false),                     // partial version 1 = 1.0.0
    ("<1.1", "1.1.1", false),                  // MM
    ("<1.x", "0.1.1", true),                   // MM
    ("<1.x", "1.1.1", false),                  // MM
    ("<1.1.x", "1.0.500", true),               // MM
    ("<0-z", "0.0.0-alpha", true),             // MM (TestConstraintCheck)
    ("<=1.1", "1.1.1", true),                  // MM: <=1.1 admits all of 1.1.x
    ("<=1.1", "0.1.0-alpha", false),           // MM
    ("<=1.1-a", "0.1.0-alpha", true),          // MM
    ("<=2.x", "3.0.0", false),                 // MM
    ("<=4.5", "4.6.3", false),                 // MM
    ("<=11", "11.2.3", true),                  // MM (TestConstraintCheck)
    // --- => and =< spellings (not accepted by nodejs-semver or Cargo) ---
    ("=> 1.2", "1.2.0", true),
    ("=>1.2", "1.1.9", false),
    ("=< 1.2", "1.2.7", true),
    ("=<1.2.3", "1.2.4", false),
    // --- ~ and ~> ---
    ("~*", "2.1.1", true),                 // MM
    ("~1", "1.3.5", true),                 // MM
    ("~1", "2.1.1", false),                // MM
    ("~1", "1.3.5-beta", false),           // MM (TestConstraintsValidate)
    ("~1.x", "1.4", true),                 // MM
    ("~1.1", "1.1.1-alpha", false),        // MM
    ("~1.1-alpha", "1.1.1-beta", true),    // MM
    ("~1.1.1-beta", "1.1.1-alpha", false), // MM
    ("~1.1.1-beta", "1.1.1", true),        // MM
    ("~1.2.3", "1.2.2", false),            // MM
    ("~1.2.3", "1.3.2", false),            // MM
    ("~> 1.2", "1.2.9", true),
    ("~>1.2", "1.3.0", false),
    // Across patch versions: nodejs-semver and Cargo say false (a prerelease
    // only matches a comparator with the same major.minor.patch).
    ("~1.2.3-beta.2", "1.2.4-beta.2", true), // MM (TestConstraintCheck)
    // --- ^ ---
    ("^1.1", "1.1.1", true),                    // MM
    ("^1.1", "4.3.2", false),                   // MM
    ("^1.x", "1.1.1-beta1", false),             // MM
    ("^1.1.2-alpha", "1.2.1-beta1", true),      // MM; nodejs-semver/Cargo: false
    ("^1.2.x-alpha", "1.1.1-beta1", false),     // MM
    ("^1.2.0-alpha.2", "1.2.0-alpha.1", false), // MM
    ("^0.2.3", "0.2.5", true),                  // MM
    ("^0.2.3", "0.5.6", false),                 // MM
    ("^0.0.1", "0.0.1", true),                  // MM
    ("^0.0.1", "0.3.1", false),                 // MM
    ("^0.0", "0.0.3", true),                    // MM
    ("^0.0", "0.1.4", false),                   // MM
    ("^0", "0.2.3", true),                      // MM
    ("^0", "1.1.4", false),                     // MM
    ("^0.0.0", "1.2.3", false),                 // MM
    // Surprise: `^*` is documented as "any" in constraints.go, but its
    // version is 0.0.0 with only the major dirty, so caretPred demands
    // 0.0.0 exactly (major 0, minor 0, patch equal).
    ("^*", "1.2.3", false),
    ("^*", "0.0.0", true),
    ("^v1.2", "v1.9.0", true), // leading v on both sides
    // --- hyphen ranges ---
    ("1.1 - 2", "1.1.1", true),     // MM
    ("1.5.0 - 4.5", "3.7.0", true), // MM
    ("1.2 - 1.4.5", "1.4.5", true),
    ("1.2 - 1.4.5", "1.4.6", false),
    ("1.2 - 1.4", "1.4.9", true), // upper bound <=1.4 covers 1.4.x
    ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", true), // MM
    ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", true), // MM
    // Without spaces `-` starts a prerelease: `1.1-3` is `=1.1.0-3`.
    ("1.1-3", "4.3.2", false), // MM
    ("1.2-1.4.5", "1.3.0", false),
    // --- AND by comma and by space, OR by || (Cargo rejects || and spaces) ---
    (">1.1, <2", "1.1.1", false),                    // MM
    (">1.1, <2", "1.2.1", true),                     // MM
    (">1.1 <2", "1.2.1", true),                      // MM
    (">1.1    <3", "4.3.2", false),                  // MM
    (">=1.1, <2, !=1.2.3", "1.2.3", false),          // MM
    (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", true),      // MM
    (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", false),     // MM
    (">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", true), // MM
    ("> 1.1, <     2", "1.1.1", false),              // MM
    ("^1.2 || ~3", "3.0.7", true),
    // --- the v3.4 AND-group prerelease rule ---
    // One prerelease comparator opens the whole group to prereleases.
    // nodejs-semver/Cargo: false (1.5.0 has no prerelease comparator).
    (">=1.0.0-0 <2.0.0", "1.5.0-beta", true),
    (">=1.0.0 <2.0.0", "1.5.0-beta", false),
    // ...but only its own group.
    ("<2.0.0 || >=3.0.0-0", "1.5.0-beta", false),
    ("<2.0.0 || >=3.0.0-0", "3.1.0-rc.1", true),
    // --- build metadata is ignored ---
    ("=1.2.3", "1.2.3+build.5", true),
    ("=1.2.3+meta", "1.2.3", true),
    (">1.2.3", "1.2.3+build.9", false),
    // --- leading v ---
    ("v1.2.3", "1.2.3", true),
    (">= v1.2", "v1.3", true),
];

#[test]
fn constraint_check_table() {
    assert!(CHECK.len() >= 60);
    let mut failures = Vec::new();
    for &(constraint, version, want) in CHECK {
        let c = Constraints::parse(constraint)
            .unwrap_or_else(|e| panic!("constraint {constraint:?}: {e}"));
        let v = Version::parse(version).unwrap_or_else(|e| panic!("version {version:?}: {e}"));
        if c.matches(&v) != want {
            failures.push(format!("{constraint:?} vs {version:?}: want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn include_prerelease_opens_every_group() {
    let c = Constraints::parse("^1.2").unwrap();
    let v = Version::parse("1.3.0-rc.1").unwrap();
    assert!(!c.matches(&v));
    assert!(c.with_include_prerelease(true).matches(&v));
}

/// Constraints Masterminds rejects (MM: TestNewConstraint).
#[test]
fn invalid_constraints() {
    let too_long = format!(">={}", "1".repeat(600));
    let too_many = vec!["1"; 33].join(" || ");
    let rows: &[&str] = &[
        "", // empty: Kargo treats "" as "no constraint" before parsing
        "foo",
        ">= bar",         // MM
        "BAR >= 1.2.3",   // MM
        "12.3.4.1234",    // MM: four segments
        "12.23.4.1234",   // MM
        "12.3.34~ 1.2.3", // MM: no separator between comparators
        ">1 <2,",         // dangling comma
        ">=1.2 ,, <2",    // double comma
        "1.2 ||",         // empty OR group
        "|| 1.2",
        ">>1",
        "1x.2",      // passes the grammar, fails as a version
        "1.2.3 | 2", // a single | is not OR
        "~1.2.3.4",
        "latest",
        "sha256:0123abcd",
        &too_long,
        &too_many,
    ];
    for input in rows {
        assert!(
            Constraints::parse(input).is_err(),
            "expected an error for {input:?}"
        );
    }
    assert_eq!(
        Constraints::parse(&too_long).unwrap_err(),
        Error::ConstraintTooLong
    );
    assert_eq!(
        Constraints::parse(&too_many).unwrap_err(),
        Error::TooManyConstraintGroups
    );
    assert_eq!(
        Constraints::parse("1x.2").unwrap_err(),
        Error::ConstraintParser
    );
}

/// Constraints Masterminds accepts that other libraries may not (MM:
/// TestNewConstraint).
#[test]
fn valid_constraints() {
    let rows = [
        ">= 1.1",
        ">40.50.60, < 50.70",
        "v2.3.5-20161202202307-sha.e8fc5e5",
        ">= 1.2.3 < 2.0 || => 3.0 < 4",
        "3 - 4 || => 3.0, < 4",
        "12.3.34 ~1.2.3",
        "1.0.0 - 2.0.0, <=2.0.0",
        ">1,<2",
        "  >= 1.2  ",
        &vec!["1"; 32].join(" || "),
    ];
    for input in rows {
        assert!(Constraints::parse(input).is_ok(), "{input:?}");
    }
}

/// (input, major, minor, patch, prerelease, metadata) for `Version::parse`
/// (Masterminds' NewVersion with CoerceNewVersion = true).
const COERCE_OK: &[(&str, u64, u64, u64, &str, &str)] = &[
    ("1.2.3", 1, 2, 3, "", ""),
    ("v1.2.3", 1, 2, 3, "", ""),
    ("1", 1, 0, 0, "", ""),
    ("1.2", 1, 2, 0, "", ""),
    ("v1", 1, 0, 0, "", ""),
    ("01.02.03", 1, 2, 3, "", ""), // leading zeros coerced (v3.4 #266)
    ("1.2.3-beta.1+build.5", 1, 2, 3, "beta.1", "build.5"),
    ("1.2.3+build-1", 1, 2, 3, "", "build-1"),
    ("1.2-rc.1", 1, 2, 0, "rc.1", ""),
    ("1.2.3-alpha-1", 1, 2, 3, "alpha-1", ""),
    ("v1.2.3-0", 1, 2, 3, "0", ""),
    ("1.2.3-x.7.z.92", 1, 2, 3, "x.7.z.92", ""),
    ("18446744073709551615.0.0", u64::MAX, 0, 0, "", ""),
];

const COERCE_ERR: &[(&str, Error)] = &[
    ("", Error::InvalidSemVer),
    ("v", Error::InvalidSemVer),
    ("V1.2.3", Error::InvalidSemVer),
    ("vv1.2.3", Error::InvalidSemVer),
    ("1.2.3.4", Error::InvalidSemVer),
    ("1.2.3-", Error::InvalidSemVer),
    ("1.2.3+", Error::InvalidSemVer),
    ("1.2.3-beta..1", Error::InvalidSemVer),
    ("1.2.3-01", Error::SegmentStartsZero),
    ("1.2.3_build", Error::InvalidSemVer),
    ("1..2", Error::InvalidSemVer),
    (" 1.2.3", Error::InvalidSemVer),
    ("latest", Error::InvalidSemVer),
    ("sha256:0123abcd", Error::InvalidSemVer),
];

#[test]
fn coercing_parse_table() {
    for &(input, major, minor, patch, pre, meta) in COERCE_OK {
        let v = Version::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(
            (
                v.major(),
                v.minor(),
                v.patch(),
                v.prerelease(),
                v.metadata()
            ),
            (major, minor, patch, pre, meta),
            "{input:?}"
        );
        assert_eq!(v.original(), input);
    }
    for (input, err) in COERCE_ERR {
        assert_eq!(Version::parse(input).unwrap_err(), *err, "{input:?}");
    }
    assert!(matches!(
        Version::parse("18446744073709551616"),
        Err(Error::InvalidSegment(_))
    ));
    assert_eq!(
        Version::parse(&"1".repeat(257)).unwrap_err(),
        Error::VersionTooLong
    );
}

#[test]
fn strict_parse_table() {
    let ok = [
        "1.2.3",
        "0.0.0",
        "10.20.30",
        "1.2.3-beta.1",
        "1.2.3+meta-data",
        "1.2.3-rc.1+build.1",
        "1.0.0-alpha-a.b-c",
    ];
    for input in ok {
        let v = Version::parse_strict(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(v.to_string(), input);
    }
    let err = [
        ("", Error::EmptyString),
        ("v1.2.3", Error::InvalidCharacters),
        ("1.2", Error::InvalidSemVer),
        ("1", Error::InvalidSemVer),
        ("01.2.3", Error::SegmentStartsZero),
        ("1.02.3", Error::SegmentStartsZero),
        ("1.2.03", Error::SegmentStartsZero),
        ("1.2.3-01", Error::SegmentStartsZero),
        ("1.2.3-", Error::InvalidPrerelease),
        ("1.2.3+", Error::InvalidMetadata),
        ("1.2.3.4", Error::InvalidCharacters),
        ("1.2.x", Error::InvalidCharacters),
        ("1.2.3_build", Error::InvalidCharacters),
        ("sha256:0123abcd", Error::InvalidSemVer),
    ];
    for (input, want) in err {
        assert_eq!(Version::parse_strict(input).unwrap_err(), want, "{input:?}");
    }
    assert!(matches!(
        Version::parse_strict("1..3"),
        Err(Error::InvalidSegment(_))
    ));
}

#[test]
fn ordering() {
    // SemVer 2.0 spec example order, which Masterminds follows.
    let ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ];
    let parsed: Vec<Version> = ordered.iter().map(|s| Version::parse(s).unwrap()).collect();
    for pair in parsed.windows(2) {
        assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
    }
    // Metadata and spelling are ignored by equality.
    assert_eq!(
        Version::parse("1.2.3+a").unwrap(),
        Version::parse("v1.2.3+b").unwrap()
    );
    assert_eq!(
        Version::parse("1.2").unwrap(),
        Version::parse("1.2.0").unwrap()
    );
    assert_eq!(Version::parse("v1.2").unwrap().to_string(), "1.2.0");
}
