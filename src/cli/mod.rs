//! The command line: `serve`, `check`, `replay`, `policy test`, `outbox list|redrive`,
//! `incidents list`, `decisions list`, `version`. Glue only: parse flags, load config, call the library, map errors to exit
//! codes (2 for bad input or config, 1 for a failure while running).

use crate::config::{Config, StoreUrl, default_source};
use crate::emit::detect::DetectConfig;
use crate::emit::event::SpecVersion;
use crate::store::{self, DeliveryStatus, OutboxFilter};
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "argocd-cdevents",
    version,
    about = "A bidirectional CDEvents gateway for Argo CD",
    long_about = "Watches Argo CD Applications and emits CDEvents (as CloudEvents) to sinks, \
                  reliably, from a durable outbox; receives CloudEvents and acts on Argo CD \
                  (sync, rollback, refresh, image update, preview environments) through policy \
                  rules. See docs/ for the event mapping, policies and operations."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the configuration and its policies, then exit (0: valid, 2: invalid).
    Check(ConfigArgs),
    /// Try policies on an event, offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect the react flow's recorded decisions.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
    /// Replay Kubernetes watch events (JSON Lines) through the detector and print the
    /// CDEvents emitted, one JSON document per line. No store, no network.
    Replay(ReplayArgs),
    /// Inspect and re-drive the delivery outbox.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Inspect open incidents.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct ConfigArgs {
    /// The configuration file (YAML).
    #[arg(long, env = "ARGOCD_CDEVENTS_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Listen address, overrides `listen`.
    #[arg(long, env = "ARGOCD_CDEVENTS_LISTEN")]
    listen: Option<String>,
    /// Store URL (`sqlite://PATH` or `postgres://...`), overrides `store`.
    #[arg(long, env = "ARGOCD_CDEVENTS_STORE")]
    store: Option<String>,
}

#[derive(Args)]
struct StoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Store URL, overrides the config's `store`.
    #[arg(long, env = "ARGOCD_CDEVENTS_STORE")]
    store: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Delivered,
    Dead,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List outbox rows, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only rows in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only rows of this sink.
        #[arg(long)]
        sink: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered rows back in the queue (all, a sink's, or the given sequence numbers).
    Redrive {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        sink: Option<String>,
        /// Sequence numbers (the `seq` column of `outbox list`).
        seq: Vec<i64>,
    },
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List the incidents the gateway reported and has not resolved.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run one event through the policies against the given Applications and print one JSON
    /// object per decision per line (policy, application, action, outcome act|skip, reason,
    /// request). No network, no store; cooldown and rate limits are not applied.
    Test {
        /// The policy directory.
        #[arg(long)]
        policies: PathBuf,
        /// One CloudEvent (structured JSON) or a bare CDEvent.
        #[arg(long)]
        event: PathBuf,
        /// A JSON array of Applications as Argo CD returns them.
        #[arg(long)]
        apps: Option<PathBuf>,
        /// Namespace of targets given without one (Argo CD's namespace).
        #[arg(long, default_value = "argocd")]
        namespace: String,
    },
}

#[derive(Subcommand)]
enum DecisionsCommand {
    /// List recorded decisions, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ReplayArgs {
    /// CDEvents spec version of the printed events.
    #[arg(long, default_value = "0.5.1")]
    spec_version: SpecVersion,
    /// `context.source` of the printed events.
    #[arg(long, default_value_t = default_source())]
    source: String,
    /// Application label whose value is the environment id.
    #[arg(long, default_value = "cdevents.dev/environment")]
    environment_label: String,
    /// The watch events, one JSON object per line; `-` for stdin.
    file: PathBuf,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("argocd-cdevents {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(args) => match load(&args) {
            Ok(config) => check(&config),
            Err(e) => fail(2, &e),
        },
        Command::Policy(cmd) => policy(cmd),
        Command::Decisions(cmd) => with_runtime(decisions(cmd)),
        Command::Replay(args) => replay(args),
        Command::Serve(args) => with_runtime(serve(args)),
        Command::Outbox(cmd) => with_runtime(outbox(cmd)),
        Command::Incidents(cmd) => with_runtime(incidents(cmd)),
    }
}

