//! The status of a `HarborWebhookRegistration`, as a pure function of what
//! its reconcile found: the `Ready` condition with the cause when it is not
//! (bad credentials, a missing permission, Harbor unreachable, a missing
//! project, …), the policy ID per project, the registered URL, when it last
//! synced; the merge patch to get there; and the Events worth emitting.
//! Never a token.

use harbor_registration_api::{ProjectStatus, RegistrationStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{json, Value};

use crate::core::status::EventSpec;

/// Condition type: every project's policy is as declared.
pub const READY: &str = "Ready";
/// Reason of `Ready=True`.
pub const REASON_SYNCED: &str = "Synced";
/// The ProjectConfig/ClusterConfig or its Harbor receiver does not exist.
pub const REASON_RECEIVER_NOT_FOUND: &str = "ReceiverNotFound";
/// The receiver exists but does not serve a URL yet (its Secret is
/// missing or unusable, or the route is not published yet).
pub const REASON_RECEIVER_NOT_READY: &str = "ReceiverNotReady";
/// The credentials Secret is missing or lacks a key.
pub const REASON_CREDENTIALS_INVALID: &str = "CredentialsSecretInvalid";
/// A policy with our name exists in the project and is not ours.
pub const REASON_POLICY_NAME_TAKEN: &str = "PolicyNameTaken";
/// Projects fail for different reasons.
pub const REASON_PROJECTS_NOT_SYNCED: &str = "ProjectsNotSynced";
/// Event reason: a policy was created.
pub const EVENT_POLICY_CREATED: &str = "PolicyCreated";
/// Event reason: a policy was updated (rotation or drift).
pub const EVENT_POLICY_UPDATED: &str = "PolicyUpdated";
/// Event reason: a policy was deleted.
pub const EVENT_POLICY_DELETED: &str = "PolicyDeleted";
/// Event reason: a policy could not be deleted and is left in Harbor.
pub const EVENT_POLICY_LEFT: &str = "PolicyLeftInHarbor";

/// Why something is not as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Condition reason (CamelCase).
    pub reason: &'static str,
    /// Explanation; names what failed, never a secret.
    pub message: String,
}

/// What a sync changed in one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The policy was created.
    Created,
    /// These properties were set back (a rotation changes address and auth
    /// header; anything else is someone's edit in Harbor).
    Updated(Vec<&'static str>),
    /// It was as declared.
    Unchanged,
}

/// What a sync found in one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectOutcome {
    /// The policy is as declared.
    Synced {
        /// Its ID.
        policy_id: i64,
        /// What the sync did.
        change: Change,
    },
    /// It is not.
    Failed {
        /// The policy ID, when known.
        policy_id: Option<i64>,
        /// Why.
        problem: Problem,
    },
}

/// What a reconcile found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Harbor was not tried: the receiver or the credentials are not usable.
    /// What status says about the projects stays as it was.
    Blocked(Problem),
    /// Each project was synced (or failed).
    Synced {
        /// The receiver URL registered.
        url: String,
        /// The policy name.
        policy_name: String,
        /// Per project, in spec order (then projects being removed).
        projects: Vec<(String, ProjectOutcome)>,
    },
}

impl Outcome {
    /// The problem that keeps `Ready` false, if any.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            Outcome::Blocked(p) => Some(p.clone()),
            Outcome::Synced { projects, .. } => {
                let failures: Vec<(&str, &Problem)> = projects
                    .iter()
                    .filter_map(|(name, o)| match o {
                        ProjectOutcome::Failed { problem, .. } => Some((name.as_str(), problem)),
                        ProjectOutcome::Synced { .. } => None,
                    })
                    .collect();
                let first = failures.first()?.1.reason;
                let reason = if failures.iter().all(|(_, p)| p.reason == first) {
                    first
                } else {
                    REASON_PROJECTS_NOT_SYNCED
                };
                let message = failures
                    .iter()
                    .map(|(name, p)| format!("Harbor project {name:?}: {}", p.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Some(Problem { reason, message })
            }
        }
    }
}

