//! The HTTP intake: `POST /` and `POST /events` take CloudEvents (binary, structured,
//! batch) or a bare CDEvent; `OPTIONS` answers the CloudEvents webhook handshake. Each
//! request is read within the body limit, authenticated, rate-checked, decoded, scoped and
//! validated as a whole (a batch is all-or-nothing), then committed to the inbox through
//! the group committer; 202 only after the commit. It never matches policies or calls
//! Argo CD (the engine does, from the inbox).

use super::PolicyHandle;
use super::auth::{AuthError, Clients};
use super::inbound::{self, Inbound, InboundError};
use super::schema::Schemas;
use crate::store::{InboxClaim, NewInbound, Store};
use crate::telemetry::metrics;
use crate::tls::PeerCertificate;
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most requests folded into one commit.
const GROUP_MAX: usize = 512;

pub struct Intake {
    pub clients: Arc<Clients>,
    pub policies: PolicyHandle,
    pub schemas: &'static Schemas,
    pub committer: Committer,
    pub body_limit: usize,
    /// How long a client may take to send its body (`http.bodyReadTimeout`).
    pub body_timeout: Duration,
    /// Events need a verified client certificate (`tls.requireClientCertificate`).
    pub require_client_certificate: bool,
}

fn refuse(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Response {
    metrics::event_rejected(reason);
    let message = message.into();
    tracing::debug!(status = status.as_u16(), reason, %message, "request refused");
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Most bytes of an oversize body read and dropped before the 413: a client still sending
/// when the answer comes would otherwise see the connection reset instead of the answer.
const DRAIN_MAX: u64 = 8 << 20;

/// Why a body was not read.
enum BodyError {
    TooLarge,
    Broken(String),
}

/// The body, if it fits in `limit`. An oversize one (declared or found) is `TooLarge` after
/// the rest of it has been read and dropped, up to [`DRAIN_MAX`]; nothing past `limit` is kept.
async fn read_body(
    body: Body,
    limit: usize,
    declared: Option<u64>,
) -> Result<axum::body::Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    let mut over = declared.is_some_and(|n| n > limit as u64);
    if declared.is_some_and(|n| n > DRAIN_MAX) {
        return Err(BodyError::TooLarge);
    }
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) if over => break,
            Err(e) => return Err(BodyError::Broken(e.to_string())),
        };
        seen += chunk.len() as u64;
        if !over && kept.len() + chunk.len() > limit {
            over = true;
            kept = Vec::new();
        }
        if over {
            if seen > DRAIN_MAX {
                break;
            }
        } else {
            kept.extend_from_slice(&chunk);
        }
    }
    if over {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept.into())
    }
}

/// The intake routes.
pub fn routes(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/", post(receive).options(handshake))
        .route("/events", post(receive).options(handshake))
        .with_state(intake)
}

/// Routes answering that the react flow is off.
pub fn disabled_routes() -> Router {
    async fn off() -> Response {
        (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": "react flow is not configured (no react section in the config)"}),
            ),
        )
            .into_response()
    }
    Router::new()
        .route("/", post(off).options(off))
        .route("/events", post(off).options(off))
}

