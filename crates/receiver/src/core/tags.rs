//! Tag matching per subscription: would Kargo consider a pushed tag for this
//! Warehouse subscription? Pure, no I/O.
//!
//! The rules port Kargo's selectors' `MatchesTag`/`MatchesVersion`
//! (`pkg/image/*_selector.go`, `pkg/helm/chart/base_selector.go`), which is
//! also what Kargo's own webhook receivers use to decide whether to refresh:
//!
//! * image, strategy `SemVer` or unset: not ignored by `ignoreTagsRegexes`,
//!   allowed by `allowTagsRegexes` (empty = all), parses as a semantic version
//!   and satisfies `constraint` if set. Parsing follows Kargo's
//!   `pkg/controller/semver.Parse`: the tag must parse with Masterminds'
//!   coercing `NewVersion` (a leading `v`, partial versions), and with
//!   `strictSemvers` (Kargo's CRD default: true) the tag with one leading `v`
//!   trimmed must also parse with `StrictNewVersion`. The constraint is checked
//!   against the coerced version.
//! * image, `Lexical` or `NewestBuild`: the regex rules only.
//! * image, `Digest`: the tag equals `constraint` (the mutable tag followed).
//! * chart: parses as a semantic version and satisfies `semverConstraint`.
//!
//! Regexes are Rust's `regex` syntax, which is nearly that of Go's RE2
//! `regexp` and which, like Go's `MatchString`, searches unanchored. The
//! differences (Rust's `\d`, `\w`, `\s`, `\b` are Unicode-aware, Go's are
//! ASCII; Go accepts `\Q…\E`, Rust does not; Rust caps compiled size) do not
//! change results on OCI tags, which are ASCII; a pattern Rust cannot parse
//! is reported as a problem and the subscription accepts everything. How
//! patterns are held without a compiled automaton each is in
//! [`tag_regex`](super::tag_regex).
//!
//! Rules that cannot be evaluated make the filter accept every tag and record
//! a problem for the caller to log: a spare refresh is cheap, a missed one is
//! a bug.
//!
//! An index builds its filters through one [`RuleInterner`], so that the
//! subscriptions spelling a regex or a constraint the same way share one
//! parsed copy of it.

use std::cell::OnceCell;
use std::sync::Arc;

use kargo_api::{ChartSubscription, ImageSubscription};
use masterminds_semver::{Constraints, Version};

use super::interner::Interner;
use super::tag_regex::TagRegex;

/// Compiled tag rules of one Warehouse subscription, built once per Warehouse
/// generation.
#[derive(Debug, Clone)]
pub struct TagFilter {
    rule: Rule,
}

/// What a subscription's tag rules decide on one pushed tag, and why
/// (see [`TagFilter::verdict`]). `Display` words the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'f> {
    /// Every rule lets the tag through.
    Accepted,
    /// The rules cannot be evaluated, so every tag is accepted; the
    /// problems say why.
    Unevaluable(&'f [String]),
    /// An `ignoreTagsRegexes` pattern (this one) matches the tag.
    IgnoredBy(&'f str),
    /// `allowTagsRegexes` is set and none of its patterns matches.
    NotAllowed,
    /// The tag does not parse as a semantic version.
    NotSemVer,
    /// A version, but not strict `MAJOR.MINOR.PATCH` (`strictSemvers`).
    NotStrictSemVer,
    /// A version outside this constraint.
    OutsideConstraint(&'f str),
    /// Strategy `Digest` follows this tag, not the pushed one.
    DigestFollows(&'f str),
    /// This regex parses but is too large to compile, found when first
    /// matched: the rules cannot be evaluated, so every tag is accepted.
    TooBigToCompile(&'f str),
}

impl Verdict<'_> {
    /// Whether the tag is accepted (also when the rules are unevaluable).
    pub fn accepted(&self) -> bool {
        matches!(
            self,
            Verdict::Accepted | Verdict::Unevaluable(_) | Verdict::TooBigToCompile(_)
        )
    }
}

impl std::fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("accepted"),
            Verdict::Unevaluable(problems) => write!(
                f,
                "accepted: the rules cannot be evaluated ({})",
                problems.join("; ")
            ),
            Verdict::IgnoredBy(pattern) => write!(f, "ignored by regex {pattern:?}"),
            Verdict::NotAllowed => f.write_str("not allowed by any allow regex"),
            Verdict::NotSemVer => f.write_str("not a semantic version"),
            Verdict::NotStrictSemVer => {
                f.write_str("not strict SemVer (MAJOR.MINOR.PATCH; strictSemvers is on)")
            }
            Verdict::OutsideConstraint(c) => write!(f, "does not satisfy `{c}`"),
            Verdict::DigestFollows(tag) => write!(f, "Digest strategy wants `{tag}`"),
            Verdict::TooBigToCompile(pattern) => write!(
                f,
                "accepted: the rules cannot be evaluated (regex {pattern:?} is too large to compile)"
            ),
        }
    }
}

