//! Leader election over a Kubernetes Lease (kube-lease-manager): with several gateways on one
//! PostgreSQL store, one of them — the leader — watches Applications, emits and delivers the
//! outbox, and sweeps expired previews; all of them take events and decide them. This module
//! only says who leads ([`Leadership::changes`]); `server` starts and stops the duties.
//! It never touches the store or Argo CD.

use crate::config::LeaderElectionConfig;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leaderElection: kubernetes client: {0}")]
    Client(String),
    #[error("leaderElection: Lease {namespace}/{name}: {message}")]
    Lease {
        namespace: String,
        name: String,
        message: String,
    },
}

/// A running election: `changes` turns `true` while this gateway holds the Lease.
pub struct Leadership {
    pub changes: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    pub identity: String,
}

impl Leadership {
    /// Join the election for `cfg.lease` as `identity` (unique per process).
    pub async fn join(
        client: kube::Client,
        cfg: &LeaderElectionConfig,
        identity: String,
    ) -> Result<Leadership, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, &cfg.lease)
            .with_namespace(&cfg.namespace)
            .with_identity(&identity)
            .with_field_manager(format!("argocd-cdevents-{identity}"))
            .with_duration(cfg.duration.0.as_secs())
            .with_grace(cfg.grace.0.as_secs())
            .build()
            .await
            .map_err(|e| LeaderError::Lease {
                namespace: cfg.namespace.clone(),
                name: cfg.lease.clone(),
                message: e.to_string(),
            })?;
        let (changes, task) = manager.watch().await;
        Ok(Leadership {
            changes,
            task,
            identity,
        })
    }

    /// Leave the election, releasing the Lease if held, so that another gateway takes over
    /// at once instead of after the Lease expires.
    pub async fn leave(self) {
        drop(self.changes);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!(identity = %self.identity, "left the leader election"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the leader Lease failed; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "the leader election task failed"),
        }
    }
}
