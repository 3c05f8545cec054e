//! The detector: the pure heart of the emit flow. Given what the gateway last recorded about
//! an Application and what it sees now, it decides which CDEvents happened and what to record
//! next. See docs/event-mapping.md for the rules in prose.
//!
//! It must never do I/O, read the clock, or look at anything but its arguments: the same
//! inputs always give the same events with the same ids, which is what makes restarts,
//! re-lists and retries emit nothing twice.

use crate::argocd::Application;
use crate::argocd::model::HistoryEntry;
use crate::emit::purl;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Operation info names the react flow stamps on the operations it starts.
pub const INFO_CHAIN_ID: &str = "cdevents.chainId";
pub const INFO_TRIGGER_ID: &str = "cdevents.triggerId";
/// Set to `rollback` by the react flow when its operation is a rollback.
pub const INFO_ACTION: &str = "cdevents.action";

/// Detector settings taken from the config.
#[derive(Debug, Clone, Default)]
pub struct DetectConfig {
    /// An Application label whose value, when set, is the environment id.
    pub environment_label: Option<String>,
    /// Application labels copied into `customData.labels`.
    pub custom_data_labels: Vec<String>,
}

/// The environment an application deploys to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    pub name: String,
}

/// Why an incident is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// `status.health.status` is `Degraded`.
    HealthDegraded,
    /// The last operation ended `Failed` or `Error`.
    SyncFailed,
    /// `status.sync.status` is `Unknown`.
    SyncUnknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::HealthDegraded => "healthDegraded",
            Cause::SyncFailed => "syncFailed",
            Cause::SyncUnknown => "syncUnknown",
        }
    }
}

/// An incident the gateway reported and has not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenIncident {
    /// The incident subject id, shared by its `detected` and `resolved` events.
    pub id: String,
    pub description: String,
}

/// What the gateway records about one application between two observations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// `<namespace>/<name>`.
    pub key: String,
    pub uid: String,
    pub project: String,
    pub environment: Environment,
    /// The newest `status.history` id already accounted for.
    pub last_history_id: Option<i64>,
    /// The revision key of that entry.
    pub last_revision: Option<String>,
    /// Whether the app was ever seen deployed.
    pub deployed: bool,
    /// The artifact of the last deploy.
    pub artifact_id: Option<String>,
    /// Sorted `status.summary.externalURLs` last seen.
    pub external_urls: Vec<String>,
    pub incidents: BTreeMap<Cause, OpenIncident>,
    /// Number of incidents ever opened for this app (makes incident ids unique).
    pub incident_seq: u64,
    /// `startedAt` of the last failed operation already reported.
    pub reported_failed_operation: Option<String>,
    /// Number of published / environment events emitted for this app (makes their ids
    /// unique when the same URLs or environment come back later).
    #[serde(default)]
    pub change_seq: u64,
}

/// The CDEvent types the detector produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    ServiceDeployed,
    ServiceUpgraded,
    ServiceRolledback,
    ServiceRemoved,
    ServicePublished,
    EnvironmentCreated,
    EnvironmentDeleted,
    IncidentDetected,
    IncidentResolved,
}

impl EventKind {
    /// `<subject>.<predicate>`, as in `dev.cdevents.<subject>.<predicate>.<version>`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ServiceDeployed => "service.deployed",
            EventKind::ServiceUpgraded => "service.upgraded",
            EventKind::ServiceRolledback => "service.rolledback",
            EventKind::ServiceRemoved => "service.removed",
            EventKind::ServicePublished => "service.published",
            EventKind::EnvironmentCreated => "environment.created",
            EventKind::EnvironmentDeleted => "environment.deleted",
            EventKind::IncidentDetected => "incident.detected",
            EventKind::IncidentResolved => "incident.resolved",
        }
    }
}

/// The link from an event back to the event that caused it (the loop, DESIGN §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub chain_id: Option<String>,
    pub trigger_id: Option<String>,
}

