//! The writes: create (POST), update (PUT), patch (PATCH) and delete (DELETE), with the
//! metadata rules of a real API server.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{admission, is_crd_type, is_namespace_type, EventType, PatchType, Store};
use crate::errors::{ApiError, ApiResult};
use crate::object::{meta_mut, meta_str, now_rfc3339, random_suffix};
use crate::patch;
use crate::resources::{self, ResourceType};

/// Metadata only the server sets: copied from the stored object on every update.
const SYSTEM_METADATA: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "name",
    "namespace",
];

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

/// 422 for a CRD whose spec does not define a served type.
fn check_crd_spec(rt: &ResourceType, name: &str, crd: &Value) -> ApiResult<()> {
    resources::from_crd(crd).map(|_| ()).map_err(|e| {
        ApiError::invalid(
            &rt.group,
            &rt.kind,
            name,
            &[format!("spec: Invalid value: {e}")],
        )
    })
}

/// The name of a new object: `metadata.name`, else `generateName` plus a random suffix.
fn assign_name(rt: &ResourceType, obj: &mut Value) -> ApiResult<String> {
    let md = meta_mut(obj);
    let given = |k: &str| {
        md.get(k)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    let name = match (given("name"), given("generateName")) {
        (Some(n), _) => n,
        (None, Some(g)) => format!("{g}{}", random_suffix()),
        (None, None) => {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                "",
                &["metadata.name: Required value: name or generateName is required".into()],
            ))
        }
    };
    md.insert("name".into(), json!(name));
    Ok(name)
}

/// The metadata of a new object: what the client may not set is dropped, uid,
/// creationTimestamp and generation are set.
fn init_metadata(rt: &ResourceType, obj: &mut Value) {
    let md = meta_mut(obj);
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        md.remove(f);
    }
    md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    md.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if rt.has_generation {
        md.insert("generation".into(), json!(1));
    }
    // With a status subresource, create ignores `.status` (custom resources and
    // built-ins such as Deployments alike); a Namespace gets its phase in `prepare`.
    if rt.status_subresource && !is_namespace_type(rt) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
}

/// What an update may change with or without the status subresource: through
/// `/status` only `.status`, otherwise (with a status subresource) all but `.status`.
fn scope_to_subresource(rt: &ResourceType, old: &Value, new: Value, sub: Option<&str>) -> Value {
    let (mut out, status) = if sub == Some("status") {
        (old.clone(), new.get("status").cloned())
    } else if rt.status_subresource {
        (new, old.get("status").cloned())
    } else {
        return new;
    };
    if let Some(m) = out.as_object_mut() {
        match status {
            Some(s) => {
                m.insert("status".into(), s);
            }
            None => {
                m.remove("status");
            }
        }
    }
    out
}

/// System metadata and the resourceVersion come from the stored object; empty label,
/// annotation and finalizer collections are omitted, as by a Go server.
fn keep_system_metadata(old: &Value, new: &mut Value) {
    let om = old.get("metadata").cloned().unwrap_or(json!({}));
    let md = meta_mut(new);
    for f in SYSTEM_METADATA {
        match om.get(f) {
            Some(v) => {
                md.insert(f.into(), v.clone());
            }
            None => {
                md.remove(f);
            }
        }
    }
    md.insert(
        "resourceVersion".into(),
        om.get("resourceVersion").cloned().unwrap_or(json!("")),
    );
    for f in ["labels", "annotations", "finalizers"] {
        let empty = match md.get(f) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            md.remove(f);
        }
    }
}

/// A CRD's status follows its spec; transition times stay when the names did not change.
fn refresh_crd_status(old: &Value, new: &mut Value) {
    new["status"] = resources::crd_status(new);
    if let (Some(a), Some(b)) = (old.get("status"), new.get("status")) {
        if a.get("acceptedNames") == b.get("acceptedNames") {
            new["status"] = a.clone();
        }
    }
}

