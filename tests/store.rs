//! The store contract: one body per behaviour, run on SQLite (a temporary file) and on
//! PostgreSQL (a database of its own on the server of `ARGOCD_CDEVENTS_TEST_POSTGRES`; see
//! tests/support/postgres.rs). Where the two stores differ on purpose — who may claim inbox
//! rows held by another gateway — the body asks the store (`shared()`) and checks each rule.
//! Then the PostgreSQL-only behaviours: concurrent claimers, concurrent migrations, errors
//! that name the host and never the password.

mod support;

use argocd_cdevents::config::StoreUrl;
use argocd_cdevents::emit::detect::{AppState, Cause, OpenIncident};
use argocd_cdevents::store::postgres::PostgresStore;
use argocd_cdevents::store::{
    self, DeliveryStatus, EmitBatch, InboxClaim, NewDecision, NewDelivery, NewInbound,
    OutboxFilter, Outcome, Store, StoreError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Keeps a test's store alive (the temporary directory or the test database).
#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Database(support::postgres::TestDatabase),
}

async fn sqlite() -> (Keep, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = support::engine::sqlite_store(dir.path()).await;
    (Keep::Dir(dir), store)
}

async fn postgres() -> (Keep, Arc<dyn Store>) {
    let db = support::postgres::database().await;
    let url: StoreUrl = db.url.parse().unwrap_or_else(|e| panic!("{e}"));
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    (Keep::Database(db), store)
}

/// Run each named contract body once per store, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_keep, store) = super::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_keep, store) = super::postgres().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

contract!(
    outbox_delivers_the_oldest_row_of_each_app_first,
    an_event_is_added_once_per_sink,
    redrive_puts_dead_rows_back_by_sink_or_seq,
    prune_deletes_only_old_delivered_rows,
    list_outbox_filters_newest_first_and_counts,
    incidents_follow_the_app_state,
    inbox_deduplicates_within_and_across_batches,
    events_nothing_asks_for_are_stored_done_and_still_deduplicated,
    the_committed_callback_gets_the_answer_once,
    every_answered_seq_is_the_row_of_its_event,
    old_received_events_are_pruned_once_decided_oldest_first,
    old_settled_decisions_are_pruned_never_acting_ones,
    inbox_rows_are_claimed_oldest_first_and_once_per_owner,
    claims_of_another_owner_expire_or_yield_as_the_store_says,
    renewed_claims_are_kept_and_done_rows_are_never_claimed,
    a_decision_is_recorded_once_and_settled,
    settle_interrupted_touches_only_acting_decisions_before_the_time,
    decisions_list_newest_first_and_last_acted_counts_acted_and_acting,
);

fn delivery(sink: &str, app: &str, id: &str) -> NewDelivery {
    NewDelivery {
        sink: sink.into(),
        app_key: app.into(),
        event_id: id.into(),
        event_type: "dev.cdevents.service.deployed.0.2.0".into(),
        event_source: "/argocd".into(),
        event_time: "2026-01-01T00:00:00Z".into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn deliveries(rows: &[NewDelivery]) -> EmitBatch {
    EmitBatch {
        states: Vec::new(),
        deliveries: rows.to_vec(),
    }
}

fn inbound(source: &str, id: &str) -> NewInbound {
    NewInbound {
        source: source.into(),
        event_id: id.into(),
        event_type: "dev.cdevents.artifact.published.0.2.0".into(),
        client: "ci".into(),
        payload: Some(format!("{{\"id\":\"{id}\"}}")),
    }
}

fn claim(owner: &str, until_ms: i64) -> InboxClaim {
    InboxClaim {
        owner: owner.into(),
        until_ms,
    }
}

fn decision(event_id: &str, policy: &str, app: &str, outcome: Outcome) -> NewDecision {
    NewDecision {
        event_source: "/ci".into(),
        event_id: event_id.into(),
        event_type: "dev.cdevents.artifact.published.0.2.0".into(),
        policy: policy.into(),
        application: app.into(),
        action: "sync".into(),
        outcome,
        reason: "because".into(),
        chain_id: Some("chain".into()),
        requests: "[]".into(),
    }
}

async fn ids_due(store: &dyn Store, sink: &str, now_ms: i64, limit: i64) -> Vec<String> {
    store
        .due_deliveries(sink, now_ms, limit)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| r.event_id)
        .collect()
}

async fn seq_of(store: &dyn Store, id: &str) -> i64 {
    store
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|r| r.event_id == id)
        .map(|r| r.seq)
        .unwrap_or_else(|| panic!("no outbox row {id}"))
}

