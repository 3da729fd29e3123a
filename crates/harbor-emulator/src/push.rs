//! Simulated pushes: the `PUSH_ARTIFACT` event of one manifest push, turned into one
//! execution (with one task) per enabled matching policy × http target, as Harbor's
//! artifact event handler and `SendHookWithPolicies` do.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delivery::{self, Job};
use crate::model::now_micros;
use crate::payload::{self, ArtifactEvent, PUSH_ARTIFACT};
use crate::server::Shared;

/// A push to simulate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSpec {
    /// Project name.
    pub project: String,
    /// Repository inside the project, e.g. `app` or `team/app` (a leading
    /// `<project>/` is accepted and removed).
    pub repository: String,
    /// The tag pushed; `None` for a push by digest.
    #[serde(default)]
    pub tag: Option<String>,
    /// The manifest digest; when absent one is derived from the repository and tag.
    #[serde(default)]
    pub digest: Option<String>,
    /// Who pushed (`operator`); default `admin`.
    #[serde(default = "default_operator")]
    pub operator: String,
    /// The push request's `X-Request-Id` (CloudEvents `requestid`); default a new UUID.
    #[serde(default)]
    pub request_id: Option<String>,
    /// When (`occur_at`); default now.
    #[serde(default)]
    pub occur_at: Option<DateTime<Utc>>,
}

fn default_operator() -> String {
    "admin".to_string()
}

impl PushSpec {
    /// A push of `project/repository:tag`.
    pub fn tag(
        project: impl Into<String>,
        repository: impl Into<String>,
        tag: impl Into<String>,
    ) -> Self {
        Self::of(project, repository).with_tag(tag)
    }

    /// A push by digest of `project/repository@digest`.
    pub fn digest(
        project: impl Into<String>,
        repository: impl Into<String>,
        digest: impl Into<String>,
    ) -> Self {
        Self::of(project, repository).with_digest(digest)
    }

    /// A push to `project/repository` by the admin, neither tag nor digest
    /// set yet.
    fn of(project: impl Into<String>, repository: impl Into<String>) -> Self {
        PushSpec {
            project: project.into(),
            repository: repository.into(),
            tag: None,
            digest: None,
            operator: default_operator(),
            request_id: None,
            occur_at: None,
        }
    }

    fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Set the manifest digest.
    pub fn with_digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }

    /// Set the operator.
    pub fn with_operator(mut self, operator: impl Into<String>) -> Self {
        self.operator = operator.into();
        self
    }
}

/// A push that cannot happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No such project.
    #[error("project {0} not found")]
    UnknownProject(String),
    /// Neither a tag nor a digest, or an empty repository.
    #[error("invalid push: {0}")]
    Invalid(String),
}

/// One delivery queued by a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The policy.
    pub policy_id: i64,
    /// Its execution (`…/policies/{policy_id}/executions/{execution_id}`).
    pub execution_id: i64,
    /// The execution's only task.
    pub task_id: i64,
    /// The target address.
    pub address: String,
    /// The payload format used.
    pub payload_format: String,
}

/// Queue the deliveries of a push and start their jobs.
pub fn push(shared: &Arc<Shared>, spec: PushSpec) -> Result<Vec<Delivery>, PushError> {
    let repo = spec
        .repository
        .strip_prefix(&format!("{}/", spec.project))
        .unwrap_or(&spec.repository)
        .trim_matches('/')
        .to_string();
    if repo.is_empty() {
        return Err(PushError::Invalid("empty repository".into()));
    }
    if spec.tag.is_none() && spec.digest.is_none() {
        return Err(PushError::Invalid("a tag or a digest is needed".into()));
    }
    let full = format!("{}/{repo}", spec.project);
    let digest = spec.digest.clone().unwrap_or_else(|| {
        let tag = spec.tag.as_deref().unwrap_or("");
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{full}:{tag}")))
        )
    });
    let reference = spec.tag.clone().unwrap_or_else(|| digest.clone());
    let occur_at = spec.occur_at.unwrap_or_else(now_micros);
    let request_id = spec
        .request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (deliveries, jobs) = shared.with_state(|st| {
        let project = st
            .project_by_name(&spec.project)
            .cloned()
            .ok_or_else(|| PushError::UnknownProject(spec.project.clone()))?;
        let created = *st.repositories.entry(full.clone()).or_insert(occur_at);
        let ev = ArtifactEvent {
            event_type: PUSH_ARTIFACT.into(),
            project: project.name.clone(),
            public: project.public,
            repo_full_name: full.clone(),
            repo_created: Some(created),
            digest: digest.clone(),
            reference: reference.clone(),
            resource_url: payload::resource_url(&shared.external_host, &full, &reference),
            operator: spec.operator.clone(),
            occur_at,
            request_id: request_id.clone(),
        };
        // GetRelatedPolices: the project's policies (newest first), enabled, once per
        // matching entry of event_types.
        let mut policies: Vec<_> = st
            .policies
            .values()
            .filter(|p| p.project_id == project.id && p.enabled)
            .cloned()
            .collect();
        policies.sort_by(|a, b| b.creation_time.cmp(&a.creation_time).then(b.id.cmp(&a.id)));
        let mut deliveries = Vec::new();
        let mut jobs = Vec::new();
        for p in &policies {
            for _ in p.event_types.iter().filter(|t| *t == PUSH_ARTIFACT) {
                for t in p.targets.iter().filter(|t| t.kind == "http") {
                    let (body, content_type) = if t.payload_format == "CloudEvents" {
                        let id = uuid::Uuid::new_v4().to_string();
                        match payload::render_cloudevents(&ev, p.project_id, p.id, &id) {
                            Some(b) => (b, payload::CONTENT_TYPE_CLOUDEVENTS),
                            None => continue,
                        }
                    } else {
                        (payload::render_default(&ev), payload::CONTENT_TYPE_DEFAULT)
                    };
                    let (execution_id, task_id) =
                        st.create_execution(p.id, PUSH_ARTIFACT, &body, &t.address);
                    let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
                    if !t.auth_header.is_empty() {
                        headers.push(("Authorization".to_string(), t.auth_header.clone()));
                    }
                    deliveries.push(Delivery {
                        policy_id: p.id,
                        execution_id,
                        task_id,
                        address: t.address.clone(),
                        payload_format: t.payload_format.clone(),
                    });
                    jobs.push(Job {
                        task_id,
                        execution_id,
                        address: t.address.clone(),
                        headers,
                        body: Bytes::from(body),
                        skip_cert_verify: t.skip_cert_verify,
                    });
                }
            }
        }
        Ok::<_, PushError>((deliveries, jobs))
    })?;
    shared.active.send_modify(|n| *n += jobs.len());
    for job in jobs {
        tokio::spawn(delivery::run(shared.clone(), job));
    }
    shared.bump();
    Ok(deliveries)
}
