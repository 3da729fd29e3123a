//! Status writes and Events (leader only). The patch itself is computed by
//! [`crate::core::status::status_patch`]; this module sends it to `/status`
//! as a JSON merge patch and publishes transition Events.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;

use crate::core::status::EventSpec;

/// Sends a merge patch to the object's `/status`.
pub async fn patch_status<K>(api: &Api<K>, name: &str, patch: &Value) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::apply(crate::NAME).validation_strict(),
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}

/// Publishes transition Events on `obj`; failures are logged, never fatal.
pub async fn publish_events<K>(recorder: &Recorder, obj: &K, events: Vec<EventSpec>)
where
    K: Resource<DynamicType = ()>,
{
    let reference = obj.object_ref(&());
    for e in events {
        let event = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.to_owned(),
            note: Some(e.note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::warn!(
                object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
                reason = e.reason,
                error = %err,
                "publishing an Event failed"
            );
        }
    }
}