/// `metadata.generation` goes up when anything but metadata (and status, with a status
/// subresource) changes.
fn bump_generation(rt: &ResourceType, old: &Value, new: &mut Value) {
    if !rt.has_generation {
        return;
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
            if rt.status_subresource {
                m.remove("status");
            }
        }
        v
    };
    if strip(old) != strip(new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// 409 Conflict when a DELETE's uid or resourceVersion precondition does not hold.
fn check_preconditions(rt: &ResourceType, name: &str, old: &Value, opts: &Value) -> ApiResult<()> {
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(want) = opts
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let actual = meta_str(old, field).unwrap_or("");
        if want != actual {
            return Err(ApiError::conflict_msg(
                &rt.group,
                &rt.plural,
                name,
                format!(
                    "Precondition failed: {label} in precondition: {want}, {label} in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}

impl Store {
    /// POST: create an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        obj: Value,
    ) -> ApiResult<Value> {
        self.create_as(rt, url_ns, obj, None)
    }

    /// POST on behalf of a field manager (who then owns the fields it set, for
    /// server-side apply conflict detection).
    pub fn create_as(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        obj: Value,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        let created = self.create_inner(rt, url_ns, obj)?;
        if manager.is_some_and(|m| !m.is_empty()) {
            let ns = Self::ns_key(rt, meta_str(&created, "namespace"));
            let name = meta_str(&created, "name").unwrap_or("").to_string();
            self.record_update(rt, &ns, &name, None, &created, manager);
        }
        Ok(created)
    }

    pub(super) fn create_inner(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        mut obj: Value,
    ) -> ApiResult<Value> {
        admission::check_type(rt, &mut obj)?;
        let mut obj = rt.to_storage(obj);
        let ns = self.resolve_ns(rt, url_ns, &mut obj)?;
        let name = assign_name(rt, &mut obj)?;
        init_metadata(rt, &mut obj);
        if is_crd_type(rt) {
            check_crd_spec(rt, &name, &obj)?;
            obj["status"] = resources::crd_status(&obj);
        }
        admission::prepare(rt, &mut obj, &name)?;
        if self.raw(rt, &ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if self.dry_run {
            // Like a real server: a dry-run create has no resourceVersion.
            meta_mut(&mut obj).remove("resourceVersion");
            return Ok(Self::render(rt, &obj));
        }
        self.stamp(&mut obj);
        let obj = self.store_version(rt, &ns, &name, obj, EventType::Added, None);
        self.after_crd_write(rt, &obj);
        Ok(Self::render(rt, &obj))
    }

    /// PUT: replace an object (or its `status` when `sub` is `Some("status")`), with
    /// optimistic concurrency on `metadata.resourceVersion` when the body sets it.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        obj: Value,
        sub: Option<&str>,
    ) -> ApiResult<Value> {
        self.update_as(rt, url_ns, name, obj, sub, None)
    }

    /// PUT on behalf of a field manager.
    pub fn update_as(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<&str>,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        admission::check_type(rt, &mut obj)?;
        let obj = rt.to_storage(obj);
        admission::check_name_matches(&obj, name)?;
        admission::check_namespace_matches(rt, &obj, url_ns)?;
        let (ns, old) = self.existing(rt, url_ns, name)?;
        Self::check_rv(rt, name, &obj, &old)?;
        let new = self.commit_update(rt, &ns, name, old.clone(), obj, sub)?;
        self.record_update(rt, &ns, name, Some(&old), &new, manager);
        Ok(new)
    }

    /// PATCH with the given content type.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        content_type: &str,
        body: &[u8],
        sub: Option<&str>,
        field_manager: Option<&str>,
        force: bool,
    ) -> ApiResult<Value> {
        let ptype = PatchType::from_content_type(content_type)
            .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
        if ptype == PatchType::Strategic && rt.custom {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        if ptype == PatchType::Apply {
            return self.apply(rt, url_ns, name, body, sub, field_manager, force);
        }
        let p: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let (ns, old) = self.existing(rt, url_ns, name)?;
        let new = rt.to_storage(Self::patched(rt, &old, ptype, p)?);
        if meta_str(&new, "name") != Some(name) {
            return Err(ApiError::bad_request(
                "metadata.name cannot be changed by a patch",
            ));
        }
        Self::check_rv(rt, name, &new, &old)?;
        let result = self.commit_update(rt, &ns, name, old.clone(), new, sub)?;
        self.record_update(rt, &ns, name, Some(&old), &result, field_manager);
        Ok(result)
    }

    /// `old` (stored form) with a merge, strategic merge or JSON patch applied, in
    /// `rt`'s form.
    fn patched(rt: &ResourceType, old: &Value, ptype: PatchType, p: Value) -> ApiResult<Value> {
        let mut new = rt.from_storage(old);
        match ptype {
            PatchType::Merge | PatchType::Strategic if !p.is_object() => {
                let what = if ptype == PatchType::Merge {
                    "a merge patch"
                } else {
                    "a strategic merge patch"
                };
                return Err(ApiError::bad_request(format!(
                    "{what} must be a JSON object"
                )));
            }
            PatchType::Merge => patch::merge_patch(&mut new, &p),
            PatchType::Strategic => patch::strategic_merge_patch(&mut new, &p),
            PatchType::Apply => return Err(ApiError::internal("an apply is not a patch")),
            PatchType::Json => {
                new = patch::json_patch(old, p).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?
            }
        }
        Ok(new)
    }

    /// 409 Conflict when `new` names a resourceVersion other than the stored one.
    pub(super) fn check_rv(
        rt: &ResourceType,
        name: &str,
        new: &Value,
        old: &Value,
    ) -> ApiResult<()> {
        match meta_str(new, "resourceVersion").filter(|r| !r.is_empty()) {
            Some(rv) if Some(rv) != meta_str(old, "resourceVersion") => {
                Err(ApiError::conflict(&rt.group, &rt.plural, name))
            }
            _ => Ok(()),
        }
    }

    /// Store `new` as the next version of `old` (after the server's rules for updates),
    /// unless nothing changed; remove it when its deletion is no longer held by
    /// finalizers. Returns the object as the client sees it.
    pub(super) fn commit_update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Arc<Value>,
        new: Value,
        sub: Option<&str>,
    ) -> ApiResult<Value> {
        let mut new = scope_to_subresource(rt, &old, new, sub);
        keep_system_metadata(&old, &mut new);
        if is_crd_type(rt) {
            check_crd_spec(rt, name, &new)?;
            if sub != Some("status") {
                refresh_crd_status(&old, &mut new);
            }
        }
        admission::prepare(rt, &mut new, name)?;
        if Self::unchanged(rt, &old, &new) {
            return Ok(Self::render(rt, &old));
        }
        bump_generation(rt, &old, &mut new);
        if self.dry_run {
            // Nothing is stored: the object keeps its current resourceVersion.
            return Ok(Self::render(rt, &new));
        }
        if is_deleting(&new) && !has_finalizers(&new) {
            let last = self.remove_for_good(rt, ns, name, new);
            return Ok(Self::render(rt, &last));
        }
        self.stamp(&mut new);
        let new = self.store_version(rt, ns, name, new, EventType::Modified, Some(old));
        self.after_crd_write(rt, &new);
        Ok(Self::render(rt, &new))
    }

    /// A write that changes nothing stores nothing.
    fn unchanged(rt: &ResourceType, old: &Value, new: &Value) -> bool {
        // The stored apiVersion may be another served version's.
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| match k.as_str() {
                        "apiVersion" => b.get(k) == Some(&json!(rt.api_version())),
                        _ => b.get(k) == Some(v),
                    })
            }
            _ => old == new,
        }
    }

    /// DELETE one object. With finalizers, only sets `deletionTimestamp`; otherwise the
    /// object is removed at once. Deleting a namespace removes its contents; deleting a
    /// CRD removes its custom resources and stops serving them.
    /// Returns the object and whether it is gone.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        url_ns: Option<&str>,
        name: &str,
        opts: &Value,
    ) -> ApiResult<(Value, bool)> {
        let (ns, old) = self.existing(rt, url_ns, name)?;
        check_preconditions(rt, name, &old, opts)?;
        if !has_finalizers(&old) {
            let last = self.remove_for_good(rt, &ns, name, (*old).clone());
            return Ok((Self::render(rt, &last), true));
        }
        if is_deleting(&old) {
            return Ok((Self::render(rt, &old), false));
        }
        let mut new = (*old).clone();
        let md = meta_mut(&mut new);
        md.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        md.insert("deletionGracePeriodSeconds".into(), json!(0));
        self.stamp(&mut new);
        let new = self.store_version(rt, &ns, name, new, EventType::Modified, Some(old));
        Ok((Self::render(rt, &new), false))
    }
}
