//! Shared test support: the CDEvents schemas, Argo CD's swagger contract, and the test
//! doubles (a fake Argo CD, a fake Kubernetes API), a recording CloudEvents receiver, and a
//! PostgreSQL database per test.
#![allow(dead_code)]

pub mod certs;
pub mod engine;
pub mod fake_argocd;
pub mod fake_kube;
pub mod gateway;
pub mod postgres;
pub mod receiver;
pub mod schemas;
pub mod swagger;
