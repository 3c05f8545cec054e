//! A fresh PostgreSQL database per test, on the server named by
//! `ARGOCD_CDEVENTS_TEST_POSTGRES` (scripts/test and scripts/with-postgres start a throwaway
//! one and set it). Without the variable the test fails, saying how to get one: a store test
//! that silently skips PostgreSQL would pass without checking anything.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The variable naming the test server: a URL whose user may create databases.
pub const VAR: &str = "ARGOCD_CDEVENTS_TEST_POSTGRES";

/// The URL of the test server (its maintenance database).
pub fn server_url() -> String {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{VAR} is not set: the store tests need PostgreSQL. Run scripts/test (which starts a \
             throwaway server), or `scripts/with-postgres cargo test --test store`, or set {VAR} \
             to postgres://USER:PASSWORD@HOST:PORT/DB of a server where USER may create databases"
        ),
    }
}

/// A database made for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    name: String,
    server: String,
}

/// Create an empty database `test_<uuid>` on the test server.
pub async fn database() -> TestDatabase {
    let server = server_url();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server ({VAR}): {e}"));
    // The name is made here of a fixed prefix and hex digits: nothing to inject.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
    let _ = admin.close().await;
    let mut url = url::Url::parse(&server).unwrap_or_else(|e| panic!("{VAR}: {e}"));
    url.set_path(&name);
    TestDatabase {
        url: url.to_string(),
        name,
        server,
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime guarantee: a thread of its own, with its own runtime.
        let server = self.server.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
