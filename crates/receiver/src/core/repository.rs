//! Repository normalisation: turns a Warehouse subscription's `repoURL` and a
//! Harbor `resource_url` into the same key, so that a push finds the
//! Warehouses subscribed to its repository with one hash lookup.
//!
//! The key is the one Kargo computes (`pkg/urls` of akuity/kargo at
//! 1c764767ae03): `NormalizeImage` for image subscriptions,
//! `NormalizeChart` for chart subscriptions, and both for a pushed
//! `resource_url`. Any other key would find Warehouses Kargo's own Harbor
//! receiver does not, or miss ones it finds. Kargo builds on
//! go-containerregistry v0.21.7 (`name.ParseReference`, weak validation) and
//! on Go's `net/url.Parse`; both are ported here rule for rule because no
//! crate reproduces them: `oci-spec`'s `Reference` keeps host case, adds
//! `library/` and rejects inputs go-containerregistry accepts, and the `url`
//! crate follows WHATWG, not Go.
//!
//! Images: lower-case, drop non-printable characters (Go's
//! `unicode.IsPrint`), trim, then parse `[registry/]repository[:tag]` or
//! `…@sha256:<64 hex>`. Docker Hub (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io` or no registry) keeps the repository without a
//! leading `library/`; any other registry keeps `registry/repository`.
//! Input that does not parse is returned exactly as given.
//!
//! Charts: drop non-printables and trim; input Go's URL parser rejects is
//! returned as given; otherwise lower-case, drop a leading `oci://` and
//! normalise as an image (unparsable: the lower-cased text).
//!
//! Kargo's quirks are kept because the key must be Kargo's: `oci://` is not
//! special for images (`oci://host/repo` parses with registry `oci:`), a
//! trailing `/` stays, `library/team/app` on Docker Hub becomes `team/app`,
//! and tags may start with `-` or `.`.

/// Registries whose references reduce to the repository (after
/// go-containerregistry rewrote `docker.io` and "no registry" to
/// `index.docker.io`).
const DOCKER_HUB_REGISTRIES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// Normalises an image repository reference (`repoURL` of an image
/// subscription, or a pushed `resource_url`) as Kargo's `NormalizeImage`.
pub fn normalize_image(input: &str) -> String {
    let cleaned = sanitize_url(&go_to_lower(input));
    match reference::parse(&cleaned) {
        Some(repository) if DOCKER_HUB_REGISTRIES.contains(&repository.registry.as_str()) => {
            let name = repository.repository_str();
            name.strip_prefix("library/").unwrap_or(&name).to_owned()
        }
        Some(repository) => format!("{}/{}", repository.registry, repository.repository_str()),
        None => input.to_owned(),
    }
}

/// Normalises a Helm chart reference (`repoURL` of a chart subscription, or
/// a pushed `resource_url`) as Kargo's `NormalizeChart`: an OCI reference
/// (`oci://` optional) normalises like an image, Docker Hub hosts included;
/// a classic `https://` repository is only cleaned and lower-cased.
pub fn normalize_chart(input: &str) -> String {
    let sanitized = sanitize_url(input);
    if go_url::parse(&sanitized).is_none() {
        return input.to_owned();
    }
    let lower = go_to_lower(&sanitized);
    normalize_image(lower.strip_prefix("oci://").unwrap_or(&lower))
}

/// Kargo's `SanitizeURL`: drops every character Go's `unicode.IsPrint`
/// rejects (anywhere: byte-order marks, zero-width spaces, control
/// characters, non-ASCII spaces), then trims.
fn sanitize_url(input: &str) -> String {
    let printable: String = input.chars().filter(|c| go_is_print(*c)).collect();
    printable.trim().to_owned()
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Without Unicode category tables at hand, the
/// complement is built from what Rust knows (control, white space) plus the
/// format (Cf) and private-use (Co) ranges and the noncharacters; only
/// unassigned code points are misjudged (kept), and a kept non-ASCII
/// character makes the reference unparsable either way.
fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    !(c.is_control()
        || c.is_whitespace()
        || is_format(c)
        || is_private_use(c)
        || is_noncharacter(c))
}