/// One event the detector decided happened, independent of the CDEvents spec version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Emission {
    pub kind: EventKind,
    /// Deterministic `context.id`.
    pub id: Uuid,
    /// RFC 3339, from Argo CD's own fields where it has one.
    pub timestamp: String,
    pub subject_id: String,
    /// The service's environment (service and incident events) or the environment itself.
    pub environment: Environment,
    pub artifact_id: Option<String>,
    /// Incident description (incident events).
    pub description: Option<String>,
    /// The service the incident is about (incident events).
    pub service_id: Option<String>,
    pub chain: Option<Chain>,
    pub custom_data: Value,
}

impl Emission {
    /// An event with no artifact, incident fields or chain; callers add what their kind has.
    fn new(
        kind: EventKind,
        id: Uuid,
        timestamp: impl Into<String>,
        subject_id: impl Into<String>,
        environment: Environment,
        custom_data: Value,
    ) -> Emission {
        Emission {
            kind,
            id,
            timestamp: timestamp.into(),
            subject_id: subject_id.into(),
            environment,
            artifact_id: None,
            description: None,
            service_id: None,
            chain: None,
            custom_data,
        }
    }
}

/// What happened to an application.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Added or modified (a watch ADDED / MODIFIED, or an item of a list).
    Applied(&'a Application),
    /// Deleted. `None` when the deletion was inferred from a re-list that no longer has it.
    Deleted(Option<&'a Application>),
}

/// How many applications, other than the one being looked at, are in an environment.
pub trait EnvironmentMembers {
    fn others_in(&self, environment_id: &str, except_key: &str) -> usize;
}

/// The detector's answer: the events, in order, and the state to record (`None`: forget).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub events: Vec<Emission>,
    pub next: Option<AppState>,
}

/// The namespace of every deterministic event id.
fn id_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:argocd-cdevents:event")
}

fn event_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&id_namespace(), parts.join("\u{1f}").as_bytes())
}

/// The environment of an app: the configured label's value, else `<cluster>/<namespace>` of
/// its destination, where cluster is `destination.name`, else the server URL without scheme.
pub fn environment_of(cfg: &DetectConfig, app: &Application) -> Environment {
    if let Some(label) = &cfg.environment_label
        && let Some(value) = app
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(label))
            .filter(|v| !v.is_empty())
    {
        return Environment {
            id: value.clone(),
            name: value.clone(),
        };
    }
    let dest = &app.spec.destination;
    let cluster = dest
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            dest.server.as_deref().map(|s| {
                s.split_once("://")
                    .map_or(s, |(_, rest)| rest)
                    .trim_end_matches('/')
                    .to_string()
            })
        })
        .unwrap_or_else(|| "in-cluster".to_string());
    let namespace = dest.namespace.as_deref().unwrap_or_default();
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    Environment {
        id: format!("{cluster}/{namespace}"),
        name: namespace.to_string(),
    }
}

/// Decide what happened. `observed_at` is the fallback timestamp for changes Argo CD does not
/// date (the caller passes the time it observed the change).
pub fn detect(
    cfg: &DetectConfig,
    prev: Option<&AppState>,
    change: Change<'_>,
    envs: &dyn EnvironmentMembers,
    observed_at: &str,
) -> Detection {
    match change {
        Change::Applied(app) => {
            // Same name, new uid: the old app was deleted and a new one created in between.
            if let Some(p) = prev
                && p.uid != app.uid()
            {
                let removed = removal(cfg, p, None, envs, observed_at);
                let mut fresh = applied(cfg, None, app, envs, observed_at);
                // The old app's environment membership has just been dropped.
                let mut events = removed.events;
                events.append(&mut fresh.events);
                return Detection {
                    events,
                    next: fresh.next,
                };
            }
            applied(cfg, prev, app, envs, observed_at)
        }
        Change::Deleted(app) => match prev {
            Some(p) => removal(cfg, p, app, envs, observed_at),
            None => Detection {
                events: Vec::new(),
                next: None,
            },
        },
    }
}

