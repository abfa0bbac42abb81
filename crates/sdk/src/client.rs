//! The [`Client`]: in-process evaluation on an atomically swapped snapshot,
//! plus its builder.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use sextant_core::{Context, ErrorCode, FlagKind, Reason, Resolution};
use sextant_formats::SourceFormat;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::events::{self, EventConfig, EventStats, FlushError, Recorder};
use crate::offline;
use crate::state::{Loaded, Source, changed_keys};
use crate::sync::{self, Fetched, SyncConfig};
use crate::wire::{Event, timestamp_now};

/// How current the served flags are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Nothing loaded yet: every evaluation serves the caller's default
    /// with reason `ERROR` / `GENERAL`.
    NotReady,
    /// In sync with the server (streaming, or the last poll succeeded).
    Ready,
    /// Serving flags that may be out of date: the server is unreachable
    /// and the data is the last known, the disk cache or the bootstrap file.
    Stale,
    /// The server refused the SDK token. What is loaded keeps being served.
    Error,
}

/// Something that happened to the client, for [`Client::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The status changed.
    Status(Status),
    /// These flags (sorted keys) may now evaluate differently.
    FlagsChanged(Arc<[String]>),
}

/// Identifies a change listener, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

type Listener = Arc<dyn Fn(&[String]) + Send + Sync>;

/// State shared by the client handles and the sync task.
pub(crate) struct Shared {
    /// The served state. `ArcSwapOption`: readers take a lock-free,
    /// wait-free-in-practice load on every evaluation; the sync task stores
    /// a whole new `Arc` per update, so no reader ever sees half a change.
    state: ArcSwapOption<Loaded>,
    status: watch::Sender<Status>,
    /// Change listeners. A std `RwLock`, only taken to register, remove or
    /// copy the list; listeners run after it is released.
    listeners: RwLock<Vec<(u64, Listener)>>,
    next_listener: AtomicU64,
    /// Fan-out to subscribers (the OpenFeature provider). Bounded: a
    /// subscriber that falls 64 events behind skips to the newest.
    events: broadcast::Sender<ClientEvent>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            state: ArcSwapOption::empty(),
            status: watch::channel(Status::NotReady).0,
            listeners: RwLock::new(Vec::new()),
            next_listener: AtomicU64::new(0),
            events: broadcast::channel(64).0,
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Loaded>> {
        self.state.load_full()
    }

    /// Swaps in `new`, then tells listeners which flags changed.
    pub(crate) fn install(&self, new: Loaded) {
        let old = self.state.load_full();
        let keys = changed_keys(old.as_deref(), &new);
        self.state.store(Some(Arc::new(new)));
        if keys.is_empty() {
            return;
        }
        tracing::debug!(flags = keys.len(), "flags changed");
        let listeners: Vec<Listener> = self
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            // A panicking listener must not take the sync task down with it.
            if catch_unwind(AssertUnwindSafe(|| listener(&keys))).is_err() {
                tracing::error!("a change listener panicked");
            }
        }
        let _ = self.events.send(ClientEvent::FlagsChanged(keys.into()));
    }

    pub(crate) fn set_status(&self, status: Status) {
        let changed = self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        if changed {
            tracing::debug!(?status, "status");
            let _ = self.events.send(ClientEvent::Status(status));
        }
    }

    /// The connection is lost: what is loaded is now possibly stale.
    pub(crate) fn mark_disconnected(&self) {
        if *self.status.borrow() == Status::Error {
            return;
        }
        self.set_status(if self.state.load().is_some() {
            Status::Stale
        } else {
            Status::NotReady
        });
    }
}

/// An evaluation result with its explanation, owned (it outlives the
/// snapshot it came from). See [`Client::with_resolution`] for a
/// borrowing, allocation-free variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    /// The value served: the flag's, or the caller's default.
    pub value: T,
    /// Key of the served variation, if a variation was served.
    pub variation: Option<String>,
    /// Why.
    pub reason: Reason,
    /// Index of the rule that decided, if one did.
    pub rule: Option<usize>,
    /// Set when `reason` is `Error`.
    pub error: Option<ErrorCode>,
    /// Whether the unit is in an experiment (an exposure was recorded).
    pub in_experiment: bool,
}

impl<T> Details<T> {
    fn from_resolution(r: &Resolution<'_>, value: T) -> Self {
        Details {
            value,
            variation: r.variation.map(str::to_owned),
            reason: r.reason,
            rule: r.rule,
            error: r.error,
            in_experiment: r.in_experiment,
        }
    }