async fn outbox_contract_rows(store: &dyn Store) {
    store
        .commit_emit(
            &deliveries(&[
                delivery("s", "a", "a1"),
                delivery("s", "b", "b1"),
                delivery("s", "a", "a2"),
                delivery("s", "a", "a3"),
                delivery("t", "a", "t-a1"),
            ]),
            1_000,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn outbox_delivers_the_oldest_row_of_each_app_first(store: Arc<dyn Store>) {
    let s = store.as_ref();
    outbox_contract_rows(s).await;
    // One head per app, oldest first; other sinks are apart.
    assert_eq!(ids_due(s, "s", 1_000, 10).await, ["a1", "b1"]);
    assert_eq!(ids_due(s, "s", 1_000, 1).await, ["a1"]);
    assert_eq!(ids_due(s, "t", 1_000, 10).await, ["t-a1"]);
    assert_eq!(ids_due(s, "s", 999, 10).await, Vec::<String>::new());
    assert_eq!(s.next_due_at("s").await.ok(), Some(Some(1_000)));
    assert_eq!(s.next_due_at("none").await.ok(), Some(None));

    // A head waiting for its retry holds back its app (head of line), not the others.
    let a1 = seq_of(s, "a1").await;
    s.mark_retry(a1, 5_000, "503", 1_100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids_due(s, "s", 2_000, 10).await, ["b1"]);
    assert_eq!(ids_due(s, "s", 5_000, 10).await, ["a1", "b1"]);
    let b1 = seq_of(s, "b1").await;
    s.mark_delivered(b1, 1_200)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.next_due_at("s").await.ok(), Some(Some(5_000)));

    // Delivered or dead, the head gives way to the next row of its app.
    s.mark_delivered(a1, 5_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids_due(s, "s", 5_000, 10).await, ["a2"]);
    let a2 = seq_of(s, "a2").await;
    s.mark_dead(a2, "400 Bad Request", 5_100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids_due(s, "s", 5_100, 10).await, ["a3"]);

    let rows = s
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.event_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no row {id}"))
    };
    let a1 = row("a1");
    assert_eq!(
        (a1.status, a1.attempts, a1.last_error, a1.updated_at),
        (DeliveryStatus::Delivered, 2, None, 5_000)
    );
    let a2 = row("a2");
    assert_eq!(
        (a2.status, a2.attempts, a2.last_error.as_deref()),
        (DeliveryStatus::Dead, 1, Some("400 Bad Request"))
    );
    let a3 = row("a3");
    assert_eq!(
        (a3.status, a3.attempts, a3.created_at, a3.next_attempt_at),
        (DeliveryStatus::Pending, 0, 1_000, 1_000)
    );
    assert_eq!(a3.payload, "{\"id\":\"a3\"}");
}