/// Unicode noncharacters (category Cn, but assigned that role for good).
fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xfdd0..=0xfdef).contains(&code) || code & 0xfffe == 0xfffe
}

/// Unicode general category Cf (format characters).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Unicode general category Co (private use).
fn is_private_use(c: char) -> bool {
    matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{ffffd}' | '\u{100000}'..='\u{10fffd}')
}

/// Go's `strings.ToLower`: one lower-case character per character (Go uses
/// the simple case mapping: `İ` becomes `i`, where Rust's full mapping adds a
/// combining dot).
fn go_to_lower(input: &str) -> String {
    if input.is_ascii() {
        return input.to_ascii_lowercase();
    }
    input
        .chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// go-containerregistry v0.21.7 `pkg/name` with weak validation, reduced to
/// what normalisation needs: the registry and the repository of a tag or
/// digest reference.
mod reference {
    /// Docker Hub's registry, the default for references without one.
    const DEFAULT_REGISTRY: &str = "index.docker.io";
    /// The name go-containerregistry rewrites to [`DEFAULT_REGISTRY`].
    const DEFAULT_REGISTRY_ALIAS: &str = "docker.io";
    /// Docker Hub's namespace for official images.
    const DEFAULT_NAMESPACE: &str = "library";
    const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";

    /// A parsed repository (`name.Repository`).
    pub(super) struct Repository {
        /// The registry, after defaulting and the `docker.io` rewrite.
        pub(super) registry: String,
        repository: String,
    }

    impl Repository {
        /// `RepositoryStr`: with the implicit `library/` of a one-component
        /// Docker Hub repository.
        pub(super) fn repository_str(&self) -> String {
            if !self.repository.contains('/') && self.registry == DEFAULT_REGISTRY {
                format!("{DEFAULT_NAMESPACE}/{}", self.repository)
            } else {
                self.repository.clone()
            }
        }

        /// `Name`: `registry/repository`.
        fn name(&self) -> String {
            format!("{}/{}", self.registry, self.repository_str())
        }
    }

    /// `ParseReference`: a tag reference, else a digest reference.
    pub(super) fn parse(reference: &str) -> Option<Repository> {
        new_tag(reference).or_else(|| new_digest(reference))
    }

    /// `NewTag`: an optional `:tag` after the last `/`.
    fn new_tag(name: &str) -> Option<Repository> {
        let base = match name.rsplit_once(':') {
            // Go splits on every ':' and joins all parts but the last again,
            // which is a split at the last one. An empty tag is an error.
            Some((base, tag)) if !tag.contains('/') => {
                check_element(tag, TAG_CHARS, 1, 128).then_some(base)?
            }
            _ => name,
        };
        new_repository(base)
    }

    /// `NewDigest`: exactly one `@`, then `sha256:` and 64 lower-case hex
    /// digits; the part before may carry a tag, which is dropped.
    fn new_digest(name: &str) -> Option<Repository> {
        let (base, digest) = name.split_once('@')?;
        let hex = digest.strip_prefix("sha256:")?;
        if digest.contains('@')
            || hex.len() != 64
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        match new_tag(base) {
            Some(tagged) => new_repository(&tagged.name()),
            None => new_repository(base),
        }
    }

    /// `NewRepository`: the first component is the registry when it is
    /// `localhost` or contains `.` or `:`.
    fn new_repository(name: &str) -> Option<Repository> {
        if name.is_empty() {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first == "localhost" || first.contains(['.', ':']) => {
                (first, rest)
            }
            _ => ("", name),
        };
        // v0.21.7 still requires two characters; v0.21.8 lowered it to one.
        if !check_element(repository, REPOSITORY_CHARS, 2, 255) || !check_registry(registry) {
            return None;
        }
        let registry = match registry {
            "" | DEFAULT_REGISTRY_ALIAS => DEFAULT_REGISTRY,
            other => other,
        };
        Some(Repository {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        })
    }

    /// `checkElement`: length in characters within bounds, only `allowed`.
    fn check_element(element: &str, allowed: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&element.chars().count())
            && element.chars().all(|c| allowed.contains(c))
    }

    /// `checkRegistry`: `url.Parse("//" + name)` succeeds with `Host == name`.
    fn check_registry(name: &str) -> bool {
        super::go_url::parse(&format!("//{name}")).is_some_and(|url| url.host == name.as_bytes())
    }
}

