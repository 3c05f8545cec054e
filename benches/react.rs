//! React-flow benchmarks (not tests): figures on stdout, each next to a baseline measured in
//! the same run. Nothing is asserted.
//!   1. Intake throughput: events/s the release binary accepts (bearer auth, CDEvents schema
//!      validation, durable group commit to SQLite, 202), against a bare axum endpoint that
//!      answers 202 to the same requests from the same load generator. The events are
//!      `artifact.packaged`, which no policy of the bench asks for (stored done, without
//!      payload); their ids come in order, and at 256 clients also at random (UUIDv4).
//!   2. Event -> Argo CD request latency at a paced 1,000 events/s: from sending an
//!      artifact.packaged event to the sync request arriving at a minimal Argo CD stand-in
//!      (GET answered from memory, POST /sync timestamped), p50/p99 over five rounds of
//!      5,000 events and the p99 of each round; baseline: a bare POST from this process to
//!      the same stand-in at the same pace, after each round.
//!   3. Matching one event against 10,000 policies (the pure matcher, in process), against
//!      matching it against one policy.
//!   4. The SQLite store's inbox keys (held in memory): the first commit of a store opened
//!      on 1,000,000 inbox rows, which reads their keys, and what that adds to this
//!      process's resident memory; baseline: the first commit on an empty store.
//!
//! Run: `cargo bench --bench react`.

#[path = "../tests/support/mod.rs"]
mod support;

use argocd_cdevents::react::inbound::Inbound;
use argocd_cdevents::react::matcher::match_event;
use argocd_cdevents::react::policy::{PolicySet, parse_file};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::gateway::Gateway;

const TOKEN: &str = "bench-token-0123456789";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn artifact(i: usize, app: &str) -> Value {
    artifact_with_id(i, app, Ids::InOrder)
}

/// How the events' ids follow one another.
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    /// `bench-<n>-<uuid>`: each id sorts next to the one before, as time-ordered ids
    /// (UUIDv7, ULID, a sender's own sequence) do: the inbox's dedup index grows at one end.
    InOrder,
    /// A random UUID (v4) each, as most CloudEvents SDKs make them: every new id lands on
    /// another page of the dedup index.
    Random,
}