fn applied(
    cfg: &DetectConfig,
    prev: Option<&AppState>,
    app: &Application,
    envs: &dyn EnvironmentMembers,
    observed_at: &str,
) -> Detection {
    let key = app.key();
    let uid = app.uid().into_owned();
    let env = environment_of(cfg, app);
    let mut events = Vec::new();
    let mut next = prev.cloned().unwrap_or_else(|| AppState {
        key: key.clone(),
        uid: uid.clone(),
        ..AppState::default()
    });
    next.project = app.spec.project.clone();
    next.environment = env.clone();
    let data = custom_data(cfg, app);
    let reconciled = app.status.reconciled_at.as_deref().unwrap_or(observed_at);

    // Environments: entering a new one, leaving the old one.
    let prev_env = prev.map(|p| &p.environment);
    if prev_env.map(|e| &e.id) != Some(&env.id) {
        if envs.others_in(&env.id, &key) == 0 {
            next.change_seq += 1;
            let mut created = Emission::new(
                EventKind::EnvironmentCreated,
                event_id(&[
                    &env.id,
                    "environment.created",
                    &uid,
                    &next.change_seq.to_string(),
                ]),
                app.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .filter(|_| prev.is_none())
                    .unwrap_or_else(|| reconciled.to_string()),
                env.id.clone(),
                env.clone(),
                data.clone(),
            );
            if prev.is_none() {
                // An Application the react flow created (a preview environment) carries
                // its cause in annotations: the environment joins that chain.
                created.chain = creation_chain(app);
            }
            events.push(created);
        }
        if let Some(old) = prev_env
            && envs.others_in(&old.id, &key) == 0
        {
            next.change_seq += 1;
            events.push(environment_deleted(
                old,
                &uid,
                next.change_seq,
                reconciled,
                data.clone(),
            ));
        }
    }

    let newest = app.status.history.iter().max_by_key(|h| h.id);
    let chain = chain_of(app);
    match prev {
        // First sight: what is already deployed is the baseline, not news.
        None => {
            if let Some(h) = newest {
                next.last_history_id = Some(h.id);
                next.last_revision = Some(h.revision_key());
                next.deployed = true;
                next.artifact_id = artifact_of(app, h);
            }
            // URLs too; but a problem that predates the gateway (degraded, failed, unknown)
            // is still open, so incidents are detected below as for any observation.
            next.external_urls = sorted_urls(app);
        }
        Some(p) => {
            if let Some(h) = newest.filter(|h| Some(h.id) > p.last_history_id)
                && deployed_healthy(app)
            {
                let kind = classify(app, p, h);
                let artifact = artifact_of(app, h);
                if let Some(kind) = kind {
                    let history_id = h.id.to_string();
                    let deployed_at = h
                        .deployed_at
                        .clone()
                        .or_else(|| {
                            app.status
                                .operation_state
                                .as_ref()
                                .and_then(|o| o.finished_at.clone())
                        })
                        .unwrap_or_else(|| observed_at.to_string());
                    events.push(Emission {
                        artifact_id: Some(
                            artifact
                                .clone()
                                .unwrap_or_else(|| format!("pkg:generic/{}", app.name())),
                        ),
                        chain: chain.clone(),
                        ..Emission::new(
                            kind,
                            event_id(&[&uid, "history", &history_id, kind.name()]),
                            deployed_at,
                            key.clone(),
                            env.clone(),
                            with_history(&data, h),
                        )
                    });
                }
                next.last_history_id = Some(h.id);
                next.last_revision = Some(h.revision_key());
                next.deployed = true;
                next.artifact_id = artifact;
            }

            let urls = sorted_urls(app);
            if !urls.is_empty() && urls != p.external_urls {
                next.change_seq += 1;
                events.push(Emission::new(
                    EventKind::ServicePublished,
                    event_id(&[
                        &uid,
                        "service.published",
                        &urls.join(" "),
                        &next.change_seq.to_string(),
                    ]),
                    reconciled.to_string(),
                    key.clone(),
                    env.clone(),
                    data.clone(),
                ));
            }
            next.external_urls = urls;
        }
    }

    incidents(
        app,
        &mut next,
        &mut events,
        &data,
        chain.as_ref(),
        observed_at,
    );
    Detection {
        events,
        next: Some(next),
    }
}