#[derive(Debug, Clone)]
enum Rule {
    /// The rules could not be evaluated: why.
    AcceptAll(Box<[String]>),
    /// Image, `SemVer` strategy or unset.
    SemVer {
        regexes: TagRegexes,
        strict: bool,
        constraint: Option<Arc<Constraints>>,
    },
    /// Image, `Lexical` or `NewestBuild`.
    Regexes(TagRegexes),
    /// Image, `Digest`: the one mutable tag followed.
    Digest(Box<str>),
    /// Chart.
    Chart {
        constraint: Option<Arc<Constraints>>,
    },
}

/// The parsed regexes and constraints of an index, shared by every
/// subscription that spells them the same way, each released once no
/// subscription uses it.
#[derive(Debug, Default)]
pub struct RuleInterner {
    regexes: Interner<TagRegex>,
    constraints: Interner<Constraints>,
}

impl RuleInterner {
    /// Distinct regexes held.
    pub fn regexes(&self) -> usize {
        self.regexes.len()
    }

    fn regex_list(
        &mut self,
        field: &str,
        patterns: &[String],
        problems: &mut Vec<String>,
    ) -> Box<[Arc<TagRegex>]> {
        patterns
            .iter()
            .filter_map(|p| {
                match self
                    .regexes
                    .get_or_try_build(p, |p| TagRegex::parse(p).map(Arc::new))
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        problems.push(format!("{field}: cannot compile {p:?}: {e}"));
                        None
                    }
                }
            })
            .collect()
    }

    fn constraint(
        &mut self,
        field: &str,
        c: &str,
        problems: &mut Vec<String>,
    ) -> Option<Arc<Constraints>> {
        match self
            .constraints
            .get_or_try_build(c, |c| Constraints::parse(c).map(Arc::new))
        {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!(
                    "{field}: cannot parse semver constraint {c:?}: {e}"
                ));
                None
            }
        }
    }

    fn tag_regexes(
        &mut self,
        allow: &[String],
        ignore: &[String],
        problems: &mut Vec<String>,
    ) -> TagRegexes {
        TagRegexes {
            allow: self.regex_list("allowTagsRegexes", allow, problems),
            ignore: self.regex_list("ignoreTagsRegexes", ignore, problems),
        }
    }
}

/// `allowTagsRegexes` / `ignoreTagsRegexes`, as Kargo's tagBasedSelector
/// applies them.
#[derive(Debug, Clone, Default)]
struct TagRegexes {
    allow: Box<[Arc<TagRegex>]>,
    ignore: Box<[Arc<TagRegex>]>,
}

impl TagRegexes {
    /// `None` when the regexes let the tag through, else why not. A
    /// pattern too large to compile (see `tag_regex`) makes the rules
    /// unevaluable, whatever the others say.
    fn reject(&self, tag: &str) -> Option<Verdict<'_>> {
        let all = || self.allow.iter().chain(self.ignore.iter());
        if let Some(big) = all().find(|r| !r.compiles()) {
            return Some(Verdict::TooBigToCompile(big.as_str()));
        }
        if let Some(r) = self.ignore.iter().find(|r| r.is_match(tag)) {
            return Some(Verdict::IgnoredBy(r.as_str()));
        }
        if self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(tag)) {
            None
        } else {
            Some(Verdict::NotAllowed)
        }
    }
}