/// `check`: the config has parsed; the files it names must load too (certificates, policies).
fn check(config: &Config) -> ExitCode {
    if let Some(Err(e)) = config.tls.as_ref().map(crate::tls::load) {
        return fail(2, &e);
    }
    match &config.react {
        None => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Some(rc) => match crate::react::policy::load_dir(&rc.policies) {
            Ok(set) => {
                println!(
                    "configuration is valid; {} policies in {} compile",
                    set.len(),
                    rc.policies.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, &e),
        },
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("argocd-cdevents: {e}");
    ExitCode::from(code)
}

fn with_runtime(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, &e),
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.downcast_ref::<crate::config::ConfigError>().is_some() {
                2
            } else {
                1
            };
            fail(code, &one_line(&e))
        }
    }
}

/// The error and its causes on one line, each cause once. Our error messages already carry
/// their cause's words (`cannot read: No such file…`), which `{:#}` would print again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn load(args: &ConfigArgs) -> Result<Config, crate::config::ConfigError> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Ok(k_sink) = std::env::var("K_SINK")
        && !k_sink.is_empty()
    {
        config.add_k_sink(&k_sink)?;
    }
    Ok(config)
}

fn store_url(args: &StoreArgs) -> anyhow::Result<StoreUrl> {
    let mut config = Config::load(args.config.config.as_deref())?;
    if let Some(s) = &args.store {
        config.set_store("--store / ARGOCD_CDEVENTS_STORE", s)?;
    }
    Ok(config.store)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load(&args.config)?;
    if let Some(l) = &args.listen {
        config.set_listen("--listen / ARGOCD_CDEVENTS_LISTEN", l)?;
    }
    if let Some(s) = &args.store {
        config.set_store("--store / ARGOCD_CDEVENTS_STORE", s)?;
    }
    crate::telemetry::init_logging(&config.log);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        signal.cancel();
    });
    crate::run(listener, config, crate::server::process_env(), shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn outbox(cmd: OutboxCommand) -> anyhow::Result<()> {
    match cmd {
        OutboxCommand::List {
            store,
            status,
            sink,
            limit,
            json,
        } => {
            let st = store::open_existing(&store_url(&store)?).await?;
            let rows = st
                .list_outbox(&OutboxFilter {
                    status: status.map(|s| match s {
                        StatusArg::Pending => DeliveryStatus::Pending,
                        StatusArg::Delivered => DeliveryStatus::Delivered,
                        StatusArg::Dead => DeliveryStatus::Dead,
                    }),
                    sink,
                    limit,
                })
                .await?;
            let mut out = std::io::stdout().lock();
            if json {
                for r in rows {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:>8}  {:<10}  {:<12}  {:>8}  {:<36}  {:<40}  LAST ERROR",
                    "SEQ", "STATUS", "SINK", "ATTEMPTS", "EVENT ID", "TYPE"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:>8}  {:<10}  {:<12}  {:>8}  {:<36}  {:<40}  {}",
                        r.seq,
                        r.status.as_str(),
                        r.sink,
                        r.attempts,
                        r.event_id,
                        r.event_type,
                        r.last_error.unwrap_or_default()
                    )?;
                }
            }
            Ok(())
        }
        OutboxCommand::Redrive { store, sink, seq } => {
            let st = store::open_existing(&store_url(&store)?).await?;
            let n = st
                .redrive(sink.as_deref(), &seq, crate::delivery::now_ms())
                .await?;
            println!("re-queued {n} dead-lettered event(s)");
            Ok(())
        }
    }
}

async fn incidents(cmd: IncidentsCommand) -> anyhow::Result<()> {
    let IncidentsCommand::List { store, json } = cmd;
    let st = store::open_existing(&store_url(&store)?).await?;
    let mut out = std::io::stdout().lock();
    for i in st.open_incidents().await? {
        if json {
            writeln!(out, "{}", serde_json::to_string(&i)?)?;
        } else {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                i.app_key, i.cause, i.incident_id, i.description
            )?;
        }
    }
    Ok(())
}

