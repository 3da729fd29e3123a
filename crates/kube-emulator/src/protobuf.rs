//! A minimal decoder for the Kubernetes protobuf envelope (`k8s\0` + `runtime.Unknown`)
//! and the few built-in kinds kubectl sends as protobuf: Namespace, Secret, ConfigMap
//! and DeleteOptions. Field numbers follow `k8s.io/api` `generated.proto`.
//!
//! Unknown fields are skipped. Responses are always JSON.

use serde_json::{json, Map, Value};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The magic prefix of Kubernetes protobuf bodies.
pub const MAGIC: &[u8] = b"k8s\0";

/// A decoded wire field.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "truncated varint".to_string())?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = key >> 3;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or_else(|| "truncated field".to_string())?;
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Field::Bytes(s)
            }
            5 => {
                self.skip(4)?;
                Field::Fixed
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((num, f)))
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated fixed field".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid utf-8 in string field".to_string())
}

/// Decode a `map<string, X>` entry: key = 1, value = 2.
fn map_entry(b: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), Vec::new());
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = string(x)?,
            (2, Field::Bytes(x)) => v = x.to_vec(),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                m.insert("name".into(), json!(string(x)?));
            }
            (2, Field::Bytes(x)) => {
                m.insert("generateName".into(), json!(string(x)?));
            }
            (3, Field::Bytes(x)) => {
                m.insert("namespace".into(), json!(string(x)?));
            }
            (5, Field::Bytes(x)) => {
                m.insert("uid".into(), json!(string(x)?));
            }
            (6, Field::Bytes(x)) => {
                m.insert("resourceVersion".into(), json!(string(x)?));
            }
            (11, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                labels.insert(k, json!(string(&v)?));
            }
            (12, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                annotations.insert(k, json!(string(&v)?));
            }
            (14, Field::Bytes(x)) => finalizers.push(json!(string(x)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    // Empty strings are protobuf defaults: drop them.
    m.retain(|_, v| v.as_str() != Some(""));
    Ok(Value::Object(m))
}

fn namespace(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut o = json!({"apiVersion": "v1", "kind": "Namespace"});
    while let Some((n, f)) = r.next()? {
        if let (1, Field::Bytes(x)) = (n, f) {
            o["metadata"] = object_meta(x)?;
        }
    }
    Ok(o)
}

fn secret(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut o = json!({"apiVersion": "v1", "kind": "Secret"});
    let mut data = Map::new();
    let mut string_data = Map::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(x)) => o["metadata"] = object_meta(x)?,
            (2, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                data.insert(k, json!(BASE64.encode(&v)));
            }
            (3, Field::Bytes(x)) => o["type"] = json!(string(x)?),
            (4, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                string_data.insert(k, json!(string(&v)?));
            }
            (5, Field::Varint(v)) => o["immutable"] = json!(v != 0),
            _ => {}
        }
    }
    if !data.is_empty() {
        o["data"] = Value::Object(data);
    }
    if !string_data.is_empty() {
        o["stringData"] = Value::Object(string_data);
    }
    Ok(o)
}

fn config_map(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    let mut data = Map::new();
    let mut binary = Map::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(x)) => o["metadata"] = object_meta(x)?,
            (2, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                data.insert(k, json!(string(&v)?));
            }
            (3, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                binary.insert(k, json!(BASE64.encode(&v)));
            }
            (4, Field::Varint(v)) => o["immutable"] = json!(v != 0),
            _ => {}
        }
    }
    if !data.is_empty() {
        o["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        o["binaryData"] = Value::Object(binary);
    }
    Ok(o)
}