/// `Some(s)` for a non-empty string: Kargo treats `""` as unset.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A pushed tag with its semantic-version readings, each parsed at most
/// once however many subscriptions it is matched against (the hot path
/// matches one tag against every subscription on the repository).
#[derive(Debug)]
pub struct PushedTag<'a> {
    tag: &'a str,
    coerced: OnceCell<Option<Version>>,
    strict: OnceCell<bool>,
    chart: OnceCell<Option<Version>>,
}

impl<'a> PushedTag<'a> {
    /// Wraps a pushed tag (or digest, for a push by digest).
    pub fn new(tag: &'a str) -> Self {
        Self {
            tag,
            coerced: OnceCell::new(),
            strict: OnceCell::new(),
            chart: OnceCell::new(),
        }
    }

    /// The tag as pushed.
    pub fn tag(&self) -> &'a str {
        self.tag
    }

    /// Masterminds' coercing `NewVersion` reading.
    fn coerced(&self) -> Option<&Version> {
        self.coerced
            .get_or_init(|| Version::parse(self.tag).ok())
            .as_ref()
    }

    /// Whether the tag is strict SemVer; Kargo trims one leading "v" first.
    fn strict(&self) -> bool {
        *self.strict.get_or_init(|| {
            let bare = self.tag.strip_prefix('v').unwrap_or(self.tag);
            Version::parse_strict(bare).is_ok()
        })
    }

    /// The chart version reading. Kargo's webhook check parses the version
    /// with NewVersion; its OCI discovery parses tags with StrictNewVersion
    /// after mapping `_` back to `+` (OCI tags cannot hold `+`, so Helm
    /// writes build metadata with `_`). Accepting what either would accept
    /// means a pushed `1.2.3_build.1` is not missed.
    fn chart_version(&self) -> Option<&Version> {
        self.chart
            .get_or_init(|| Version::parse(&self.tag.replace('_', "+")).ok())
            .as_ref()
    }
}

impl TagFilter {
    /// Compiles the tag rules of an image subscription on its own.
    pub fn for_image(sub: &ImageSubscription) -> TagFilter {
        TagFilter::for_image_in(sub, &mut RuleInterner::default())
    }

    /// Compiles the tag rules of a chart subscription on its own.
    pub fn for_chart(sub: &ChartSubscription) -> TagFilter {
        TagFilter::for_chart_in(sub, &mut RuleInterner::default())
    }

    /// Compiles the tag rules of an image subscription, sharing its regexes
    /// and constraint through `rules`.
    pub fn for_image_in(sub: &ImageSubscription, rules: &mut RuleInterner) -> TagFilter {
        let mut problems = Vec::new();
        // The deprecated fields are not evaluated: their meaning changed across
        // Kargo releases, so guessing could miss a push.
        if non_empty(&sub.allow_tags).is_some() {
            problems.push(
                "deprecated allowTags is set (use allowTagsRegexes); accepting every tag".into(),
            );
        }
        if sub.ignore_tags.as_ref().is_some_and(|t| !t.is_empty()) {
            problems.push(
                "deprecated ignoreTags is set (use ignoreTagsRegexes); accepting every tag".into(),
            );
        }
        // `constraint` wins over its deprecated alias when both are set.
        let (constraint_field, constraint) = match non_empty(&sub.constraint) {
            Some(c) => ("constraint", Some(c)),
            None => ("semverConstraint", non_empty(&sub.semver_constraint)),
        };

        let rule = match sub.image_selection_strategy.as_deref().unwrap_or("") {
            "" | "SemVer" => Rule::SemVer {
                regexes: rules.tag_regexes(
                    &sub.allow_tags_regexes,
                    &sub.ignore_tags_regexes,
                    &mut problems,
                ),
                // Kargo's CRD defaults strictSemvers to true.
                strict: sub.strict_semvers.unwrap_or(true),
                constraint: constraint
                    .and_then(|c| rules.constraint(constraint_field, c, &mut problems)),
            },
            "Lexical" | "NewestBuild" => Rule::Regexes(rules.tag_regexes(
                &sub.allow_tags_regexes,
                &sub.ignore_tags_regexes,
                &mut problems,
            )),
            // Kargo's digest selector ignores the regexes.
            "Digest" => match constraint {
                Some(tag) => Rule::Digest(tag.into()),
                None => {
                    problems
                        .push("strategy Digest without a constraint (the tag to follow)".into());
                    Rule::AcceptAll(Box::default())
                }
            },
            other => {
                problems.push(format!("unknown imageSelectionStrategy {other:?}"));
                Rule::AcceptAll(Box::default())
            }
        };
        TagFilter::new(rule, problems)
    }