/// `on-deployed` semantics: the operation succeeded and the app is healthy.
fn deployed_healthy(app: &Application) -> bool {
    app.status
        .operation_state
        .as_ref()
        .is_some_and(|o| o.phase == "Succeeded")
        && app.status.health.status == "Healthy"
}

/// Which service event a new, healthy history entry is; `None` for a re-sync of exactly
/// what was already deployed.
fn classify(app: &Application, prev: &AppState, newest: &HistoryEntry) -> Option<EventKind> {
    if !prev.deployed {
        return Some(EventKind::ServiceDeployed);
    }
    if app.operation_info(INFO_ACTION) == Some("rollback") {
        return Some(EventKind::ServiceRolledback);
    }
    let mut earlier: Vec<&HistoryEntry> = app
        .status
        .history
        .iter()
        .filter(|h| h.id < newest.id)
        .collect();
    earlier.sort_by_key(|h| h.id);
    let key = newest.revision_key();
    match earlier.split_last() {
        Some((previous, older)) => {
            if previous.revision_key() == key {
                (previous.all_sources() != newest.all_sources())
                    .then_some(EventKind::ServiceUpgraded)
            } else if older.iter().any(|h| h.revision_key() == key) {
                Some(EventKind::ServiceRolledback)
            } else {
                Some(EventKind::ServiceUpgraded)
            }
        }
        None => (prev.last_revision.as_deref() != Some(key.as_str()))
            .then_some(EventKind::ServiceUpgraded),
    }
}

fn removal(
    cfg: &DetectConfig,
    prev: &AppState,
    app: Option<&Application>,
    envs: &dyn EnvironmentMembers,
    observed_at: &str,
) -> Detection {
    let data = match app {
        Some(a) => custom_data(cfg, a),
        None => json!({"application": {
            "name": prev.key.split_once('/').map_or(prev.key.as_str(), |(_, n)| n),
            "namespace": prev.key.split_once('/').map_or("", |(ns, _)| ns),
            "project": prev.project,
            "uid": prev.uid,
        }}),
    };
    let at = app
        .and_then(|a| a.metadata.deletion_timestamp.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| observed_at.to_string());
    let mut events = Vec::new();
    for incident in prev.incidents.values() {
        events.push(incident_event(
            EventKind::IncidentResolved,
            incident,
            prev,
            "application deleted",
            &at,
            &data,
            None,
        ));
    }
    // An app can leave the watched set and come back (a label selector) before it is
    // really deleted: the per-app counter keeps every removal's id distinct.
    events.push(Emission::new(
        EventKind::ServiceRemoved,
        event_id(&[&prev.uid, "service.removed", &prev.change_seq.to_string()]),
        at.clone(),
        prev.key.clone(),
        prev.environment.clone(),
        data.clone(),
    ));
    if envs.others_in(&prev.environment.id, &prev.key) == 0 {
        events.push(environment_deleted(
            &prev.environment,
            &prev.uid,
            prev.change_seq + 1,
            &at,
            data,
        ));
    }
    Detection { events, next: None }
}

fn environment_deleted(env: &Environment, uid: &str, seq: u64, at: &str, data: Value) -> Emission {
    Emission::new(
        EventKind::EnvironmentDeleted,
        event_id(&[&env.id, "environment.deleted", uid, &seq.to_string()]),
        at.to_string(),
        env.id.clone(),
        env.clone(),
        data,
    )
}