fn artifact_with_id(i: usize, app: &str, ids: Ids) -> Value {
    let path = support::schemas::shared().join("cdevents/v0.5.1/examples/artifact_packaged.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
        .unwrap_or_default();
    v["context"]["id"] = json!(match ids {
        Ids::InOrder => format!("bench-{i}-{}", uuid::Uuid::new_v4()),
        Ids::Random => uuid::Uuid::new_v4().to_string(),
    });
    v["context"]["source"] = json!("/ci/bench");
    v["subject"]["id"] = json!(format!(
        "pkg:oci/{app}@sha256%3Aabc?repository_url=ghcr.io/acme/{app}&tag=1.{i}"
    ));
    v["subject"]["content"]["change"]["id"] = json!(app);
    v
}

/// A minimal Argo CD stand-in: every app exists; sync requests are timestamped by trigger id.
#[derive(Clone, Default)]
struct Stand {
    syncs: Arc<Mutex<HashMap<String, Instant>>>,
}

async fn stand_get(Path(name): Path<String>) -> axum::Json<Value> {
    axum::Json(
        json!({"metadata": {"name": name, "namespace": "argocd"}, "spec": {"project": "default",
        "source": {"repoURL": "https://example/x.git", "targetRevision": "main"}}, "status": {}}),
    )
}

async fn stand_sync(
    State(s): State<Stand>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let trigger = body["infos"]
        .as_array()
        .and_then(|i| i.iter().find(|x| x["name"] == "cdevents.triggerId"))
        .and_then(|x| x["value"].as_str())
        .unwrap_or("baseline")
        .to_string();
    s.syncs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(trigger, Instant::now());
    axum::Json(json!({}))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

fn config(dir: &std::path::Path, argocd: &str, policy: &str) -> String {
    let pdir = dir.join(format!("policies-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&pdir).unwrap_or_default();
    std::fs::write(pdir.join("p.yaml"), policy).unwrap_or_default();
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: \"warn,argocd_cdevents::server=info\", format: text}}\nreact:\n  policies: {}\n  clients:\n    - {{name: bench, bearer: {{tokenEnv: BENCH_TOKEN}}, sources: [\"*\"], types: [\"*\"]}}\n  argocd: {{server: \"{argocd}\", tokenEnv: BENCH_TOKEN, rate: 1000000/s}}\n",
        pdir.display()
    )
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc (0 if unreadable).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Send `bodies` with `concurrency` workers; returns events/s.
async fn blast(url: &str, bodies: Arc<Vec<String>>, concurrency: usize) -> f64 {
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, bodies, url) =
            (http.clone(), next.clone(), bodies.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {}
                    Ok(r) => panic!("status {}", r.status()),
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

async fn intake(dir: &std::path::Path) {
    settle_disk();
    let n = 20_000;
    let bodies: Arc<Vec<String>> =
        Arc::new((0..n).map(|i| artifact(i, "web").to_string()).collect());
    let mut bare_server = BareServer::start();
    let bare = bare_server.url.clone();
    let bare_pid = bare_server.child.id().to_string();
    let stand = serve(Router::new()).await;
    // A policy for another type: events are accepted and matched, nothing acts.
    let gw = Gateway::start(
        dir,
        "intake",
        &config(
            dir,
            &stand,
            "name: other\non: {types: [dev.cdevents.incident.detected]}\ntarget: {application: '\"x\"'}\naction: {refresh: {}}\n",
        ),
        &std::env::var("BENCH_STORE")
            .unwrap_or_else(|_| format!("sqlite://{}/intake.db", dir.display())),
        &[("BENCH_TOKEN", TOKEN)],
    );
    let url = format!("{}/events", gw.base_url().await);
    let pid = gw.child.id().to_string();
    let _ = blast(&url, Arc::new(bodies[..500].to_vec()), 8).await; // warm-up
    let _ = blast(
        &format!("{bare}/events"),
        Arc::new(bodies[..500].to_vec()),
        8,
    )
    .await;
    // Closed-loop clients: each waits for its 202 before sending again. With few clients the
    // fsync behind every 202 bounds throughput (clients / fsync time); with many, CPU does.
    // Gateway and bare endpoint take turns, three rounds each, and the medians are compared:
    // a neighbour on the shared cores then slows both sides of one round alike.
    for (clients, ids) in [(32, Ids::InOrder), (256, Ids::InOrder), (256, Ids::Random)] {
        let order = match ids {
            Ids::InOrder => "ids in order",
            Ids::Random => "random UUID ids",
        };
        println!(
            "intake throughput, {n} bare CDEvents a round ({order}), {clients} concurrent clients:"
        );
        let (mut gws, mut bares, mut gw_us, mut gen_us, mut bare_us) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let fresh: Arc<Vec<String>> = Arc::new(
                (0..n)
                    .map(|i| artifact_with_id(i + (round + 1) * n, "web", ids).to_string())
                    .collect(),
            );
            // Each round starts on a quiet machine: what the last one left behind (the
            // gateway's checkpoint, the kernel writing back its pages) is done first, so it
            // is not paid by the next round, and it counts in the gateway's CPU per event.
            quiet(&pid).await;
            let (gw_cpu, own_cpu) = (cpu_seconds(&pid), cpu_seconds("self"));
            gws.push(blast(&url, fresh, clients).await);
            let per_event = |s: f64| s * 1e6 / n as f64;
            gen_us.push(per_event(cpu_seconds("self") - own_cpu));
            quiet(&pid).await;
            gw_us.push(per_event(cpu_seconds(&pid) - gw_cpu));
            let bare_cpu = cpu_seconds(&bare_pid) + cpu_seconds("self");
            bares.push(blast(&format!("{bare}/events"), bodies.clone(), clients).await);
            bare_us.push(per_event(
                cpu_seconds(&bare_pid) + cpu_seconds("self") - bare_cpu,
            ));
        }
        let (g, b) = (median(&mut gws), median(&mut bares));
        let rounds = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  gateway (auth + schema + durable commit)  {g:8.0} events/s   (rounds: {})",
            rounds(&gws)
        );
        println!(
            "  bare axum 202 (baseline)                  {b:8.0} events/s   (rounds: {})",
            rounds(&bares)
        );
        println!(
            "  CPU per event: gateway {:.1} µs, load generator {:.1} µs; bare server and load generator together {:.1} µs",
            median(&mut gw_us),
            median(&mut gen_us),
            median(&mut bare_us)
        );
        println!(
            "  ratio of medians                          {:8.1} %",
            100.0 * g / b
        );
    }
    bare_server.stop();
}

/// The baseline: a bare axum endpoint answering 202, in a process of its own like the
/// gateway (this bench binary run again with [`BARE_SERVER_ARG`]), so that both pay the same
/// cross-process scheduling; served inside this process it would share the load generator's
/// threads.
struct BareServer {
    child: std::process::Child,
    url: String,
}

const BARE_SERVER_ARG: &str = "--bare-202-server";

impl BareServer {
    fn start() -> BareServer {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let mut child = std::process::Command::new(exe)
            .arg(BARE_SERVER_ARG)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the bare server: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        assert!(line.starts_with("http://"), "bare server said {line:?}");
        BareServer {
            child,
            url: line.trim().to_string(),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the bare 202 endpoint until killed, printing its URL first.
fn bare_server_main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let url =
            serve(Router::new().route("/events", post(|| async { StatusCode::ACCEPTED }))).await;
        println!("{url}");
        std::future::pending::<()>().await;
    });
}

/// Rounds of each intake measurement.
const ROUNDS: usize = 3;

/// The median of `v` (sorted in place), 0 if empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Write back every dirty page first: the megabytes an earlier phase left in the page cache
/// would otherwise be flushed during the next one, in front of its fsyncs.
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// Write dirty pages back, then wait (at most 3 s) until process `pid` has used no CPU for
/// 100 ms.
async fn quiet(pid: &str) {
    settle_disk();
    let mut last = cpu_seconds(pid);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = cpu_seconds(pid);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Rounds of the latency bench, each of [`LATENCY_EVENTS`] events then
/// [`LATENCY_BASELINE`] bare POSTs.
const LATENCY_ROUNDS: usize = 5;
const LATENCY_EVENTS: usize = 5_000;
const LATENCY_BASELINE: usize = 2_000;

/// One paced round: `events` sent at 1,000 a second, each answered by the gateway and then
/// (by the policy) synced at the stand-in. Returns (send -> sync request, send -> 202).
async fn latency_round(
    http: &reqwest::Client,
    url: &str,
    stand: &Stand,
    events: &[Value],
) -> (Vec<Duration>, Vec<Duration>) {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let started = Instant::now();
    let mut inflight = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_millis(i as u64)).into()).await;
        let id = ev["context"]["id"].as_str().unwrap_or_default().to_string();
        sent.insert(id, Instant::now());
        let (http, url, body) = (http.clone(), url.to_string(), ev.to_string());
        inflight.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let _ = http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Authorization", format!("Bearer {TOKEN}"))
                .body(body)
                .send()
                .await;
            t0.elapsed()
        }));
    }
    let mut acked = Vec::with_capacity(events.len());
    for t in inflight {
        if let Ok(d) = t.await {
            acked.push(d);
        }
    }
    let arrived = |sent: &HashMap<String, Instant>| {
        let syncs = stand.syncs.lock().unwrap_or_else(|p| p.into_inner());
        sent.keys().filter(|id| syncs.contains_key(*id)).count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived(&sent) < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let syncs = stand.syncs.lock().unwrap_or_else(|p| p.into_inner());
    let lat = sent
        .iter()
        .filter_map(|(id, t0)| syncs.get(id).map(|t1| t1.duration_since(*t0)))
        .collect();
    (lat, acked)
}

