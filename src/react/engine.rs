//! The engine: takes committed events from the inbox, matches them (pure), schedules one job
//! per (policy, application) — coalescing bursts, waiting while an operation runs — and
//! carries jobs out: guards, cooldown, rate limits, the plan (pure), dry-run, then the calls
//! to Argo CD under a global ceiling. Every decision is recorded; a decision is claimed in
//! the store before Argo CD is called, so an event is never acted on twice, even across a
//! restart. Inbox rows are marked done when all their jobs are decided.
//!
//! Rows reach the engine two ways: the intake of this gateway hands over the rows it
//! committed (already claimed for this gateway's owner id), and the engine claims rows from
//! the store every few seconds (those of a stopped gateway, or whose claim expired). It
//! renews its claims while it holds rows.

use super::PolicyHandle;
use super::inbound::Inbound;
use super::matcher::{self, Aim, AppRef};
use super::plan::{self, Plan};
use super::policy::{InProgress, Policy};
use crate::argocd::rest::render;
use crate::argocd::step::Step;
use crate::argocd::{ArgoCd, ArgoError};
use crate::store::{InboxClaim, InboxRow, NewDecision, Outcome, Store, cutoff};
use crate::telemetry::metrics;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often a job waiting for a running operation looks again.
const WAIT_POLL: Duration = Duration::from_secs(2);
/// Jobs in flight at once (each on a different application).
const CONCURRENCY: usize = 64;
/// How long a claim on inbox rows holds (unix ms) before another gateway may take them.
pub const CLAIM_HOLD_MS: i64 = 60_000;
/// How often the claims of this gateway are renewed (well within [`CLAIM_HOLD_MS`]).
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often unclaimed or expired inbox rows are claimed from the store.
const CLAIM_EVERY: Duration = Duration::from_secs(5);
/// Inbox rows claimed at once.
const CLAIM_PAGE: i64 = 256;
/// Shared store: an `acting` decision older than this is taken as interrupted.
const INTERRUPTED_AFTER_MS: i64 = 10 * 60 * 1000;
/// Shared store: how often interrupted decisions are looked for.
const SETTLE_EVERY: Duration = Duration::from_secs(60);
/// How long the marker gathers decided inbox rows before it marks them done in one
/// statement. Marking each row as it was decided cost one more statement per event on the
/// store's one writer, in front of the next event's commit and decision claim; at 1,000
/// events/s gathering cut the event -> Argo CD p99 by a fifth (docs/performance.md).
const MARK_EVERY: Duration = Duration::from_millis(100);

/// An owner id for the claims of this process: `<hostname>-<uuid>`.
pub fn owner_id(hostname: Option<&str>) -> String {
    let host = hostname.filter(|h| !h.is_empty()).unwrap_or("gateway");
    format!("{host}-{}", uuid::Uuid::new_v4())
}

/// Rows deleted in one statement.
const PRUNE_CHUNK: i64 = 5_000;

/// How long received events and decisions are kept (`react.retainEvents`,
/// `react.retainDecisions`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: Duration,
    pub decisions: Duration,
}

impl Retention {
    /// The (inbox, decisions) cutoffs in unix ms at `now_ms`: decisions are kept for the
    /// longest cooldown of `policies` if that is longer than `self.decisions`.
    pub fn cutoffs(&self, now_ms: i64, policies: &[Policy]) -> (i64, i64) {
        let longest_cooldown = policies
            .iter()
            .filter_map(|p| p.guard.cooldown)
            .max()
            .unwrap_or_default();
        (
            cutoff(now_ms, self.events),
            cutoff(now_ms, self.decisions.max(longest_cooldown)),
        )
    }
}

/// Run `prune` (one chunk) until a chunk comes back short or `stop`; the total deleted.
async fn prune_all<F, Fut>(
    prune: F,
    stop: &CancellationToken,
) -> Result<u64, crate::store::StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut total = 0;
    loop {
        let n = prune().await?;
        total += n;
        if n < PRUNE_CHUNK as u64 || stop.is_cancelled() {
            return Ok(total);
        }
        // Let the writer serve the intake and the engine between chunks.
        tokio::task::yield_now().await;
    }
}

