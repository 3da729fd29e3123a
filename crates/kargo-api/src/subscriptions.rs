//! `Warehouse.spec.subscriptions[]`: raw JSON in Kargo's CRD. Each item has
//! an optional `name` and exactly one key naming its type. We type the
//! `image`, `chart` and `git` forms and keep anything else as it is.
//!
//! Decoding never fails on an item's content: a malformed item becomes
//! [`SubscriptionSource::Malformed`], so one bad Warehouse cannot break the
//! watch of all Warehouses.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// An image repository subscription.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSubscription {
    /// The image repository, e.g. `harbor.example.com/library/app`.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `SemVer` (default), `Lexical`, `NewestBuild` or `Digest`; kept as a
    /// string so that a strategy added by Kargo later does not break decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_selection_strategy: Option<String>,
    /// SemVer constraint, or the tag to follow for `Digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// Deprecated spelling of `constraint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver_constraint: Option<String>,
    /// Tags must match one of these (empty: all tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tags_regexes: Vec<String>,
    /// Tags matching any of these are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_tags_regexes: Vec<String>,
    /// Whether tags must be strict MAJOR.MINOR.PATCH (Kargo's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_semvers: Option<bool>,
    /// Deprecated single allow regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tags: Option<String>,
    /// Deprecated list of ignored tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_tags: Option<Vec<String>>,
}

/// A Helm chart subscription (classic or `oci://` repository).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChartSubscription {
    /// `https://…` chart repository or `oci://host/path/chart`.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Chart name, for classic (non-OCI) repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SemVer constraint on chart versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver_constraint: Option<String>,
}

/// A Git repository subscription (never matched by Harbor pushes).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GitSubscription {
    /// The repository URL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
}

/// What one subscription subscribes to.
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionSource {
    /// `image:`
    Image(ImageSubscription),
    /// `chart:`
    Chart(ChartSubscription),
    /// `git:`
    Git(GitSubscription),
    /// A kind we do not interpret, kept verbatim.
    Other {
        /// The key naming the kind.
        kind: String,
        /// Its value.
        value: Value,
    },
    /// A known kind whose content does not decode, or an item without
    /// exactly one kind key. Kept verbatim; `reason` says what is wrong.
    Malformed {
        /// The item as found.
        raw: Value,
        /// Why it could not be decoded.
        reason: String,
    },
}

/// One item of `spec.subscriptions`.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// Optional name of the subscription.
    pub name: Option<String>,
    /// What it subscribes to.
    pub source: SubscriptionSource,
}

impl Subscription {
    /// An image subscription without a name.
    pub fn image(sub: ImageSubscription) -> Self {
        Self {
            name: None,
            source: SubscriptionSource::Image(sub),
        }
    }

    /// A chart subscription without a name.
    pub fn chart(sub: ChartSubscription) -> Self {
        Self {
            name: None,
            source: SubscriptionSource::Chart(sub),
        }
    }

    fn from_value(raw: Value) -> Self {
        let Value::Object(map) = &raw else {
            return Self {
                name: None,
                source: SubscriptionSource::Malformed {
                    reason: "subscription is not an object".into(),
                    raw,
                },
            };
        };
        let name = map.get("name").and_then(Value::as_str).map(str::to_owned);
        let kinds: Vec<&String> = map.keys().filter(|k| *k != "name").collect();
        let source = match kinds.as_slice() {
            [kind] => {
                let value = map[kind.as_str()].clone();
                decode_kind(kind, value).unwrap_or_else(|reason| SubscriptionSource::Malformed {
                    raw: raw.clone(),
                    reason,
                })
            }
            other => SubscriptionSource::Malformed {
                reason: format!(
                    "expected exactly one subscription kind, found {}",
                    other.len()
                ),
                raw: raw.clone(),
            },
        };
        Self { name, source }
    }