fn ready_condition(
    current: Option<&RegistrationStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match (outcome.problem(), outcome) {
        (Some(p), _) => ("False", p.reason, p.message),
        (
            None,
            Outcome::Synced {
                projects,
                policy_name,
                ..
            },
        ) => (
            "True",
            REASON_SYNCED,
            format!(
                "webhook policy {policy_name:?} registered in {} Harbor project(s)",
                projects.len()
            ),
        ),
        // A blocked outcome always has a problem.
        (None, Outcome::Blocked(_)) => ("False", "Unknown", String::new()),
    };
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status we want after `outcome`.
pub fn desired_status(
    current: Option<&RegistrationStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &Time,
) -> RegistrationStatus {
    let condition = ready_condition(current, outcome, generation, now);
    let mut status = current.cloned().unwrap_or_default();
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.insert(0, condition);
    status.observed_generation = generation;
    if let Outcome::Synced { url, projects, .. } = outcome {
        status.url = Some(url.clone());
        status.projects = projects
            .iter()
            .map(|(name, o)| match o {
                ProjectOutcome::Synced { policy_id, .. } => ProjectStatus {
                    name: name.clone(),
                    policy_id: Some(*policy_id),
                    synced: true,
                    reason: None,
                    message: None,
                },
                ProjectOutcome::Failed { policy_id, problem } => ProjectStatus {
                    name: name.clone(),
                    policy_id: *policy_id,
                    synced: false,
                    reason: Some(problem.reason.to_owned()),
                    message: Some(problem.message.clone()),
                },
            })
            .collect();
        if outcome.problem().is_none() {
            status.last_synced_time = Some(now.clone());
        }
    }
    status
}

/// The merge patch for `/status`, or `None` when nothing changed.
pub fn status_patch(
    current: Option<&RegistrationStatus>,
    desired: &RegistrationStatus,
) -> Option<Value> {
    if current == Some(desired) {
        return None;
    }
    // Every field, so that a merge patch also clears what became empty
    // (lists are replaced whole).
    Some(json!({
        "status": {
            "conditions": desired.conditions,
            "observedGeneration": desired.observed_generation,
            "url": desired.url,
            "lastSyncedTime": desired.last_synced_time,
            "projects": desired.projects,
        }
    }))
}

/// Events for what a sync did and for `Ready` changing (judged against the
/// published status, so a new leader does not repeat them).
pub fn events(current: Option<&RegistrationStatus>, outcome: &Outcome) -> Vec<EventSpec> {
    let mut out = Vec::new();
    if let Outcome::Synced {
        policy_name,
        projects,
        ..
    } = outcome
    {
        for (project, o) in projects {
            match o {
                ProjectOutcome::Synced {
                    policy_id,
                    change: Change::Created,
                } => out.push(EventSpec {
                    warning: false,
                    reason: EVENT_POLICY_CREATED,
                    note: format!(
                        "created webhook policy {policy_name:?} (ID {policy_id}) in Harbor project {project:?}"
                    ),
                }),
                ProjectOutcome::Synced {
                    policy_id,
                    change: Change::Updated(fields),
                } => out.push(EventSpec {
                    warning: false,
                    reason: EVENT_POLICY_UPDATED,
                    note: format!(
                        "updated webhook policy {policy_name:?} (ID {policy_id}) in Harbor project {project:?}: {}",
                        fields.join(", ")
                    ),
                }),
                _ => {}
            }
        }
    }
    let was = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    match (outcome.problem(), was) {
        (Some(p), Some(c))
            if c.status == "False" && c.reason == p.reason && c.message == p.message => {}
        (Some(p), _) => out.push(EventSpec {
            warning: true,
            reason: p.reason,
            note: p.message,
        }),
        (None, Some(c)) if c.status == "True" => {}
        (None, _) => out.push(EventSpec {
            warning: false,
            reason: REASON_SYNCED,
            note: "webhook policies match the receiver's current URL and auth header".to_owned(),
        }),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn time(s: &str) -> Time {
        Time(s.parse::<Timestamp>().unwrap())
    }

    fn problem(reason: &'static str, message: &str) -> Problem {
        Problem {
            reason,
            message: message.to_owned(),
        }
    }

    fn synced(projects: Vec<(&str, ProjectOutcome)>) -> Outcome {
        Outcome::Synced {
            url: "https://w/harbor/abc".into(),
            policy_name: "kargo-p-r".into(),
            projects: projects
                .into_iter()
                .map(|(n, o)| (n.to_owned(), o))
                .collect(),
        }
    }

    fn ok(id: i64, change: Change) -> ProjectOutcome {
        ProjectOutcome::Synced {
            policy_id: id,
            change,
        }
    }

    fn failed(id: Option<i64>, reason: &'static str, message: &str) -> ProjectOutcome {
        ProjectOutcome::Failed {
            policy_id: id,
            problem: problem(reason, message),
        }
    }

    #[test]
    fn ready_names_the_cause_per_project() {
        let now = time("2026-11-29T03:00:00Z");
        let cases: Vec<(Outcome, &str, &str, &str)> = vec![
            (
                synced(vec![
                    ("a", ok(1, Change::Created)),
                    ("b", ok(2, Change::Unchanged)),
                ]),
                "True",
                REASON_SYNCED,
                "webhook policy \"kargo-p-r\" registered in 2 Harbor project(s)",
            ),
            (
                synced(vec![
                    ("a", ok(1, Change::Unchanged)),
                    (
                        "b",
                        failed(
                            None,
                            "HarborProjectNotFound",
                            "Harbor project \"b\" does not exist",
                        ),
                    ),
                ]),
                "False",
                "HarborProjectNotFound",
                "Harbor project \"b\": Harbor project \"b\" does not exist",
            ),
            (
                synced(vec![
                    ("a", failed(None, "MissingPermission", "m1")),
                    ("b", failed(Some(2), "HarborProjectNotFound", "m2")),
                ]),
                "False",
                REASON_PROJECTS_NOT_SYNCED,
                "Harbor project \"a\": m1; Harbor project \"b\": m2",
            ),
            (
                Outcome::Blocked(problem(
                    REASON_CREDENTIALS_INVALID,
                    "Secret \"robot\" not found",
                )),
                "False",
                REASON_CREDENTIALS_INVALID,
                "Secret \"robot\" not found",
            ),
        ];
        for (outcome, status, reason, message) in cases {
            let s = desired_status(None, Some(4), &outcome, &now);
            let c = &s.conditions[0];
            assert_eq!(
                (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                (status, reason, message),
                "{outcome:?}"
            );
            assert_eq!(c.observed_generation, Some(4));
            assert_eq!(s.observed_generation, Some(4));
        }
    }

    #[test]
    fn projects_and_sync_time_follow_the_outcome() {
        let t1 = time("2026-11-29T03:00:00Z");
        let t2 = time("2026-11-29T03:05:00Z");
        let first = desired_status(
            None,
            Some(1),
            &synced(vec![("a", ok(7, Change::Created))]),
            &t1,
        );
        assert_eq!(first.url.as_deref(), Some("https://w/harbor/abc"));
        assert_eq!(first.last_synced_time, Some(t1.clone()));
        assert_eq!(
            first.projects,
            vec![ProjectStatus {
                name: "a".into(),
                policy_id: Some(7),
                synced: true,
                reason: None,
                message: None
            }]
        );
        // Harbor down: the projects are marked, the last sync time stays,
        // the policy ID is kept (cleanup needs it).
        let down = desired_status(
            Some(&first),
            Some(1),
            &synced(vec![("a", failed(Some(7), "HarborUnreachable", "down"))]),
            &t2,
        );
        assert_eq!(down.last_synced_time, Some(t1.clone()));
        assert_eq!(down.projects[0].policy_id, Some(7));
        assert!(!down.projects[0].synced);
        // Blocked before Harbor: projects and URL stay as published.
        let blocked = desired_status(
            Some(&first),
            Some(2),
            &Outcome::Blocked(problem(REASON_RECEIVER_NOT_READY, "no Secret")),
            &t2,
        );
        assert_eq!(blocked.projects, first.projects);
        assert_eq!(blocked.url, first.url);
        assert_eq!(blocked.conditions[0].last_transition_time, t2);
    }

    #[test]
    fn an_unchanged_status_is_not_written_and_a_changed_one_is_written_whole() {
        let now = time("2026-11-29T03:00:00Z");
        let outcome = synced(vec![("a", ok(7, Change::Unchanged))]);
        let s = desired_status(None, Some(1), &outcome, &now);
        assert_eq!(status_patch(Some(&s), &s), None);
        let patch = status_patch(None, &s).unwrap();
        assert_eq!(patch["status"]["projects"][0]["policyId"], 7);
        assert_eq!(patch["status"]["url"], "https://w/harbor/abc");
        assert!(!patch.to_string().contains("token"));
    }

    #[test]
    fn events_for_changes_and_transitions_only() {
        let now = time("2026-11-29T03:00:00Z");
        let created = synced(vec![("a", ok(7, Change::Created))]);
        let reasons = |current: Option<&RegistrationStatus>, o: &Outcome| -> Vec<&'static str> {
            events(current, o).iter().map(|e| e.reason).collect()
        };
        assert_eq!(
            reasons(None, &created),
            [EVENT_POLICY_CREATED, REASON_SYNCED]
        );
        let ready = desired_status(None, Some(1), &created, &now);
        let steady = synced(vec![("a", ok(7, Change::Unchanged))]);
        assert!(reasons(Some(&ready), &steady).is_empty());
        let rotated = synced(vec![(
            "a",
            ok(7, Change::Updated(vec!["address", "auth header"])),
        )]);
        let e = events(Some(&ready), &rotated);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].note.ends_with(": address, auth header"),
            "{}",
            e[0].note
        );
        let down = synced(vec![("a", failed(Some(7), "HarborUnreachable", "down"))]);
        assert_eq!(reasons(Some(&ready), &down), ["HarborUnreachable"]);
        let still_down = desired_status(Some(&ready), Some(1), &down, &now);
        assert!(reasons(Some(&still_down), &down).is_empty());
        assert_eq!(reasons(Some(&still_down), &steady), [REASON_SYNCED]);
    }
}