/// A policy's `rateLimit`, with the limiter keyed by application.
type PolicyLimiter = (crate::config::Rate, Arc<DefaultKeyedRateLimiter<String>>);

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub argocd: Arc<dyn ArgoCd>,
    pub policies: PolicyHandle,
    pub default_namespace: String,
    /// Global ceiling on calls to Argo CD (calls wait for it).
    pub ceiling: DefaultDirectRateLimiter,
    limits: Mutex<HashMap<String, PolicyLimiter>>,
}

/// One (policy, application) to decide, for the newest event that asked.
#[derive(Clone)]
struct Job {
    policy: String,
    target: AppRef,
    event: Arc<Inbound>,
    inbox_seq: i64,
    /// Inbox rows whose events this job stands for (coalesced ones included).
    seqs: Vec<i64>,
    due: Instant,
    first_seen: Instant,
}

enum Finished {
    Done(Job),
    Again(Job),
}

pub fn ceiling(rate: crate::config::Rate) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(rate.per / rate.count.max(1))
        .unwrap_or_else(|| Quota::per_second(n))
        .allow_burst(n);
    RateLimiter::direct(quota)
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        argocd: Arc<dyn ArgoCd>,
        policies: PolicyHandle,
        default_namespace: String,
        rate: crate::config::Rate,
    ) -> Engine {
        Engine {
            store,
            argocd,
            policies,
            default_namespace,
            ceiling: ceiling(rate),
            limits: Mutex::new(HashMap::new()),
        }
    }

    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ArgoError>>,
    ) -> Result<T, ArgoError> {
        self.ceiling.until_ready().await;
        f.await
    }

    /// Run until `stop`, deciding the inbox rows claimed for `owner`: those the intake
    /// hands over on `handoff`, and those claimed from the store.
    pub async fn run(
        self: Arc<Self>,
        owner: String,
        mut handoff: mpsc::UnboundedReceiver<(i64, Arc<Inbound>)>,
        stop: CancellationToken,
    ) {
        let shared = self.store.shared();
        self.settle_interrupted(shared).await;
        let claim = |now_ms: i64| InboxClaim {
            owner: owner.clone(),
            until_ms: now_ms.saturating_add(CLAIM_HOLD_MS),
        };
        let mut claim_due = Instant::now();
        let mut renew_due = Instant::now() + RENEW_EVERY;
        let mut settle_due = Instant::now() + SETTLE_EVERY;
        let mut arrived: Vec<(i64, Arc<Inbound>)> = Vec::new();
        let mut queue: HashMap<(String, AppRef), Job> = HashMap::new();
        let mut busy: HashMap<(String, AppRef), ()> = HashMap::new();
        let mut outstanding: HashMap<i64, usize> = HashMap::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        // Inbox rows fully decided, handed to the marker once per turn of the loop.
        let mut done_rows: Vec<i64> = Vec::new();
        let (marks, marker) = self.marker();
        loop {
            // 1. New inbox rows: handed over by the intake, and claimed from the store.
            while let Ok(row) = handoff.try_recv() {
                arrived.push(row);
            }
            let mut rows = std::mem::take(&mut arrived);
            let mut full_page = false;
            if Instant::now() >= claim_due {
                let now_ms = crate::delivery::now_ms();
                match self
                    .store
                    .claim_inbox(&claim(now_ms), now_ms, CLAIM_PAGE)
                    .await
                {
                    Ok(claimed) => {
                        full_page = claimed.len() as i64 == CLAIM_PAGE;
                        rows.extend(self.readable(claimed).await);
                    }
                    Err(e) => tracing::error!(error = %e, "claiming inbox rows failed"),
                }
                claim_due = Instant::now() + CLAIM_EVERY;
            }
            rows.sort_by_key(|(seq, _)| *seq);
            for (seq, event) in rows {
                let jobs = self.jobs_for(seq, event).await;
                if jobs.is_empty() {
                    done_rows.push(seq);
                }
                for job in jobs {
                    self.enqueue(job, &mut queue, &mut outstanding).await;
                }
            }
            // Renewed even while a backlog is being claimed page after page.
            if Instant::now() >= renew_due {
                if let Err(e) = self
                    .store
                    .renew_inbox_claims(&claim(crate::delivery::now_ms()))
                    .await
                {
                    tracing::error!(error = %e, "cannot renew the claims on inbox rows");
                }
                renew_due = Instant::now() + RENEW_EVERY;
            }
            if shared && Instant::now() >= settle_due {
                self.settle_interrupted(shared).await;
                settle_due = Instant::now() + SETTLE_EVERY;
            }
            if full_page {
                claim_due = Instant::now();
                continue;
            }
            if !done_rows.is_empty() {
                let _ = marks.send(std::mem::take(&mut done_rows));
            }
            // 2. Start due jobs whose application is not busy.
            let now = Instant::now();
            let due: Vec<(String, AppRef)> = queue
                .iter()
                .filter(|(k, j)| j.due <= now && !busy.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                let Some(job) = queue.remove(&key) else {
                    continue;
                };
                busy.insert(key, ());
                let me = self.clone();
                let slots = slots.clone();
                let span = tracing::info_span!("react", event_id = %job.event.id, policy = %job.policy, application = %job.target);
                running.spawn(
                    async move {
                        let _permit = slots.acquire_owned().await;
                        me.execute(job).await
                    }
                    .instrument(span),
                );
            }
            // 3. Wait for something to do.
            let mut sleep_until = claim_due.min(renew_due);
            if shared {
                sleep_until = sleep_until.min(settle_due);
            }
            if let Some(next_due) = queue.values().map(|j| j.due).min() {
                sleep_until = sleep_until.min(next_due);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(handed) = handoff.recv() => arrived.push(handed),
                _ = tokio::time::sleep_until(sleep_until) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    match done {
                        Ok(Finished::Done(job)) => {
                            busy.remove(&(job.policy.clone(), job.target.clone()));
                            settle_rows(&job.seqs, &mut outstanding, &mut done_rows);
                        }
                        Ok(Finished::Again(job)) => {
                            busy.remove(&(job.policy.clone(), job.target.clone()));
                            let key = (job.policy.clone(), job.target.clone());
                            // A newer event for the same key may have arrived meanwhile.
                            match queue.remove(&key) {
                                Some(mut newer) => {
                                    self.superseded(&job, &newer).await;
                                    newer.seqs.extend(job.seqs.iter().copied());
                                    queue.insert(key, newer);
                                }
                                None => {
                                    queue.insert(key, job);
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "a react job panicked"),
                    }
                }
            }
        }
        // Let running jobs finish their Argo CD calls and record their decisions.
        while let Some(done) = running.join_next().await {
            if let Ok(Finished::Done(job)) = done {
                settle_rows(&job.seqs, &mut outstanding, &mut done_rows);
            }
        }
        let _ = marks.send(done_rows);
        drop(marks);
        let _ = marker.await;
    }

    /// The task marking decided inbox rows done, off the engine's loop: the mark waits its
    /// turn on the store's writer, and new events should not wait behind it. Rows sent within
    /// [`MARK_EVERY`] of the first, or while a mark runs, go together in one statement. It
    /// ends when the sender is dropped (after at most one more wait).
    ///
    /// A row decided and not yet marked when the process dies is decided again after a
    /// restart, which finds its decision recorded and acts no second time.
    fn marker(&self) -> (mpsc::UnboundedSender<Vec<i64>>, tokio::task::JoinHandle<()>) {
        let (marks, mut rx) = mpsc::unbounded_channel::<Vec<i64>>();
        let store = self.store.clone();
        let task = tokio::spawn(async move {
            while let Some(mut seqs) = rx.recv().await {
                if seqs.is_empty() {
                    continue;
                }
                tokio::time::sleep(MARK_EVERY).await;
                while let Ok(more) = rx.try_recv() {
                    seqs.extend(more);
                }
                if let Err(e) = store
                    .finish_inbox_many(&seqs, crate::delivery::now_ms())
                    .await
                {
                    tracing::error!(error = %e, "cannot mark inbox rows done; they are decided again after a restart (no second action: decisions are unique)");
                }
            }
        });
        (marks, task)
    }

    /// The events of claimed inbox rows; an unreadable row is logged and marked done.
    async fn readable(&self, rows: Vec<InboxRow>) -> Vec<(i64, Arc<Inbound>)> {
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            match Inbound::from_stored(&row.event_id, &row.source, &row.event_type, &row.payload) {
                Ok(e) => events.push((row.seq, Arc::new(e))),
                Err(e) => {
                    tracing::error!(seq = row.seq, error = %e, "unreadable inbox row; marked done");
                    let _ = self
                        .store
                        .finish_inbox(row.seq, crate::delivery::now_ms())
                        .await;
                }
            }
        }
        events
    }

    /// Mark `acting` decisions left by a stopped gateway failed: all of them on a store of
    /// one gateway, those older than [`INTERRUPTED_AFTER_MS`] on a shared one.
    async fn settle_interrupted(&self, shared: bool) {
        let now_ms = crate::delivery::now_ms();
        let before_ms = if shared {
            now_ms.saturating_sub(INTERRUPTED_AFTER_MS)
        } else {
            now_ms
        };
        match self.store.settle_interrupted(before_ms, now_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                n,
                "decisions interrupted by a stopped gateway marked failed"
            ),
            Err(e) => tracing::error!(error = %e, "cannot settle interrupted decisions"),
        }
    }

    async fn enqueue(
        &self,
        mut job: Job,
        queue: &mut HashMap<(String, AppRef), Job>,
        outstanding: &mut HashMap<i64, usize>,
    ) {
        *outstanding.entry(job.inbox_seq).or_default() += 1;
        let key = (job.policy.clone(), job.target.clone());
        let coalesce = self
            .policies
            .get()
            .by_name(&job.policy)
            .and_then(|p| p.guard.coalesce);
        if let Some(window) = coalesce {
            if let Some(older) = queue.remove(&key) {
                // One action, on the newest event; the older one is recorded as coalesced.
                self.superseded(&older, &job).await;
                job.due = older.due;
                job.first_seen = older.first_seen;
                job.seqs.extend(older.seqs);
            } else {
                job.due = Instant::now() + window;
            }
        } else if let Some(older) = queue.remove(&key) {
            // Not coalescing: the older job was waiting (operation running); the newer
            // event replaces it, as Argo CD could only run one of them anyway.
            self.superseded(&older, &job).await;
            job.seqs.extend(older.seqs);
        }
        queue.insert(key, job);
    }

    async fn superseded(&self, older: &Job, newer: &Job) {
        let action = self
            .policies
            .get()
            .by_name(&older.policy)
            .map_or("", |p| p.action.name());
        self.note(
            &older.event,
            &older.policy,
            &older.target.to_string(),
            action,
            Outcome::Skipped,
            format!(
                "coalesced: superseded by the newer event {:?}",
                newer.event.id
            ),
        )
        .await;
    }

    /// Match one event and turn it into jobs; unmatchable aims are recorded as skipped.
    async fn jobs_for(&self, seq: i64, event: Arc<Inbound>) -> Vec<Job> {
        let set = self.policies.get();
        let matches = matcher::match_event(&set, &event, &self.default_namespace);
        let mut jobs = Vec::new();
        let now = Instant::now();
        let job = |policy: &Policy, target: AppRef| Job {
            policy: policy.name.clone(),
            target,
            event: event.clone(),
            inbox_seq: seq,
            seqs: vec![seq],
            due: now,
            first_seen: now,
        };
        for m in matches {
            match m.aim {
                Err(reason) => {
                    self.note(
                        &event,
                        &m.policy.name,
                        "",
                        m.policy.action.name(),
                        Outcome::Skipped,
                        reason,
                    )
                    .await;
                }
                Ok(Aim::App(target)) => jobs.push(job(m.policy, target)),
                Ok(aim @ Aim::Selector { .. }) => {
                    let Aim::Selector {
                        selector,
                        project,
                        namespaces,
                    } = &aim
                    else {
                        continue;
                    };
                    match self
                        .call(self.argocd.list(selector, project.as_deref(), namespaces))
                        .await
                    {
                        Ok(apps) => {
                            let targets = matcher::select(&aim, &apps);
                            if targets.is_empty() {
                                self.note(
                                    &event,
                                    &m.policy.name,
                                    "",
                                    m.policy.action.name(),
                                    Outcome::Skipped,
                                    format!("no application matches the selector {selector:?}"),
                                )
                                .await;
                            }
                            for t in targets {
                                jobs.push(job(m.policy, t));
                            }
                        }
                        Err(e) => {
                            self.note(
                                &event,
                                &m.policy.name,
                                "",
                                m.policy.action.name(),
                                Outcome::Failed,
                                format!("listing applications for the selector: {e}"),
                            )
                            .await;
                        }
                    }
                }
            }
        }
        jobs
    }

    fn decision(
        &self,
        event: &Inbound,
        policy: &str,
        application: &str,
        action: &str,
        outcome: Outcome,
        reason: String,
    ) -> NewDecision {
        NewDecision {
            event_source: event.source.clone(),
            event_id: event.id.clone(),
            event_type: event.ty.clone(),
            policy: policy.to_string(),
            application: application.to_string(),
            action: action.to_string(),
            outcome,
            reason,
            chain_id: Some(plan::chain_id(event)),
            requests: "[]".into(),
        }
    }

    /// Build and record a final decision.
    async fn note(
        &self,
        event: &Inbound,
        policy: &str,
        application: &str,
        action: &str,
        outcome: Outcome,
        reason: String,
    ) {
        let d = self.decision(event, policy, application, action, outcome, reason);
        self.record(&d).await;
    }

    /// Record a final decision (once; a repeat after a restart is ignored).
    async fn record(&self, d: &NewDecision) -> bool {
        match self
            .store
            .record_decision(d, crate::delivery::now_ms())
            .await
        {
            Ok(true) => {
                metrics::decision(d.outcome.as_str(), &d.action);
                tracing::info!(policy = %d.policy, application = %d.application, action = %d.action,
                    outcome = d.outcome.as_str(), reason = %d.reason, event = %d.event_id, "decision");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a decision");
                false
            }
        }
    }

    fn limiter(&self, policy: &Policy) -> Option<Arc<DefaultKeyedRateLimiter<String>>> {
        let rate = policy.rate_limit?;
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        match limits.get(&policy.name) {
            Some((r, l)) if *r == rate => Some(l.clone()),
            _ => {
                let n = NonZeroU32::new(rate.count)?;
                let quota = Quota::with_period(rate.per / rate.count)?.allow_burst(n);
                let l = Arc::new(RateLimiter::keyed(quota));
                limits.insert(policy.name.clone(), (rate, l.clone()));
                Some(l)
            }
        }
    }

    async fn execute(self: Arc<Self>, job: Job) -> Finished {
        let set = self.policies.get();
        let Some(policy) = set.by_name(&job.policy) else {
            self.note(
                &job.event,
                &job.policy,
                &job.target.to_string(),
                "",
                Outcome::Skipped,
                "the policy was removed before it could act".into(),
            )
            .await;
            return Finished::Done(job);
        };
        let action = policy.action.name();
        let app_key = job.target.to_string();
        let skip = |reason: String| {
            self.decision(
                &job.event,
                &policy.name,
                &app_key,
                action,
                Outcome::Skipped,
                reason,
            )
        };
        let app = match self.call(self.argocd.get(&job.target)).await {
            Ok(a) => a,
            Err(e) => {
                self.note(
                    &job.event,
                    &policy.name,
                    &app_key,
                    action,
                    Outcome::Failed,
                    format!("reading the application: {e}"),
                )
                .await;
                return Finished::Done(job);
            }
        };
        if let Err(reason) = plan::guard(policy, &job.event, &job.target, app.as_ref()) {
            self.record(&skip(reason)).await;
            return Finished::Done(job);
        }
        if let Some(a) = &app
            && plan::operation_running(a)
        {
            match policy.guard.operation_in_progress {
                InProgress::Skip => {
                    self.record(&skip(
                        "an operation is already running on the application".into(),
                    ))
                    .await;
                    return Finished::Done(job);
                }
                InProgress::Wait if job.first_seen.elapsed() < policy.guard.max_wait => {
                    let mut again = job;
                    again.due = Instant::now() + WAIT_POLL;
                    return Finished::Again(again);
                }
                InProgress::Wait => {
                    self.record(&skip(format!(
                        "an operation was still running after guard.maxWait ({})",
                        humantime::format_duration(policy.guard.max_wait)
                    )))
                    .await;
                    return Finished::Done(job);
                }
            }
        }
        if let Some(cooldown) = policy.guard.cooldown {
            match self.store.last_acted(&policy.name, &app_key).await {
                Ok(Some(at))
                    if crate::delivery::now_ms() - at
                        < i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX) =>
                {
                    let ago = Duration::from_millis(
                        u64::try_from(crate::delivery::now_ms() - at).unwrap_or(0),
                    );
                    self.record(&skip(format!(
                        "cooldown: this policy acted on the application {} ago (guard.cooldown {})",
                        humantime::format_duration(Duration::from_secs(ago.as_secs())),
                        humantime::format_duration(cooldown)
                    )))
                    .await;
                    return Finished::Done(job);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cooldown check failed; going on"),
            }
        }
        let plan = match plan::plan(
            policy,
            &job.event,
            &job.target,
            app.as_ref(),
            chrono::Utc::now(),
        ) {
            Ok(p) => p,
            Err(reason) => {
                self.record(&skip(reason)).await;
                return Finished::Done(job);
            }
        };
        let requests = requests_json(&plan, &job.target);
        if policy.dry_run {
            let mut d = self.decision(
                &job.event,
                &policy.name,
                &app_key,
                action,
                Outcome::DryRun,
                format!("dry run: would {}", describe(&plan, action)),
            );
            d.requests = requests;
            self.record(&d).await;
            return Finished::Done(job);
        }
        if let Some(limiter) = self.limiter(policy)
            && limiter.check_key(&app_key).is_err()
        {
            let rate = policy
                .rate_limit
                .map(|r| format!("{r:?}"))
                .unwrap_or_default();
            self.record(&skip(format!(
                "rate limited: rateLimit {rate} per application reached"
            )))
            .await;
            return Finished::Done(job);
        }
        let mut d = self.decision(
            &job.event,
            &policy.name,
            &app_key,
            action,
            Outcome::Acting,
            describe(&plan, action),
        );
        d.requests = requests;
        if let Claim::Unavailable = self.act(&mut d, &job.target, &plan.steps).await {
            let mut again = job;
            again.due = Instant::now() + WAIT_POLL;
            return Finished::Again(again);
        }
        Finished::Done(job)
    }
}