fn delete_options(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut o = json!({"apiVersion": "v1", "kind": "DeleteOptions"});
    let mut dry = Vec::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Varint(v)) => o["gracePeriodSeconds"] = json!(v as i64),
            (2, Field::Bytes(x)) => {
                let mut pr = Reader::new(x);
                let mut p = Map::new();
                while let Some((pn, pf)) = pr.next()? {
                    match (pn, pf) {
                        (1, Field::Bytes(s)) => {
                            p.insert("uid".into(), json!(string(s)?));
                        }
                        (2, Field::Bytes(s)) => {
                            p.insert("resourceVersion".into(), json!(string(s)?));
                        }
                        _ => {}
                    }
                }
                o["preconditions"] = Value::Object(p);
            }
            (3, Field::Varint(v)) => o["orphanDependents"] = json!(v != 0),
            (4, Field::Bytes(x)) => o["propagationPolicy"] = json!(string(x)?),
            (5, Field::Bytes(x)) => dry.push(json!(string(x)?)),
            _ => {}
        }
    }
    if !dry.is_empty() {
        o["dryRun"] = Value::Array(dry);
    }
    Ok(o)
}

/// Decode a `k8s\0`-prefixed protobuf body into the JSON form of the object.
///
/// Supports Namespace, Secret, ConfigMap and DeleteOptions; other kinds are an error.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| "protobuf body lacks the k8s\\0 prefix".to_string())?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                let mut tr = Reader::new(tm);
                while let Some((tn, tf)) = tr.next()? {
                    match (tn, tf) {
                        (1, Field::Bytes(s)) => api_version = string(s)?,
                        (2, Field::Bytes(s)) => kind = string(s)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let mut obj = match kind.as_str() {
        "Namespace" => namespace(raw)?,
        "Secret" => secret(raw)?,
        "ConfigMap" => config_map(raw)?,
        "DeleteOptions" => delete_options(raw)?,
        other => {
            return Err(format!(
                "protobuf decoding of kind {other:?} is not supported; send JSON"
            ))
        }
    };
    if !api_version.is_empty() {
        obj["apiVersion"] = json!(api_version);
    }
    Ok(obj)
}

/// Encode a length-delimited field (used to build the OpenAPI v2 protobuf document).
pub fn encode_bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    encode_varint(out, ((field as u64) << 3) | 2);
    encode_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Encode a varint.
pub fn encode_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Encode an `openapi_v2.Document` protobuf with just `swagger`, `info` and empty `paths`:
/// the minimal valid Swagger 2.0 document kubectl accepts.
pub fn minimal_openapi_v2(version: &str) -> Vec<u8> {
    let mut info = Vec::new();
    encode_bytes_field(&mut info, 1, b"Kubernetes");
    encode_bytes_field(&mut info, 2, version.as_bytes());
    let mut doc = Vec::new();
    encode_bytes_field(&mut doc, 1, b"2.0");
    encode_bytes_field(&mut doc, 2, &info);
    encode_bytes_field(&mut doc, 8, &[]);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        encode_bytes_field(&mut tm, 1, api_version.as_bytes());
        encode_bytes_field(&mut tm, 2, kind.as_bytes());
        let mut u = Vec::new();
        encode_bytes_field(&mut u, 1, &tm);
        encode_bytes_field(&mut u, 2, raw);
        let mut out = MAGIC.to_vec();
        out.extend(u);
        out
    }

    #[test]
    fn decodes_secret() {
        let mut meta = Vec::new();
        encode_bytes_field(&mut meta, 1, b"s1");
        encode_bytes_field(&mut meta, 3, b"ns");
        let mut lbl = Vec::new();
        encode_bytes_field(&mut lbl, 1, b"a");
        encode_bytes_field(&mut lbl, 2, b"b");
        encode_bytes_field(&mut meta, 11, &lbl);
        let mut s = Vec::new();
        encode_bytes_field(&mut s, 1, &meta);
        let mut d = Vec::new();
        encode_bytes_field(&mut d, 1, b"auth-header");
        encode_bytes_field(&mut d, 2, b"tok");
        encode_bytes_field(&mut s, 2, &d);
        encode_bytes_field(&mut s, 3, b"Opaque");
        let v = decode(&envelope("v1", "Secret", &s)).unwrap();
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(v["data"]["auth-header"], BASE64.encode(b"tok"));
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err());
    }
}
