//! Repository normalisation: turns a Warehouse subscription's `repoURL` and a
//! Harbor `resource_url` into the same key, so that a push finds the
//! Warehouses subscribed to its repository with one hash lookup.
//!
//! Images follow Kargo, which relies on go-containerregistry's weak
//! validation: trim, drop non-printables, lower-case, strip tag and digest,
//! keep registry host and port, drop `oci://`, and reduce Docker Hub forms to
//! `name` or `org/name` (without `library/`). The rules are ported rather than
//! taken from a crate: `oci-spec`'s `Reference` keeps host case, adds
//! `library/` and rejects inputs go-containerregistry accepts.
//!
//! Input that does not parse as a reference is used as given (cleaned and
//! lower-cased), so an odd `repoURL` still matches the same odd `resource_url`.

/// Docker Hub's registry host names; references on them lose the host.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];
/// Docker Hub's namespace for official images, which Kargo drops.
const OFFICIAL_NAMESPACE: &str = "library/";
/// go-containerregistry's allowed repository characters (after lower-casing).
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";

/// Normalises an image repository reference (`repoURL` of an image
/// subscription, or a pushed `resource_url`).
pub fn normalize_image(input: &str) -> String {
    let cleaned = clean(input);
    match parse(&cleaned) {
        Some(Parsed {
            registry,
            repository,
        }) => match registry {
            Some(host) if !DOCKER_HUB_HOSTS.contains(&host) => format!("{host}/{repository}"),
            _ => repository
                .strip_prefix(OFFICIAL_NAMESPACE)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(repository)
                .to_owned(),
        },
        None => cleaned,
    }
}

/// Normalises a Helm chart reference (`repoURL` of a chart subscription, or
/// a pushed `resource_url`): like an image, but the registry is always kept,
/// since chart references name it explicitly (`oci://registry-1.docker.io/…`).
/// Classic `https://` chart repositories are only cleaned, lower-cased and
/// stripped of a trailing slash; Harbor never pushes to those.
pub fn normalize_chart(input: &str) -> String {
    let cleaned = clean(input);
    let cleaned = cleaned.trim_end_matches('/');
    if cleaned.contains("://") {
        return cleaned.to_owned();
    }
    match parse(cleaned) {
        Some(Parsed {
            registry: Some(host),
            repository,
        }) => format!("{host}/{repository}"),
        Some(Parsed {
            registry: None,
            repository,
        }) => repository.to_owned(),
        None => cleaned.to_owned(),
    }
}

struct Parsed<'a> {
    registry: Option<&'a str>,
    repository: &'a str,
}

/// Trims, drops non-printable characters, lower-cases and strips `oci://`.
fn clean(input: &str) -> String {
    let printable: String = input
        .trim()
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .collect();
    let lower = printable.to_lowercase();
    match lower.strip_prefix("oci://") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Zero-width and byte-order marks, which survive copy and paste.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{00ad}'
    )
}

/// Weak validation in the style of go-containerregistry: returns the
/// registry (if the first component names one) and the repository, with tag
/// and digest removed; `None` if the reference is not valid.
fn parse(reference: &str) -> Option<Parsed<'_>> {
    let without_digest = match reference.split_once('@') {
        Some((name, digest)) => {
            valid_digest(digest).then_some(())?;
            name
        }
        None => reference,
    };
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(colon) => {
            let split = last_slash + colon;
            valid_tag(&without_digest[split + 1..]).then_some(())?;
            &without_digest[..split]
        }
        None => without_digest,
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (Some(first), rest),
        _ => (None, name),
    };
    if let Some(host) = registry {
        valid_registry(host).then_some(())?;
    }
    valid_repository(repository).then_some(Parsed {
        registry,
        repository,
    })
}

