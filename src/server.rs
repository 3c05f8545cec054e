//! The running gateway: opens the store, starts the watch source, the emit pipeline and
//! one delivery worker per sink, and — with a `react` section — the event intake, the policy
//! reloader, the action engine and the preview sweeper; serves HTTP (`/`, `/events`,
//! `/healthz`, `/readyz`, `/metrics`) until
//! the shutdown token is cancelled; then it stops taking work and drains in-flight
//! deliveries (bounded by `delivery.drainTimeout`). It holds no decision logic.

use crate::config::{Config, WatchKind};
use crate::delivery::{self, Route, sink::HttpSink};
use crate::emit::pipeline::Pipeline;
use crate::emit::{Inventory, detect::DetectConfig, kube_source, stream_source::StreamSource};
use crate::store::{self, Store};
use crate::telemetry::metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Reads an environment variable (injected so tests never touch the process environment).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|k: &str| std::env::var(k).ok())
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening the store")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Sink(#[from] delivery::sink::SinkError),
    #[error("Argo CD stream source")]
    Stream(#[from] crate::emit::stream_source::StreamError),
    #[error("kubernetes client: {0}")]
    Kube(String),
    #[error("HTTP server")]
    Serve(#[from] std::io::Error),
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("policies: {0}")]
    Policies(#[from] crate::react::policy::PolicyError),
    #[error(transparent)]
    Secret(#[from] crate::react::auth::SecretError),
    #[error("react.argocd: {0}")]
    Endpoint(#[from] crate::argocd::EndpointError),
    #[error(transparent)]
    Argo(#[from] crate::argocd::ArgoError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
    #[error("{0}")]
    Config(String),
}

/// The Argo CD backend the react flow acts through.
async fn argocd_backend(
    cfg: &crate::config::ReactConfig,
    env: &Env,
) -> Result<Arc<dyn crate::argocd::ArgoCd>, RunError> {
    let a = &cfg.argocd;
    match a.backend {
        crate::config::ArgoBackend::Rest => {
            let (server, token) = crate::argocd::endpoint(
                a.server.as_ref(),
                &a.token_env,
                a.token_file.as_deref(),
                &|k| env(k),
            )?;
            let token = token.ok_or_else(|| {
                crate::argocd::ArgoError::Setup(format!(
                    "no Argo CD token: set {} or react.argocd.tokenFile",
                    a.token_env
                ))
            })?;
            Ok(Arc::new(crate::argocd::rest::RestClient::new(
                server,
                token,
                a.insecure,
                a.timeout.0,
                a.retries,
            )?))
        }
        crate::config::ArgoBackend::Kubernetes => {
            use crate::argocd::kube_backend::KubeBackend;
            // The same time limit per request as the REST client (`react.argocd.timeout`):
            // a request that outlasts it is retried like a 5xx.
            let config = kube::Config::infer()
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?;
            let client = kube::Client::try_from(KubeBackend::client_config(config, a.timeout.0))
                .map_err(|e| RunError::Kube(e.to_string()))?;
            Ok(Arc::new(KubeBackend::new(client, a.retries)))
        }
    }
}

/// Where Application changes come from (built once, watched once per term of leadership).
enum Source {
    None,
    Kube(kube::Client),
    Stream(StreamSource),
}

/// What one gateway of an installation does at a time: watch and emit, deliver, sweep
/// previews. Without leader election this gateway does them from start to stop; with it,
/// while it leads.
struct Duties {
    store: Arc<dyn Store>,
    config: Config,
    sinks: Vec<(crate::config::SinkConfig, Arc<HttpSink>)>,
    source: Source,
    /// The react engine, how often it sweeps previews, and how long it keeps history.
    engine: Option<(
        Arc<crate::react::engine::Engine>,
        std::time::Duration,
        crate::react::engine::Retention,
    )>,
}

impl Duties {
    /// Start the duties until `stop`; the set ends when they have drained.
    async fn start(&self, stop: CancellationToken) -> Result<JoinSet<()>, RunError> {
        let mut set = JoinSet::new();
        // The state as the store has it now (another leader may have moved it on).
        let states = self.store.load_app_states().await?;
        let mut routes = Vec::new();
        set.spawn(delivery::prune_delivered(
            self.store.clone(),
            self.config.delivery.retain_delivered.0,
            crate::store::PRUNE_EVERY,
            stop.clone(),
        ));
        for (sink_cfg, sink) in &self.sinks {
            let notify = Arc::new(Notify::new());
            routes.push(Route {
                sink: sink_cfg.name.clone(),
                types: sink_cfg.types.clone(),
                notify: notify.clone(),
            });
            set.spawn(delivery::run_sink(
                self.store.clone(),
                sink.clone(),
                self.config.delivery.clone(),
                notify,
                stop.clone(),
            ));
        }
        let pipeline = Pipeline {
            detect: DetectConfig {
                environment_label: self.config.emit.environment_label.clone(),
                custom_data_labels: self.config.emit.custom_data_labels.clone(),
            },
            version: self.config.emit.spec_version,
            source: self.config.emit.source.clone(),
            store: self.store.clone(),
            routes,
            inventory: Inventory::new(states),
        };
        let events = match &self.source {
            Source::None => None,
            Source::Kube(client) => Some(kube_source::watch(
                client.clone(),
                &self.config.emit.watch.kubernetes,
            )),
            Source::Stream(src) => Some(src.clone().watch(stop.clone())),
        };
        if let Some(events) = events {
            set.spawn(pipeline.run(events.fuse(), stop.clone()));
        }
        if let Some((engine, every, retention)) = &self.engine {
            set.spawn(engine.clone().sweep_previews(*every, stop.clone()));
            set.spawn(engine.clone().prune_history(*retention, stop.clone()));
        }
        Ok(set)
    }
}

/// Wait until every task of `set` has ended.
async fn drained(mut set: JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

/// Take part in the election until `stop`: start the duties on becoming the leader, stop
/// them (draining up to `drain`) on losing it, and release the Lease at the end.
async fn lead(
    election: crate::leader::Leadership,
    duties: Duties,
    drain: std::time::Duration,
    stop: CancellationToken,
) {
    let mut changes = election.changes.clone();
    metrics::set_leader(false);
    'terms: loop {
        // Wait to lead.
        while !*changes.borrow_and_update() {
            tracing::info!(identity = %election.identity, "standing by: another gateway leads");
            tokio::select! {
                _ = stop.cancelled() => break 'terms,
                changed = changes.changed() => if changed.is_err() { break 'terms },
            }
        }
        tracing::info!(identity = %election.identity, "became the leader: watching, emitting and delivering");
        metrics::set_leader(true);
        let term = stop.child_token();
        let set = match duties.start(term.clone()).await {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the leader's duties; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break 'terms,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue 'terms,
                }
            }
        };
        let lost = loop {
            tokio::select! {
                _ = stop.cancelled() => break false,
                changed = changes.changed() => match changed {
                    Err(_) => break true,
                    Ok(()) if !*changes.borrow_and_update() => break true,
                    Ok(()) => {}
                },
            }
        };
        term.cancel();
        if tokio::time::timeout(drain, drained(set)).await.is_err() {
            tracing::warn!(
                "drain timeout while stepping down; unfinished deliveries stay pending for the next leader"
            );
        }
        metrics::set_leader(false);
        if !lost {
            break;
        }
        tracing::warn!(identity = %election.identity, "lost the leadership: duties stopped");
    }
    drop(changes);
    election.leave().await;
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    sinks: Arc<Vec<String>>,
    shutdown: CancellationToken,
}

/// Serve on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    env: Env,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // Certificates first: a bad file stops the start before anything else runs.
    let tls = match &config.tls {
        Some(t) => Some((t.clone(), crate::tls::load(t)?)),
        None => None,
    };
    let store = store::open(&config.store).await?;
    tracing::info!(store = ?config.store, "store opened");

    // What only one gateway may do at a time (the leader, with leaderElection; else this one):
    // watch Applications and emit, deliver the outbox, sweep expired previews. Everything it
    // needs is built now, so that a bad sink or source setting stops the start.
    // No redirects: a 3xx is the sink's answer (dead letter), never a silent GET elsewhere
    // that would take the auth header along.
    let client = reqwest::Client::builder()
        .timeout(config.delivery.timeout.0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(RunError::Client)?;
    let mut sinks = Vec::new();
    for sink_cfg in &config.sinks {
        sinks.push((
            sink_cfg.clone(),
            Arc::new(HttpSink::new(sink_cfg, client.clone(), &|k| env(k))?),
        ));
        metrics::init_sink(&sink_cfg.name);
    }
    let source = match config.emit.watch.kind {
        WatchKind::None => Source::None,
        WatchKind::Kubernetes => {
            metrics::init_watch("kubernetes");
            Source::Kube(
                kube::Client::try_default()
                    .await
                    .map_err(|e| RunError::Kube(e.to_string()))?,
            )
        }
        WatchKind::Argocd => {
            metrics::init_watch("argocd");
            Source::Stream(StreamSource::from_config(
                &config.emit.watch.argocd,
                &|k| env(k),
            )?)
        }
    };
    let mut duties = Duties {
        store: store.clone(),
        config: config.clone(),
        sinks,
        source,
        engine: None,
    };
    let mut workers = JoinSet::new();
    let work_stop = CancellationToken::new();

    let state = AppState {
        store: store.clone(),
        sinks: Arc::new(config.sinks.iter().map(|s| s.name.clone()).collect()),
        shutdown: shutdown.clone(),
    };
    // The react flow.
    let events = match &config.react {
        None => crate::react::intake::disabled_routes(),
        Some(rc) => {
            use crate::react::{self, PolicyHandle, engine::Engine, intake};
            metrics::init_react();
            let schemas = react::schema::Schemas::get();
            let policies = react::load_policies(&rc.policies)?;
            tracing::info!(policies = policies.len(), dir = %rc.policies.display(), schemas = schemas.len(), "react flow: policies loaded");
            let argocd = argocd_backend(rc, &env).await?;
            let handle = PolicyHandle::new(policies);
            let clients = Arc::new(react::auth::Clients::from_config(rc, &|k| env(k))?);
            // One owner id per process for the inbox claims: the intake commits rows claimed
            // for it and hands them to the engine, which renews the claims.
            let owner = react::engine::owner_id(env("HOSTNAME").as_deref());
            let (handoff, handed) = tokio::sync::mpsc::unbounded_channel();
            let committer = intake::Committer::start(store.clone(), owner.clone(), handoff);
            let engine = Arc::new(Engine::new(
                store.clone(),
                argocd,
                handle.clone(),
                rc.argocd.namespace.clone(),
                rc.argocd.rate,
            ));
            workers.spawn(engine.clone().run(owner, handed, work_stop.clone()));
            workers.spawn(react::watch_policies(
                handle.clone(),
                rc.policies.clone(),
                rc.reload_interval.0,
                work_stop.clone(),
            ));
            if clients.has_secret_files() {
                workers.spawn(react::auth::watch_secrets(
                    clients.clone(),
                    rc.reload_interval.0,
                    work_stop.clone(),
                ));
            }
            duties.engine = Some((
                engine.clone(),
                rc.preview_sweep_interval.0,
                react::engine::Retention {
                    events: rc.retain_events.0,
                    decisions: rc.retain_decisions.0,
                },
            ));
            intake::routes(Arc::new(intake::Intake {
                clients,
                policies: handle,
                schemas,
                committer,
                body_limit: rc.body_limit.0,
                body_timeout: config.http.body_read_timeout.0,
                require_client_certificate: config
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.require_client_certificate),
            }))
        }
    };

    match &config.leader_election {
        None => {
            let set = duties.start(work_stop.clone()).await?;
            metrics::set_leader(true);
            workers.spawn(drained(set));
        }
        Some(le) => {
            if !matches!(config.store, crate::config::StoreUrl::Postgres(_)) {
                return Err(RunError::Config(
                    "leaderElection needs a postgres:// store that every gateway shares (a SQLite file serves one gateway, which needs no election)".into(),
                ));
            }
            let client = kube::Client::try_default()
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?;
            let identity = crate::react::engine::owner_id(env("HOSTNAME").as_deref());
            let election = crate::leader::Leadership::join(client, le, identity).await?;
            workers.spawn(lead(
                election,
                duties,
                config.delivery.drain_timeout.0,
                work_stop.clone(),
            ));
        }
    }

    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
        .merge(events);
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    let serve_stop = shutdown.clone();
    tokio::spawn(async move {
        serve_stop.cancelled().await;
        on_stop.graceful_shutdown(None);
    });
    let listener = listener.into_std()?;
    let header_timeout = config.http.header_read_timeout.0;
    match tls {
        None => {
            tracing::info!(%addr, "listening (http)");
            let mut server = axum_server::from_tcp(listener)?.handle(handle);
            limit_headers(server.http_builder(), header_timeout);
            server.serve(app.into_make_service()).await?;
        }
        Some((tls_cfg, (live, fingerprint))) => {
            let with_ca = tls_cfg.client_ca_file.is_some();
            workers.spawn(crate::tls::watch(
                live.clone(),
                tls_cfg,
                fingerprint,
                work_stop.clone(),
            ));
            tracing::info!(%addr, client_certificates = with_ca, "listening (https)");
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(crate::tls::CertAcceptor::new(live))
                .handle(handle);
            limit_headers(server.http_builder(), header_timeout);
            server.serve(app.into_make_service()).await?;
        }
    }

    // Drain: stop taking new work, let in-flight deliveries finish.
    tracing::info!("shutting down; draining in-flight deliveries");
    work_stop.cancel();
    let drain = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(config.delivery.drain_timeout.0, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "drain timeout; unfinished deliveries stay pending and are sent after restart"
        );
    }
    Ok(())
}

/// A connection that has not sent a whole request head within `timeout` is closed (slow
/// header attacks hold no connection open for long).
fn limit_headers(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: std::time::Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    delivery::refresh_gauges(s.store.as_ref(), &s.sinks).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(),
    )
}