/// A bare POST from this process to the stand-in, `n` of them at 1,000 a second.
async fn bare_posts(http: &reqwest::Client, argocd: &str, n: usize) -> Vec<Duration> {
    let mut base = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until((started + Duration::from_millis(i as u64)).into()).await;
        let t0 = Instant::now();
        let _ = http
            .post(format!("{argocd}/api/v1/applications/x/sync"))
            .json(&json!({"name": "x"}))
            .send()
            .await;
        base.push(t0.elapsed());
    }
    base
}

async fn latency(dir: &std::path::Path) {
    settle_disk();
    let stand = Stand::default();
    let argocd = serve(
        Router::new()
            .route("/api/v1/applications/{name}", get(stand_get))
            .route("/api/v1/applications/{name}/sync", post(stand_sync))
            .with_state(stand.clone()),
    )
    .await;
    let policy = "name: deliver\non: {types: [dev.cdevents.artifact.packaged]}\ntarget: {application: event.subject.content.change.id}\naction: {sync: {}}\n";
    let gw = Gateway::start(
        dir,
        "latency",
        &config(dir, &argocd, policy),
        &format!("sqlite://{}/latency.db", dir.display()),
        &[("BENCH_TOKEN", TOKEN)],
    );
    let url = format!("{}/events", gw.base_url().await);
    let pid = gw.child.id().to_string();
    let http = reqwest::Client::new();
    // Rounds of 5,000 events, each with its own app (no coalescing, no per-app queueing),
    // each followed by the baseline: a stall of the shared host then shows in one round's
    // figure, and the pooled percentiles are those of all 25,000 events.
    let (mut lat, mut acked, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lat_p99, mut acked_p99, mut base_p99) = (Vec::new(), Vec::new(), Vec::new());
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        ms(percentile(&v, 0.99))
    };
    for round in 0..LATENCY_ROUNDS {
        let events: Vec<Value> = (0..LATENCY_EVENTS)
            .map(|i| artifact(i, &format!("app-{round}-{i}")))
            .collect();
        quiet(&pid).await;
        let (l, a) = latency_round(&http, &url, &stand, &events).await;
        quiet(&pid).await;
        let b = bare_posts(&http, &argocd, LATENCY_BASELINE).await;
        lat_p99.push(p99(l.clone()));
        acked_p99.push(p99(a.clone()));
        base_p99.push(p99(b.clone()));
        lat.extend(l);
        acked.extend(a);
        base.extend(b);
    }
    for v in [&mut lat, &mut acked, &mut base] {
        v.sort();
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "event -> Argo CD sync request latency at 1,000 events/s, {LATENCY_ROUNDS} rounds of {LATENCY_EVENTS} events ({} of {} arrived):",
        lat.len(),
        LATENCY_ROUNDS * LATENCY_EVENTS
    );
    println!(
        "  gateway   p50 {:7.2} ms   p99 {:7.2} ms   (p99 of each round: {})",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        rounds(&lat_p99)
    );
    println!(
        "  (of which the 202: p50 {:7.2} ms   p99 {:7.2} ms   (p99 of each round: {}))",
        ms(percentile(&acked, 0.5)),
        ms(percentile(&acked, 0.99)),
        rounds(&acked_p99)
    );
    println!(
        "  bare POST p50 {:7.2} ms   p99 {:7.2} ms   (baseline; p99 of each round: {})",
        ms(percentile(&base, 0.5)),
        ms(percentile(&base, 0.99)),
        rounds(&base_p99)
    );
    println!(
        "  ratio     p50 {:7.1}x      p99 {:7.1}x",
        ms(percentile(&lat, 0.5)) / ms(percentile(&base, 0.5)),
        ms(percentile(&lat, 0.99)) / ms(percentile(&base, 0.99))
    );
}