    fn error(value: T, code: ErrorCode) -> Self {
        Details {
            value,
            variation: None,
            reason: Reason::Error,
            rule: None,
            error: Some(code),
            in_experiment: false,
        }
    }
}

/// Why a client could not be built. Only configuration errors: an
/// unreachable server is not one (the client starts offline).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The server URL is not an absolute http(s) URL.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SDK token is empty or not valid in an HTTP header.
    #[error("the SDK token is empty or contains characters not allowed in an HTTP header")]
    InvalidToken,
    /// `build` was not called inside a Tokio runtime.
    #[error("the Sextant client needs a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be set up (TLS roots, …).
    #[error("cannot set up the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Configures and builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    token: String,
    environment: Option<String>,
    timeout: Duration,
    cache_path: Option<PathBuf>,
    bootstrap: Option<(PathBuf, Option<SourceFormat>)>,
    streaming: bool,
    poll_interval: Duration,
    reconnect: (Duration, Duration),
    request_timeout: Duration,
    stream_read_timeout: Duration,
    events: EventConfig,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    fn new(url: String, token: String) -> Self {
        ClientBuilder {
            url,
            token,
            environment: None,
            timeout: Duration::from_secs(5),
            cache_path: None,
            bootstrap: None,
            streaming: true,
            poll_interval: Duration::from_secs(30),
            reconnect: (Duration::from_millis(500), Duration::from_secs(30)),
            request_timeout: Duration::from_secs(10),
            stream_read_timeout: Duration::from_secs(60),
            events: EventConfig {
                enabled: true,
                batch_size: 500,
                flush_interval: Duration::from_secs(10),
                capacity: 10_000,
                exposure_window: Duration::from_secs(3600),
                max_dedup_entries: 100_000,
                retry_initial: Duration::from_secs(1),
                retry_max: Duration::from_secs(60),
                request_timeout: Duration::from_secs(10),
                shutdown_timeout: Duration::from_secs(5),
            },
            http: None,
        }
    }

    /// The environment the token is for. Used to read bootstrap files
    /// (Unleash and flagd files become flags of this environment) and to
    /// check the cache file; a server answering for another environment is
    /// logged. Default: the server's; `production` for bootstrap files.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The longest `build` waits for the server before starting from the
    /// cache, the bootstrap file or defaults (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where to cache the last snapshot (rewritten atomically on every
    /// update) and to start from when the server is unreachable.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_path = Some(path.into());
        self
    }

    /// A file in Sextant, Unleash or flagd format (detected from the
    /// content) to start from when the server is unreachable and there is
    /// no usable cache.
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some((path.into(), None));
        self
    }

    /// [`ClientBuilder::bootstrap_file`] with an explicit format.
    pub fn bootstrap_file_as(mut self, path: impl Into<PathBuf>, format: SourceFormat) -> Self {
        self.bootstrap = Some((path.into(), Some(format)));
        self
    }

    /// Follow the SSE stream (default). `false`: poll the snapshot.
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.streaming = streaming;
        self
    }

    /// Polling interval, when polling (default 30 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Reconnect delays: the first, and the cap of the doubling (defaults
    /// 0.5 s and 30 s); each delay is jittered between half and all of it.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect = (initial, max);
        self
    }

    /// Timeout of snapshot requests and of opening the stream (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A stream silent this long (no event, no heartbeat) is considered
    /// dead and reopened (default 60 s; the server beats every 15 s).
    pub fn stream_read_timeout(mut self, timeout: Duration) -> Self {
        self.stream_read_timeout = timeout;
        self
    }

    /// Send track and exposure events (default `true`).
    pub fn events(mut self, enabled: bool) -> Self {
        self.events.enabled = enabled;
        self
    }

    /// Events per batch; a full batch is sent at once (default 500).
    pub fn event_batch_size(mut self, size: usize) -> Self {
        self.events.batch_size = size.max(1);
        self
    }

    /// Buffered events are sent at least this often (default 10 s).
    pub fn event_flush_interval(mut self, interval: Duration) -> Self {
        self.events.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Most events buffered while the server is unreachable; beyond it new
    /// events are dropped and counted (default 10,000).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.events.capacity = capacity.max(1);
        self
    }

    /// An exposure of the same unit to the same variation of the same flag
    /// is sent once per window (default 1 h).
    pub fn exposure_dedup_window(mut self, window: Duration) -> Self {
        self.events.exposure_window = window;
        self
    }

    /// Retry delays of event batches: the first and the cap (defaults 1 s
    /// and 60 s). A `Retry-After` from the server takes precedence.
    pub fn event_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.events.retry_initial = initial;
        self.events.retry_max = max;
        self
    }

    /// How long the last flush on shutdown may take (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.events.shutdown_timeout = timeout;
        self
    }

    /// Use this HTTP client (proxies, extra root certificates, …).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Fetches the snapshot (waiting at most the timeout), falls back to
    /// the cache, the bootstrap file or defaults, and starts following
    /// changes in the background. Fails only on bad configuration.
    pub async fn build(self) -> Result<Client, BuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoRuntime);
        }
        let base = parse_base(&self.url)?;
        if self.token.trim().is_empty()
            || reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token)).is_err()
        {
            return Err(BuildError::InvalidToken);
        }
        let join = |path: &str| {
            base.join(path).map_err(|e| BuildError::InvalidUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })
        };
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(self.request_timeout)
                .user_agent(concat!("sextant-rust-sdk/", env!("CARGO_PKG_VERSION")))
                .build()?,
        };
        let token: Arc<str> = self.token.into();
        let cfg = SyncConfig {
            snapshot_url: join("sdk/v1/snapshot")?,
            stream_url: join("sdk/v1/stream")?,
            token: token.clone(),
            environment: self.environment.clone(),
            cache_path: self.cache_path.clone(),
            streaming: self.streaming,
            poll_interval: self.poll_interval,
            reconnect_initial: self.reconnect.0,
            reconnect_max: self.reconnect.1,
            request_timeout: self.request_timeout,
            stream_read_timeout: self.stream_read_timeout,
        };
        let events_url = join("events/v1/batch")?;

        let shared = Arc::new(Shared::new());
        let etag = initial_sync(
            &shared,
            &http,
            &cfg,
            self.timeout,
            self.cache_path.clone(),
            self.bootstrap.clone(),
        )
        .await;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let sync_task = tokio::spawn(sync::run(shared.clone(), http.clone(), cfg, etag, shutdown_rx));
        let shutdown_timeout = self.events.shutdown_timeout;
        // The event task is detached: it ends by itself, after a last
        // flush, when the last handle drops the recorder.
        let recorder = if self.events.enabled {
            events::start(self.events, http, events_url, token).0
        } else {
            Recorder::disabled()
        };
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                recorder,
                shutdown,
                sync_task: Mutex::new(Some(sync_task)),
                shutdown_timeout,
            }),
        })
    }
}