/// Whether a decision could be claimed.
enum Claim {
    /// Claimed and carried out (its outcome is in the decision).
    Done,
    /// Decided before (a restart, or another sweep): nothing done.
    Taken,
    /// The store could not record the claim: nothing done, try later.
    Unavailable,
}

impl Engine {
    /// Claim `d` (outcome `acting`) before calling Argo CD, so that a second claim — after a
    /// restart — finds it and stops; then carry out `steps` under the global ceiling and
    /// record the outcome.
    async fn act(&self, d: &mut NewDecision, target: &AppRef, steps: &[Step]) -> Claim {
        d.outcome = Outcome::Acting;
        match self
            .store
            .record_decision(d, crate::delivery::now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => return Claim::Taken,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim the decision; not acting");
                return Claim::Unavailable;
            }
        }
        d.outcome = Outcome::Acted;
        for step in steps {
            if let Err(e) = self.call(self.argocd.execute(target, step)).await {
                d.outcome = Outcome::Failed;
                d.reason = format!("{}; {} failed: {e}", d.reason, step.name());
                break;
            }
        }
        if let Err(e) = self
            .store
            .settle_decision(d, crate::delivery::now_ms())
            .await
        {
            tracing::error!(error = %e, "cannot record the decision outcome");
        }
        metrics::decision(d.outcome.as_str(), &d.action);
        tracing::info!(policy = %d.policy, application = %d.application, action = %d.action,
            outcome = d.outcome.as_str(), reason = %d.reason, event = %d.event_id, "decision");
        Claim::Done
    }

    /// Delete old history every [`crate::store::PRUNE_EVERY`] until `stop`: decided inbox rows received
    /// more than `retention.events` ago, and settled decisions older than
    /// `retention.decisions` — or than the longest cooldown of the policies loaded then,
    /// if that is longer, so that no cooldown forgets when it last acted. Deletes in
    /// chunks, so the store's writer is never held long.
    pub async fn prune_history(self: Arc<Self>, retention: Retention, stop: CancellationToken) {
        loop {
            let now = crate::delivery::now_ms();
            let (events, decisions) = retention.cutoffs(now, &self.policies.get().policies);
            let (inbox, decided) = (
                prune_all(|| self.store.prune_inbox(events, PRUNE_CHUNK), &stop).await,
                prune_all(|| self.store.prune_decisions(decisions, PRUNE_CHUNK), &stop).await,
            );
            match (inbox, decided) {
                (Ok(0), Ok(0)) => {}
                (Ok(inbox), Ok(decisions)) => {
                    tracing::info!(inbox, decisions, "pruned old received events and decisions")
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "pruning old received events and decisions failed; will retry")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(crate::store::PRUNE_EVERY) => {}
            }
        }
    }

    /// Delete expired preview Applications (made by createApplication with a ttl) every
    /// `every`, until `stop`.
    pub async fn sweep_previews(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            if let Err(e) = self.sweep_once(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "preview sweep failed; will retry");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One sweep: returns how many Applications were deleted.
    pub async fn sweep_once(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, ArgoError> {
        let selector = format!("{}={}", plan::MANAGED_BY_LABEL, plan::MANAGED_BY);
        // Where previews may be: the gateway's namespace and those the policies loaded now
        // allow.
        let namespaces = self.policies.get().namespaces(&self.default_namespace);
        let apps = self
            .call(self.argocd.list(&selector, None, &namespaces))
            .await?;
        let mut deleted = 0;
        for app in apps {
            let Some(expires) = app["metadata"]["annotations"][plan::EXPIRES_ANNOTATION]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            else {
                continue;
            };
            if expires > now {
                continue;
            }
            let target = AppRef::of(&app);
            let steps = [Step::Delete {
                cascade: true,
                propagation_policy: "foreground".into(),
            }];
            let mut d = NewDecision {
                event_source: "/argocd-cdevents/preview-ttl".into(),
                event_id: format!("{target}@{}", expires.to_rfc3339()),
                event_type: "ttl.expired".into(),
                policy: app["metadata"]["labels"][plan::POLICY_LABEL]
                    .as_str()
                    .unwrap_or("preview-ttl")
                    .to_string(),
                application: target.to_string(),
                action: "deleteApplication".into(),
                outcome: Outcome::Acting,
                reason: format!("ttl expired at {}", expires.to_rfc3339()),
                chain_id: app["metadata"]["annotations"][plan::CHAIN_ANNOTATION]
                    .as_str()
                    .map(str::to_string),
                requests: serde_json::to_string(&[render(&steps[0], &target)]).unwrap_or_default(),
            };
            if let Claim::Done = self.act(&mut d, &target, &steps).await
                && d.outcome == Outcome::Acted
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Count one job of each row as decided; rows with none left go to `done`.
fn settle_rows(seqs: &[i64], outstanding: &mut HashMap<i64, usize>, done: &mut Vec<i64>) {
    for seq in seqs {
        let left = outstanding.get(seq).copied().unwrap_or(1).saturating_sub(1);
        if left == 0 {
            outstanding.remove(seq);
            done.push(*seq);
        } else {
            outstanding.insert(*seq, left);
        }
    }
}

/// A short description of a plan for the decision record.
pub fn describe(plan: &Plan, action: &str) -> String {
    if plan.note.is_empty() {
        action.to_string()
    } else {
        format!("{action}: {}", plan.note)
    }
}

/// The REST requests of a plan, as JSON (recorded with the decision).
pub fn requests_json(plan: &Plan, target: &AppRef) -> String {
    let reqs: Vec<_> = plan.steps.iter().map(|s| render(s, target)).collect();
    serde_json::to_string(&reqs).unwrap_or_else(|_| "[]".into())
}