async fn an_event_is_added_once_per_sink(store: Arc<dyn Store>) {
    let s = store.as_ref();
    // Twice in one batch, again in a later batch: one row per sink, the first one.
    let mut again = delivery("s", "a", "e1");
    again.payload = "{\"second\":true}".into();
    s.commit_emit(
        &deliveries(&[
            delivery("s", "a", "e1"),
            again.clone(),
            delivery("t", "a", "e1"),
        ]),
        1_000,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    s.commit_emit(&deliveries(&[again, delivery("s", "a", "e2")]), 2_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = s
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.sink.as_str(), r.event_id.as_str(), r.payload.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("s", "e2", "{\"id\":\"e2\"}"),
            ("t", "e1", "{\"id\":\"e1\"}"),
            ("s", "e1", "{\"id\":\"e1\"}"),
        ]
    );
    // An empty batch commits nothing and fails nothing.
    s.commit_emit(&EmitBatch::default(), 3_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn redrive_puts_dead_rows_back_by_sink_or_seq(store: Arc<dyn Store>) {
    let s = store.as_ref();
    s.commit_emit(
        &deliveries(&[
            delivery("s", "a", "s1"),
            delivery("s", "b", "s2"),
            delivery("s", "c", "s3"),
            delivery("t", "a", "t1"),
            delivery("t", "b", "t2"),
        ]),
        1_000,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for id in ["s1", "s2", "s3", "t1"] {
        let seq = seq_of(s, id).await;
        s.mark_dead(seq, "gone", 1_100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dead = |sink: Option<&str>| OutboxFilter {
        status: Some(DeliveryStatus::Dead),
        sink: sink.map(str::to_string),
        limit: 0,
    };
    let ids = |rows: Vec<store::OutboxRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.event_id).collect()
    };

    // Just the named rows (a pending row named is left alone).
    let s1 = seq_of(s, "s1").await;
    let t2 = seq_of(s, "t2").await;
    assert_eq!(s.redrive(None, &[s1, t2], 2_000).await.ok(), Some(1));
    // Named rows of another sink are not touched.
    let t1 = seq_of(s, "t1").await;
    assert_eq!(s.redrive(Some("s"), &[t1], 2_000).await.ok(), Some(0));
    // All dead rows of one sink.
    assert_eq!(s.redrive(Some("s"), &[], 3_000).await.ok(), Some(2));
    assert_eq!(
        ids(s.list_outbox(&dead(None)).await.unwrap_or_default()),
        ["t1"]
    );
    // Everything left.
    assert_eq!(s.redrive(None, &[], 4_000).await.ok(), Some(1));
    assert_eq!(s.redrive(None, &[], 4_000).await.ok(), Some(0));
    assert!(
        s.list_outbox(&dead(Some("t")))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    let rows = s
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s1 = rows.iter().find(|r| r.event_id == "s1");
    assert_eq!(
        s1.map(|r| (
            r.status,
            r.attempts,
            r.last_error.clone(),
            r.next_attempt_at,
            r.updated_at
        )),
        Some((DeliveryStatus::Pending, 0, None, 2_000, 2_000))
    );
    assert!(rows.iter().all(|r| r.status == DeliveryStatus::Pending));
}

async fn prune_deletes_only_old_delivered_rows(store: Arc<dyn Store>) {
    let s = store.as_ref();
    s.commit_emit(
        &deliveries(&[
            delivery("s", "a", "old-delivered"),
            delivery("s", "b", "new-delivered"),
            delivery("s", "c", "old-dead"),
            delivery("s", "d", "old-pending"),
        ]),
        1_000,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let old = seq_of(s, "old-delivered").await;
    let new = seq_of(s, "new-delivered").await;
    let dead = seq_of(s, "old-dead").await;
    s.mark_delivered(old, 1_000).await.ok();
    s.mark_delivered(new, 9_000).await.ok();
    s.mark_dead(dead, "x", 1_000).await.ok();
    assert_eq!(s.prune_delivered(5_000).await.ok(), Some(1));
    assert_eq!(s.prune_delivered(5_000).await.ok(), Some(0));
    assert_eq!(
        outbox_ids(s).await,
        BTreeSet::from(["new-delivered", "old-dead", "old-pending"].map(String::from))
    );
}

/// The event ids of every outbox row.
async fn outbox_ids(store: &dyn Store) -> BTreeSet<String> {
    store
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| r.event_id)
        .collect()
}

async fn list_outbox_filters_newest_first_and_counts(store: Arc<dyn Store>) {
    let s = store.as_ref();
    outbox_contract_rows(s).await;
    let a2 = seq_of(s, "a2").await;
    s.mark_dead(a2, "x", 1_000).await.ok();
    let list = |status: Option<DeliveryStatus>, sink: Option<&str>, limit: i64| {
        let filter = OutboxFilter {
            status,
            sink: sink.map(str::to_string),
            limit,
        };
        async move {
            s.list_outbox(&filter)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|r| r.event_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None, 0).await, ["t-a1", "a3", "a2", "b1", "a1"]);
    assert_eq!(list(None, None, 2).await, ["t-a1", "a3"]);
    assert_eq!(list(None, Some("s"), 0).await, ["a3", "a2", "b1", "a1"]);
    assert_eq!(
        list(Some(DeliveryStatus::Pending), Some("s"), 0).await,
        ["a3", "b1", "a1"]
    );
    assert_eq!(list(Some(DeliveryStatus::Dead), None, 0).await, ["a2"]);
    assert!(
        list(Some(DeliveryStatus::Delivered), None, 0)
            .await
            .is_empty()
    );
    let counts: Vec<(String, DeliveryStatus, i64)> = s
        .outbox_counts()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|c| (c.sink, c.status, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("s".to_string(), DeliveryStatus::Dead, 1),
            ("s".to_string(), DeliveryStatus::Pending, 3),
            ("t".to_string(), DeliveryStatus::Pending, 1),
        ]
    );
    assert!(s.ping().await.is_ok());
}

fn app(key: &str, incidents: &[(Cause, &str)]) -> AppState {
    AppState {
        key: key.into(),
        uid: format!("uid-{key}"),
        incidents: incidents
            .iter()
            .map(|(c, id)| {
                (
                    *c,
                    OpenIncident {
                        id: (*id).into(),
                        description: format!("{id} is open"),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        ..AppState::default()
    }
}

async fn incidents_follow_the_app_state(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let commit = |states: Vec<(String, Option<AppState>)>, now_ms: i64| async move {
        s.commit_emit(
            &EmitBatch {
                states,
                deliveries: Vec::new(),
            },
            now_ms,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let incidents = || async {
        s.open_incidents()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|i| (i.app_key, i.cause, i.incident_id, i.opened_at))
            .collect::<Vec<_>>()
    };
    let row = |app: &str, cause: &str, id: &str, at: i64| {
        (app.to_string(), cause.to_string(), id.to_string(), at)
    };
    let a = app(
        "argocd/a",
        &[(Cause::HealthDegraded, "i-1"), (Cause::SyncFailed, "i-2")],
    );
    let b = app("argocd/b", &[(Cause::SyncUnknown, "i-3")]);
    commit(
        vec![
            ("argocd/a".into(), Some(a.clone())),
            ("argocd/b".into(), Some(b.clone())),
        ],
        1_000,
    )
    .await;
    assert_eq!(
        incidents().await,
        [
            row("argocd/a", "healthDegraded", "i-1", 1_000),
            row("argocd/a", "syncFailed", "i-2", 1_000),
            row("argocd/b", "syncUnknown", "i-3", 1_000),
        ]
    );
    // The same incident keeps its opening time; a new one for the same cause starts anew;
    // a cause no longer open is gone.
    let a2 = app(
        "argocd/a",
        &[(Cause::HealthDegraded, "i-1"), (Cause::SyncUnknown, "i-4")],
    );
    let b2 = app("argocd/b", &[(Cause::SyncUnknown, "i-5")]);
    commit(
        vec![
            ("argocd/a".into(), Some(a2.clone())),
            ("argocd/b".into(), Some(b2.clone())),
        ],
        2_000,
    )
    .await;
    assert_eq!(
        incidents().await,
        [
            row("argocd/a", "healthDegraded", "i-1", 1_000),
            row("argocd/a", "syncUnknown", "i-4", 2_000),
            row("argocd/b", "syncUnknown", "i-5", 2_000),
        ]
    );
    assert_eq!(
        s.load_app_states().await.unwrap_or_else(|e| panic!("{e}")),
        [a2.clone(), b2]
    );
    // A gone app takes its state and incidents with it.
    commit(vec![("argocd/b".into(), None)], 3_000).await;
    assert_eq!(
        incidents().await,
        [
            row("argocd/a", "healthDegraded", "i-1", 1_000),
            row("argocd/a", "syncUnknown", "i-4", 2_000),
        ]
    );
    assert_eq!(
        s.load_app_states().await.unwrap_or_else(|e| panic!("{e}")),
        [a2]
    );
}

async fn inbox_deduplicates_within_and_across_batches(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let owner = claim("gw-1", 60_000);
    let first = s
        .commit_inbox(
            &[
                inbound("/ci", "1"),
                inbound("/ci", "2"),
                inbound("/ci", "1"),
                inbound("/other", "1"),
            ],
            1_000,
            &owner,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.len(), 4);
    assert!(first[0].is_some() && first[1].is_some() && first[3].is_some());
    assert_eq!(first[2], None, "a repeat within the batch is a duplicate");
    assert!(first[0] < first[1] && first[1] < first[3], "{first:?}");

    let second = s
        .commit_inbox(&[inbound("/ci", "2"), inbound("/ci", "3")], 2_000, &owner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second[0], None, "received before");
    assert!(second[1] > first[3], "{second:?}");
    assert_eq!(
        s.commit_inbox(&[], 3_000, &owner).await.ok(),
        Some(Vec::new())
    );

    // The row keeps the first copy; a new owner sees every fresh row once.
    let rows = s
        .claim_inbox(&claim("gw-2", 200_000), 100_000, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(Option<i64>, &str, &str, i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                Some(r.seq),
                r.source.as_str(),
                r.event_id.as_str(),
                r.received_at,
                r.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (first[0], "/ci", "1", 1_000, "pending"),
            (first[1], "/ci", "2", 1_000, "pending"),
            (first[3], "/other", "1", 1_000, "pending"),
            (second[1], "/ci", "3", 2_000, "pending"),
        ]
    );
    assert_eq!(rows[0].payload, "{\"id\":\"1\"}");
    assert_eq!(rows[0].client, "ci");
}

async fn old_received_events_are_pruned_once_decided_oldest_first(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let owner = claim("gw-1", 60_000);
    let done = |id: &str| NewInbound {
        payload: None,
        ..inbound("/ci", id)
    };
    let commit = |rows: Vec<NewInbound>, at: i64| {
        let owner = owner.clone();
        async move {
            s.commit_inbox(&rows, at, &owner)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    commit(vec![done("a"), done("b"), inbound("/ci", "waiting")], 1_000).await;
    commit(vec![done("c")], 2_000).await;
    commit(vec![done("young")], 5_000).await;
    let prune = |before: i64, limit: i64| async move {
        s.prune_inbox(before, limit)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // Oldest first, at most `limit` a call; nothing received since the cutoff, nothing
    // still pending.
    assert_eq!(prune(3_000, 1).await, 1);
    assert_eq!(prune(3_000, 10).await, 2);
    assert_eq!(prune(3_000, 10).await, 0);
    // Gone from the inbox, so received again it is new; the rest are still duplicates.
    let again = commit(
        vec![
            done("a"),
            done("c"),
            inbound("/ci", "waiting"),
            done("young"),
        ],
        6_000,
    )
    .await;
    assert!(again[0].is_some() && again[1].is_some(), "{again:?}");
    assert_eq!(again[2..], [None, None]);
    // The pending row is still there to be decided.
    let rows = s
        .claim_inbox(&claim("gw-2", 200_000), 100_000, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        ["waiting"]
    );
}

async fn old_settled_decisions_are_pruned_never_acting_ones(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let record = |d: NewDecision, at: i64| async move {
        assert!(
            s.record_decision(&d, at)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
    };
    record(decision("e1", "p", "argocd/a", Outcome::Acted), 1_000).await;
    record(decision("e2", "p", "argocd/b", Outcome::Acting), 1_000).await;
    record(decision("e3", "p", "argocd/a", Outcome::Skipped), 2_000).await;
    record(decision("e4", "p", "argocd/a", Outcome::Acted), 9_000).await;
    assert_eq!(
        s.prune_decisions(5_000, 100)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    let left = s
        .list_decisions(100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = left.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["e4", "e2"],
        "newest first: the young one and the one still acting"
    );
    assert_eq!(
        s.last_acted("p", "argocd/a")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(9_000)
    );
}

/// Big all-new batches (across the SQLite store's 1,000-row statements) and batches mixing
/// new events with repeats: each `Some(seq)` answered is the row holding that very event.
async fn every_answered_seq_is_the_row_of_its_event(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let owner = claim("gw-1", 60_000);
    let id = |i: usize| format!("ev-{}", (i * 7919) % 10_007);
    let all_new: Vec<NewInbound> = (0..1_500).map(|i| inbound("/ci", &id(i))).collect();
    let mixed: Vec<NewInbound> = (1_400..1_700)
        .map(|i| inbound(if i % 3 == 0 { "/ci" } else { "/cd" }, &id(i)))
        .chain([inbound("/cd", &id(1_600)), inbound("/ci", &id(5))])
        .collect();
    let mut answered: Vec<(i64, String, String)> = Vec::new();
    for batch in [&all_new, &mixed] {
        let fresh = s
            .commit_inbox(batch, 1_000, &owner)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh.len(), batch.len());
        for (e, seq) in batch.iter().zip(&fresh) {
            if let Some(seq) = seq {
                answered.push((*seq, e.source.clone(), e.event_id.clone()));
            }
        }
    }
    // 1,500 new; then of the mixed 302, 267 new: not the 33 "/ci" ones below 1,500 (repeats
    // of the first batch), the second "/cd" 1,600 (a repeat within the batch), nor "/ci" 5.
    assert_eq!(answered.len(), 1_500 + 267);
    let rows = s
        .claim_inbox(&claim("gw-2", 200_000), 100_000, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stored: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.seq, r.source.clone(), r.event_id.clone()))
        .collect();
    stored.sort();
    answered.sort();
    assert_eq!(answered, stored);
}

async fn events_nothing_asks_for_are_stored_done_and_still_deduplicated(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let gone = claim("long-gone", 2);
    let quiet = NewInbound {
        payload: None,
        ..inbound("/ci", "quiet")
    };
    let fresh = s
        .commit_inbox(&[quiet.clone(), inbound("/ci", "wanted")], 1_000, &gone)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fresh.iter().all(Option::is_some), "{fresh:?}");
    // Only the pending row is ever claimed, even by a new owner after the claim expired.
    let rows = s
        .claim_inbox(&claim("gw-new", 200_000), 100_000, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seqs(&rows), [fresh[1].unwrap_or_default()]);
    // The done row still stops the same event from being taken again.
    let again = s
        .commit_inbox(&[inbound("/ci", "quiet")], 2_000, &gone)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, [None]);
}

async fn the_committed_callback_gets_the_answer_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let seen: std::sync::Mutex<Vec<Vec<Option<i64>>>> = Default::default();
    let record = |fresh: &[Option<i64>]| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(fresh.to_vec());
        }
    };
    let batch = [
        inbound("/ci", "a"),
        inbound("/ci", "a"),
        inbound("/ci", "b"),
    ];
    let answer = s
        .commit_inbox_then(&batch, 1_000, &claim("gw", 60_000), &record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer[1], None);
    let again = s
        .commit_inbox_then(&batch[2..], 2_000, &claim("gw", 60_000), &record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, [None]);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, [answer, again]);
}

/// Commit `n` events whose claim expired long ago (claimable by anyone), in one batch.
async fn unclaimed(store: &dyn Store, n: usize) -> Vec<i64> {
    let events: Vec<NewInbound> = (0..n).map(|i| inbound("/ci", &format!("e{i}"))).collect();
    store
        .commit_inbox(&events, 1, &claim("long-gone", 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|s| s.unwrap_or_else(|| panic!("a fresh row")))
        .collect()
}

fn seqs(rows: &[store::InboxRow]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

async fn inbox_rows_are_claimed_oldest_first_and_once_per_owner(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let all = unclaimed(s, 5).await;
    let a = claim("gw-a", 70_000);
    let take = |n: i64| {
        let a = a.clone();
        async move {
            s.claim_inbox(&a, 10_000, n)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(seqs(&take(2).await), all[..2]);
    assert_eq!(
        seqs(&take(2).await),
        all[2..4],
        "held rows are not returned again"
    );
    assert_eq!(seqs(&take(10).await), all[4..]);
    assert!(take(10).await.is_empty());
    // Rows committed by an owner are held by it from the start.
    let fresh = s
        .commit_inbox(&[inbound("/ci", "new")], 10_000, &a)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fresh[0].is_some());
    assert!(take(10).await.is_empty());
    // Once the claim expired the owner claims its rows again.
    let again = s
        .claim_inbox(&claim("gw-a", 200_000), 70_001, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seqs(&again).len(), 6);
}

async fn claims_of_another_owner_expire_or_yield_as_the_store_says(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let held = s
        .commit_inbox(
            &[inbound("/ci", "1"), inbound("/ci", "2")],
            1_000,
            &claim("gw-a", 61_000),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let held: Vec<i64> = held.into_iter().flatten().collect();
    let b = |until_ms: i64| claim("gw-b", until_ms);
    let before_expiry = s
        .claim_inbox(&b(70_000), 10_000, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if s.shared() {
        // Another gateway may be deciding them right now: wait for the claim to expire.
        assert!(before_expiry.is_empty(), "{before_expiry:?}");
        assert!(
            s.claim_inbox(&b(70_000), 61_000, 10)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty(),
            "a claim holds up to and including its time"
        );
        let after = s
            .claim_inbox(&b(130_000), 61_001, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seqs(&after), held);
    } else {
        // One gateway per file: the other owner is a stopped predecessor.
        assert_eq!(seqs(&before_expiry), held);
    }
    // Either way the rows now belong to gw-b: gw-a no longer renews them...
    assert_eq!(
        s.renew_inbox_claims(&claim("gw-a", 500_000)).await.ok(),
        Some(0)
    );
    assert_eq!(s.renew_inbox_claims(&b(500_000)).await.ok(), Some(2));
    // ...and gw-b does not get them twice.
    assert!(
        s.claim_inbox(&b(600_000), 200_000, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}

async fn renewed_claims_are_kept_and_done_rows_are_never_claimed(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let rows: Vec<i64> = s
        .commit_inbox(
            &[
                inbound("/ci", "1"),
                inbound("/ci", "2"),
                inbound("/ci", "3"),
            ],
            1_000,
            &claim("gw-a", 61_000),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .flatten()
        .collect();
    s.finish_inbox(rows[0], 2_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Only pending rows are renewed.
    assert_eq!(
        s.renew_inbox_claims(&claim("gw-a", 121_000)).await.ok(),
        Some(2)
    );
    let by_b = s
        .claim_inbox(&claim("gw-b", 200_000), 100_000, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if s.shared() {
        assert!(by_b.is_empty(), "renewed claims hold: {by_b:?}");
        assert_eq!(
            seqs(
                &s.claim_inbox(&claim("gw-b", 200_000), 121_001, 10)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
            ),
            rows[1..]
        );
    } else {
        assert_eq!(seqs(&by_b), rows[1..]);
    }
    // Done rows stay in the inbox (the dedup key) and are never claimed again.
    s.finish_inbox_many(&rows[1..], 300_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.finish_inbox_many(&[], 300_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s.claim_inbox(&claim("gw-c", 2_000_000), 1_000_000, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert_eq!(
        s.renew_inbox_claims(&claim("gw-b", 2_000_000)).await.ok(),
        Some(0)
    );
    let again = s
        .commit_inbox(&[inbound("/ci", "1")], 400_000, &claim("gw-c", 460_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, [None], "a done row still deduplicates");
}

async fn a_decision_is_recorded_once_and_settled(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let acting = decision("e1", "p", "argocd/a", Outcome::Acting);
    assert_eq!(s.record_decision(&acting, 1_000).await.ok(), Some(true));
    // The same event, policy and application again: refused, and the first one kept.
    let mut repeat = decision("e1", "p", "argocd/a", Outcome::Skipped);
    repeat.reason = "second".into();
    assert_eq!(s.record_decision(&repeat, 1_100).await.ok(), Some(false));
    // Any other part different: a decision of its own.
    for d in [
        decision("e2", "p", "argocd/a", Outcome::DryRun),
        decision("e1", "q", "argocd/a", Outcome::Skipped),
        decision("e1", "p", "argocd/b", Outcome::Failed),
    ] {
        assert_eq!(s.record_decision(&d, 1_200).await.ok(), Some(true));
    }
    let mut done = acting.clone();
    done.outcome = Outcome::Acted;
    done.reason = "synced".into();
    done.requests = "[{\"method\":\"POST\"}]".into();
    s.settle_decision(&done, 2_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = s.list_decisions(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 4);
    let first = rows
        .iter()
        .find(|r| r.event_id == "e1" && r.policy == "p" && r.application == "argocd/a")
        .unwrap_or_else(|| panic!("no decision e1/p/argocd/a"));
    assert_eq!(
        (
            first.outcome,
            first.reason.as_str(),
            first.requests.as_str(),
            first.decided_at
        ),
        (Outcome::Acted, "synced", "[{\"method\":\"POST\"}]", 2_000)
    );
    assert_eq!(
        (
            first.event_source.as_str(),
            first.event_type.as_str(),
            first.action.as_str(),
            first.chain_id.as_deref()
        ),
        (
            "/ci",
            "dev.cdevents.artifact.published.0.2.0",
            "sync",
            Some("chain")
        )
    );
    let outcomes: BTreeSet<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        BTreeSet::from(["acted", "dry-run", "skipped", "failed"])
    );
}

async fn settle_interrupted_touches_only_acting_decisions_before_the_time(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let old = decision("e1", "p", "argocd/a", Outcome::Acting);
    let recent = decision("e2", "p", "argocd/a", Outcome::Acting);
    let acted = decision("e3", "p", "argocd/a", Outcome::Acted);
    s.record_decision(&old, 1_000).await.ok();
    s.record_decision(&acted, 1_000).await.ok();
    s.record_decision(&recent, 5_000).await.ok();
    assert_eq!(s.settle_interrupted(5_000, 9_000).await.ok(), Some(1));
    assert_eq!(s.settle_interrupted(5_000, 9_500).await.ok(), Some(0));
    let rows = s.list_decisions(10).await.unwrap_or_else(|e| panic!("{e}"));
    let by_event = |id: &str| {
        rows.iter()
            .find(|r| r.event_id == id)
            .map(|r| (r.outcome, r.decided_at))
    };
    assert_eq!(by_event("e1"), Some((Outcome::Failed, 9_000)));
    assert!(
        rows.iter()
            .any(|r| r.event_id == "e1" && r.reason.starts_with("interrupted"))
    );
    assert_eq!(by_event("e2"), Some((Outcome::Acting, 5_000)));
    assert_eq!(by_event("e3"), Some((Outcome::Acted, 1_000)));
    // At the start of a lone gateway every acting decision is interrupted.
    assert_eq!(s.settle_interrupted(10_000, 10_000).await.ok(), Some(1));
    assert_eq!(
        s.list_decisions(10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter(|r| r.outcome == Outcome::Acting)
            .count(),
        0
    );
}

async fn decisions_list_newest_first_and_last_acted_counts_acted_and_acting(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(s.last_acted("p", "argocd/a").await.ok(), Some(None));
    s.record_decision(&decision("e1", "p", "argocd/a", Outcome::Acted), 1_000)
        .await
        .ok();
    s.record_decision(&decision("e2", "p", "argocd/a", Outcome::Skipped), 2_000)
        .await
        .ok();
    s.record_decision(&decision("e3", "p", "argocd/a", Outcome::Acting), 3_000)
        .await
        .ok();
    s.record_decision(&decision("e4", "p", "argocd/a", Outcome::Failed), 4_000)
        .await
        .ok();
    s.record_decision(&decision("e5", "q", "argocd/a", Outcome::Acted), 5_000)
        .await
        .ok();
    assert_eq!(s.last_acted("p", "argocd/a").await.ok(), Some(Some(3_000)));
    assert_eq!(s.last_acted("q", "argocd/a").await.ok(), Some(Some(5_000)));
    assert_eq!(s.last_acted("p", "argocd/b").await.ok(), Some(None));
    let ids: Vec<String> = s
        .list_decisions(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(ids, ["e5", "e4", "e3"]);
}

// ---- SQLite only ---------------------------------------------------------------------------

/// The WAL is checkpointed in the background and starts over from its beginning while
/// commits keep coming; left to the writer's own backstop (20,000 pages) it would hold
/// everything written here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_starts_over_under_continuous_writes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(&dir.path().join("store.db"));
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let payload = "x".repeat(4_000);
    let (batches, rows) = (100, 100);
    for b in 0..batches {
        let events: Vec<NewInbound> = (0..rows)
            .map(|i| NewInbound {
                payload: Some(payload.clone()),
                ..inbound("/ci", &format!("{b}-{i}"))
            })
            .collect();
        store
            .commit_inbox(&events, 1, &claim("gw", 2))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Commits keep coming for 2.5 s, some 25 rounds of the background checkpoint, at
        // whatever pace this machine writes.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let written = (batches * rows * payload.len()) as u64;
    let wal = std::fs::metadata(dir.path().join("store.db-wal"))
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wal < written / 2,
        "the WAL grew to {wal} bytes for {written} bytes of events: it never started over"
    );
}

/// On SQLite the inbox's keys are held in memory: two commits at once must still see each
/// other's events (the pool of one writer is not enough, the keys are read before the
/// insert).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_of_overlapping_events_on_sqlite_keep_one_row_each() {
    let (_keep, store) = sqlite().await;
    overlapping_commits_keep_one_row_each(store).await;
}

fn sqlite_url(db: &std::path::Path) -> StoreUrl {
    format!("sqlite://{}", db.display())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The keys in memory are read back from the file: a restarted gateway still answers
/// "duplicate" for every event it holds, and "new" for one pruned before the restart.
#[tokio::test]
async fn a_reopened_sqlite_store_knows_the_events_received_before() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = sqlite_url(&dir.path().join("store.db"));
    let owner = claim("gw-1", 60_000);
    let done = |id: &str| NewInbound {
        payload: None,
        ..inbound("/ci", id)
    };
    let first = {
        let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
        let first = store
            .commit_inbox(
                &[done("old"), done("kept"), inbound("/ci", "waiting")],
                1_000,
                &owner,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .commit_inbox(&[done("young")], 5_000, &owner)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // "old" and "kept" are decided and old; one goes before the restart.
        assert_eq!(store.prune_inbox(3_000, 1).await.ok(), Some(1));
        first
    };
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let again = store
        .commit_inbox(
            &[
                done("old"),
                done("kept"),
                inbound("/ci", "waiting"),
                done("young"),
                inbound("/other", "old"),
            ],
            6_000,
            &owner,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again[0] > first[2],
        "pruned before the restart: new, {again:?}"
    );
    assert_eq!(again[1..4], [None, None, None], "still held: duplicates");
    assert!(
        again[4] > again[0],
        "another source's id is another event: {again:?}"
    );
    // Pruned after the restart: the keys in memory forget it too.
    assert_eq!(store.prune_inbox(3_000, 10).await.ok(), Some(1));
    let third = store
        .commit_inbox(&[done("kept"), done("young")], 7_000, &owner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(third[0].is_some() && third[1].is_none(), "{third:?}");
}

/// A database made before the keys left the file (migrations 0001 - 0003, with the UNIQUE
/// index) keeps its rows through the table's rebuild, still deduplicates them, and never
/// gives a seq twice, not even one whose row was pruned.
#[tokio::test]
async fn an_sqlite_inbox_made_with_the_unique_index_keeps_its_rows_and_seqs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("store.db");
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap_or_else(|e| panic!("{e}"));
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut copied = 0;
    for entry in std::fs::read_dir(&here).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if ["0001_", "0002_", "0003_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            std::fs::copy(&path, old.join(name)).unwrap_or_else(|e| panic!("{e}"));
            copied += 1;
        }
    }
    assert_eq!(copied, 3);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .run(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (id, status) in [("a", "done"), ("b", "pending"), ("c", "done")] {
            sqlx::query(
                "INSERT INTO inbox (source, event_id, event_type, client, payload, received_at,                  status, claimed_by, claimed_until) VALUES ('/ci', ?, 't', 'ci', '{}', 1000, ?,                  'gw-0', 2000)",
            )
            .bind(id)
            .bind(status)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        // The newest row goes: its seq (3) must not come back.
        sqlx::query("DELETE FROM inbox WHERE event_id = 'c'")
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pool.close().await;
    }
    let store = store::open(&sqlite_url(&db))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = store
        .commit_inbox(
            &[
                inbound("/ci", "a"),
                inbound("/ci", "b"),
                inbound("/ci", "d"),
            ],
            5_000,
            &claim("gw-1", 60_000),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        [None, None, Some(4)],
        "a and b were kept; d is past c's seq"
    );
    // The pending row kept its claim and its place: another owner takes it over once the
    // claim has expired.
    let rows = store
        .claim_inbox(&claim("gw-2", 200_000), 100_000, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rows.iter()
            .map(|r| (r.seq, r.event_id.as_str()))
            .collect::<Vec<_>>(),
        [(2, "b"), (4, "d")]
    );
}

// ---- PostgreSQL only -----------------------------------------------------------------------

#[tokio::test]
async fn the_stores_say_whether_they_may_be_shared() {
    let (_a, sqlite) = sqlite().await;
    let (_b, postgres) = postgres().await;
    assert!(!sqlite.shared());
    assert!(postgres.shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_on_postgres_never_get_the_same_row() {
    let (_keep, store) = postgres().await;
    let all = unclaimed(store.as_ref(), 600).await;
    let claimers = (0..6).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let me = claim(&format!("gw-{i}"), 1_000_000);
            let mut got = Vec::new();
            loop {
                let rows = store
                    .claim_inbox(&me, 10_000, 7)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if rows.is_empty() {
                    return got;
                }
                // Each answer is oldest first.
                assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
                got.extend(seqs(&rows));
            }
        })
    });
    let mut union: Vec<i64> = Vec::new();
    let mut claimers_with_rows = 0;
    for c in futures::future::join_all(claimers).await {
        let got = c.unwrap_or_else(|e| panic!("{e}"));
        if !got.is_empty() {
            claimers_with_rows += 1;
        }
        union.extend(got);
    }
    // Every row exactly once (the rows claimed twice and those missed, if any, are shown).
    let mut times: BTreeMap<i64, usize> = all.iter().map(|s| (*s, 0)).collect();
    for seq in &union {
        *times.entry(*seq).or_default() += 1;
    }
    let twice: Vec<i64> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    let missed: Vec<i64> = times
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        (twice, missed),
        (vec![], vec![]),
        "rows claimed twice, rows missed"
    );
    assert_eq!(union.len(), all.len());
    assert!(claimers_with_rows > 1, "the claimers ran together");
    // Each owner renews exactly the rows it got.
    let mut renewed = 0;
    for i in 0..6 {
        renewed += store
            .renew_inbox_claims(&claim(&format!("gw-{i}"), 2_000_000))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(renewed, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_of_overlapping_events_on_postgres_keep_one_row_each() {
    // Two gateways receive the same events (a client retrying against another replica),
    // in opposite orders, at once. Each waits for the other's uncommitted keys: PostgreSQL
    // may abort one as a deadlock, which the store runs again (without that, this fails
    // about one run in five).
    let (_keep, store) = postgres().await;
    overlapping_commits_keep_one_row_each(store).await;
}

/// Two commits of the same 5,000 events in opposite orders, at once: each event is new
/// for exactly one of them and has one row.
async fn overlapping_commits_keep_one_row_each(store: Arc<dyn Store>) {
    let forward: Vec<NewInbound> = (0..5000)
        .map(|i| inbound("/ci", &format!("e{i}")))
        .collect();
    let backward: Vec<NewInbound> = forward.iter().rev().cloned().collect();
    let commit = |events: Vec<NewInbound>, owner: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .commit_inbox(&events, 1_000, &claim(owner, 61_000))
                .await
        })
    };
    let (a, b) = tokio::join!(commit(forward, "gw-a"), commit(backward, "gw-b"));
    let a = a
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let b = b
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh = a.iter().chain(&b).filter(|s| s.is_some()).count();
    assert_eq!(fresh, 5000, "each event is new for exactly one gateway");
    let rows = store
        .claim_inbox(&claim("gw-c", 200_000), 100_000, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 5000);
}

#[tokio::test]
async fn gateways_starting_together_on_one_postgres_database_migrate_it_once() {
    let db = support::postgres::database().await;
    let url: StoreUrl = db.url.parse().unwrap_or_else(|e| panic!("{e}"));
    let (a, b, c) = tokio::join!(store::open(&url), store::open(&url), store::open(&url));
    let (a, b, c) = (
        a.unwrap_or_else(|e| panic!("{e}")),
        b.unwrap_or_else(|e| panic!("{e}")),
        c.unwrap_or_else(|e| panic!("{e}")),
    );
    // One database: what one writes the others read.
    a.commit_emit(&deliveries(&[delivery("s", "a", "e1")]), 1_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for s in [&b, &c] {
        assert_eq!(ids_due(s.as_ref(), "s", 1_000, 10).await, ["e1"]);
    }
    // Opening again (a restart) applies nothing and keeps the data.
    let again = store::open_existing(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids_due(again.as_ref(), "s", 1_000, 10).await, ["e1"]);
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_by_host_never_by_password() {
    // Nothing listens on port 1 of the loopback: the connection is refused until the timeout.
    let url = "postgres://gw:s3cret-pw@127.0.0.1:1/gw";
    let parsed: StoreUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{parsed:?}").contains("s3cret-pw"));
    let err = match PostgresStore::open_with_timeout(url, Duration::from_secs(1)).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, StoreError::Unreachable { host, .. } if host == "127.0.0.1:1"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("s3cret-pw"));
}

#[tokio::test]
async fn a_missing_postgres_database_is_an_error_not_created() {
    let mut url =
        url::Url::parse(&support::postgres::server_url()).unwrap_or_else(|e| panic!("{e}"));
    let password = url.password().map(str::to_string);
    url.set_path("no_such_database_here");
    let store_url: StoreUrl = url.as_str().parse().unwrap_or_else(|e| panic!("{e}"));
    let err = match store::open_existing(&store_url).await {
        Ok(_) => panic!("opened a database that does not exist"),
        Err(e) => e,
    };
    let StoreError::Connect { error, .. } = &err else {
        panic!("{err:?}")
    };
    let code = error
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.into_owned()));
    // invalid_catalog_name
    assert_eq!(code.as_deref(), Some("3D000"), "{err:?}");
    if let Some(p) = password {
        assert!(!format!("{err} {err:?}").contains(&p));
    }
}

#[tokio::test]
async fn a_wrong_postgres_password_is_refused_without_repeating_it() {
    let mut url =
        url::Url::parse(&support::postgres::server_url()).unwrap_or_else(|e| panic!("{e}"));
    let _ = url.set_password(Some("not-the-password-42"));
    let err = match PostgresStore::open(url.as_str()).await {
        Ok(_) => panic!(
            "connected with a wrong password: the test server must check passwords (the one of scripts/with-postgres does)"
        ),
        Err(e) => e,
    };
    let StoreError::Connect { error, .. } = &err else {
        panic!("{err:?}")
    };
    let code = error
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.into_owned()));
    // invalid_password
    assert_eq!(code.as_deref(), Some("28P01"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-the-password-42"));
}

/// The gateway's one pruner deletes delivered rows past the retention for every sink at
/// once — a sink that is no longer configured included — at start, and stops when told.
#[tokio::test]
async fn the_pruner_deletes_old_delivered_rows_of_every_sink_at_start() {
    let (_keep, store) = sqlite().await;
    let s = store.as_ref();
    s.commit_emit(
        &deliveries(&[
            delivery("web-hook", "a", "old-delivered-1"),
            delivery("gone-sink", "b", "old-delivered-2"),
            delivery("web-hook", "c", "old-pending"),
            delivery("web-hook", "d", "just-delivered"),
        ]),
        1_000,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for id in ["old-delivered-1", "old-delivered-2"] {
        let seq = seq_of(s, id).await;
        s.mark_delivered(seq, 1_000).await.ok();
    }
    let recent = seq_of(s, "just-delivered").await;
    s.mark_delivered(recent, argocd_cdevents::delivery::now_ms())
        .await
        .ok();
    let stop = tokio_util::sync::CancellationToken::new();
    let pruner = tokio::spawn(argocd_cdevents::delivery::prune_delivered(
        store.clone(),
        std::time::Duration::from_secs(3_600),
        std::time::Duration::from_secs(3_600),
        stop.clone(),
    ));
    let want = BTreeSet::from(["old-pending", "just-delivered"].map(String::from));
    for _ in 0..100 {
        if outbox_ids(s).await == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(outbox_ids(s).await, want);
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), pruner)
        .await
        .unwrap_or_else(|_| panic!("the pruner did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
}