fn parse_base(url: &str) -> Result<reqwest::Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let mut base = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if base.cannot_be_a_base() {
        return Err(invalid("not a base URL".into()));
    }
    // `join` replaces the last path segment unless the path ends in `/`.
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_query(None);
    base.set_fragment(None);
    Ok(base)
}

/// The initial sync: the server, raced against reading the offline
/// sources so that a slow server still leaves time to load them; all
/// within `timeout`. Returns the snapshot's `ETag`.
async fn initial_sync(
    shared: &Shared,
    http: &reqwest::Client,
    cfg: &SyncConfig,
    timeout: Duration,
    cache_path: Option<PathBuf>,
    bootstrap: Option<(PathBuf, Option<SourceFormat>)>,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let environment = cfg.environment.clone();
    let offline = async move {
        if let Some(path) = &cache_path {
            match offline::read_cache(path, environment.as_deref()).await {
                Ok(loaded) => return Some(loaded),
                Err(error) => tracing::info!(%error, "no usable snapshot cache"),
            }
        }
        if let Some((path, format)) = &bootstrap {
            let env = environment.as_deref().unwrap_or("production");
            match offline::read_bootstrap(path, *format, env).await {
                Ok(loaded) => return Some(loaded),
                Err(error) => tracing::error!(%error, "the bootstrap file cannot be used"),
            }
        }
        None
    };
    let offline = tokio::spawn(tokio::time::timeout_at(deadline, offline));
    let fetched = tokio::time::timeout_at(deadline, sync::fetch_snapshot(http, cfg, None)).await;
    let (fallback_status, why) = match fetched {
        Ok(Fetched::Snapshot(loaded, etag)) => {
            offline.abort();
            let body = cfg.cache_path.as_ref().map(|_| loaded.to_body());
            shared.install(*loaded);
            shared.set_status(Status::Ready);
            if let (Some(path), Some(body)) = (&cfg.cache_path, body) {
                // Bounded: the cache must not hold up a client that is ready.
                match tokio::time::timeout_at(deadline, offline::write_cache(path, &body)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "could not write the snapshot cache"),
                    Err(_) => tracing::warn!("writing the snapshot cache timed out"),
                }
            }
            return etag;
        }
        Ok(Fetched::Unauthorized(status)) => (Status::Error, format!("the server refused the SDK token ({status})")),
        Ok(Fetched::Unchanged) => (Status::Stale, "unexpected 304 Not Modified".to_owned()),
        Ok(Fetched::Failed(why)) => (Status::Stale, why),
        Err(_) => (Status::Stale, format!("no snapshot within {timeout:?}")),
    };
    match offline.await {
        Ok(Ok(Some(loaded))) => {
            tracing::warn!(%why, source = ?loaded.source, version = loaded.version(), "starting offline");
            shared.install(loaded);
            shared.set_status(fallback_status);
        }
        _ => {
            tracing::error!(%why, "starting with nothing loaded: every flag serves its default");
            shared.set_status(if fallback_status == Status::Error {
                Status::Error
            } else {
                Status::NotReady
            });
        }
    }
    None
}

