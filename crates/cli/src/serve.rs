//! `sextant serve` and `sextant audit verify`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sextant_server::ratelimit::RateLimit;
use sextant_server::{AppState, Config};
use sextant_store::{ChangeMeta, DEFAULT_DATABASE_URL, NewGrant, Role, Store};

use crate::client::{Client, Remote};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where the database is (shared by `serve` and `audit`).
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: `postgres://USER:PASSWORD@HOST/DB` (several replicas may
    /// share it), `sqlite:PATH` or a file path (created and migrated on start).
    #[arg(long, env = "SEXTANT_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

/// Run the control plane. Each setting comes from, in order: the flag, the
/// `SEXTANT_*` environment variable, the TOML file (`--config`, else
/// `./sextant.toml` when it exists), the default.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with `_`).
    #[arg(long, env = "SEXTANT_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7400].
    #[arg(long, env = "SEXTANT_LISTEN")]
    listen: Option<String>,
    /// Database URL: `sqlite:PATH` or a file path, created and migrated on start [default: sqlite:sextant.db].
    #[arg(long, env = "SEXTANT_DATABASE_URL")]
    database_url: Option<String>,
    /// Log format [default: pretty].
    #[arg(long, env = "SEXTANT_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Admin token to accept (stored hashed on first start) instead of
    /// generating and printing one.
    #[arg(long, env = "SEXTANT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Public base URL, for absolute links such as OFREP event streams.
    #[arg(long, env = "SEXTANT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Evaluations in flight before answering 429 [default: 10000].
    #[arg(long, env = "SEXTANT_MAX_INFLIGHT_EVALUATIONS")]
    max_inflight_evaluations: Option<usize>,
    /// Requests per second each token may send before 429; 0 = unlimited [default: 5000].
    #[arg(long, env = "SEXTANT_TOKEN_RATE_LIMIT")]
    token_rate_limit: Option<u32>,
    /// Requests a token may send at once after idling [default: the rate].
    #[arg(long, env = "SEXTANT_TOKEN_RATE_BURST")]
    token_rate_burst: Option<u32>,
    /// Milliseconds between rollout scheduler evaluations (due scheduled
    /// changes, stage advances, guardrail looks) [default: 30000].
    #[arg(long, env = "SEXTANT_EVALUATION_INTERVAL_MS")]
    evaluation_interval_ms: Option<u64>,
    /// Load the demo workspace (flags with hypotheses, segments, a rollout in progress).
    #[arg(long, env = "SEXTANT_DEMO")]
    demo: bool,
}

/// The `sextant.toml` file: every key optional, unknown keys are errors.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    log_format: Option<String>,
    admin_token: Option<String>,
    public_url: Option<String>,
    max_inflight_evaluations: Option<usize>,
    token_rate_limit: Option<u32>,
    token_rate_burst: Option<u32>,
    evaluation_interval_ms: Option<u64>,
    demo: Option<bool>,
}

/// The settings `serve` runs with, every source merged.
#[derive(Debug, PartialEq)]
pub struct Settings {
    /// Listen address.
    pub listen: String,
    /// Database URL.
    pub database_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Bootstrap admin token.
    pub admin_token: Option<String>,
    /// Public URL.
    pub public_url: Option<String>,
    /// Evaluation concurrency bound.
    pub max_inflight_evaluations: usize,
    /// Per-token rate limit; `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Time between rollout scheduler evaluations.
    pub evaluation_interval: std::time::Duration,
    /// Load the demo.
    pub demo: bool,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

/// The default config file, read when present.
const DEFAULT_CONFIG: &str = "sextant.toml";

impl ServeArgs {
    /// Merges flags and environment (already in `self`, flags first, by
    /// clap) over the TOML file over the defaults.
    pub fn settings(self) -> Result<Settings> {
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()),
        };
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the config file {}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a valid Sextant config: {}\n  hint: keys are listen, database_url, log_format, admin_token, public_url, max_inflight_evaluations, token_rate_limit, token_rate_burst, evaluation_interval_ms, demo",
                        p.display(),
                        e.to_string().trim_end()
                    )
                })?
            }
            None => FileConfig::default(),
        };
        let log_format = match (self.log_format, file.log_format.as_deref()) {
            (Some(f), _) => f,
            (None, Some(text)) => <LogFormat as clap::ValueEnum>::from_str(text, true).map_err(|_| {
                anyhow::anyhow!(
                    "{}: log_format must be \"pretty\" or \"json\", not {text:?}",
                    path_name(&path)
                )
            })?,
            (None, None) => LogFormat::Pretty,
        };
        Ok(Settings {
            listen: self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7400".into()),
            database_url: self
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            log_format,
            admin_token: self.admin_token.or(file.admin_token),
            public_url: self.public_url.or(file.public_url),
            max_inflight_evaluations: self
                .max_inflight_evaluations
                .or(file.max_inflight_evaluations)
                .unwrap_or(10_000),
            rate_limit: {
                let rate = self.token_rate_limit.or(file.token_rate_limit).unwrap_or(5_000);
                let burst = self.token_rate_burst.or(file.token_rate_burst).unwrap_or(rate);
                (rate > 0).then_some(RateLimit {
                    per_second: rate,
                    burst,
                })
            },
            evaluation_interval: {
                let ms = self
                    .evaluation_interval_ms
                    .or(file.evaluation_interval_ms)
                    .unwrap_or(30_000);
                anyhow::ensure!(
                    ms > 0,
                    "evaluation_interval_ms must be at least 1 (the scheduler cannot evaluate continuously)"
                );
                std::time::Duration::from_millis(ms)
            },
            demo: self.demo || file.demo.unwrap_or(false),
            file: path,
        })
    }
}

