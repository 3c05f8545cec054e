//! `replay` end to end: a realistic life of one Application (tests/fixtures/life-of-an-app.jsonl,
//! built from Argo CD's own example object) prints exactly the expected CDEvents, for both
//! spec versions, and every event validates against the CDEvents spec's schema.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use support::schemas::SchemaSet;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run_replay(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    support::gateway::cli(&all)
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON document per line: {e}: {l}"))
        })
        .collect()
}

const LIFE: &[(&str, &str)] = &[
    ("environment.created", "created"),
    ("service.deployed", "first deploy, once healthy"),
    ("service.upgraded", "upgrade to b"),
    ("incident.detected", "degraded"),
    ("incident.resolved", "recovered"),
    ("incident.detected", "sync of c failed"),
    ("service.upgraded", "sync of c succeeded"),
    ("incident.resolved", "... which resolves the failure"),
    ("service.rolledback", "rollback to a"),
    ("service.published", "external URL appears"),
    ("incident.detected", "sync status Unknown"),
    ("incident.resolved", "known again"),
    ("service.removed", "deleted"),
    ("environment.deleted", "last app of the environment"),
];

#[test]
fn the_life_of_an_app_prints_exactly_the_expected_events_in_both_versions() {
    for (version, dir, type_version) in [("0.5.1", "v0.5.1", "0.3.0"), ("0.4.1", "v0.4.1", "0.2.0")]
    {
        let input = fixture("life-of-an-app.jsonl");
        let (code, stdout, stderr) = run_replay(&[
            "--spec-version",
            version,
            "--source",
            "/argocd/test",
            input.to_str().unwrap_or_default(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let got = events(&stdout);
        let types: Vec<String> = got
            .iter()
            .map(|e| {
                e["context"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let want: Vec<String> = LIFE
            .iter()
            .map(|(t, _)| format!("dev.cdevents.{t}.{type_version}"))
            .collect();
        assert_eq!(types, want, "{version}");

        // The full documents, compared with the golden file.
        let golden_path = fixture(&format!("life-of-an-app.expected-{version}.jsonl"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden_path, &stdout).unwrap_or_else(|e| panic!("{e}"));
        }
        let golden = std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
        assert_eq!(
            got,
            events(&golden),
            "{version}: output differs from {}",
            golden_path.display()
        );

        // Every event validates against its spec version's schema.
        let schemas = SchemaSet::load(dir);
        for (e, (t, why)) in got.iter().zip(LIFE) {
            if let Err(err) = schemas.validate(e) {
                panic!("{version} {t} ({why}) is invalid: {err}\n{e:#}");
            }
            let version_key = if version == "0.4.1" {
                "version"
            } else {
                "specversion"
            };
            assert_eq!(e["context"][version_key], version);
            assert_eq!(e["context"]["source"], "/argocd/test");
        }

        // The loop: the rollback made by the gateway links back to its trigger.
        let rollback = &got[8];
        assert_eq!(
            rollback["context"]["chainId"],
            "4c8cb7dd-3448-41de-8768-eec704e2829b"
        );
        assert_eq!(rollback["context"]["links"][0]["linkKind"], "TRIGGER");
        assert_eq!(
            rollback["context"]["links"][0]["target"]["contextId"],
            "F4BD2B55-B6F6-4F44-AF72-BD2D0E7A8708"
        );
        // Incidents open and close under one subject id.
        assert_eq!(got[3]["subject"]["id"], got[4]["subject"]["id"]);
        assert_eq!(got[5]["subject"]["id"], got[7]["subject"]["id"]);
        // Timestamps are Argo CD's own.
        assert_eq!(got[1]["context"]["timestamp"], "2026-11-02T09:01:05Z");
        assert_eq!(got[12]["context"]["timestamp"], "2026-11-06T07:00:00Z");
    }
}

#[test]
fn ids_are_deterministic_and_unique() {
    let input = fixture("life-of-an-app.jsonl");
    let path = input.to_str().unwrap_or_default();
    let (_, first, _) = run_replay(&[path]);
    let (_, second, _) = run_replay(&[path]);
    let ids = |s: &str| -> Vec<String> {
        events(s)
            .iter()
            .map(|e| e["context"]["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ids(&second));
    let mut unique = ids(&first);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), LIFE.len());
}

#[test]
fn stdin_works_and_bad_lines_exit_2_naming_the_line() {
    let good = std::fs::read_to_string(fixture("life-of-an-app.jsonl")).unwrap_or_default();
    let first_line = good.lines().next().unwrap_or_default();
    let cases = [
        (format!("{first_line}\nnot json\n"), "line 2"),
        (format!("{first_line}\n{{\"type\":\"BOOKMARK\",\"object\":{{\"metadata\":{{\"name\":\"x\"}}}}}}\n"), "line 2: type \"BOOKMARK\""),
        ("{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}\n".to_string(), "line 1: object has no metadata.name"),
        ("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"},\"status\":{\"history\":\"x\"}}}\n".to_string(), "line 1: object is not an Application"),
        ("\n\n{\"object\":{}}\n".to_string(), "line 3"),
    ];
    for (input, want) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_argocd-cdevents"))
            .args(["replay", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{want}: {stderr}");
        assert!(stderr.contains(want), "stderr {stderr:?} lacks {want:?}");
    }
    // A missing file is also an input error.
    let (code, _, stderr) = run_replay(&["/nonexistent/watch.jsonl"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn the_schema_check_rejects_a_broken_event() {
    let (_, stdout, _) =
        run_replay(&[fixture("life-of-an-app.jsonl").to_str().unwrap_or_default()]);
    let mut deployed = events(&stdout).remove(1);
    let schemas = SchemaSet::load("v0.5.1");
    assert!(schemas.validate(&deployed).is_ok());
    if let Some(content) = deployed["subject"]["content"].as_object_mut() {
        content.remove("artifactId");
    }
    let err = schemas.validate(&deployed).err().unwrap_or_default();
    assert!(err.contains("artifactId"), "{err}");
    deployed["context"]["surprise"] = Value::from(1);
    assert!(schemas.validate(&deployed).is_err());
}
