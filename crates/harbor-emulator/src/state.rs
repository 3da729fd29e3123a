//! The emulator's data: projects, repositories, policies, executions, tasks, accounts.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::auth::Accounts;
use crate::model::{now_micros, Execution, Metrics, Policy, Project, Status, Task};
use crate::query::{Field, Row};

/// All mutable state behind one lock.
#[derive(Debug)]
pub struct State {
    /// Projects in ID order.
    pub projects: Vec<Project>,
    /// Repository full name → creation time (first push).
    pub repositories: HashMap<String, DateTime<Utc>>,
    /// Policies by ID.
    pub policies: BTreeMap<i64, Policy>,
    /// Executions by ID.
    pub executions: BTreeMap<i64, Execution>,
    /// Tasks by ID.
    pub tasks: BTreeMap<i64, Task>,
    /// Users, robots, login locks.
    pub accounts: Accounts,
    next_project: i64,
    next_policy: i64,
    next_execution: i64,
    next_task: i64,
}

impl State {
    /// Empty state with these accounts.
    pub fn new(accounts: Accounts) -> Self {
        State {
            projects: Vec::new(),
            repositories: HashMap::new(),
            policies: BTreeMap::new(),
            executions: BTreeMap::new(),
            tasks: BTreeMap::new(),
            accounts,
            next_project: 1,
            next_policy: 1,
            next_execution: 1,
            next_task: 1,
        }
    }

    /// Add a project (or return the existing one's ID).
    pub fn add_project(&mut self, name: &str, public: bool) -> i64 {
        if let Some(p) = self.project_by_name(name) {
            return p.id;
        }
        let id = self.next_project;
        self.next_project += 1;
        self.projects.push(Project {
            id,
            name: name.to_string(),
            public,
            creation_time: now_micros(),
        });
        id
    }

    /// A project by name.
    pub fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }

    /// A project by ID.
    pub fn project_by_id(&self, id: i64) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    /// Repositories in a project.
    pub fn repo_count(&self, project: &str) -> i64 {
        let prefix = format!("{project}/");
        self.repositories
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .count() as i64
    }

    /// Next policy ID.
    pub fn next_policy_id(&mut self) -> i64 {
        let id = self.next_policy;
        self.next_policy += 1;
        id
    }

    /// Create an execution with one pending task; returns (execution ID, task ID).
    pub fn create_execution(
        &mut self,
        policy_id: i64,
        event_type: &str,
        payload: &str,
        address: &str,
    ) -> (i64, i64) {
        let now = now_micros();
        let exec_id = self.next_execution;
        self.next_execution += 1;
        self.executions.insert(
            exec_id,
            Execution {
                id: exec_id,
                vendor_type: "WEBHOOK".into(),
                vendor_id: policy_id,
                status: Status::Running,
                trigger: "EVENT".into(),
                event_type: event_type.into(),
                payload: payload.into(),
                start_time: now,
                end_time: None,
                address: address.into(),
            },
        );
        let task_id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            task_id,
            Task {
                id: task_id,
                execution_id: exec_id,
                status: Status::Pending,
                run_count: 0,
                creation_time: now,
                start_time: None,
                update_time: now,
                end_time: None,
                log: String::new(),
            },
        );
        (exec_id, task_id)
    }

    /// Metrics of an execution's tasks.
    pub fn metrics(&self, exec_id: i64) -> Metrics {
        Metrics::of(self.tasks.values().filter(|t| t.execution_id == exec_id))
    }

    /// Recompute an execution's status and end time from its tasks.
    pub fn refresh_execution(&mut self, exec_id: i64) {
        let metrics = self.metrics(exec_id);
        let max_end = self
            .tasks
            .values()
            .filter(|t| t.execution_id == exec_id)
            .filter_map(|t| t.end_time)
            .max();
        if let (Some(status), Some(e)) = (metrics.status(), self.executions.get_mut(&exec_id)) {
            e.status = status;
            e.end_time = if status.is_final() { max_end } else { None };
        }
    }

    /// Delete a policy and its executions and tasks.
    pub fn delete_policy(&mut self, id: i64) {
        self.policies.remove(&id);
        let execs: Vec<i64> = self
            .executions
            .values()
            .filter(|e| e.vendor_id == id)
            .map(|e| e.id)
            .collect();
        for e in &execs {
            self.executions.remove(e);
        }
        self.tasks.retain(|_, t| !execs.contains(&t.execution_id));
    }
}

