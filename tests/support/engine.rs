//! The action engine as the tests build it: the gateway's namespace `argocd`, a ceiling of
//! 100 Argo CD calls a second, on a SQLite store of its own when the test needs no other.

use argocd_cdevents::argocd::ArgoCd;
use argocd_cdevents::config::{Rate, StoreUrl};
use argocd_cdevents::react::{PolicyHandle, engine::Engine};
use argocd_cdevents::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// A new SQLite store in `dir` (the engine's, and the store contract's).
pub async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let url: StoreUrl = format!("sqlite://{}/store.db", dir.display())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    argocd_cdevents::store::open(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The REST client the gateway builds for an Argo CD at `url` (5 s timeout, no retries).
pub fn rest_client(url: &str, token: &str) -> Arc<dyn ArgoCd> {
    Arc::new(
        argocd_cdevents::argocd::rest::RestClient::new(
            url.parse().unwrap_or_else(|e| panic!("{e}")),
            token.into(),
            false,
            Duration::from_secs(5),
            0,
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The engine over `store`, acting through `argocd` on `policies`.
pub fn engine(store: Arc<dyn Store>, argocd: Arc<dyn ArgoCd>, policies: PolicyHandle) -> Engine {
    Engine::new(
        store,
        argocd,
        policies,
        "argocd".into(),
        Rate {
            count: 100,
            per: Duration::from_secs(1),
        },
    )
}