    fn to_value(&self) -> Value {
        let (kind, value) = match &self.source {
            SubscriptionSource::Malformed { raw, .. } => return raw.clone(),
            SubscriptionSource::Image(s) => ("image", serde_json::to_value(s)),
            SubscriptionSource::Chart(s) => ("chart", serde_json::to_value(s)),
            SubscriptionSource::Git(s) => ("git", serde_json::to_value(s)),
            SubscriptionSource::Other { kind, value } => (kind.as_str(), Ok(value.clone())),
        };
        let mut map = Map::new();
        if let Some(name) = &self.name {
            map.insert("name".into(), Value::String(name.clone()));
        }
        // Serialising these plain structs cannot fail; Null is a safe fallback.
        map.insert(kind.to_owned(), value.unwrap_or(Value::Null));
        Value::Object(map)
    }
}

fn decode_kind(kind: &str, value: Value) -> Result<SubscriptionSource, String> {
    let err = |e: serde_json::Error| format!("invalid {kind} subscription: {e}");
    Ok(match kind {
        "image" => SubscriptionSource::Image(serde_json::from_value(value).map_err(err)?),
        "chart" => SubscriptionSource::Chart(serde_json::from_value(value).map_err(err)?),
        "git" => SubscriptionSource::Git(serde_json::from_value(value).map_err(err)?),
        other => SubscriptionSource::Other {
            kind: other.to_owned(),
            value,
        },
    })
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::from_value)
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl JsonSchema for Subscription {
    fn schema_name() -> Cow<'static, str> {
        "Subscription".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // As in Kargo's CRD: the item is free-form JSON.
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_each_form_and_tolerates_the_rest() {
        let items = json!([
            {"image": {"repoURL": "harbor.example.com/library/app", "constraint": "^1.0.0",
                       "allowTagsRegexes": ["^1"], "strictSemvers": false, "platform": "linux/amd64"}},
            {"name": "c", "chart": {"repoURL": "oci://harbor.example.com/charts/app", "semverConstraint": ">=1"}},
            {"git": {"repoURL": "https://github.com/x/y", "branch": "main"}},
            {"name": "n", "newKind": {"anything": 1}},
            {"image": {"repoURL": 42}},
            {"image": {"repoURL": "a"}, "chart": {"repoURL": "b"}},
            "not-an-object"
        ]);
        let subs: Vec<Subscription> = serde_json::from_value(items).unwrap();
        assert!(matches!(&subs[0].source, SubscriptionSource::Image(i)
            if i.repo_url == "harbor.example.com/library/app"
            && i.constraint.as_deref() == Some("^1.0.0")
            && i.allow_tags_regexes == ["^1"] && i.strict_semvers == Some(false)));
        assert_eq!(subs[1].name.as_deref(), Some("c"));
        assert!(matches!(&subs[1].source, SubscriptionSource::Chart(c)
            if c.semver_constraint.as_deref() == Some(">=1")));
        assert!(
            matches!(&subs[2].source, SubscriptionSource::Git(g) if g.repo_url.ends_with("/y"))
        );
        assert!(
            matches!(&subs[3].source, SubscriptionSource::Other { kind, .. } if kind == "newKind")
        );
        assert!(
            matches!(&subs[4].source, SubscriptionSource::Malformed { reason, .. }
            if reason.contains("invalid image subscription"))
        );
        assert!(
            matches!(&subs[5].source, SubscriptionSource::Malformed { reason, .. }
            if reason.contains("exactly one"))
        );
        assert!(matches!(
            &subs[6].source,
            SubscriptionSource::Malformed { .. }
        ));
    }

    #[test]
    fn unknown_kinds_and_malformed_items_round_trip() {
        for item in [
            json!({"name": "n", "newKind": {"anything": 1}}),
            json!({"image": {"repoURL": 42}}),
            json!({"name": "x", "chart": {"repoURL": "oci://h/c"}}),
        ] {
            let sub: Subscription = serde_json::from_value(item.clone()).unwrap();
            assert_eq!(serde_json::to_value(&sub).unwrap(), item);
        }
    }
}