fn time(t: DateTime<Utc>) -> Option<Field> {
    Some(Field::Time(Some(t)))
}

impl Row for Policy {
    fn field(&self, key: &str) -> Option<Field> {
        Some(match key {
            "ID" | "id" => Field::Int(self.id),
            "Name" | "name" => Field::Text(self.name.clone()),
            "Description" | "description" => Field::Text(self.description.clone()),
            "ProjectID" | "project_id" => Field::Int(self.project_id),
            "TargetsDB" | "targets" => Field::Text(targets_db(self)),
            "EventTypesDB" | "event_types" => {
                Field::Text(serde_json::to_string(&self.event_types).unwrap_or_default())
            }
            "Creator" | "creator" => Field::Text(self.creator.clone()),
            "CreationTime" | "creation_time" => Field::Time(self.creation_time),
            "UpdateTime" | "update_time" => Field::Time(self.update_time),
            "Enabled" | "enabled" => Field::Bool(self.enabled),
            _ => return None,
        })
    }
    fn default_sorts() -> &'static [(&'static str, bool)] {
        &[("CreationTime", true)]
    }
    fn id(&self) -> i64 {
        self.id
    }
}

/// The `targets` column as Harbor stores it (JSON of `EventTarget`).
fn targets_db(p: &Policy) -> String {
    #[derive(serde::Serialize)]
    struct T<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        address: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        auth_header: &'a str,
        skip_cert_verify: bool,
        #[serde(skip_serializing_if = "str::is_empty")]
        payload_format: &'a str,
    }
    let ts: Vec<T> = p
        .targets
        .iter()
        .map(|t| T {
            kind: &t.kind,
            address: &t.address,
            auth_header: &t.auth_header,
            skip_cert_verify: t.skip_cert_verify,
            payload_format: &t.payload_format,
        })
        .collect();
    serde_json::to_string(&ts).unwrap_or_default()
}

impl Row for Execution {
    fn field(&self, key: &str) -> Option<Field> {
        match key {
            "ID" | "id" => Some(Field::Int(self.id)),
            "VendorType" | "vendor_type" => Some(Field::Text(self.vendor_type.clone())),
            "VendorID" | "vendor_id" => Some(Field::Int(self.vendor_id)),
            "Status" | "status" => Some(Field::Text(self.status.as_str().into())),
            "StatusMessage" | "status_message" => Some(Field::Text(String::new())),
            "Trigger" | "trigger" => Some(Field::Text(self.trigger.clone())),
            "StartTime" | "start_time" => time(self.start_time),
            "UpdateTime" | "update_time" => time(self.start_time),
            "EndTime" | "end_time" => Some(Field::Time(self.end_time)),
            "ExtraAttrs.event_type" => Some(Field::Text(self.event_type.clone())),
            _ => None,
        }
    }
    fn default_sorts() -> &'static [(&'static str, bool)] {
        &[("StartTime", true)]
    }
    fn id(&self) -> i64 {
        self.id
    }
}

impl Row for Task {
    fn field(&self, key: &str) -> Option<Field> {
        match key {
            "ID" | "id" => Some(Field::Int(self.id)),
            "VendorType" | "vendor_type" => Some(Field::Text("WEBHOOK".into())),
            "ExecutionID" | "execution_id" => Some(Field::Int(self.execution_id)),
            "Status" | "status" => Some(Field::Text(self.status.as_str().into())),
            "StatusMessage" | "status_message" => Some(Field::Text(String::new())),
            "RunCount" | "run_count" => Some(Field::Int(i64::from(self.run_count))),
            "CreationTime" | "creation_time" => time(self.creation_time),
            "StartTime" | "start_time" => Some(Field::Time(self.start_time)),
            "UpdateTime" | "update_time" => time(self.update_time),
            "EndTime" | "end_time" => Some(Field::Time(self.end_time)),
            _ => None,
        }
    }
    fn default_sorts() -> &'static [(&'static str, bool)] {
        &[("StartTime", true), ("ID", true)]
    }
    fn id(&self) -> i64 {
        self.id
    }
}
