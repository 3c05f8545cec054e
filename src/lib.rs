//! argocd-cdevents: a bidirectional CDEvents gateway for Argo CD.
//!
//! The folders draw the pipeline: `emit` (watch sources, the pure detector, event building),
//! `delivery` (outbox workers and sinks), `react` (HTTP intake, auth, policies, the pure
//! matcher and planner, the action worker), `store` (durable state), `argocd` (the Argo CD
//! model and the clients that act on it), `server` (HTTP: health, readiness, metrics), `tls` (HTTPS and client certificates), `leader`
//! (who of several gateways watches and delivers),
//! `config`, `cli`, `telemetry`.
//! `main.rs` only calls [`cli::main`]; everything else is here so tests can start the real
//! service on a listener they bound themselves ([`server::run`]).

pub mod argocd;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod emit;
pub mod leader;
pub mod pattern;
pub mod react;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use server::run;
