//! HTTPS and client certificates on the intake, end to end: the real binary on loopback,
//! certificates made by rcgen, and clients we did not write (curl, the Python CloudEvents
//! SDK over `ssl`). Also the slow-client limits (header and body read timeouts) and a
//! certificate rotation without restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::certs::{Ca, Leaf};
use support::gateway::{Gateway, cli};
use support::schemas::shared;

const TOKEN: &str = "tls-test-bearer-0123456789";

/// A schema-valid CDEvent from the spec's conformance examples, with a fresh id.
fn event(source: &str) -> Value {
    let path = shared().join("cdevents/v0.5.1/examples/artifact_packaged.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    v["context"]["id"] = json!(uuid::Uuid::new_v4().to_string());
    v["context"]["source"] = json!(source);
    v
}

struct Site {
    dir: tempfile::TempDir,
    gw: Gateway,
    /// `https://127.0.0.1:PORT`
    url: String,
}

/// Start the gateway with `tls_yaml` (the body of the `tls:` key) and the react `clients`.
async fn start(dir: tempfile::TempDir, tls_yaml: &str, clients: &str) -> Site {
    let pdir = dir.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    let config = format!(
        r#"listen: 127.0.0.1:0
log: {{level: "info,argocd_cdevents=debug", format: text}}
http: {{headerReadTimeout: 1s, bodyReadTimeout: 1s}}
tls: {tls_yaml}
react:
  policies: {pdir}
  clients:
{clients}
  argocd:
    server: "http://127.0.0.1:9"
    tokenEnv: ARGOCD_AUTH_TOKEN
"#,
        pdir = pdir.display()
    );
    let store = format!("sqlite://{}/gw.db", dir.path().display());
    let gw = Gateway::start(
        dir.path(),
        "gw",
        &config,
        &store,
        &[("ARGOCD_AUTH_TOKEN", "unused"), ("CI_TOKEN", TOKEN)],
    );
    let url = gw.base_url().await.replace("http://", "https://");
    Site { dir, gw, url }
}

/// What curl got: the HTTP status (0 when there was no HTTP answer) and curl's exit code.
struct Answer {
    status: u16,
    body: Value,
    curl_exit: i32,
    stderr: String,
}

impl Site {
    fn write(&self, v: &Value) -> PathBuf {
        let p = self
            .dir
            .path()
            .join(format!("ev-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    /// curl a request; `args` add TLS and auth options.
    fn curl(&self, path: &str, body: Option<&Value>, args: &[&str]) -> Answer {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]);
        if let Some(b) = body {
            let file = self.write(b);
            cmd.args(["-X", "POST", "-H", "Content-Type: application/json"])
                .arg("--data-binary")
                .arg(format!("@{}", file.display()));
        }
        let out = cmd
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Answer {
            status: code.trim().parse().unwrap_or(0),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            curl_exit: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Send with the Python CloudEvents SDK over HTTPS.
    fn python(&self, event: &Value, ca: &Path, client: Option<&Leaf>, auth: &[&str]) -> Value {
        let file = self.write(event);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/send_event.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--url", &format!("{}/events", self.url), "--mode", "binary"])
            .arg("--event")
            .arg(&file)
            .arg("--cacert")
            .arg(ca);
        if let Some(c) = client {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let out = cmd.args(auth).output().unwrap();
        assert!(
            out.status.success(),
            "send_event.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn tls_args<'a>(ca: &'a Path, client: Option<&'a Leaf>) -> Vec<String> {
    let mut v = vec!["--cacert".to_string(), ca.display().to_string()];
    if let Some(c) = client {
        v.extend([
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]);
    }
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn https_takes_events_from_curl_and_the_sdk_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "server-ca");
    let server = ca.server(dir.path(), "server", &["127.0.0.1", "localhost"]);
    let tls = format!(
        "{{certFile: {}, keyFile: {}}}",
        server.cert.display(),
        server.key.display()
    );
    let clients =
        r#"    - {name: ci, bearer: {tokenEnv: CI_TOKEN}, sources: ["/ci/*"], types: ["*"]}"#;
    let site = start(dir, &tls, clients).await;
    let tls = tls_args(&ca.file, None);
    let auth = format!("Authorization: Bearer {TOKEN}");

    let a = site.curl(
        "/events",
        Some(&event("/ci/a")),
        &[&strs(&tls)[..], &["-H", &auth]].concat(),
    );
    assert_eq!(
        (a.status, a.body["accepted"].clone()),
        (202, json!(1)),
        "{}",
        a.stderr
    );
    let py = site.python(&event("/ci/b"), &ca.file, None, &["--token", TOKEN]);
    assert_eq!(py["status"], 202, "{py}");
    let health = site.curl("/healthz", None, &strs(&tls));
    assert_eq!(health.status, 200);

    // A client that does not trust the server's CA refuses the connection.
    let untrusted = site.curl("/healthz", None, &[]);
    assert_eq!(untrusted.status, 0);
    assert_eq!(
        untrusted.curl_exit, 60,
        "expected curl's certificate error: {}",
        untrusted.stderr
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer at all.
    let plain_url = site.url.replace("https://", "http://");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("{plain_url}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    assert_ne!(out.status.code(), Some(0));
}

#[tokio::test]
async fn client_certificates_authenticate_and_are_required_for_events_but_not_probes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "server-ca");
    let server = ca.server(dir.path(), "server", &["127.0.0.1"]);
    let clients_ca = Ca::new(dir.path(), "clients-ca");
    let ci = clients_ca.client(dir.path(), "ci", "ci.clients.test");
    let stranger = clients_ca.client(dir.path(), "stranger", "stranger.clients.test");
    let rogue_ca = Ca::new(dir.path(), "rogue-ca");
    let rogue = rogue_ca.client(dir.path(), "rogue", "ci.clients.test");
    let tls = format!(
        "{{certFile: {}, keyFile: {}, clientCaFile: {}, requireClientCertificate: true}}",
        server.cert.display(),
        server.key.display(),
        clients_ca.file.display()
    );
    let clients = r#"    - {name: ci, certificate: {dnsName: ci.clients.test}, sources: ["/ci/*"], types: ["*"]}
    - {name: tokens, bearer: {tokenEnv: CI_TOKEN}, sources: ["/tokens/*"], types: ["*"]}"#;
    let site = start(dir, &tls, clients).await;
    let auth = format!("Authorization: Bearer {TOKEN}");
    let with = |leaf: Option<&Leaf>, extra: &[&str], path: &str, body: Option<&Value>| {
        let args = tls_args(&ca.file, leaf);
        site.curl(path, body, &[&strs(&args)[..], extra].concat())
    };

    // The certificate alone names the client; its scope applies.
    let a = with(Some(&ci), &[], "/events", Some(&event("/ci/x")));
    assert_eq!(
        (a.status, a.body["accepted"].clone()),
        (202, json!(1)),
        "{}",
        a.stderr
    );
    let a = with(Some(&ci), &[], "/events", Some(&event("/tokens/x")));
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body["error"].as_str().unwrap().contains("\"ci\""),
        "{}",
        a.body
    );
    // The same through the Python SDK.
    let py = site.python(&event("/ci/y"), &ca.file, Some(&ci), &[]);
    assert_eq!(py["status"], 202, "{py}");

    // A certificate from the CA that names no client.
    let a = with(Some(&stranger), &[], "/events", Some(&event("/ci/x")));
    assert_eq!(a.status, 401);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("not valid for the dnsName of any client"),
        "{}",
        a.body
    );
    // A verified certificate plus a bearer token: the token names the client.
    let a = with(
        Some(&stranger),
        &["-H", &auth],
        "/events",
        Some(&event("/tokens/x")),
    );
    assert_eq!(a.status, 202, "{}", a.body);
    // A token without a certificate: refused, certificates are required for events.
    let a = with(None, &["-H", &auth], "/events", Some(&event("/tokens/x")));
    assert_eq!(a.status, 401);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("client certificate is required"),
        "{}",
        a.body
    );
    // A certificate from another CA (even for the right name) fails the handshake.
    let a = with(Some(&rogue), &[], "/events", Some(&event("/ci/x")));
    assert_eq!(
        a.status, 0,
        "a rogue certificate got an HTTP answer: {}",
        a.body
    );
    assert_ne!(a.curl_exit, 0);
    // Probes need no certificate.
    assert_eq!(with(None, &[], "/healthz", None).status, 200);
    assert_eq!(with(None, &[], "/metrics", None).status, 200);

    let (code, out, err) = cli(&["decisions", "list", "--json", "--store", &site.gw.store]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "", "no policies: nothing is decided");
    let m = with(None, &[], "/metrics", None);
    assert_eq!(m.status, 200);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new(dir.path(), "old-ca");
    let new_ca = Ca::new(dir.path(), "new-ca");
    let live = Leaf {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    let first = old_ca.server(dir.path(), "first", &["127.0.0.1"]);
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let tls = format!(
        "{{certFile: {}, keyFile: {}, reloadInterval: 100ms}}",
        live.cert.display(),
        live.key.display()
    );
    let clients = r#"    - {name: ci, bearer: {tokenEnv: CI_TOKEN}, sources: ["*"], types: ["*"]}"#;
    let site = start(dir, &tls, clients).await;
    let trusts = |ca: &Ca| {
        site.curl(
            "/healthz",
            None,
            &["--cacert", &ca.file.display().to_string()],
        )
        .status
    };
    assert_eq!((trusts(&old_ca), trusts(&new_ca)), (200, 0));

    // Rotation: the new certificate and key replace the old ones in place.
    let second = new_ca.server(site.dir.path(), "second", &["127.0.0.1"]);
    std::fs::copy(&second.key, &live.key).unwrap();
    std::fs::copy(&second.cert, &live.cert).unwrap();
    site.gw
        .wait_log("tls certificate reloaded", Duration::from_secs(20))
        .await;
    assert_eq!((trusts(&old_ca), trusts(&new_ca)), (0, 200));

    // A broken key is reported and the last good certificate stays in service.
    std::fs::write(
        &live.key,
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let log = site
        .gw
        .wait_log("serving the last good certificate", Duration::from_secs(20))
        .await;
    assert!(
        log.contains("live.key"),
        "the warning names the file:\n{log}"
    );
    assert_eq!(trusts(&new_ca), 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_and_body_read_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    // Plain HTTP here: the limits are the same with and without TLS.
    let config = format!(
        r#"listen: 127.0.0.1:0
log: {{level: "info", format: text}}
http: {{headerReadTimeout: 1s, bodyReadTimeout: 1s}}
react:
  policies: {}
  clients:
    - {{name: ci, bearer: {{tokenEnv: CI_TOKEN}}, sources: ["*"], types: ["*"]}}
  argocd: {{server: "http://127.0.0.1:9", tokenEnv: ARGOCD_AUTH_TOKEN}}
"#,
        pdir.display()
    );
    let store = format!("sqlite://{}/gw.db", dir.path().display());
    let gw = Gateway::start(
        dir.path(),
        "gw",
        &config,
        &store,
        &[("ARGOCD_AUTH_TOKEN", "unused"), ("CI_TOKEN", TOKEN)],
    );
    let addr = gw.base_url().await.replace("http://", "");

    // Half a request head, then silence: the server closes the connection.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /events HTTP/1.1\r\nHost: gw\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf);
    assert!(
        n.is_ok(),
        "the connection was not closed by the server: {n:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer to a half head: {text}"
    );

    // A whole head, a promised body of 100 bytes, only 10 sent: 408 naming the problem.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"context\""
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = [0u8; 512];
    let n = s.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("the body was not received in time"), "{text}");
}

#[test]
fn bad_tls_settings_are_refused_with_the_file_or_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server(dir.path(), "server", &["127.0.0.1"]);
    let other = ca.server(dir.path(), "other", &["127.0.0.1"]);
    let pdir = dir.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing certificate file",
            format!(
                "tls: {{certFile: {0}/nope.pem, keyFile: {1}}}\n",
                dir.path().display(),
                server.key.display()
            ),
            "nope.pem",
        ),
        (
            "a key that is not PEM",
            format!(
                "tls: {{certFile: {}, keyFile: {}}}\n",
                server.cert.display(),
                ca.file.display()
            ),
            "no usable private key",
        ),
        (
            "a key of another certificate",
            format!(
                "tls: {{certFile: {}, keyFile: {}}}\n",
                server.cert.display(),
                other.key.display()
            ),
            "does not fit the certificate",
        ),
        (
            "a certificate file with no certificate",
            format!(
                "tls: {{certFile: {}, keyFile: {}}}\n",
                server.key.display(),
                server.key.display()
            ),
            "holds no CERTIFICATE block",
        ),
        (
            "client certificates required without a CA",
            format!(
                "tls: {{certFile: {}, keyFile: {}, requireClientCertificate: true}}\n",
                server.cert.display(),
                server.key.display()
            ),
            "tls.requireClientCertificate: needs tls.clientCaFile",
        ),
        (
            "a reload interval of zero",
            format!(
                "tls: {{certFile: {}, keyFile: {}, reloadInterval: 0s}}\n",
                server.cert.display(),
                server.key.display()
            ),
            "tls.reloadInterval: must be longer than zero",
        ),
        (
            "a certificate client without a CA",
            format!(
                "tls: {{certFile: {}, keyFile: {}}}\nreact:\n  policies: {}\n  clients:\n    - {{name: c, certificate: {{dnsName: c.test}}, sources: [\"*\"], types: [\"*\"]}}\n",
                server.cert.display(),
                server.key.display(),
                pdir.display()
            ),
            "react.clients[0].certificate: needs tls.clientCaFile",
        ),
        (
            "a certificate client whose name is not a DNS name",
            format!(
                "tls: {{certFile: {0}, keyFile: {1}, clientCaFile: {2}}}\nreact:\n  policies: {3}\n  clients:\n    - {{name: c, certificate: {{dnsName: \"not a name\"}}, sources: [\"*\"], types: [\"*\"]}}\n",
                server.cert.display(),
                server.key.display(),
                ca.file.display(),
                pdir.display()
            ),
            "react.clients[0].certificate.dnsName: \"not a name\" is not a DNS name",
        ),
        (
            "two credentials",
            format!(
                "tls: {{certFile: {0}, keyFile: {1}, clientCaFile: {2}}}\nreact:\n  policies: {3}\n  clients:\n    - {{name: c, certificate: {{dnsName: c.test}}, bearer: {{tokenEnv: X}}, sources: [\"*\"], types: [\"*\"]}}\n",
                server.cert.display(),
                server.key.display(),
                ca.file.display(),
                pdir.display()
            ),
            "set exactly one of bearer, hmac and certificate",
        ),
    ];
    for (what, yaml, expected) in cases {
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let (code, _, err) = cli(&["check", "--config", file.to_str().unwrap()]);
        assert_eq!(code, 2, "{what}: check accepted it");
        assert!(
            err.contains(expected),
            "{what}: {err:?} does not say {expected:?}"
        );
    }
    // And a good set passes.
    let file = dir.path().join("good.yaml");
    std::fs::write(
        &file,
        format!(
            "tls: {{certFile: {}, keyFile: {}, clientCaFile: {}}}\n",
            server.cert.display(),
            server.key.display(),
            ca.file.display()
        ),
    )
    .unwrap();
    let (code, out, err) = cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration is valid"));
}