fn matching() {
    // 10,000 policies, 1,000 to a file (a file holds at most 1,024 documents), plus the one
    // that matches.
    let web = "name: web\non:\n  types: [dev.cdevents.artifact.packaged]\n  sources: [\"/ci/*\"]\n  when: event.subject.id.startsWith(\"pkg:oci/\")\ntarget: {application: event.subject.content.change.id}\naction: {sync: {}}\n";
    let mut policies = parse_file("web.yaml", web).unwrap_or_else(|e| panic!("{e}"));
    for file in 0..10 {
        let text: String = (file * 1000..(file + 1) * 1000)
            .map(|i| {
                format!(
                    "name: p{i}\non:\n  types: [dev.cdeventsx.tool{i}-thing.happened]\n  when: event.subject.id.startsWith(\"pkg:\")\ntarget: {{application: '\"app-{i}\"'}}\naction: {{refresh: {{}}}}\n---\n"
                )
            })
            .collect();
        policies.extend(
            parse_file(&format!("many-{file}.yaml"), &text).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let one = "name: web\non:\n  types: [dev.cdevents.artifact.packaged]\n  sources: [\"/ci/*\"]\n  when: event.subject.id.startsWith(\"pkg:oci/\")\ntarget: {application: event.subject.content.change.id}\naction: {sync: {}}\n";
    let big = PolicySet::new(policies);
    let small = PolicySet::new(parse_file("one.yaml", one).unwrap_or_else(|e| panic!("{e}")));
    let ev: Inbound = argocd_cdevents::react::simulate::read_event(&artifact(1, "web").to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let run = |set: &PolicySet| {
        let iterations = 20_000;
        let started = Instant::now();
        let mut matched = 0;
        for _ in 0..iterations {
            matched += std::hint::black_box(match_event(set, &ev, "argocd")).len();
        }
        assert_eq!(matched, iterations);
        started.elapsed() / iterations as u32
    };
    let _ = run(&small);
    let s = run(&small);
    let b = run(&big);
    println!("matching one event (type index, source glob, CEL `when`, CEL target):");
    println!("  10,001 policies {:8.2} µs/event", b.as_secs_f64() * 1e6);
    println!(
        "  1 policy        {:8.2} µs/event   (baseline)",
        s.as_secs_f64() * 1e6
    );
    println!(
        "  ratio           {:8.2}x",
        b.as_secs_f64() / s.as_secs_f64()
    );
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/self/status"));
    kib * 1024
}

/// The first commit of a SQLite store opened on `rows` inbox rows (it reads their keys):
/// how long it takes and how much resident memory it adds.
async fn first_commit(dir: &std::path::Path, name: &str, rows: u64) -> (Duration, u64) {
    use argocd_cdevents::store::{self, InboxClaim, NewInbound};
    let url: argocd_cdevents::config::StoreUrl = format!("sqlite://{}/{name}.db", dir.display())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    // Migrated by a first open; the rows go in with plain SQL, so no store holds their keys.
    drop(store::open(&url).await.unwrap_or_else(|e| panic!("{e}")));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/{name}.db", dir.display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Ids of 32 random hex digits, about a UUID's length, all done without payload (what
    // most rows are: events no policy asks for).
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO inbox (source, event_id, event_type, client, payload, received_at, \
         status, done_at) SELECT '/ci/pipeline', lower(hex(randomblob(16))), \
         'dev.cdevents.artifact.packaged.0.2.0', 'ci', '', 1, 'done', 1 FROM n",
    )
    .bind(rows as i64)
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pool.close().await;
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let event = NewInbound {
        source: "/ci/pipeline".into(),
        event_id: "first-after-restart".into(),
        event_type: "dev.cdevents.artifact.packaged.0.2.0".into(),
        client: "ci".into(),
        payload: None,
    };
    let claim = InboxClaim {
        owner: "bench".into(),
        until_ms: 2,
    };
    let before = rss_bytes();
    let start = Instant::now();
    store
        .commit_inbox(&[event], 2, &claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (start.elapsed(), rss_bytes().saturating_sub(before))
}

async fn inbox_keys(dir: &std::path::Path) {
    const ROWS: u64 = 1_000_000;
    let (empty, _) = first_commit(dir, "keys-empty", 0).await;
    let (full, grown) = first_commit(dir, "keys-full", ROWS).await;
    println!("first commit of a SQLite store reopened on {ROWS} inbox rows (reads their keys):");
    println!("  {ROWS} rows      {:10.1} ms", ms(full));
    println!("  empty store       {:10.1} ms   (baseline)", ms(empty));
    println!(
        "  resident memory   {:+10.1} MiB   ({:.1} bytes a row)",
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / ROWS as f64
    );
}

fn main() {
    if std::env::args().any(|a| a == BARE_SERVER_ARG) {
        bare_server_main();
        return;
    }
    // `cargo bench --bench react -- latency` runs only the benchmarks whose name contains it.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("matching") {
        matching();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        if wanted("intake") {
            intake(dir.path()).await;
        }
        if wanted("latency") {
            latency(dir.path()).await;
        }
        if wanted("keys") {
            inbox_keys(dir.path()).await;
        }
    });
}