fn replay(args: ReplayArgs) -> ExitCode {
    let cfg = DetectConfig {
        environment_label: Some(args.environment_label).filter(|l| !l.is_empty()),
        custom_data_labels: Vec::new(),
    };
    let observed_at = crate::emit::pipeline::now_rfc3339();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let print = |ev: crate::emit::event::CdEvent| writeln!(out, "{}", ev.body);
    let result = if args.file.as_os_str() == "-" {
        crate::emit::replay::replay(
            std::io::stdin().lock(),
            args.spec_version,
            &args.source,
            &cfg,
            &observed_at,
            print,
        )
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => crate::emit::replay::replay(
                std::io::BufReader::new(f),
                args.spec_version,
                &args.source,
                &cfg,
                &observed_at,
                print,
            ),
            Err(e) => return fail(2, &format!("{}: {e}", args.file.display())),
        }
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ crate::emit::replay::ReplayError::Line { .. }) => {
            fail(2, &format!("{}: {e}", args.file.display()))
        }
        Err(e) => fail(1, &e),
    }
}

fn policy(cmd: PolicyCommand) -> ExitCode {
    let PolicyCommand::Test {
        policies,
        event,
        apps,
        namespace,
    } = cmd;
    let set = match crate::react::policy::load_dir(&policies) {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let text = match std::fs::read_to_string(&event) {
        Ok(t) => t,
        Err(e) => return fail(2, &format!("{}: {e}", event.display())),
    };
    let ev = match crate::react::simulate::read_event(&text) {
        Ok(ev) => ev,
        Err(e) => return fail(2, &format!("{}:{e}", event.display())),
    };
    let apps: Vec<serde_json::Value> = match &apps {
        None => Vec::new(),
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|t| {
                    serde_json::from_str(&t).map_err(|e| {
                        format!(
                            "{}:{}:{}: not a JSON array of Applications: {e}",
                            path.display(),
                            e.line(),
                            e.column()
                        )
                    })
                });
            match parsed {
                Ok(a) => a,
                Err(e) => return fail(2, &e),
            }
        }
    };
    match crate::react::simulate::simulate(&set, &ev, &apps, &namespace, chrono::Utc::now()) {
        Ok(decisions) => {
            let mut out = std::io::stdout().lock();
            for d in decisions {
                if writeln!(out, "{}", serde_json::to_string(&d).unwrap_or_default()).is_err() {
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, &format!("{}: {e}", event.display())),
    }
}

async fn decisions(cmd: DecisionsCommand) -> anyhow::Result<()> {
    let DecisionsCommand::List { store, limit, json } = cmd;
    let st = store::open_existing(&store_url(&store)?).await?;
    let rows = st.list_decisions(limit).await?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in rows {
            let mut v = serde_json::to_value(&r)?;
            v["requests"] = serde_json::from_str(&r.requests).unwrap_or_default();
            v["decidedAt"] = serde_json::json!(
                chrono::DateTime::from_timestamp_millis(r.decided_at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            );
            writeln!(out, "{v}")?;
        }
    } else {
        writeln!(
            out,
            "{:>6}  {:<24}  {:<9}  {:<28}  {:<36}  {:<17}  REASON",
            "SEQ", "TIME", "OUTCOME", "POLICY", "APPLICATION", "ACTION"
        )?;
        for r in rows {
            let time = chrono::DateTime::from_timestamp_millis(r.decided_at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            writeln!(
                out,
                "{:>6}  {:<24}  {:<9}  {:<28}  {:<36}  {:<17}  {}",
                r.seq,
                time,
                r.outcome.as_str(),
                r.policy,
                r.application,
                r.action,
                r.reason
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_is_printed_once_and_only_when_the_message_does_not_carry_it() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // A context that says nothing of its cause: the cause follows it.
        let bare = anyhow::Error::new(io()).context("starting the gateway");
        assert_eq!(one_line(&bare), "starting the gateway: no such file");
        // A message that already carries its cause's words: not repeated.
        let carried = anyhow::Error::new(io()).context("cannot read x: no such file");
        assert_eq!(one_line(&carried), "cannot read x: no such file");
        // Three levels, the middle one carrying the innermost.
        let deep = anyhow::Error::new(io())
            .context("token: no such file")
            .context("sink audit");
        assert_eq!(one_line(&deep), "sink audit: token: no such file");
    }
}
