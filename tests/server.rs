//! The service itself, in-process: `run(listener, config, env, shutdown)` on a listener the
//! test bound, health, readiness and metrics over real HTTP, a clean stop on the shutdown
//! token; and the `check` command's answers to good and bad configuration files.

mod support;

use argocd_cdevents::config::Config;
use std::sync::Arc;
use std::time::Duration;
use support::gateway::cli;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn serves_health_readiness_and_metrics_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "store: sqlite://{}/nested/dir/gw.db\nemit: {{watch: {{kind: none}}}}\nsinks: [{{name: audit, url: \"http://127.0.0.1:9/\"}}]\n",
        dir.path().display()
    );
    let config = Config::parse("test.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let shutdown = CancellationToken::new();
    let env: argocd_cdevents::server::Env = Arc::new(|_: &str| None);
    let server = tokio::spawn(argocd_cdevents::run(
        listener,
        config,
        env,
        shutdown.clone(),
    ));

    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // The server may still be opening the store: wait for the first answer.
    let mut healthz = (0, String::new());
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            healthz = (r.status().as_u16(), r.text().await.unwrap_or_default());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healthz, (200, "ok".to_string()));
    assert_eq!(get("/readyz").await, (200, "ready".to_string()));
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "argocd_cdevents_outbox_pending{sink=\"audit\"} 0",
        "argocd_cdevents_dead_letters{sink=\"audit\"} 0",
        "argocd_cdevents_deliveries_total{sink=\"audit\",result=\"dead\"} 0",
        "# TYPE argocd_cdevents_deliveries counter",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    assert!(
        metrics.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(
        dir.path().join("nested/dir/gw.db").exists(),
        "the SQLite file and its directory are created"
    );

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap_or_else(|_| panic!("run did not return after shutdown"));
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "the port is closed after shutdown"
    );
}

#[test]
fn check_accepts_the_shipped_config_and_names_file_and_line_of_a_bad_one() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.yaml");
    let (code, stdout, stderr) = cli(&["check", "--config", shipped]);
    assert_eq!(
        (code, stdout.trim()),
        (0, "configuration is valid"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: 127.0.0.1:8080\nsinks:\n  - name: a\n    url: http://x\n    mode: carrier-pigeon\n").unwrap_or_else(|e| panic!("{e}"));
    let (code, _, stderr) = cli(&["check", "--config", bad.to_str().unwrap_or_default()]);
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("{}:5", bad.display())), "{stderr}");
    assert!(stderr.contains("carrier-pigeon"), "{stderr}");

    let (code, _, stderr) = cli(&["check", "--config", "/nonexistent.yaml"]);
    assert_eq!(code, 2);
    // The reason once: the message already carries its cause's words.
    assert_eq!(
        stderr.trim(),
        "argocd-cdevents: /nonexistent.yaml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn serve_stops_at_start_naming_a_sink_auth_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("gw.yaml");
    let token = dir.path().join("missing-token");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nstore: sqlite://{}/gw.db\nsinks:\n  - name: audit\n    url: http://127.0.0.1:9/\n    auth: {{valueFile: \"{}\"}}\n",
            dir.path().display(),
            token.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, stderr) = cli(&["serve", "--config", config.to_str().unwrap_or_default()]);
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "argocd-cdevents: sink audit: auth value: cannot read secret file {}: No such file or directory (os error 2)",
            token.display()
        )
    );
}