fn looks_like_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn valid_registry(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // A bracketed IPv6 literal without port has colons only inside brackets.
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && (name.starts_with('[') && name.ends_with(']')
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    port_ok && name_ok
}

fn valid_repository(repository: &str) -> bool {
    (2..=255).contains(&repository.len())
        && repository.chars().all(|c| REPOSITORY_CHARS.contains(c))
        && repository.split('/').all(|component| !component.is_empty())
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b'-'))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6";

    #[test]
    fn image_table() {
        let tag_and_digest = format!("harbor.example.com/library/app:1.2.3@{D}");
        let digest_only = format!("harbor.example.com/library/app@{D}");
        let hub_digest = format!("nginx@{D}");
        let cases: Vec<(&str, &str)> = vec![
            // Harbor and other registries keep host, port and path.
            (
                "harbor.example.com/library/app",
                "harbor.example.com/library/app",
            ),
            (
                "harbor.example.com/library/app:1.2.3",
                "harbor.example.com/library/app",
            ),
            (&digest_only, "harbor.example.com/library/app"),
            (&tag_and_digest, "harbor.example.com/library/app"),
            (
                "harbor.example.com/team-a/sub/api:v2.0.0",
                "harbor.example.com/team-a/sub/api",
            ),
            (
                "harbor.example.com:8443/library/app:1.0",
                "harbor.example.com:8443/library/app",
            ),
            (
                "Harbor.Example.COM:8443/Library/App:1.0",
                "harbor.example.com:8443/library/app",
            ),
            (
                "HARBOR.EXAMPLE.COM/LIBRARY/APP",
                "harbor.example.com/library/app",
            ),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/app:latest", "localhost:5000/app"),
            ("LocalHost:5000/Team/App", "localhost:5000/team/app"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app"),
            ("[::1]:5000/app:1", "[::1]:5000/app"),
            ("public.ecr.aws/nginx/nginx", "public.ecr.aws/nginx/nginx"),
            ("ghcr.io/akuity/kargo:v1.0.0", "ghcr.io/akuity/kargo"),
            // oci:// is dropped.
            (
                "oci://harbor.example.com/charts/my-chart",
                "harbor.example.com/charts/my-chart",
            ),
            (
                "OCI://Harbor.example.com/charts/my-chart:1.4.0",
                "harbor.example.com/charts/my-chart",
            ),
            // Docker Hub forms.
            ("nginx", "nginx"),
            ("nginx:1.25", "nginx"),
            (&hub_digest, "nginx"),
            ("library/nginx", "nginx"),
            ("docker.io/nginx", "nginx"),
            ("docker.io/library/nginx:latest", "nginx"),
            ("index.docker.io/library/nginx", "nginx"),
            ("registry-1.docker.io/library/nginx", "nginx"),
            ("bitnami/redis", "bitnami/redis"),
            ("docker.io/bitnami/redis:7", "bitnami/redis"),
            ("index.docker.io/bitnami/redis", "bitnami/redis"),
            ("Docker.IO/Bitnami/Redis", "bitnami/redis"),
            ("library/team/app", "library/team/app"),
            // Whitespace and non-printables.
            (
                "  harbor.example.com/library/app:1.2.3 \n",
                "harbor.example.com/library/app",
            ),
            ("\tnginx\r\n", "nginx"),
            (
                "harbor.example.com/lib\u{0}rary/app",
                "harbor.example.com/library/app",
            ),
            (
                "\u{feff}harbor.example.com/library/app\u{200b}",
                "harbor.example.com/library/app",
            ),
            // Unparsable input is used as given (cleaned, lower-cased).
            ("not a reference", "not a reference"),
            (
                "harbor.example.com/library/app:bad:tag",
                "harbor.example.com/library/app:bad:tag",
            ),
            (
                "harbor.example.com/library/app@sha256:zz",
                "harbor.example.com/library/app@sha256:zz",
            ),
            ("harbor.example.com//app", "harbor.example.com//app"),
            ("a", "a"),
            ("", ""),
            (
                "https://harbor.example.com/library/app",
                "https://harbor.example.com/library/app",
            ),
            ("Harbor.example.com/App:-bad", "harbor.example.com/app:-bad"),
        ];
        assert!(cases.len() >= 30);
        for (input, want) in cases {
            assert_eq!(normalize_image(input), want, "{input:?}");
        }
    }

    #[test]
    fn chart_table() {
        let cases = [
            (
                "oci://harbor.example.com/charts/my-chart",
                "harbor.example.com/charts/my-chart",
            ),
            (
                "harbor.example.com/charts/my-chart:1.4.0",
                "harbor.example.com/charts/my-chart",
            ),
            (
                "OCI://Harbor.Example.com:8443/Charts/My-Chart/",
                "harbor.example.com:8443/charts/my-chart",
            ),
            (
                "oci://registry-1.docker.io/bitnamicharts/redis",
                "registry-1.docker.io/bitnamicharts/redis",
            ),
            (
                "https://Charts.Example.com/stable/",
                "https://charts.example.com/stable",
            ),
            (
                " oci://localhost:5000/charts/app ",
                "localhost:5000/charts/app",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_chart(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_push_finds_its_subscription_in_every_spelling() {
        let pushed = "harbor.example.com/library/app:1.2.3";
        for sub in [
            "harbor.example.com/library/app",
            "Harbor.Example.com/library/app",
            " harbor.example.com/library/app:latest",
            "oci://harbor.example.com/library/app",
        ] {
            assert_eq!(normalize_image(pushed), normalize_image(sub), "{sub}");
        }
    }
}