struct Inner {
    shared: Arc<Shared>,
    recorder: Recorder,
    /// `true` (or dropped, with the last handle) stops the sync task.
    shutdown: watch::Sender<bool>,
    sync_task: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sync task stops; the event task sees its channel close and
        // makes a last, time-bounded flush (if the runtime is still running).
        self.shutdown.send_replace(true);
    }
}

/// A Sextant client. Cheap to clone; all clones share one snapshot, one
/// connection and one event buffer. Evaluation methods never block and
/// never do IO: they read an `Arc` of the current snapshot and evaluate in
/// process with `sextant-core`, exactly as the server does.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.status())
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts configuring a client for the server at `url` (e.g.
    /// `https://flags.example.com`) with a server-side SDK token.
    pub fn builder(url: impl Into<String>, sdk_token: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into(), sdk_token.into())
    }

    /// Evaluates `key` and hands the borrowed [`Resolution`] to `f`: no
    /// allocation, no copy. `kind` checks the flag's type (`TYPE_MISMATCH`
    /// otherwise). `f` gets `None` when nothing is loaded. Exposures are
    /// recorded as for the typed methods.
    pub fn with_resolution<R>(
        &self,
        key: &str,
        kind: Option<FlagKind>,
        ctx: &Context,
        f: impl FnOnce(Option<Resolution<'_>>) -> R,
    ) -> R {
        let guard = self.inner.shared.state.load();
        let Some(loaded) = guard.as_deref() else {
            return f(None);
        };
        let resolution = match kind {
            Some(kind) => loaded.snapshot.evaluate_as(key, kind, ctx),
            None => loaded.snapshot.evaluate(key, ctx),
        };
        if resolution.in_experiment
            && let (Some(variation), Some(unit)) = (resolution.variation, ctx.targeting_key.as_deref())
        {
            self.inner.recorder.exposure(key, variation, unit);
        }
        f(Some(resolution))
    }

    fn details<T>(
        &self,
        key: &str,
        kind: FlagKind,
        ctx: &Context,
        default: T,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> Details<T> {
        self.with_resolution(key, Some(kind), ctx, |r| match r {
            None => Details::error(default, ErrorCode::General),
            Some(r) => match r.value {
                None => Details::from_resolution(&r, default),
                Some(v) => match convert(v) {
                    Some(value) => Details::from_resolution(&r, value),
                    None => Details::error(default, ErrorCode::TypeMismatch),
                },
            },
        })
    }

    /// A boolean flag's value, or `default`.
    pub fn bool(&self, key: &str, ctx: &Context, default: bool) -> bool {
        self.with_resolution(key, Some(FlagKind::Boolean), ctx, |r| {
            r.and_then(|r| r.value).and_then(Value::as_bool).unwrap_or(default)
        })
    }

    /// A boolean flag's value with the reason.
    pub fn bool_details(&self, key: &str, ctx: &Context, default: bool) -> Details<bool> {
        self.details(key, FlagKind::Boolean, ctx, default, Value::as_bool)
    }

    /// A string flag's value, or `default`.
    pub fn string(&self, key: &str, ctx: &Context, default: &str) -> String {
        self.with_resolution(key, Some(FlagKind::String), ctx, |r| {
            r.and_then(|r| r.value)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        })
    }

    /// A string flag's value with the reason.
    pub fn string_details(&self, key: &str, ctx: &Context, default: &str) -> Details<String> {
        self.details(key, FlagKind::String, ctx, default.to_owned(), |v| {
            v.as_str().map(str::to_owned)
        })
    }

    /// A number flag's value, or `default`.
    pub fn number(&self, key: &str, ctx: &Context, default: f64) -> f64 {
        self.with_resolution(key, Some(FlagKind::Number), ctx, |r| {
            r.and_then(|r| r.value).and_then(Value::as_f64).unwrap_or(default)
        })
    }

    /// A number flag's value with the reason.
    pub fn number_details(&self, key: &str, ctx: &Context, default: f64) -> Details<f64> {
        self.details(key, FlagKind::Number, ctx, default, Value::as_f64)
    }

    /// A JSON flag's value, or `default`.
    pub fn json(&self, key: &str, ctx: &Context, default: Value) -> Value {
        self.with_resolution(key, Some(FlagKind::Json), ctx, |r| match r.and_then(|r| r.value) {
            Some(v) => v.clone(),
            None => default,
        })
    }

    /// A JSON flag's value with the reason.
    pub fn json_details(&self, key: &str, ctx: &Context, default: Value) -> Details<Value> {
        self.details(key, FlagKind::Json, ctx, default, |v| Some(v.clone()))
    }

    /// The current status.
    pub fn status(&self) -> Status {
        *self.inner.shared.status.borrow()
    }

    /// Waits until the client is [`Status::Ready`], at most `timeout`;
    /// returns whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.shared.status.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|s| *s == Status::Ready)).await,
            Ok(Ok(_))
        )
    }

    /// Where the served flags came from; `None` when nothing is loaded.
    pub fn source(&self) -> Option<Source> {
        self.inner.shared.state.load().as_ref().map(|l| l.source)
    }

    /// The served snapshot's version (0 for a bootstrap file).
    pub fn version(&self) -> Option<u64> {
        self.inner.shared.state.load().as_ref().map(|l| l.version())
    }

    /// The keys of every served flag.
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner
            .shared
            .state
            .load()
            .as_ref()
            .map(|l| l.snapshot.keys().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A flag's metadata, if the flag exists.
    pub fn metadata(&self, key: &str) -> Option<std::collections::BTreeMap<String, Value>> {
        self.inner.shared.state.load().as_ref()?.snapshot.metadata(key).cloned()
    }

    /// Calls `listener` with the (sorted) keys of flags that may evaluate
    /// differently, after every update that changes any. It runs on the
    /// sync task: keep it short, and hand long work to a task of your own.
    pub fn on_change(&self, listener: impl Fn(&[String]) + Send + Sync + 'static) -> ListenerId {
        let id = self.inner.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        self.inner
            .shared
            .listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, Arc::new(listener)));
        ListenerId(id)
    }

    /// Removes a change listener; returns whether it was registered.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.inner.shared.listeners.write().unwrap_or_else(|e| e.into_inner());
        let before = listeners.len();
        listeners.retain(|(i, _)| *i != id.0);
        listeners.len() != before
    }

    /// Status changes and flag changes as a stream of [`ClientEvent`]s.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Records a business event for `ctx`'s targeting key (never blocks;
    /// see [`Client::event_stats`] for what was dropped).
    pub fn track(&self, event: &str, ctx: &Context, value: Option<f64>, properties: Option<Map<String, Value>>) {
        self.inner.recorder.record(Event::Track {
            event: event.to_owned(),
            targeting_key: ctx.targeting_key.clone(),
            value,
            timestamp: timestamp_now(),
            properties: properties.unwrap_or_default(),
        });
    }

    /// Sends every buffered event now.
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.inner.recorder.flush().await
    }

    /// Counters of the event pipeline.
    pub fn event_stats(&self) -> EventStats {
        self.inner.recorder.counters.stats()
    }

    /// Stops following the server and flushes events (bounded by the
    /// shutdown timeout). Evaluation keeps serving the last snapshot.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let sync_task = self.inner.sync_task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = sync_task {
            let _ = task.await;
        }
        match tokio::time::timeout(self.inner.shutdown_timeout, self.flush()).await {
            Ok(Ok(())) | Ok(Err(FlushError::NotRunning)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "events not flushed at shutdown"),
            Err(_) => tracing::warn!("flushing events at shutdown timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path_prefix() {
        let base = parse_base("https://flags.example.com/sextant?x=1").unwrap();
        assert_eq!(
            base.join("sdk/v1/stream").unwrap().as_str(),
            "https://flags.example.com/sextant/sdk/v1/stream"
        );
        let base = parse_base("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            base.join("sdk/v1/snapshot").unwrap().as_str(),
            "http://127.0.0.1:8080/sdk/v1/snapshot"
        );
        assert!(matches!(parse_base("ftp://x"), Err(BuildError::InvalidUrl { .. })));
        assert!(matches!(parse_base("not a url"), Err(BuildError::InvalidUrl { .. })));
    }
}