    /// Compiles the version rules of a chart subscription, sharing its
    /// constraint through `rules`.
    pub fn for_chart_in(sub: &ChartSubscription, rules: &mut RuleInterner) -> TagFilter {
        let mut problems = Vec::new();
        let constraint = non_empty(&sub.semver_constraint)
            .and_then(|c| rules.constraint("semverConstraint", c, &mut problems));
        TagFilter::new(Rule::Chart { constraint }, problems)
    }

    fn new(rule: Rule, problems: Vec<String>) -> TagFilter {
        let rule = if problems.is_empty() {
            rule
        } else {
            Rule::AcceptAll(problems.into_boxed_slice())
        };
        TagFilter { rule }
    }

    /// Would Kargo consider this pushed tag (or digest, for a push by digest)
    /// for this subscription?
    pub fn accepts(&self, tag: &str) -> bool {
        self.accepts_pushed(&PushedTag::new(tag))
    }

    /// [`accepts`](Self::accepts) for a tag whose version parses are shared
    /// across every subscription it is matched against.
    pub fn accepts_pushed(&self, pushed: &PushedTag<'_>) -> bool {
        self.verdict(pushed).accepted()
    }

    /// The decision on a pushed tag with its exact reason: what
    /// [`accepts_pushed`](Self::accepts_pushed) answers, and why. Borrows
    /// from the filter; allocates nothing.
    pub fn verdict(&self, pushed: &PushedTag<'_>) -> Verdict<'_> {
        let tag = pushed.tag;
        match &self.rule {
            Rule::AcceptAll(problems) => Verdict::Unevaluable(problems),
            Rule::SemVer {
                regexes,
                strict,
                constraint,
            } => {
                if let Some(rejected) = regexes.reject(tag) {
                    return rejected;
                }
                let Some(v) = pushed.coerced() else {
                    return Verdict::NotSemVer;
                };
                if *strict && !pushed.strict() {
                    return Verdict::NotStrictSemVer;
                }
                match constraint {
                    Some(c) if !c.matches(v) => Verdict::OutsideConstraint(c.as_str()),
                    _ => Verdict::Accepted,
                }
            }
            Rule::Regexes(regexes) => regexes.reject(tag).unwrap_or(Verdict::Accepted),
            Rule::Digest(followed) if &**followed == tag => Verdict::Accepted,
            Rule::Digest(followed) => Verdict::DigestFollows(followed),
            Rule::Chart { constraint } => {
                let Some(v) = pushed.chart_version() else {
                    return Verdict::NotSemVer;
                };
                match constraint {
                    Some(c) if !c.matches(v) => Verdict::OutsideConstraint(c.as_str()),
                    _ => Verdict::Accepted,
                }
            }
        }
    }

    /// Why the rules could not be evaluated (bad regex, bad constraint,
    /// deprecated allowTags/ignoreTags, unknown strategy); such a filter
    /// accepts everything.
    pub fn problems(&self) -> &[String] {
        match &self.rule {
            Rule::AcceptAll(problems) => problems,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4a5f1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    fn image(strategy: Option<&str>, constraint: Option<&str>) -> ImageSubscription {
        ImageSubscription {
            repo_url: "harbor.example.com/library/app".into(),
            image_selection_strategy: strategy.map(str::to_owned),
            constraint: constraint.map(str::to_owned),
            ..Default::default()
        }
    }

    fn with_regexes(
        mut sub: ImageSubscription,
        allow: &[&str],
        ignore: &[&str],
    ) -> ImageSubscription {
        sub.allow_tags_regexes = allow.iter().map(|s| s.to_string()).collect();
        sub.ignore_tags_regexes = ignore.iter().map(|s| s.to_string()).collect();
        sub
    }

    fn lax(mut sub: ImageSubscription) -> ImageSubscription {
        sub.strict_semvers = Some(false);
        sub
    }

    fn chart(constraint: Option<&str>) -> ChartSubscription {
        ChartSubscription {
            repo_url: "oci://harbor.example.com/charts/app".into(),
            name: None,
            semver_constraint: constraint.map(str::to_owned),
        }
    }

    /// (case, filter, tag, accepted, has problems)
    fn rows() -> Vec<(&'static str, TagFilter, &'static str, bool, bool)> {
        let semver = || TagFilter::for_image(&image(None, None));
        let caret = || TagFilter::for_image(&image(None, Some("^1.2")));
        let deprecated_alias = || {
            TagFilter::for_image(&ImageSubscription {
                semver_constraint: Some("~1.2".into()),
                ..image(None, None)
            })
        };
        let both = || {
            TagFilter::for_image(&ImageSubscription {
                semver_constraint: Some("^1".into()),
                ..image(Some("SemVer"), Some("^2"))
            })
        };
        let allow_v = || TagFilter::for_image(&with_regexes(image(None, None), &["^v"], &[]));
        let ignore_rc =
            || TagFilter::for_image(&with_regexes(image(None, Some(">=1.0.0-0")), &[], &["-rc"]));
        let allow_and_ignore =
            || TagFilter::for_image(&with_regexes(image(None, None), &["^1\\."], &["^1\\.0\\."]));
        let lexical = || TagFilter::for_image(&image(Some("Lexical"), Some("not a constraint")));
        let nightly = || {
            TagFilter::for_image(&with_regexes(
                image(Some("Lexical"), None),
                &["^nightly-"],
                &[],
            ))
        };
        let newest = || {
            TagFilter::for_image(&with_regexes(
                image(Some("NewestBuild"), None),
                &[],
                &["^sha256:"],
            ))
        };
        let digest = || TagFilter::for_image(&image(Some("Digest"), Some("latest")));
        let deprecated_allow = || {
            TagFilter::for_image(&ImageSubscription {
                allow_tags: Some("^v".into()),
                ..image(None, None)
            })
        };
        let deprecated_ignore = || {
            TagFilter::for_image(&ImageSubscription {
                ignore_tags: Some(vec!["latest".into()]),
                ..image(None, None)
            })
        };
        vec![
            // SemVer (unset strategy), strict by default.
            ("semver strict", semver(), "1.2.3", true, false),
            ("semver strict, leading v", semver(), "v1.2.3", true, false),
            ("semver strict, partial", semver(), "1.2", false, false),
            (
                "semver strict, leading zero",
                semver(),
                "01.2.3",
                false,
                false,
            ),
            (
                "semver strict, metadata",
                semver(),
                "1.2.3+build.7",
                true,
                false,
            ),
            ("semver strict, two v", semver(), "vv1.2.3", false, false),
            ("semver, not a version", semver(), "latest", false, false),
            ("semver, push by digest", semver(), DIGEST, false, false),
            (
                "semver, OCI-style metadata",
                semver(),
                "1.2.3_build",
                false,
                false,
            ),
            // strictSemvers: false uses the coercing parse.
            (
                "semver lax, partial",
                TagFilter::for_image(&lax(image(None, None))),
                "1.2",
                true,
                false,
            ),
            (
                "semver lax, v1",
                TagFilter::for_image(&lax(image(None, None))),
                "v1",
                true,
                false,
            ),
            (
                "semver lax, leading zero",
                TagFilter::for_image(&lax(image(None, None))),
                "01.2.3",
                true,
                false,
            ),
            (
                "semver lax, not a version",
                TagFilter::for_image(&lax(image(None, None))),
                "latest",
                false,
                false,
            ),
            (
                "semver lax + constraint",
                TagFilter::for_image(&lax(image(None, Some("~1.2")))),
                "v1.2",
                true,
                false,
            ),
            // Constraints, Masterminds semantics.
            ("caret inside", caret(), "1.9.0", true, false),
            ("caret next major", caret(), "2.0.0", false, false),
            ("caret prerelease", caret(), "1.3.0-rc.1", false, false),
            (
                "prerelease constraint",
                TagFilter::for_image(&image(None, Some(">=1.0.0-0"))),
                "1.3.0-rc.1",
                true,
                false,
            ),
            (
                "|| and hyphen range",
                TagFilter::for_image(&image(None, Some("1.0 - 1.4 || ^3"))),
                "3.2.1",
                true,
                false,
            ),
            (
                "deprecated semverConstraint",
                deprecated_alias(),
                "1.2.5",
                true,
                false,
            ),
            (
                "deprecated semverConstraint, outside",
                deprecated_alias(),
                "1.3.0",
                false,
                false,
            ),
            ("constraint wins over alias", both(), "2.1.0", true, false),
            (
                "constraint wins over alias, outside",
                both(),
                "1.5.0",
                false,
                false,
            ),
            // Regexes on SemVer.
            ("allow ^v", allow_v(), "v1.2.3", true, false),
            ("allow ^v, no v", allow_v(), "1.2.3", false, false),
            ("ignore -rc", ignore_rc(), "1.2.3-rc.1", false, false),
            (
                "ignore -rc, other prerelease",
                ignore_rc(),
                "1.2.3-beta.1",
                true,
                false,
            ),
            (
                "ignore beats allow",
                allow_and_ignore(),
                "1.0.5",
                false,
                false,
            ),
            (
                "allow matches, not ignored",
                allow_and_ignore(),
                "1.1.0",
                true,
                false,
            ),
            // Lexical and NewestBuild: regexes only, constraint unused.
            ("lexical, any tag", lexical(), "latest", true, false),
            ("lexical, digest", lexical(), DIGEST, true, false),
            (
                "lexical allow nightly",
                nightly(),
                "nightly-20240101",
                true,
                false,
            ),
            (
                "lexical allow nightly, release",
                nightly(),
                "1.2.3",
                false,
                false,
            ),
            (
                "newest build ignores digests",
                newest(),
                DIGEST,
                false,
                false,
            ),
            ("newest build, branch tag", newest(), "main", true, false),
            // Digest: the followed tag only.
            ("digest, followed tag", digest(), "latest", true, false),
            ("digest, push by digest", digest(), DIGEST, false, false),
            ("digest, other tag", digest(), "v1.2.3", false, false),
            // Rules that cannot be evaluated accept everything.
            (
                "digest without constraint",
                TagFilter::for_image(&image(Some("Digest"), None)),
                "anything",
                true,
                true,
            ),
            (
                "bad allow regex",
                TagFilter::for_image(&with_regexes(image(None, None), &["("], &[])),
                "latest",
                true,
                true,
            ),
            (
                "bad ignore regex",
                TagFilter::for_image(&with_regexes(image(Some("Lexical"), None), &[], &["[a-"])),
                "x",
                true,
                true,
            ),
            (
                "Go-only regex syntax",
                TagFilter::for_image(&with_regexes(image(None, None), &["\\Q1.2\\E"], &[])),
                DIGEST,
                true,
                true,
            ),
            (
                "bad constraint",
                TagFilter::for_image(&image(None, Some("foo"))),
                "not-a-version",
                true,
                true,
            ),
            (
                "deprecated allowTags",
                deprecated_allow(),
                "1.2.3",
                true,
                true,
            ),
            (
                "deprecated ignoreTags",
                deprecated_ignore(),
                "latest",
                true,
                true,
            ),
            (
                "unknown strategy",
                TagFilter::for_image(&image(Some("Newest"), None)),
                "x",
                true,
                true,
            ),
            // Charts: coercing parse, `_` read as `+`.
            (
                "chart, version",
                TagFilter::for_chart(&chart(None)),
                "1.2.3",
                true,
                false,
            ),
            (
                "chart, partial with v",
                TagFilter::for_chart(&chart(None)),
                "v1.2",
                true,
                false,
            ),
            (
                "chart, not a version",
                TagFilter::for_chart(&chart(None)),
                "latest",
                false,
                false,
            ),
            (
                "chart, push by digest",
                TagFilter::for_chart(&chart(None)),
                DIGEST,
                false,
                false,
            ),
            (
                "chart, OCI build metadata",
                TagFilter::for_chart(&chart(Some("=1.2.3"))),
                "1.2.3_build.1",
                true,
                false,
            ),
            (
                "chart, AND constraint",
                TagFilter::for_chart(&chart(Some(">=1.2 <2"))),
                "1.5.0",
                true,
                false,
            ),
            (
                "chart, AND constraint, outside",
                TagFilter::for_chart(&chart(Some(">=1.2 <2"))),
                "2.0.0",
                false,
                false,
            ),
            (
                "chart, prerelease",
                TagFilter::for_chart(&chart(Some(">=1.2 <2"))),
                "1.5.0-rc.1",
                false,
                false,
            ),
            (
                "chart, empty constraint",
                TagFilter::for_chart(&chart(Some(""))),
                "0.0.1",
                true,
                false,
            ),
            (
                "chart, bad constraint",
                TagFilter::for_chart(&chart(Some(">= bar"))),
                "latest",
                true,
                true,
            ),
        ]
    }

    #[test]
    fn tag_filter_table() {
        let rows = rows();
        assert!(rows.len() >= 30);
        let mut failures = Vec::new();
        for (case, filter, tag, accepted, has_problems) in rows {
            if filter.accepts(tag) != accepted {
                failures.push(format!("{case}: accepts({tag:?}) should be {accepted}"));
            }
            if filter.problems().is_empty() == has_problems {
                failures.push(format!("{case}: problems {:?}", filter.problems()));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn one_pushed_tag_serves_every_filter() {
        // The index parses a pushed tag once and matches it against every
        // subscription: each filter must see the same answers as alone,
        // whatever the filters before it made the tag parse.
        let rows = rows();
        let mut tags: Vec<&str> = rows.iter().map(|r| r.2).collect();
        tags.sort_unstable();
        tags.dedup();
        for tag in tags {
            let shared = PushedTag::new(tag);
            for (case, filter, ..) in rows.iter().rev() {
                assert_eq!(
                    filter.accepts_pushed(&shared),
                    filter.accepts(tag),
                    "{case}: {tag:?}"
                );
            }
        }
    }

    #[test]
    fn equal_rules_are_shared_through_one_interner() {
        let mut rules = RuleInterner::default();
        let sub = |ignore: &str| with_regexes(image(None, Some("^1.2")), &["^v?1\\."], &[ignore]);
        let a = TagFilter::for_image_in(&sub("-rc$"), &mut rules);
        let b = TagFilter::for_image_in(&sub("-beta$"), &mut rules);
        let (
            Rule::SemVer {
                regexes: ra,
                constraint: ca,
                ..
            },
            Rule::SemVer {
                regexes: rb,
                constraint: cb,
                ..
            },
        ) = (&a.rule, &b.rule)
        else {
            panic!("{a:?} {b:?}");
        };
        assert!(Arc::ptr_eq(&ra.allow[0], &rb.allow[0]));
        assert!(!Arc::ptr_eq(&ra.ignore[0], &rb.ignore[0]));
        assert!(Arc::ptr_eq(ca.as_ref().unwrap(), cb.as_ref().unwrap()));
        assert_eq!(rules.regexes(), 3);
        // Sharing changes no answer.
        for tag in ["v1.2.3", "1.2.3-rc", "1.2.3-beta", "2.0.0"] {
            assert_eq!(
                a.accepts(tag),
                TagFilter::for_image(&sub("-rc$")).accepts(tag),
                "{tag}"
            );
            assert_eq!(
                b.accepts(tag),
                TagFilter::for_image(&sub("-beta$")).accepts(tag),
                "{tag}"
            );
        }
    }

    #[test]
    fn a_regex_too_big_to_compile_makes_the_filter_accept_everything() {
        // Parses (so no problem at index time) but exceeds regex's size
        // limit: found when first matched, then treated like a bad regex.
        let big = "\\w{1000}{1000}";
        let semver = TagFilter::for_image(&with_regexes(image(None, Some("^1")), &[], &[big]));
        let lexical = TagFilter::for_image(&with_regexes(
            image(Some("Lexical"), None),
            &["^x", big],
            &[],
        ));
        assert!(semver.problems().is_empty() && lexical.problems().is_empty());
        for tag in ["not-a-version", "2.0.0", "y"] {
            assert!(semver.accepts(tag), "{tag}");
            assert!(lexical.accepts(tag), "{tag}");
        }
        let verdict = lexical.verdict(&PushedTag::new("y"));
        assert_eq!(verdict, Verdict::TooBigToCompile(big));
        assert!(
            verdict.to_string().contains("too large to compile"),
            "{verdict}"
        );
    }

    #[test]
    fn verdicts_name_the_exact_reason() {
        let digest = TagFilter::for_image(&image(Some("Digest"), Some("stable")));
        let ignore = TagFilter::for_image(&with_regexes(image(None, None), &[], &["^x", "-rc"]));
        let allow = TagFilter::for_image(&with_regexes(image(Some("Lexical"), None), &["^v"], &[]));
        let caret = TagFilter::for_image(&image(None, Some("^2.0.0")));
        let chart_filter = TagFilter::for_chart(&chart(Some(">=1.0.0")));
        let bad = TagFilter::for_image(&image(None, Some("foo")));
        let cases: Vec<(&TagFilter, &str, Verdict<'_>, &str)> = vec![
            (&caret, "2.1.0", Verdict::Accepted, "accepted"),
            (
                &caret,
                "1.2.3",
                Verdict::OutsideConstraint("^2.0.0"),
                "does not satisfy `^2.0.0`",
            ),
            (&caret, "1.2", Verdict::NotStrictSemVer, "not strict SemVer"),
            (
                &caret,
                "latest",
                Verdict::NotSemVer,
                "not a semantic version",
            ),
            (
                &ignore,
                "1.2.3-rc.1",
                Verdict::IgnoredBy("-rc"),
                "ignored by regex \"-rc\"",
            ),
            (
                &allow,
                "1.2.3",
                Verdict::NotAllowed,
                "not allowed by any allow regex",
            ),
            (&allow, "v9", Verdict::Accepted, "accepted"),
            (
                &digest,
                "1.2.3",
                Verdict::DigestFollows("stable"),
                "Digest strategy wants `stable`",
            ),
            (
                &chart_filter,
                "0.9.0",
                Verdict::OutsideConstraint(">=1.0.0"),
                "does not satisfy `>=1.0.0`",
            ),
            (
                &chart_filter,
                "main",
                Verdict::NotSemVer,
                "not a semantic version",
            ),
            (
                &bad,
                "whatever",
                Verdict::Unevaluable(bad.problems()),
                "accepted: the rules cannot be evaluated (constraint: cannot parse",
            ),
        ];
        for (filter, tag, want, words) in cases {
            let got = filter.verdict(&PushedTag::new(tag));
            assert_eq!(got, want, "{tag}");
            assert!(got.to_string().starts_with(words), "{tag}: {got}");
            assert_eq!(got.accepted(), filter.accepts(tag), "{tag}");
        }
    }

    #[test]
    fn problems_name_the_cause() {
        let f = TagFilter::for_image(&with_regexes(image(None, Some("foo")), &["("], &[]));
        let problems = f.problems().join("\n");
        assert!(problems.contains("allowTagsRegexes"), "{problems}");
        assert!(problems.contains("constraint"), "{problems}");
    }
}
