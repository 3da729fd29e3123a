//! Harbor's list query language (`q`, `sort`, `page`, `page_size`; `src/lib/q`,
//! `src/lib/orm/query.go`) applied to in-memory rows, and the `Link` header
//! (`BaseAPI.Links`).
//!
//! `q=k=v,k=~v,k=[min~max],k={v1 v2},k=(v1 v2)`: exact, fuzzy (case-insensitive contains),
//! range, or-list; and-lists are accepted and ignored, as Harbor's generic ORM layer does.
//! Keys that are not columns of the model are ignored; so are sort keys. Comparisons that
//! Postgres would reject (text against a column of another type) answer 500, as Harbor does.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::api_error::ApiError;

/// A value in a `q` expression, typed as Harbor's `parseValue` does (time, then integer,
/// then string).
#[derive(Debug, Clone, PartialEq)]
pub enum QValue {
    /// `2006-01-02T15:04:05`.
    Time(DateTime<Utc>),
    /// An integer.
    Int(i64),
    /// Anything else (quotes trimmed).
    Str(String),
}

/// One keyword's pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `k=v`.
    Exact(QValue),
    /// `k=~v`.
    Fuzzy(String),
    /// `k=[min~max]`.
    Range(Option<QValue>, Option<QValue>),
    /// `k={v1 v2}`.
    OrList(Vec<QValue>),
    /// `k=(v1 v2)`: not applied by the generic layer.
    AndList,
}

/// A parsed list query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Keyword filters in the order given.
    pub keywords: Vec<(String, Pattern)>,
    /// Sort keys, `true` = descending.
    pub sorts: Vec<(String, bool)>,
    /// Page number (1-based; 0 or less means no offset).
    pub page: i64,
    /// Page size (0 or less means everything).
    pub page_size: i64,
}

/// A column value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Integer column.
    Int(i64),
    /// Text column.
    Text(String),
    /// Boolean column.
    Bool(bool),
    /// Timestamp column (Go zero time = `None`).
    Time(Option<DateTime<Utc>>),
}

/// A row type the query applies to.
pub trait Row {
    /// The value of a column named by field name or column name; `None` if not a column.
    fn field(&self, key: &str) -> Option<Field>;
    /// The default sort when no valid sort key is given.
    fn default_sorts() -> &'static [(&'static str, bool)];
    /// A stable tie-breaker (the row ID).
    fn id(&self) -> i64;
}

fn parse_value(v: &str) -> QValue {
    let v = v.trim();
    if let Ok(t) = NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return QValue::Time(t.and_utc());
    }
    if let Ok(i) = v.parse::<i64>() {
        return QValue::Int(i);
    }
    QValue::Str(v.trim_matches(|c| c == '"' || c == '\'').to_string())
}

fn parse_list(value: &str) -> Vec<QValue> {
    value[1..value.len() - 1]
        .split(' ')
        .map(parse_value)
        .filter(|v| !matches!(v, QValue::Str(s) if s.is_empty()))
        .collect()
}

