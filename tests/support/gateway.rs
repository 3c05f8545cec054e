//! Runs the real `argocd-cdevents` binary as a child process (so tests can SIGTERM and
//! SIGKILL it), with a config written to a temp dir, and reads its outbox through the CLI.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Gateway {
    pub child: Child,
    pub config: PathBuf,
    pub store: String,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_argocd-cdevents")
}

impl Gateway {
    /// Start `serve` with `config_yaml` (its `store:` is set to `store`) and extra env vars.
    pub fn start(
        dir: &Path,
        name: &str,
        config_yaml: &str,
        store: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, format!("store: {store}\n{config_yaml}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config"])
            .arg(&config)
            .env_remove("K_SINK")
            .env_remove("ARGOCD_CDEVENTS_STORE")
            .env_remove("ARGOCD_CDEVENTS_LISTEN")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting the gateway: {e}"));
        Gateway {
            child,
            config,
            store: store.to_string(),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to drain or flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the CLI with `args` and return (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The outbox rows as `outbox list --json` prints them.
pub fn outbox(store: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "outbox", "list", "--json", "--limit", "100000", "--store", store,
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "outbox list failed: {stderr}");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Gateway {
    /// Wait until the log contains `needle`; panic with the log after `timeout`.
    pub async fn wait_log(&self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            if std::time::Instant::now() > deadline {
                panic!("gateway log never showed {needle:?}:\n{text}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The `http://host:port` the gateway listens on (from its `listening` log line).
    pub async fn base_url(&self) -> String {
        let log = self
            .wait_log("listening", std::time::Duration::from_secs(30))
            .await;
        let addr = log
            .lines()
            .find(|l| l.contains("listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .map(|a| {
                a.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no address in the listening line:\n{log}"));
        format!("http://{addr}")
    }
}
