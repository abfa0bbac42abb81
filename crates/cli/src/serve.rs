//! `sextant serve` and `sextant audit verify`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sextant_server::{AppState, Config};
use sextant_store::{DEFAULT_DATABASE_URL, Store};

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where the database is (shared by `serve` and `audit`).
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite:PATH` or a file path (created and migrated on start).
    #[arg(long, env = "SEXTANT_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

/// Run the control plane.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SEXTANT_LISTEN", default_value = "127.0.0.1:7400")]
    listen: String,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Log format.
    #[arg(long, env = "SEXTANT_LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
    /// Admin token to accept (stored hashed on first start) instead of
    /// generating and printing one.
    #[arg(long, env = "SEXTANT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Public base URL, for absolute links such as OFREP event streams.
    #[arg(long, env = "SEXTANT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Evaluations in flight before answering 429.
    #[arg(long, env = "SEXTANT_MAX_INFLIGHT_EVALUATIONS", default_value_t = 10_000)]
    max_inflight_evaluations: usize,
}

/// Audit log commands.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Verify the audit hash chain end to end; exit 1 if it was tampered with.
    Verify(DatabaseArgs),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SEXTANT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `sextant serve`.
pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    runtime()?.block_on(async move {
        let url = &args.database.database_url;
        let store = Store::open(url)
            .await
            .with_context(|| format!("cannot open the database `{url}`"))?;
        if let Some(token) = store.bootstrap(args.admin_token.as_deref()).await? {
            println!("Created the first admin token. It is shown only this once; store it now:\n\n    {token}\n");
        }
        let config = Config {
            public_url: args.public_url,
            max_inflight_evaluations: args.max_inflight_evaluations,
            ..Config::default()
        };
        let store = Arc::new(store);
        let state = AppState::new(store.clone(), config).await?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("sextant listening on http://{addr}");
        tracing::info!(%addr, database = %url, "serving");
        sextant_server::run(listener, state, shutdown_signal()).await?;
        store.close().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant audit …`.
pub fn audit(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(db) => runtime()?.block_on(async move {
            let store = Store::open(&db.database_url)
                .await
                .with_context(|| format!("cannot open the database `{}`", db.database_url))?;
            let report = store.verify_audit().await?;
            store.close().await;
            if report.ok {
                println!("audit log OK: {} entries, chain intact", report.entries);
                Ok(ExitCode::SUCCESS)
            } else {
                println!("audit log BROKEN: {} entries checked", report.entries);
                for p in &report.problems {
                    println!("  entry {}: {}", p.seq, p.problem);
                }
                Ok(ExitCode::from(1))
            }
        }),
    }
}