/// CloudEvents webhook abuse protection (OPTIONS with `WebHook-Request-Origin`).
async fn handshake(headers: HeaderMap) -> Response {
    let Some(origin) = headers.get("webhook-request-origin").cloned() else {
        return (StatusCode::OK, [(header::ALLOW, "POST, OPTIONS")]).into_response();
    };
    let mut resp = (StatusCode::OK, [(header::ALLOW, "POST, OPTIONS")]).into_response();
    let h = resp.headers_mut();
    h.insert("webhook-allowed-origin", origin);
    h.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
    resp
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer.and_then(|Extension(PeerCertificate(c))| c);
    let limit = intake.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = tokio::time::timeout(intake.body_timeout, read_body(body, limit, declared)).await;
    let bytes = match read {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "invalid",
                "the body was not received in time",
            );
        }
        Ok(Err(BodyError::Broken(e))) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the body could not be read: {e}"),
            );
        }
        Ok(Err(BodyError::TooLarge)) => {
            let size = declared.map_or_else(String::new, |n| format!(" of {n} bytes"));
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body{size} is over the limit of {limit} bytes"),
            );
        }
        Ok(Ok(b)) => b,
    };
    // Refusals come after the body is read (within its limit and time): answering while the
    // client is still sending would reset the connection before it reads the answer.
    if intake.require_client_certificate && peer.is_none() {
        return auth_refusal(AuthError::Unauthenticated(
            "a client certificate is required (tls.requireClientCertificate)".into(),
        ));
    }
    let now_s = chrono::Utc::now().timestamp();
    let client = match intake
        .clients
        .authenticate(&headers, &bytes, now_s, peer.as_ref())
    {
        Ok(c) => c,
        Err(e) => return auth_refusal(e),
    };
    if let Some(c) = client
        && let Err(e) = c.check_rate()
    {
        return auth_refusal(e);
    }
    let events = match inbound::decode(&headers, &bytes, intake.schemas) {
        Ok(evs) => evs,
        Err(InboundError::UnsupportedMediaType(m)) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            );
        }
        Err(InboundError::BadRequest(m)) => return refuse(StatusCode::BAD_REQUEST, "invalid", m),
    };
    let policies = intake.policies.get();
    for ev in &events {
        if let Some(c) = client
            && let Err(e) = c.permits(&ev.source, &ev.ty)
        {
            return auth_refusal(e);
        }
        if let Err(InboundError::BadRequest(m) | InboundError::UnsupportedMediaType(m)) =
            ev.check(intake.schemas, &policies)
        {
            return refuse(StatusCode::BAD_REQUEST, "invalid", m);
        }
    }
    let client_name = client.map_or("anonymous", |c| c.name.as_str());
    let events: Vec<Arc<Inbound>> = events.into_iter().map(Arc::new).collect();
    // An event no policy asks for is stored done: the engine would only find no match.
    let received: Vec<Received> = events
        .iter()
        .map(|ev| {
            (
                row(ev, client_name, policies.wants_type(&ev.ty)),
                ev.clone(),
            )
        })
        .collect();
    match intake.committer.commit(received).await {
        Ok(fresh) => {
            let accepted = fresh.iter().filter(|f| f.is_some()).count();
            for (ev, new) in events.iter().zip(&fresh) {
                if new.is_some() {
                    metrics::event_received(&ev.ty);
                } else {
                    metrics::event_deduplicated();
                }
            }
            accepted_response(accepted, fresh.len() - accepted)
        }
        Err(e) => {
            tracing::error!(error = %e, "inbox commit failed");
            let mut resp = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event store cannot commit right now; retry",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            resp
        }
    }
}