fn parse_pattern(value: &str) -> Result<Pattern, String> {
    match value.as_bytes()[0] {
        b'~' => {
            if value.len() < 2 {
                return Err(r#"fuzzy match value must start with "~" and contain at least 1 other characters"#.into());
            }
            Ok(Pattern::Fuzzy(value[1..].to_string()))
        }
        b'[' => {
            if !value.ends_with(']') || value.matches('~').count() != 1 {
                return Err(
                    r#"range must start with "[", end with "]" and contains only one "~""#.into(),
                );
            }
            let inner = &value[1..value.len() - 1];
            let (min, max) = inner.split_once('~').unwrap_or((inner, ""));
            let (min, max) = (min.trim(), max.trim());
            if min.is_empty() && max.is_empty() {
                return Err("min and max at least one should be set in range'".into());
            }
            Ok(Pattern::Range(
                (!min.is_empty()).then(|| parse_value(min)),
                (!max.is_empty()).then(|| parse_value(max)),
            ))
        }
        b'{' => {
            if !value.ends_with('}') {
                return Err(r#"or list must start with "{" and end with "}""#.into());
            }
            Ok(Pattern::OrList(parse_list(value)))
        }
        b'(' => {
            if !value.ends_with(')') {
                return Err(r#"and list must start with "(" and end with ")""#.into());
            }
            Ok(Pattern::AndList)
        }
        _ => {
            let v = value.strip_prefix('\\').unwrap_or(value);
            Ok(Pattern::Exact(QValue::Str(v.to_string())))
        }
    }
}

/// Parse `q` and `sort` as `q.Build` does (400 on a malformed `q`).
pub fn build(q: &str, sort: &str, page: i64, page_size: i64) -> Result<Query, ApiError> {
    let mut keywords = Vec::new();
    if !q.is_empty() {
        // Harbor unescapes `q` once more (for `q=tags%3Dnil`); a bad escape is kept as is.
        let q = percent_unescape(q).unwrap_or_else(|| q.to_string());
        for param in q.split(',') {
            let (k, v) = match param.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => (k, v),
                _ => {
                    return Err(ApiError::bad_request(
                        r#"the query string must contain "=" and the key/value cannot be empty"#,
                    ))
                }
            };
            let pattern = parse_pattern(v)
                .map_err(|_| ApiError::bad_request(format!("invalid query string value: {v}")))?;
            // Go keeps keywords in a map: a repeated key keeps the last pattern.
            keywords.retain(|(key, _): &(String, Pattern)| key != k);
            keywords.push((k.to_string(), pattern));
        }
    }
    let sorts = if sort.is_empty() {
        Vec::new()
    } else {
        sort.split(',')
            .map(|s| match s.strip_prefix('-') {
                Some(k) => (k.to_string(), true),
                None => (s.to_string(), false),
            })
            .collect()
    };
    Ok(Query {
        keywords,
        sorts,
        page,
        page_size,
    })
}

/// Go's `url.QueryUnescape` (`+` is a space); `None` on a malformed escape.
pub fn percent_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A comparison Postgres would refuse: Harbor answers 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid comparison for column {0}")]
pub struct TypeMismatch(pub String);

fn text_of(f: &Field) -> String {
    match f {
        Field::Int(i) => i.to_string(),
        Field::Text(s) => s.clone(),
        Field::Bool(b) => b.to_string(),
        Field::Time(t) => crate::model::rfc3339_time(*t),
    }
}

fn parse_pg_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_pg_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Compare a column with a query value the way Postgres would after beego binds it.
fn compare(key: &str, f: &Field, v: &QValue) -> Result<std::cmp::Ordering, TypeMismatch> {
    let bad = || TypeMismatch(key.to_string());
    Ok(match (f, v) {
        (Field::Int(a), QValue::Int(b)) => a.cmp(b),
        (Field::Int(a), QValue::Str(s)) => a.cmp(&s.trim().parse::<i64>().map_err(|_| bad())?),
        (Field::Text(a), QValue::Str(s)) => a.as_str().cmp(s.as_str()),
        (Field::Text(_), _) => return Err(bad()),
        (Field::Bool(a), QValue::Str(s)) => a.cmp(&parse_pg_bool(s).ok_or_else(bad)?),
        (Field::Time(a), QValue::Time(b)) => cmp_time(*a, Some(*b)),
        (Field::Time(a), QValue::Str(s)) => cmp_time(*a, Some(parse_pg_time(s).ok_or_else(bad)?)),
        _ => return Err(bad()),
    })
}

fn cmp_time(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> std::cmp::Ordering {
    // Go's zero time is the earliest instant.
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

fn snake_case(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase())) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// Split an ORM key `name__op` into the column and an allowed operator.
fn split_key(key: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = key.split("__");
    let col = parts.next()?;
    let op = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match op {
        None => Some((col, None)),
        Some(op @ ("icontains" | "in" | "gte" | "lte" | "gt" | "lt" | "exact")) => {
            Some((col, Some(op)))
        }
        Some(_) => None,
    }
}

fn matches<R: Row>(row: &R, key: &str, pattern: &Pattern) -> Result<bool, TypeMismatch> {
    use std::cmp::Ordering::*;
    let Some((col, op)) = split_key(key) else {
        return Ok(true);
    };
    let field = match row.field(col).or_else(|| row.field(&snake_case(col))) {
        Some(f) => f,
        None => return Ok(true),
    };
    Ok(match pattern {
        Pattern::Fuzzy(v) => text_of(&field).to_lowercase().contains(&v.to_lowercase()),
        Pattern::Range(min, max) => {
            let lo = match min {
                Some(v) => compare(col, &field, v)? != Less,
                None => true,
            };
            let hi = match max {
                Some(v) => compare(col, &field, v)? != Greater,
                None => true,
            };
            lo && hi
        }
        Pattern::OrList(values) => {
            let mut any = false;
            for v in values {
                any |= compare(col, &field, v)? == Equal;
            }
            any
        }
        Pattern::AndList => true,
        Pattern::Exact(v) => {
            let ord = compare(col, &field, v)?;
            match op {
                None | Some("exact") | Some("in") => ord == Equal,
                Some("icontains") => text_of(&field)
                    .to_lowercase()
                    .contains(&qtext(v).to_lowercase()),
                Some("gte") => ord != Less,
                Some("lte") => ord != Greater,
                Some("gt") => ord == Greater,
                Some("lt") => ord == Less,
                Some(_) => true,
            }
        }
    })
}

fn qtext(v: &QValue) -> String {
    match v {
        QValue::Time(t) => t.to_rfc3339(),
        QValue::Int(i) => i.to_string(),
        QValue::Str(s) => s.clone(),
    }
}

fn cmp_field(a: &Field, b: &Field) -> std::cmp::Ordering {
    match (a, b) {
        (Field::Int(a), Field::Int(b)) => a.cmp(b),
        (Field::Text(a), Field::Text(b)) => a.cmp(b),
        (Field::Bool(a), Field::Bool(b)) => a.cmp(b),
        (Field::Time(a), Field::Time(b)) => cmp_time(*a, *b),
        _ => std::cmp::Ordering::Equal,
    }
}

/// Apply filters, return the total count and the sorted page.
pub fn apply<R: Row + Clone>(
    rows: impl IntoIterator<Item = R>,
    query: &Query,
    extra_filters: &[(String, Pattern)],
) -> Result<(i64, Vec<R>), TypeMismatch> {
    let mut out = Vec::new();
    'rows: for row in rows {
        for (k, p) in query.keywords.iter().chain(extra_filters) {
            if !matches(&row, k, p)? {
                continue 'rows;
            }
        }
        out.push(row);
    }
    let total = out.len() as i64;
    let mut sorts: Vec<(String, bool)> = query
        .sorts
        .iter()
        .filter(|(k, _)| out.first().is_none_or(|r| r.field(k).is_some()))
        .cloned()
        .collect();
    if sorts.is_empty() {
        sorts = R::default_sorts()
            .iter()
            .map(|(k, d)| (k.to_string(), *d))
            .collect();
    }
    out.sort_by(|a, b| {
        for (k, desc) in &sorts {
            let (Some(fa), Some(fb)) = (a.field(k), b.field(k)) else {
                continue;
            };
            let o = cmp_field(&fa, &fb);
            if o != std::cmp::Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        // Postgres leaves ties unordered; newest-first by ID is what a fresh table shows
        // for the default descending sorts.
        b.id().cmp(&a.id())
    });
    if query.page_size > 0 {
        let offset = if query.page > 0 {
            (query.page_size.saturating_mul(query.page - 1)) as usize
        } else {
            0
        };
        out = out
            .into_iter()
            .skip(offset)
            .take(query.page_size as usize)
            .collect();
    }
    Ok((total, out))
}

/// Encode query pairs as Go's `url.Values.Encode` (keys sorted) and then unescape the
/// result, as Harbor's `Links` does.
fn encode_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    percent_unescape(&encoded).unwrap_or(encoded)
}

/// Harbor's `Link` header for a list answer; empty when there is no other page.
/// `path` is the request path, `pairs` the request's query pairs.
pub fn links(path: &str, pairs: &[(String, String)], total: i64, page: i64, size: i64) -> String {
    if size == 0 {
        return String::new();
    }
    let with_page = |p: i64| {
        // Go's `Query().Set` replaces every value of the key and keeps the others.
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "page" && k != "page_size")
            .cloned()
            .collect();
        v.push(("page".into(), p.to_string()));
        v.push(("page_size".into(), size.to_string()));
        format!("{path}?{}", encode_query(&v))
    };
    let mut out = Vec::new();
    if page > 1 && (page - 1).saturating_mul(size) < total {
        out.push(format!("<{}>; rel=\"prev\"", with_page(page - 1)));
    }
    if size.saturating_mul(page) < total {
        out.push(format!("<{}>; rel=\"next\"", with_page(page + 1)));
    }
    out.join(" , ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug)]
    struct R(i64, &'static str, bool);

    impl Row for R {
        fn field(&self, key: &str) -> Option<Field> {
            match key {
                "id" | "ID" => Some(Field::Int(self.0)),
                "name" | "Name" => Some(Field::Text(self.1.into())),
                "enabled" | "Enabled" => Some(Field::Bool(self.2)),
                _ => None,
            }
        }
        fn default_sorts() -> &'static [(&'static str, bool)] {
            &[("id", true)]
        }
        fn id(&self) -> i64 {
            self.0
        }
    }

    fn rows() -> Vec<R> {
        vec![
            R(1, "alpha", true),
            R(2, "beta", false),
            R(3, "Alphabet", true),
        ]
    }

    fn ids(q: &Query) -> Vec<i64> {
        apply(rows(), q, &[])
            .unwrap()
            .1
            .iter()
            .map(|r| r.0)
            .collect()
    }

    #[test]
    fn patterns_filter_like_harbor() {
        assert_eq!(ids(&build("name=~alp", "", 1, 10).unwrap()), vec![3, 1]);
        assert_eq!(ids(&build("name=beta", "", 1, 10).unwrap()), vec![2]);
        assert_eq!(ids(&build("id=[2~3]", "", 1, 10).unwrap()), vec![3, 2]);
        assert_eq!(ids(&build("id={1 3}", "id", 1, 10).unwrap()), vec![1, 3]);
        assert_eq!(ids(&build("enabled=true", "", 1, 10).unwrap()), vec![3, 1]);
        assert_eq!(
            ids(&build("unknown=x", "-name", 1, 10).unwrap()),
            vec![2, 1, 3]
        );
        assert_eq!(ids(&build("id=2", "", 1, 10).unwrap()), vec![2]);
        assert!(apply(rows(), &build("name=[1~5]", "", 1, 10).unwrap(), &[]).is_err());
    }

    #[test]
    fn malformed_q_is_a_bad_request() {
        let e = build("name", "", 1, 10).unwrap_err();
        assert_eq!(e.status, 400);
        let e = build("id=[1~", "", 1, 10).unwrap_err();
        assert_eq!(e.message, "invalid query string value: [1~");
    }

    #[test]
    fn pages_and_links() {
        let q = build("", "", 2, 1).unwrap();
        let (total, page) = apply(rows(), &q, &[]).unwrap();
        assert_eq!((total, page[0].0), (3, 2));
        let pairs = vec![
            ("q".to_string(), "name=~a".to_string()),
            ("page".to_string(), "2".to_string()),
        ];
        assert_eq!(
            links("/api/v2.0/projects/p/webhook/policies", &pairs, 3, 2, 1),
            "</api/v2.0/projects/p/webhook/policies?page=1&page_size=1&q=name=~a>; rel=\"prev\" , </api/v2.0/projects/p/webhook/policies?page=3&page_size=1&q=name=~a>; rel=\"next\""
        );
        assert_eq!(links("/x", &[], 3, 1, 10), "");
    }

    #[test]
    fn snake_case_matches_go() {
        assert_eq!(snake_case("ProjectID"), "project_id");
        assert_eq!(snake_case("CreationTime"), "creation_time");
    }
}
