//! Decoding and validating a `WebhookPolicy` request body as Harbor does.
//!
//! Decoding follows Go's `encoding/json` into the swagger model: the first JSON value is
//! read (trailing bytes ignored), unknown keys are ignored, keys match case-insensitively,
//! `null` leaves the zero value, and a type mismatch fails the whole body (422, reported
//! by go-swagger as a parse error). Validation follows `validateEventTypes` and
//! `validateTargets` in `src/server/v2.0/handler/webhook.go` (400): note that Harbor
//! validates a normalised copy of each address but stores the address exactly as sent.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::model::{GoTime, Target};
use crate::payload::{SUPPORTED_EVENT_TYPES, SUPPORTED_FORMATS, SUPPORTED_NOTIFY_TYPES};

/// The fields of a decoded body that Harbor keeps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyBody {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `creator` (stored as sent).
    pub creator: String,
    /// `creation_time` (zero when absent).
    pub creation_time: GoTime,
    /// `enabled` (false when absent).
    pub enabled: bool,
    /// `event_types`.
    pub event_types: Vec<String>,
    /// `targets`.
    pub targets: Vec<Target>,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(value: &Value, strukt: &str, path: &str, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go struct field {strukt}.{path} of type {go_type}",
        kind_of(value)
    )
}

/// Go matches an exact key first, then a case-insensitive one.
fn lookup<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn string_field(
    obj: &Map<String, Value>,
    key: &str,
    strukt: &str,
    path: &str,
    go_type: &str,
) -> Result<String, String> {
    match lookup(obj, key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(type_error(v, strukt, path, go_type)),
    }
}

fn bool_field(
    obj: &Map<String, Value>,
    key: &str,
    strukt: &str,
    path: &str,
) -> Result<bool, String> {
    match lookup(obj, key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(type_error(v, strukt, path, "bool")),
    }
}

fn int_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<(), String> {
    match lookup(obj, key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.is_i64() => Ok(()),
        Some(Value::Number(n)) => Err(format!(
            "json: cannot unmarshal number {n} into Go struct field WebhookPolicy.{path} of type int64"
        )),
        Some(v) => Err(type_error(v, "WebhookPolicy", path, "int64")),
    }
}

fn time_field(obj: &Map<String, Value>, key: &str) -> Result<GoTime, String> {
    match lookup(obj, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                // Go's zero time written back (e.g. a GET body sent as PUT) stays zero.
                Ok((t.timestamp() != -62_135_596_800).then_some(t))
            }
            Err(_) => Err(format!(
                "parsing time \"{s}\" as \"2006-01-02T15:04:05.000Z07:00\": cannot parse \"{s}\""
            )),
        },
        Some(v) => Err(format!(
            "json: cannot unmarshal {} into Go value of type string",
            kind_of(v)
        )),
    }
}

fn decode_target(v: &Value) -> Result<Target, String> {
    let obj = match v {
        Value::Null => return Ok(Target::default()),
        Value::Object(o) => o,
        v => {
            return Err(type_error(
                v,
                "WebhookPolicy",
                "targets",
                "models.WebhookTargetObject",
            ))
        }
    };
    const S: &str = "WebhookTargetObject";
    Ok(Target {
        address: string_field(obj, "address", S, "targets.address", "string")?,
        auth_header: string_field(obj, "auth_header", S, "targets.auth_header", "string")?,
        payload_format: string_field(
            obj,
            "payload_format",
            S,
            "targets.payload_format",
            "models.PayloadFormatType",
        )?,
        skip_cert_verify: bool_field(obj, "skip_cert_verify", S, "targets.skip_cert_verify")?,
        kind: string_field(obj, "type", S, "targets.type", "string")?,
    })
}

fn decode_value(v: &Value) -> Result<PolicyBody, String> {
    let obj = match v {
        Value::Null => return Ok(PolicyBody::default()),
        Value::Object(o) => o,
        v => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type models.WebhookPolicy",
                kind_of(v)
            ))
        }
    };
    const P: &str = "WebhookPolicy";
    let creation_time = time_field(obj, "creation_time")?;
    let creator = string_field(obj, "creator", P, "creator", "string")?;
    let description = string_field(obj, "description", P, "description", "string")?;
    let enabled = bool_field(obj, "enabled", P, "enabled")?;
    let event_types = match lookup(obj, "event_types") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| match e {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.clone()),
                e => Err(type_error(e, P, "event_types", "string")),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(type_error(v, P, "event_types", "[]string")),
    };
    int_field(obj, "id", "id")?;
    let name = string_field(obj, "name", P, "name", "string")?;
    int_field(obj, "project_id", "project_id")?;
    let targets = match lookup(obj, "targets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(decode_target).collect::<Result<_, _>>()?,
        Some(v) => return Err(type_error(v, P, "targets", "[]*models.WebhookTargetObject")),
    };
    time_field(obj, "update_time")?;
    Ok(PolicyBody {
        name,
        description,
        creator,
        creation_time,
        enabled,
        event_types,
        targets,
    })
}