/// `202 {"accepted": N, "duplicates": M}`.
fn accepted_response(accepted: usize, duplicates: usize) -> Response {
    // The answer to every single new event, as text once: no JSON value built per request.
    const ONE_NEW: &str = r#"{"accepted":1,"duplicates":0}"#;
    let body = if (accepted, duplicates) == (1, 0) {
        Body::from(ONE_NEW)
    } else {
        Body::from(json!({"accepted": accepted, "duplicates": duplicates}).to_string())
    };
    (
        StatusCode::ACCEPTED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The inbox row of `ev`; it carries the event only if it is `pending` (some policy asks for
/// its type): nothing reads the payload of a row stored done.
fn row(ev: &Inbound, client: &str, pending: bool) -> NewInbound {
    NewInbound {
        source: ev.source.clone(),
        event_id: ev.id.clone(),
        event_type: ev.ty.clone(),
        client: client.to_string(),
        payload: pending.then(|| ev.stored()),
    }
}

fn auth_refusal(e: AuthError) -> Response {
    match e {
        AuthError::Unauthenticated(m) => {
            let mut resp = refuse(StatusCode::UNAUTHORIZED, "unauthenticated", m);
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        AuthError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, "forbidden", m),
        e @ AuthError::RateLimited { retry_after, .. } => {
            let mut resp = refuse(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

type CommitReply = oneshot::Sender<Result<Vec<Option<i64>>, String>>;

/// One event to commit: its inbox row, and the event itself for the engine.
pub type Received = (NewInbound, Arc<Inbound>);

/// Commit one group in one transaction; hand the new events to the engine as soon as they
/// are committed, then (once on disk) answer every request of the group.
async fn commit_group(
    store: &dyn Store,
    owner: &str,
    handoff: &mpsc::UnboundedSender<(i64, Arc<Inbound>)>,
    group: Vec<(Vec<Received>, CommitReply)>,
) {
    // Move the rows out (no copy of the payloads), keeping each request's count.
    let mut rows: Vec<NewInbound> = Vec::new();
    let mut events: Vec<Option<Arc<Inbound>>> = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for (received, reply) in group {
        replies.push((received.len(), reply));
        for (row, event) in received {
            events.push(row.pending().then_some(event));
            rows.push(row);
        }
    }
    let now_ms = crate::delivery::now_ms();
    let claim = InboxClaim {
        owner: owner.to_string(),
        until_ms: now_ms.saturating_add(super::engine::CLAIM_HOLD_MS),
    };
    // The engine gets the new events as soon as they are committed, while the 202 waits for
    // the disk: a power cut in between may lose an event the engine acted on, which its
    // client (never answered) sends again — the same risk as a decision claim, which is not
    // synced either (see docs/decisions.md).
    let hand_over = |fresh: &[Option<i64>]| {
        if fresh.len() != events.len() {
            return;
        }
        for (event, seq) in events.iter().zip(fresh) {
            if let (Some(event), Some(seq)) = (event, *seq) {
                let _ = handoff.send((seq, event.clone()));
            }
        }
    };
    let answer = match store
        .commit_inbox_then(&rows, now_ms, &claim, &hand_over)
        .await
    {
        Ok(fresh) if fresh.len() == rows.len() => Ok(fresh),
        Ok(_) => Err("the store answered for fewer events than it was given".to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(fresh) => {
            let mut fresh = fresh.into_iter();
            for (n, reply) in replies {
                let _ = reply.send(Ok(fresh.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for (_, reply) in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Group commit: requests arriving while a group is written and synced are committed
/// together in the next transaction, so durability costs one fsync and one database round
/// trip per group, not per request. At most [`Store::parallel_commits`] groups are in flight
/// (SQLite: one), each until it is on disk and answered; only then is the next formed, of
/// every request that arrived meanwhile. Writing the next group while one waits for the disk
/// (one more in flight) was measured: more and smaller groups (7,352 fsyncs against 5,485
/// over the same bench), each costing thread hand-overs (the database thread, the fsync)
/// that outweigh the overlap — fewer events per second at 32 clients, none more at 256
/// (docs/performance.md). New rows are committed claimed by this gateway (`owner`) and the
/// pending ones handed to its engine.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<(Vec<Received>, CommitReply)>,
}

impl Committer {
    /// Start the committer task; new rows are claimed for `owner` (the engine of this
    /// gateway, which renews the claims) and sent to `handoff`.
    pub fn start(
        store: Arc<dyn Store>,
        owner: String,
        handoff: mpsc::UnboundedSender<(i64, Arc<Inbound>)>,
    ) -> Committer {
        let (tx, mut rx) = mpsc::channel::<(Vec<Received>, CommitReply)>(4096);
        // Groups written and not yet answered.
        let in_flight = Arc::new(Semaphore::new(store.parallel_commits().max(1)));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // While earlier groups are written and synced, requests pile up into the next.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (store, owner, handoff) = (store.clone(), owner.clone(), handoff.clone());
                tokio::spawn(async move {
                    commit_group(store.as_ref(), &owner, &handoff, group).await;
                    drop(permit);
                });
            }
        });
        Committer { tx }
    }

    pub async fn commit(&self, rows: Vec<Received>) -> Result<Vec<Option<i64>>, String> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((rows, reply))
            .await
            .map_err(|_| "the committer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the committer has stopped".to_string())?
    }
}
