//! `spec.webhookReceivers[]`: a name plus exactly one receiver kind.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The receiver kinds Kargo knows today besides Harbor. They are declared so
/// the generated CRD keeps them; their contents are not ours to interpret.
const OTHER_KINDS: &[&str] = &[
    "artifactory",
    "azure",
    "bitbucket",
    "dockerhub",
    "generic",
    "gitea",
    "github",
    "gitlab",
    "quay",
];

/// One entry of `spec.webhookReceivers`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = declare_other_kinds)]
pub struct WebhookReceiverConfig {
    /// Name of the receiver, unique within the config; part of the URL derivation.
    pub name: String,
    /// Harbor receiver: the only kind this program serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harbor: Option<HarborWebhookReceiverConfig>,
    /// Every other key (github, gitlab, …, and kinds added by future Kargo
    /// releases), kept verbatim so that it survives and can be named.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `harbor:` receiver settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HarborWebhookReceiverConfig {
    /// The Secret (in the project namespace, or the system resources
    /// namespace for ClusterConfig) whose `auth-header` key holds the token.
    pub secret_ref: SecretReference,
}

/// A reference to a Secret in a namespace implied by context.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretReference {
    /// Name of the Secret.
    #[serde(default)]
    pub name: String,
}

/// What kind of receiver an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverKind<'a> {
    /// A Harbor receiver: ours.
    Harbor(&'a HarborWebhookReceiverConfig),
    /// Another kind (named by its key), handled by someone else.
    Other(&'a str),
    /// No kind given at all.
    Missing,
    /// More than one kind given; Kargo's validation forbids it.
    Ambiguous(Vec<&'a str>),
}

impl WebhookReceiverConfig {
    /// Which single receiver kind this entry configures.
    pub fn kind(&self) -> ReceiverKind<'_> {
        let others: Vec<&str> = self
            .other
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        match (&self.harbor, others.as_slice()) {
            (Some(harbor), []) => ReceiverKind::Harbor(harbor),
            (None, [one]) => ReceiverKind::Other(one),
            (None, []) => ReceiverKind::Missing,
            (Some(_), more) => {
                let mut kinds = vec!["harbor"];
                kinds.extend_from_slice(more);
                ReceiverKind::Ambiguous(kinds)
            }
            (None, more) => ReceiverKind::Ambiguous(more.to_vec()),
        }
    }
}

/// Adds the known non-Harbor kinds to the generated schema as free-form
/// objects, so a CRD generated from these types keeps them.
fn declare_other_kinds(schema: &mut schemars::Schema) {
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for kind in OTHER_KINDS {
            props.insert(
                (*kind).to_string(),
                serde_json::json!({
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> WebhookReceiverConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn kinds_are_identified() {
        let cases = [
            (
                json!({"name":"a","harbor":{"secretRef":{"name":"s"}}}),
                "harbor",
            ),
            (
                json!({"name":"a","github":{"secretRef":{"name":"s"}}}),
                "other:github",
            ),
            (
                json!({"name":"a","brandnew":{"anything":[1,2]}}),
                "other:brandnew",
            ),
            (json!({"name":"a"}), "missing"),
            (
                json!({"name":"a","harbor":{"secretRef":{"name":"s"}},"quay":{}}),
                "ambiguous:harbor,quay",
            ),
            (
                json!({"name":"a","gitlab":{},"quay":{}}),
                "ambiguous:gitlab,quay",
            ),
        ];
        for (input, want) in cases {
            let r = parse(input.clone());
            let got = match r.kind() {
                ReceiverKind::Harbor(h) => {
                    assert_eq!(h.secret_ref.name, "s");
                    "harbor".to_string()
                }
                ReceiverKind::Other(k) => format!("other:{k}"),
                ReceiverKind::Missing => "missing".to_string(),
                ReceiverKind::Ambiguous(k) => format!("ambiguous:{}", k.join(",")),
            };
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn other_kinds_round_trip_verbatim() {
        let input = json!({"name":"gh","github":{"secretRef":{"name":"x"},"extra":true}});
        let r = parse(input.clone());
        assert_eq!(serde_json::to_value(&r).unwrap(), input);
    }
}