/// Decode a body; `Err` is the go-swagger validation failure line.
pub fn decode(body: &[u8]) -> Result<PolicyBody, String> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        None => Err("policy in body is required".to_string()),
        Some(Ok(v)) => decode_value(&v)
            .map_err(|e| format!("parsing policy body from \"\" failed, because {e}")),
        Some(Err(e)) => Err(format!(
            "parsing policy body from \"\" failed, because {}",
            go_syntax_message(&e)
        )),
    }
}

fn go_syntax_message(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected EOF".to_string()
    } else {
        format!("invalid character looking for beginning of value ({e})")
    }
}

/// Harbor's `utils.ParseEndpoint`: the normalised address, or the error message.
pub fn parse_endpoint(address: &str) -> Result<String, String> {
    let e = address.trim_matches(' ').trim_end_matches('/');
    if e.is_empty() {
        return Err("empty URL".to_string());
    }
    let e = match e.find("://") {
        Some(i) => {
            let scheme = &e[..i];
            if scheme != "http" && scheme != "https" {
                return Err(format!("invalid scheme: {scheme}"));
            }
            e.to_string()
        }
        None => format!("http://{e}"),
    };
    let rest = &e[e.find("://").map(|i| i + 3).unwrap_or(0)..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if let Some(c) = hostport
        .chars()
        .find(|c| c.is_control() || " <>\"{}|\\^`".contains(*c))
    {
        return Err(format!(
            "parse \"{e}\": invalid character \"{c}\" in host name"
        ));
    }
    let port = if hostport.starts_with('[') {
        hostport.split_once("]").map(|(_, p)| p).unwrap_or("")
    } else {
        hostport.rfind(':').map(|i| &hostport[i..]).unwrap_or("")
    };
    let port_ok =
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return Err(format!("parse \"{e}\": invalid port \"{port}\" after host"));
    }
    Ok(e)
}

/// Harbor's checks (400), in its order; fills in `Default` for http targets without a format.
pub fn validate(body: &mut PolicyBody) -> Result<(), ApiError> {
    if body.event_types.is_empty() {
        return Err(ApiError::bad_request("empty event type"));
    }
    for t in &body.event_types {
        if !SUPPORTED_EVENT_TYPES.contains(&t.as_str()) {
            return Err(ApiError::bad_request(format!("unsupported event type {t}")));
        }
    }
    if body.targets.is_empty() {
        return Err(ApiError::bad_request(format!(
            "empty notification target with policy {}",
            body.name
        )));
    }
    for t in &mut body.targets {
        parse_endpoint(&t.address).map_err(ApiError::bad_request)?;
        if !SUPPORTED_NOTIFY_TYPES.contains(&t.kind.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unsupported target type {} with policy {}",
                t.kind, body.name
            )));
        }
        if !t.payload_format.is_empty() && t.kind == "slack" {
            return Err(ApiError::bad_request(
                "set payload format is not allowed for slack",
            ));
        }
        if !t.payload_format.is_empty() && !SUPPORTED_FORMATS.contains(&t.payload_format.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unsupported payload format type: {}",
                t.payload_format
            )));
        }
        if t.payload_format.is_empty() && t.kind == "http" {
            t.payload_format = "Default".to_string();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        let b = decode(br#"{"Name":"x","enabled":true,"targets":[{"type":"http","address":"h"}],"event_types":["PUSH_ARTIFACT"],"unknown":1} trailing"#).unwrap();
        assert_eq!(b.name, "x");
        assert!(b.enabled);
        assert_eq!(b.targets[0].address, "h");
        let e = decode(br#"{"enabled":"yes"}"#).unwrap_err();
        assert_eq!(e, "parsing policy body from \"\" failed, because json: cannot unmarshal string into Go struct field WebhookPolicy.enabled of type bool");
        assert_eq!(decode(b"  ").unwrap_err(), "policy in body is required");
        assert!(!decode(b"{}").unwrap().enabled);
    }

    #[test]
    fn endpoints_are_checked_like_parse_endpoint() {
        assert_eq!(
            parse_endpoint("receiver:8080/hook/").unwrap(),
            "http://receiver:8080/hook"
        );
        assert_eq!(
            parse_endpoint("ftp://x").unwrap_err(),
            "invalid scheme: ftp"
        );
        assert_eq!(parse_endpoint(" / ").unwrap_err(), "empty URL");
        assert!(parse_endpoint("http://a b/").is_err());
        assert!(parse_endpoint("http://host:abc/x").is_err());
    }

    #[test]
    fn validation_order_and_defaults() {
        let mut b = PolicyBody {
            name: "p".into(),
            event_types: vec!["PUSH_ARTIFACT".into()],
            targets: vec![Target {
                kind: "http".into(),
                address: "r:80".into(),
                ..Target::default()
            }],
            ..PolicyBody::default()
        };
        validate(&mut b).unwrap();
        assert_eq!(b.targets[0].payload_format, "Default");
        // The address is kept as sent, without the scheme Harbor checks it with.
        assert_eq!(b.targets[0].address, "r:80");
        b.targets[0].kind = "email".into();
        assert_eq!(
            validate(&mut b).unwrap_err().message,
            "unsupported target type email with policy p"
        );
        b.event_types.clear();
        assert_eq!(validate(&mut b).unwrap_err().message, "empty event type");
    }
}