/// Go's `net/url.Parse` (Go 1.26, which Kargo builds with), reduced to
/// whether a URL parses and its host.
mod go_url {
    /// A parsed URL: only what callers look at.
    pub(super) struct Url {
        /// `URL.Host`, unescaped (bytes: an escape may yield non-UTF-8).
        pub(super) host: Vec<u8>,
    }

    /// What an escape may stand for, by URL part (Go's `encoding` modes
    /// that `unescape` treats differently).
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Host,
        Zone,
        /// Path, fragment, user info: any well-formed escape.
        Other,
    }

    /// `url.Parse`; `None` where Go returns an error.
    pub(super) fn parse(raw: &str) -> Option<Url> {
        let (without_fragment, fragment) = raw.split_once('#').unwrap_or((raw, ""));
        let url = parse_without_fragment(without_fragment)?;
        unescape(fragment, Mode::Other)?;
        Some(url)
    }

    fn parse_without_fragment(raw: &str) -> Option<Url> {
        if raw.bytes().any(|b| b < b' ' || b == 0x7f) {
            return None;
        }
        let no_host = Url { host: Vec::new() };
        if raw == "*" {
            return Some(no_host);
        }
        let (scheme, rest) = split_scheme(raw)?;
        let scheme = scheme.to_ascii_lowercase();
        let rest = match rest.strip_suffix('?') {
            Some(forced) if !forced.contains('?') => forced,
            _ => rest.split_once('?').map_or(rest, |(before, _)| before),
        };
        if !rest.starts_with('/') {
            if !scheme.is_empty() {
                // Opaque (`scheme:rest`): nothing more is checked.
                return Some(no_host);
            }
            let first_segment = rest.split_once('/').map_or(rest, |(first, _)| first);
            if first_segment.contains(':') {
                return None;
            }
        }
        let mut url = no_host;
        let mut path = rest;
        if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let authority_and_path = &rest[2..];
            let (authority, rest_path) = match authority_and_path.find('/') {
                Some(i) => authority_and_path.split_at(i),
                None => (authority_and_path, ""),
            };
            url.host = parse_authority(&scheme, authority)?;
            path = rest_path;
        }
        unescape(path, Mode::Other)?;
        Some(url)
    }

    /// `getScheme`: `[a-zA-Z][a-zA-Z0-9+.-]*` before the first `:`;
    /// `None` for a leading `:` ("missing protocol scheme").
    fn split_scheme(raw: &str) -> Option<(&str, &str)> {
        for (i, b) in raw.bytes().enumerate() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
                b':' if i == 0 => return None,
                b':' => return Some((&raw[..i], &raw[i + 1..])),
                _ => return Some(("", raw)),
            }
        }
        Some(("", raw))
    }

    /// `parseAuthority`: `[userinfo@]host`, split at the last `@`.
    fn parse_authority(scheme: &str, authority: &str) -> Option<Vec<u8>> {
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let host = parse_host(scheme, host)?;
        if let Some(userinfo) = userinfo {
            // Go unescapes user and password apart; an escape is well-formed
            // in the whole exactly when it is in its part (`:` is not hex).
            if !userinfo.chars().all(valid_userinfo_char) {
                return None;
            }
            unescape(userinfo, Mode::Other)?;
        }
        Some(host)
    }

    fn valid_userinfo_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c)
    }

    /// `parseHost`: a bracketed IPv6 literal (optional zone and port), or
    /// a name with an optional numeric port.
    fn parse_host(scheme: &str, host: &str) -> Option<Vec<u8>> {
        match host.rfind('[') {
            Some(0) => {
                let close = host.rfind(']')?;
                let colon_port = &host[close + 1..];
                if !valid_optional_port(colon_port) {
                    return None;
                }
                let port = unescape(colon_port, Mode::Host)?;
                let literal = &host[1..close];
                let mut address = match literal.find("%25") {
                    Some(zone) => {
                        let mut address = unescape(&literal[..zone], Mode::Host)?;
                        address.extend(unescape(&literal[zone..], Mode::Zone)?);
                        address
                    }
                    None => unescape(literal, Mode::Host)?,
                };
                // Only an IPv6 address may be bracketed (not an IPv4 one).
                if !is_ipv6_address(&address) {
                    return None;
                }
                let mut out = Vec::with_capacity(address.len() + port.len() + 2);
                out.push(b'[');
                out.append(&mut address);
                out.push(b']');
                out.extend(port);
                Some(out)
            }
            Some(_) => None,
            None => {
                if let (Some(first), Some(last)) = (host.find(':'), host.rfind(':')) {
                    // Only http and https insist on a single colon.
                    let colon = if scheme == "http" || scheme == "https" {
                        first
                    } else {
                        last
                    };
                    if !valid_optional_port(&host[colon..]) {
                        return None;
                    }
                }
                unescape(host, Mode::Host)
            }
        }
    }

    /// `validOptionalPort`: empty, or `:` and digits (possibly none).
    fn valid_optional_port(port: &str) -> bool {
        port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
    }

    /// `netip.ParseAddr` accepting an IPv6 address (optional non-empty
    /// zone): the first of `.`, `:` and `%` must be `:`.
    fn is_ipv6_address(address: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(address) else {
            return false;
        };
        if text.find(['.', ':', '%']).map(|i| text.as_bytes()[i]) != Some(b':') {
            return false;
        }
        let (address, zone) = match text.split_once('%') {
            Some((address, zone)) => (address, Some(zone)),
            None => (text, None),
        };
        zone.is_none_or(|zone| !zone.is_empty()) && address.parse::<std::net::Ipv6Addr>().is_ok()
    }

    /// Bytes a host may hold unescaped (`shouldEscape(c, encodeHost)` false).
    fn host_byte(c: u8) -> bool {
        c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c)
    }

    /// `unescape`: `%XX` decoded; a host may escape only non-ASCII bytes
    /// (and `%25`), a zone only bytes it could hold, and both reject ASCII
    /// bytes outside [`host_byte`].
    fn unescape(s: &str, mode: Mode) -> Option<Vec<u8>> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let high = bytes.get(i + 1).copied().and_then(unhex)?;
                let low = bytes.get(i + 2).copied().and_then(unhex)?;
                let value = high << 4 | low;
                let percent25 = &bytes[i..i + 3] == b"%25";
                if mode == Mode::Host && high < 8 && !percent25 {
                    return None;
                }
                if mode == Mode::Zone && !percent25 && value != b' ' && !host_byte(value) {
                    return None;
                }
                out.push(value);
                i += 3;
            } else {
                if mode != Mode::Other && b < 0x80 && !host_byte(b) {
                    return None;
                }
                out.push(b);
                i += 1;
            }
        }
        Some(out)
    }

    fn unhex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6";

    /// One row of our own tables.
    struct Case<'a> {
        input: &'a str,
        want: &'a str,
    }

    fn case<'a>(input: &'a str, want: &'a str) -> Case<'a> {
        Case { input, want }
    }

    #[test]
    fn image_table() {
        let tag_and_digest = format!("harbor.example.com/library/app:1.2.3@{D}");
        let digest_only = format!("harbor.example.com/library/app@{D}");
        let hub_digest = format!("nginx@{D}");
        let upper_digest = format!("harbor.example.com/app@{}", D.to_uppercase());
        let short_digest = format!("harbor.example.com/app@{}", &D[..D.len() - 1]);
        let cases = [
            // Harbor and other registries keep host, port and path.
            case(
                "harbor.example.com/library/app",
                "harbor.example.com/library/app",
            ),
            case(
                "harbor.example.com/library/app:1.2.3",
                "harbor.example.com/library/app",
            ),
            case(&digest_only, "harbor.example.com/library/app"),
            case(&tag_and_digest, "harbor.example.com/library/app"),
            // Lower-cased before the digest is checked.
            case(&upper_digest, "harbor.example.com/app"),
            case(
                "harbor.example.com/team-a/sub/api:v2.0.0",
                "harbor.example.com/team-a/sub/api",
            ),
            case(
                "harbor.example.com:8443/library/app:1.0",
                "harbor.example.com:8443/library/app",
            ),
            case(
                "Harbor.Example.COM:8443/Library/App:1.0",
                "harbor.example.com:8443/library/app",
            ),
            case(
                "HARBOR.EXAMPLE.COM/LIBRARY/APP",
                "harbor.example.com/library/app",
            ),
            case("localhost/app", "localhost/app"),
            case("localhost:5000/app:latest", "localhost:5000/app"),
            case("LocalHost:5000/Team/App", "localhost:5000/team/app"),
            case("127.0.0.1:5000/app:1", "127.0.0.1:5000/app"),
            case("[::1]:5000/app:1", "[::1]:5000/app"),
            case("public.ecr.aws/nginx/nginx", "public.ecr.aws/nginx/nginx"),
            case("ghcr.io/akuity/kargo:v1.0.0", "ghcr.io/akuity/kargo"),
            // `oci://` is not special for images: `oci:` parses as a registry.
            case(
                "oci://harbor.example.com/charts/my-chart",
                "oci://harbor.example.com/charts/my-chart",
            ),
            case(
                "OCI://Harbor.example.com/charts/my-chart:1.4.0",
                "oci://harbor.example.com/charts/my-chart",
            ),
            // Docker Hub forms.
            case("nginx", "nginx"),
            case("nginx:1.25", "nginx"),
            case(&hub_digest, "nginx"),
            case("library/nginx", "nginx"),
            case("docker.io/nginx", "nginx"),
            case("docker.io/library/nginx:latest", "nginx"),
            case("index.docker.io/library/nginx", "nginx"),
            case("registry-1.docker.io/library/nginx", "nginx"),
            case("bitnami/redis", "bitnami/redis"),
            case("docker.io/bitnami/redis:7", "bitnami/redis"),
            case("index.docker.io/bitnami/redis", "bitnami/redis"),
            case("Docker.IO/Bitnami/Redis", "bitnami/redis"),
            // Kargo trims one `library/` whatever follows.
            case("library/team/app", "team/app"),
            // Weak validation: a tag may start with `-` or `.`.
            case("Harbor.example.com/App:-bad", "harbor.example.com/app"),
            case("harbor.example.com//app", "harbor.example.com//app"),
            case("ab", "ab"),
            // Whitespace and non-printables.
            case(
                "  harbor.example.com/library/app:1.2.3 \n",
                "harbor.example.com/library/app",
            ),
            case("\tnginx\r\n", "nginx"),
            case(
                "harbor.example.com/lib\u{0}rary/app",
                "harbor.example.com/library/app",
            ),
            case(
                "\u{feff}harbor.example.com/library/app\u{200b}",
                "harbor.example.com/library/app",
            ),
            case("nginx\u{a0}", "nginx"),
            // Unparsable input is returned exactly as given.
            case("not a reference", "not a reference"),
            case(" Not A Reference ", " Not A Reference "),
            case(
                "harbor.example.com/library/app:bad:tag",
                "harbor.example.com/library/app:bad:tag",
            ),
            case(
                "harbor.example.com/library/app@sha256:zz",
                "harbor.example.com/library/app@sha256:zz",
            ),
            case(&short_digest, &short_digest),
            case("Harbor.example.com/App:", "Harbor.example.com/App:"),
            case("harbor.example.com:80a/app", "harbor.example.com:80a/app"),
            case("user@harbor.example.com/app", "user@harbor.example.com/app"),
            case("[1.2.3.4]:5000/app", "[1.2.3.4]:5000/app"),
            case("[::1:5000/app", "[::1:5000/app"),
            case("harbor.example.com/Äpp", "harbor.example.com/Äpp"),
            // go-containerregistry v0.21.7 wants two characters.
            case("a", "a"),
            case("", ""),
            case(
                "https://harbor.example.com/library/app",
                "https://harbor.example.com/library/app",
            ),
        ];
        assert!(cases.len() >= 30);
        for Case { input, want } in cases {
            assert_eq!(normalize_image(input), want, "{input:?}");
        }
    }

    #[test]
    fn chart_table() {
        let cases = [
            case(
                "oci://harbor.example.com/charts/my-chart",
                "harbor.example.com/charts/my-chart",
            ),
            case(
                "harbor.example.com/charts/my-chart:1.4.0",
                "harbor.example.com/charts/my-chart",
            ),
            // A trailing slash stays (the repository may end in `/`).
            case(
                "OCI://Harbor.Example.com:8443/Charts/My-Chart/",
                "harbor.example.com:8443/charts/my-chart/",
            ),
            // Docker Hub hosts are dropped, as for images.
            case(
                "oci://registry-1.docker.io/bitnamicharts/redis",
                "bitnamicharts/redis",
            ),
            case("oci://docker.io/library/redis", "redis"),
            // Classic repositories: cleaned and lower-cased only.
            case(
                "https://Charts.Example.com/stable/",
                "https://charts.example.com/stable/",
            ),
            case(
                " oci://localhost:5000/charts/app ",
                "localhost:5000/charts/app",
            ),
            case(
                "\u{feff}OCI://Harbor.example.com/charts/app\u{200b}",
                "harbor.example.com/charts/app",
            ),
            // Unparsable as a reference: the cleaned, lower-cased text.
            case(
                "OCI://Harbor.example.com/My Chart",
                "harbor.example.com/my chart",
            ),
            // Go's URL parser rejects these: returned exactly as given.
            case("127.0.0.1:5000/Charts/App", "127.0.0.1:5000/Charts/App"),
            case(
                "OCI://Harbor.example.com:port/App",
                "OCI://Harbor.example.com:port/App",
            ),
            case("https://Harbor/%zz", "https://Harbor/%zz"),
            case("https://a:1:2/App", "https://a:1:2/App"),
            case(":App", ":App"),
        ];
        for Case { input, want } in cases {
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
        ] {
            assert_eq!(normalize_image(pushed), normalize_image(sub), "{sub}");
        }
        for sub in [
            "oci://harbor.example.com/library/app",
            "OCI://Harbor.Example.com/library/app",
            "harbor.example.com/library/app",
        ] {
            assert_eq!(normalize_image(pushed), normalize_chart(sub), "{sub}");
        }
    }

    #[test]
    fn go_url_hosts() {
        let host =
            |raw: &str| go_url::parse(raw).map(|u| String::from_utf8_lossy(&u.host).into_owned());
        assert_eq!(
            host("//harbor.example.com:8443").as_deref(),
            Some("harbor.example.com:8443")
        );
        assert_eq!(host("//").as_deref(), Some(""));
        assert_eq!(
            host("//[fe80::1%25en0]:80").as_deref(),
            Some("[fe80::1%en0]:80")
        );
        assert_eq!(host("//a:1:2").as_deref(), Some("a:1:2"));
        assert_eq!(host("//h%C3%A4st").as_deref(), Some("häst"));
        for bad in [
            "http://a:1:2",
            "//[1.2.3.4]",
            "//x[::1]",
            "//[::1",
            "//[::1]x",
            "//a b",
            "//h%41",
            "//ü@host",
            "//host/%zz",
            "//host#%zz",
            "//a\u{7f}",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_is_print_matches_go_for_common_characters() {
        for c in ['a', 'Z', '0', ' ', '~', 'é', 'Ä', '€', '中', '\u{301}'] {
            assert!(go_is_print(c), "{c:?}");
        }
        for c in [
            '\t', '\n', '\u{0}', '\u{7f}', '\u{85}', '\u{a0}', '\u{ad}', '\u{200b}', '\u{2028}',
            '\u{3000}', '\u{feff}', '\u{e000}', '\u{fffe}',
        ] {
            assert!(!go_is_print(c), "{c:?}");
        }
        assert_eq!(go_to_lower("İSTANBUL"), "istanbul");
    }

    /// One row of a table copied from Kargo's own tests.
    struct KargoVector {
        /// Kargo's test file and, where it has one, the row's name there.
        source: &'static str,
        input: &'static str,
        expected: &'static str,
    }

    /// Every row of Kargo's `TestNormalizeImage` (`pkg/urls/image_test.go`).
    #[test]
    fn kargo_normalize_image_vectors() {
        for v in KARGO_IMAGE_VECTORS {
            assert_eq!(
                normalize_image(v.input),
                v.expected,
                "{} {:?}",
                v.source,
                v.input
            );
        }
    }

    /// Every row of Kargo's `TestNormalizeChart` (`pkg/urls/helm_test.go`).
    #[test]
    fn kargo_normalize_chart_vectors() {
        for v in KARGO_CHART_VECTORS {
            assert_eq!(
                normalize_chart(v.input),
                v.expected,
                "{} {:?}",
                v.source,
                v.input
            );
        }
    }

    /// Kargo's rows, copied verbatim from akuity/kargo at 1c764767ae03.
    #[test]
    fn kargo_vectors_are_all_there() {
        assert_eq!(KARGO_IMAGE_VECTORS.len() + KARGO_CHART_VECTORS.len(), 27);
    }

    const KARGO_IMAGE_VECTORS: &[KargoVector] = &[
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "index.docker.io/library/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "index.docker.io/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "registry-1.docker.io/library/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "registry-1.docker.io/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "docker.io/library/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "docker.io/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "library/busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "busybox",
            expected: "busybox",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "index.docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "ghcr.io/example/repo",
            expected: "ghcr.io/example/repo",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "quay.io/example/repo",
            expected: "quay.io/example/repo",
        },
        KargoVector {
            source: "image_test.go TestNormalizeImage",
            input: "invalid url",
            expected: "invalid url",
        },
    ];

    const KARGO_CHART_VECTORS: &[KargoVector] = &[
        KargoVector {
            source: "helm_test.go TestNormalizeChart/empty string",
            input: "",
            expected: "",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/single word",
            input: "repo",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/leading and trailing whitespace",
            input: "  repo  ",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/mixed case",
            input: "REpo",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/oci prefix",
            input: "oci://repo",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/oci prefix with whitespace",
            input: "  oci://repo  ",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/oci prefix with mixed case",
            input: "OCI://Repo",
            expected: "repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/docker.io URL with oci prefix",
            input: "oci://docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/docker.io URL without oci prefix",
            input: "docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/index.docker.io URL with oci prefix",
            input: "oci://index.docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/index.docker.io URL without oci prefix",
            input: "index.docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/registry-1.docker.io URL with oci prefix",
            input: "oci://registry-1.docker.io/example/repo",
            expected: "example/repo",
        },
        KargoVector {
            source: "helm_test.go TestNormalizeChart/registry-1.docker.io URL without oci prefix",
            input: "registry-1.docker.io/example/repo",
            expected: "example/repo",
        },
    ];
}