fn path_name(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or_else(String::new, |p| p.display().to_string())
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
    let settings = args.settings()?;
    init_logging(settings.log_format);
    runtime()?.block_on(async move {
        if let Some(f) = &settings.file {
            tracing::info!(file = %f.display(), "read settings");
        }
        let url = &settings.database_url;
        let store = Store::open(url)
            .await
            .with_context(|| format!("cannot open the database `{url}`"))?;
        if let Some(token) = store.bootstrap(settings.admin_token.as_deref()).await? {
            outln!(
                "Created the first admin token. It is shown only this once; store it now:\n\n    {token}\n\nThe CLI reads it from SEXTANT_TOKEN:  export SEXTANT_TOKEN={token}\n"
            );
        }
        // The demo is loaded through the admin API, with a token that lives
        // only while it loads.
        let demo_token = if settings.demo {
            let meta = ChangeMeta::new("system", Some("sextant serve --demo".into()));
            let grant = NewGrant::Admin {
                role: Role::Admin,
                environments: None,
            };
            let name = format!("demo-loader-{}", std::process::id());
            let (record, secret) = store.create_token(&name, &grant, &meta).await?.value;
            Some((record.id, secret))
        } else {
            None
        };
        let config = Config {
            public_url: settings.public_url.clone(),
            max_inflight_evaluations: settings.max_inflight_evaluations,
            rate_limit: settings.rate_limit,
            evaluation_interval: settings.evaluation_interval,
            ..Config::default()
        };
        let store = Arc::new(store);
        let state = AppState::new(store.clone(), config).await?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sextant_server::run(listener, state, async move {
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = stopped => {},
            }
        }));
        if let Some((id, secret)) = demo_token {
            let remote = Remote {
                url: format!("http://{addr}"),
                token: Some(secret),
                workspace: "default".into(),
                json: false,
            };
            let loaded = async {
                let client = Client::new(&remote)?;
                let outcome = crate::demo::load(&client).await?;
                client
                    .send(reqwest::Method::DELETE, &["api", "v1", "tokens", &id.to_string()], &[], None, None)
                    .await?;
                anyhow::Ok(outcome)
            }
            .await;
            match loaded {
                Ok(o) if o.applied == 0 => outln!("Demo workspace already loaded (workspace `default`)."),
                Ok(o) => outln!("Loaded the demo workspace: {} changes in workspace `default`.", o.applied),
                Err(e) => {
                    let _ = stop.send(());
                    let _ = server.await;
                    return Err(e.context("cannot load the demo workspace"));
                }
            }
        }
        outln!("sextant listening on http://{addr}");
        tracing::info!(%addr, database = %url, "serving");
        server.await.context("the server task failed")??;
        drop(stop);
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
                outln!("audit log OK: {} entries, chain intact", report.entries);
                Ok(ExitCode::SUCCESS)
            } else {
                outln!("audit log BROKEN: {} entries checked", report.entries);
                for p in &report.problems {
                    outln!("  entry {}: {}", p.seq, p.problem);
                }
                Ok(ExitCode::from(1))
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sextant.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_file_fills_what_flags_and_environment_leave_open() {
        let (_dir, path) = config(
            "listen = \"0.0.0.0:80\"\nlog_format = \"JSON\"\ndemo = true\nmax_inflight_evaluations = 5\ntoken_rate_limit = 7\n",
        );
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:1".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            args.settings().unwrap(),
            Settings {
                listen: "127.0.0.1:1".into(),
                database_url: DEFAULT_DATABASE_URL.into(),
                log_format: LogFormat::Json,
                admin_token: None,
                public_url: None,
                max_inflight_evaluations: 5,
                rate_limit: Some(RateLimit {
                    per_second: 7,
                    burst: 7,
                }),
                evaluation_interval: std::time::Duration::from_secs(30),
                demo: true,
                file: Some(path),
            }
        );
    }

    #[test]
    fn a_wrong_value_in_the_file_is_named() {
        let (_dir, path) = config("log_format = \"xml\"\n");
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .settings()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("log_format must be \"pretty\" or \"json\", not \"xml\""),
            "{err}"
        );
        let (_dir, path) = config("max_inflight_evaluations = \"many\"\n");
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .settings()
        .unwrap_err();
        assert!(err.to_string().contains("max_inflight_evaluations"), "{err}");
    }

    #[test]
    fn a_missing_config_file_given_explicitly_is_an_error() {
        let err = ServeArgs {
            config: Some(PathBuf::from("/nonexistent/sextant.toml")),
            ..ServeArgs::default()
        }
        .settings()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the config file /nonexistent/sextant.toml"),
            "{err}"
        );
    }
}