/// Open and resolve incidents, one per app and cause.
fn incidents(
    app: &Application,
    state: &mut AppState,
    events: &mut Vec<Emission>,
    data: &Value,
    chain: Option<&Chain>,
    observed_at: &str,
) {
    let status = &app.status;
    let reconciled = status.reconciled_at.as_deref().unwrap_or(observed_at);
    let health_at = status
        .health
        .last_transition_time
        .as_deref()
        .unwrap_or(reconciled);
    let op = status.operation_state.as_ref();
    let op_at = op
        .and_then(|o| o.finished_at.as_deref())
        .unwrap_or(reconciled);
    // Identifies the operation; Argo CD always sets startedAt, finishedAt is the fallback.
    let op_started = op.and_then(|o| {
        o.started_at
            .clone()
            .or_else(|| o.finished_at.clone())
            .or_else(|| Some(String::new()))
    });

    // (cause, is the problem there now, is it cleared now, description, timestamp, chain)
    let failed_now = op.is_some_and(|o| matches!(o.phase.as_str(), "Failed" | "Error"));
    let checks = [
        (
            Cause::HealthDegraded,
            status.health.status == "Degraded",
            status.health.status == "Healthy",
            format!(
                "health Degraded{}",
                status
                    .health
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            health_at,
            None,
        ),
        (
            Cause::SyncFailed,
            failed_now && state.reported_failed_operation != op_started,
            op.is_some_and(|o| o.phase == "Succeeded"),
            format!(
                "sync {}{}",
                op.map_or("Failed", |o| o.phase.as_str()),
                op.and_then(|o| o.message.as_deref())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            op_at,
            chain,
        ),
        (
            Cause::SyncUnknown,
            status.sync.status == "Unknown",
            matches!(status.sync.status.as_str(), "Synced" | "OutOfSync"),
            "sync status Unknown".to_string(),
            reconciled,
            None,
        ),
    ];
    for (cause, present, cleared, description, at, chain) in checks {
        let open = state.incidents.get(&cause).cloned();
        match open {
            None if present => {
                state.incident_seq += 1;
                let incident = OpenIncident {
                    id: event_id(&[&state.uid, "incident", &state.incident_seq.to_string()])
                        .to_string(),
                    description,
                };
                events.push(incident_event(
                    EventKind::IncidentDetected,
                    &incident,
                    state,
                    &incident.description,
                    at,
                    data,
                    chain,
                ));
                if cause == Cause::SyncFailed {
                    state.reported_failed_operation = op_started.clone();
                }
                state.incidents.insert(cause, incident);
            }
            Some(incident) if cleared => {
                let how = match cause {
                    Cause::HealthDegraded => "health Healthy again".to_string(),
                    Cause::SyncFailed => "a later sync succeeded".to_string(),
                    Cause::SyncUnknown => format!("sync status {}", status.sync.status),
                };
                events.push(incident_event(
                    EventKind::IncidentResolved,
                    &incident,
                    state,
                    &how,
                    at,
                    data,
                    chain,
                ));
                state.incidents.remove(&cause);
            }
            _ => {}
        }
    }
}

fn incident_event(
    kind: EventKind,
    incident: &OpenIncident,
    state: &AppState,
    description: &str,
    at: &str,
    data: &Value,
    chain: Option<&Chain>,
) -> Emission {
    Emission {
        artifact_id: state.artifact_id.clone(),
        description: Some(description.to_string()),
        service_id: Some(state.key.clone()),
        chain: chain.cloned(),
        ..Emission::new(
            kind,
            event_id(&[&incident.id, kind.name()]),
            at,
            incident.id.clone(),
            state.environment.clone(),
            data.clone(),
        )
    }
}

/// Annotations the react flow sets on an Application it creates.
pub const CHAIN_ANNOTATION: &str = "cdevents.dev/chain-id";
pub const TRIGGER_ANNOTATION: &str = "cdevents.dev/trigger-id";

fn creation_chain(app: &Application) -> Option<Chain> {
    let annotations = app.metadata.annotations.as_ref()?;
    let chain_id = annotations.get(CHAIN_ANNOTATION).cloned();
    let trigger_id = annotations.get(TRIGGER_ANNOTATION).cloned();
    (chain_id.is_some() || trigger_id.is_some()).then_some(Chain {
        chain_id,
        trigger_id,
    })
}

fn chain_of(app: &Application) -> Option<Chain> {
    let chain_id = app.operation_info(INFO_CHAIN_ID).map(str::to_string);
    let trigger_id = app.operation_info(INFO_TRIGGER_ID).map(str::to_string);
    (chain_id.is_some() || trigger_id.is_some()).then_some(Chain {
        chain_id,
        trigger_id,
    })
}

fn sorted_urls(app: &Application) -> Vec<String> {
    let mut urls = app.status.summary.external_urls.clone();
    urls.sort();
    urls.dedup();
    urls
}

/// The artifact a history entry deployed: the alphabetically first image of
/// `status.summary.images` (a stable choice, as Argo CD's order is not), else the
/// purl of the entry's (first) source at its revision.
fn artifact_of(app: &Application, entry: &HistoryEntry) -> Option<String> {
    let mut images = app.status.summary.images.clone();
    images.sort();
    if let Some(p) = images.iter().find_map(|i| purl::image(i)) {
        return Some(p);
    }
    let revisions = entry.revision_list();
    let sources = entry.all_sources();
    let spec_sources = app.spec_sources();
    let sources = if sources.is_empty() {
        spec_sources
    } else {
        sources
    };
    sources
        .iter()
        .zip(
            revisions
                .iter()
                .map(String::as_str)
                .chain(std::iter::repeat("")),
        )
        .find_map(|(s, r)| purl::source(s, r))
}

fn custom_data(cfg: &DetectConfig, app: &Application) -> Value {
    let dest = &app.spec.destination;
    let mut data = json!({
        "application": {
            "name": app.name(),
            "namespace": app.namespace(),
            "project": app.spec.project,
            "uid": app.uid(),
        },
        "destination": dest,
        "repoURLs": app.spec_sources().iter().map(|s| s.repo_url.as_str()).collect::<Vec<_>>(),
    });
    let Some(obj) = data.as_object_mut() else {
        return data;
    };
    if !app.status.sync.status.is_empty() {
        obj.insert("sync".into(), json!({"status": app.status.sync.status}));
    }
    if !app.status.health.status.is_empty() {
        obj.insert("health".into(), json!({"status": app.status.health.status}));
    }
    let sync_revisions = if app.status.sync.revisions.is_empty() {
        app.status.sync.revision.iter().cloned().collect()
    } else {
        app.status.sync.revisions.clone()
    };
    if !sync_revisions.is_empty() {
        obj.insert("revisions".into(), json!(sync_revisions));
    }
    if let Some(m) = &app.status.health.message {
        obj.insert(
            "health".into(),
            json!({"status": app.status.health.status, "message": m}),
        );
    }
    if !app.status.summary.images.is_empty() {
        obj.insert("images".into(), json!(app.status.summary.images));
    }
    if !app.status.summary.external_urls.is_empty() {
        obj.insert(
            "externalURLs".into(),
            json!(app.status.summary.external_urls),
        );
    }
    if let Some(op) = &app.status.operation_state {
        let mut o = Map::new();
        o.insert("phase".into(), json!(op.phase));
        if let Some(m) = &op.message {
            o.insert("message".into(), json!(m));
        }
        if let Some(by) = &op.operation.initiated_by {
            o.insert("initiatedBy".into(), json!(by));
        }
        obj.insert("operation".into(), Value::Object(o));
    }
    if let Some(labels) = &app.metadata.labels {
        let chosen: Map<String, Value> = cfg
            .custom_data_labels
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), json!(v))))
            .collect();
        if !chosen.is_empty() {
            obj.insert("labels".into(), Value::Object(chosen));
        }
    }
    data
}

fn with_history(data: &Value, entry: &HistoryEntry) -> Value {
    let mut data = data.clone();
    if let Some(obj) = data.as_object_mut() {
        obj.insert("historyId".into(), json!(entry.id));
        obj.insert("revisions".into(), json!(entry.revision_list()));
        if let Some(by) = &entry.initiated_by {
            obj.insert("initiatedBy".into(), json!(by));
        }
    }
    data
}

#[cfg(test)]
mod tests;
