//! Keeping the served snapshot current: the initial fetch, the SSE stream
//! with reconnects (exponential backoff with jitter, `Last-Event-ID`), and
//! polling with `ETag` when the server refuses streaming.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::client::Shared;
use crate::offline;
use crate::sse::SseParser;
use crate::state::{ApplyError, Loaded, Source};
use crate::wire::{ChangeBody, SnapshotBody};

/// Sync settings (see the builder for defaults).
#[derive(Debug, Clone)]
pub(crate) struct SyncConfig {
    pub snapshot_url: reqwest::Url,
    pub stream_url: reqwest::Url,
    pub token: Arc<str>,
    pub environment: Option<String>,
    pub cache_path: Option<PathBuf>,
    pub streaming: bool,
    pub poll_interval: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub request_timeout: Duration,
    pub stream_read_timeout: Duration,
}

/// The answer to one snapshot request.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A snapshot and its `ETag`.
    Snapshot(Box<Loaded>, Option<String>),
    /// `304 Not Modified`.
    Unchanged,
    /// The token was refused (401/403): retrying will not help until it changes.
    Unauthorized(StatusCode),
    /// Anything else: unreachable, 5xx, a body that does not parse.
    Failed(String),
}

/// `GET /sdk/v1/snapshot`, conditional on `etag`.
pub(crate) async fn fetch_snapshot(http: &reqwest::Client, cfg: &SyncConfig, etag: Option<&str>) -> Fetched {
    let mut request = http
        .get(cfg.snapshot_url.clone())
        .bearer_auth(&*cfg.token)
        .header(ACCEPT, "application/json")
        .timeout(cfg.request_timeout);
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Fetched::Failed(format!("snapshot request failed: {e}")),
    };
    let status = response.status();
    match status {
        StatusCode::NOT_MODIFIED => return Fetched::Unchanged,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Fetched::Unauthorized(status),
        s if !s.is_success() => return Fetched::Failed(format!("snapshot request answered {s}")),
        _ => {}
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Fetched::Failed(format!("snapshot body not received: {e}")),
    };
    match parse_snapshot(&bytes) {
        Ok(loaded) => Fetched::Snapshot(Box::new(loaded), etag),
        Err(e) => Fetched::Failed(e),
    }
}

fn parse_snapshot(bytes: &[u8]) -> Result<Loaded, String> {
    let body: SnapshotBody = serde_json::from_slice(bytes).map_err(|e| format!("snapshot does not parse: {e}"))?;
    Loaded::from_body(body, Source::Server).map_err(|e| format!("snapshot does not compile: {e}"))
}

/// How a stream connection ended.
#[derive(Debug)]
enum StreamEnd {
    /// The server does not stream (404, 405, 501, or not an event stream).
    Refused(String),
    /// The token was refused.
    Unauthorized(StatusCode),
    /// Anything else; reconnect after a backoff.
    Failed(String),
    /// The stream held something that could not be applied: reconnect at
    /// once and ask for a full snapshot.
    Resync(String),
}

/// Installs server data: swap, cache, notify.
async fn install(shared: &Shared, cfg: &SyncConfig, loaded: Loaded) {
    let body = cfg.cache_path.as_ref().map(|_| loaded.to_body());
    if let Some(expected) = &cfg.environment
        && loaded.snapshot.environment() != expected
    {
        tracing::warn!(
            expected = %expected,
            served = loaded.snapshot.environment(),
            "the SDK token belongs to another environment than the one configured"
        );
    }
    shared.install(loaded);
    if let (Some(path), Some(body)) = (&cfg.cache_path, body)
        && let Err(error) = offline::write_cache(path, &body).await
    {
        tracing::warn!(path = %path.display(), %error, "could not write the snapshot cache");
    }
}

/// The background sync loop; returns when `shutdown` turns true or its
/// sender is dropped.
pub(crate) async fn run(
    shared: Arc<Shared>,
    http: reqwest::Client,
    cfg: SyncConfig,
    mut etag: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max);
    let mut streaming = cfg.streaming;
    let mut full = false;
    loop {
        let delay = if streaming {
            let mut retry_ms = None;
            let end = tokio::select! {
                end = stream_once(&shared, &http, &cfg, &mut backoff, full, &mut retry_ms) => end,
                _ = stopped(&mut shutdown) => return,
            };
            full = false;
            match end {
                StreamEnd::Refused(why) => {
                    tracing::warn!(%why, "the server refused streaming; polling for changes instead");
                    streaming = false;
                    Duration::ZERO
                }
                StreamEnd::Unauthorized(status) => {
                    tracing::error!(%status, "the server refused the SDK token; serving what is loaded");
                    shared.set_status(crate::Status::Error);
                    cfg.reconnect_max
                }
                StreamEnd::Failed(why) => {
                    shared.mark_disconnected();
                    let delay = backoff.next_delay();
                    let delay = delay.max(Duration::from_millis(retry_ms.unwrap_or(0)));
                    tracing::info!(%why, ?delay, "event stream lost; reconnecting");
                    delay
                }
                StreamEnd::Resync(why) => {
                    tracing::warn!(%why, "event stream out of step; reconnecting for a full snapshot");
                    full = true;
                    Duration::ZERO
                }
            }
        } else {
            let fetched = tokio::select! {
                f = fetch_snapshot(&http, &cfg, etag.as_deref()) => f,
                _ = stopped(&mut shutdown) => return,
            };
            match fetched {
                Fetched::Snapshot(loaded, tag) => {
                    etag = tag;
                    let changed = shared
                        .current()
                        .is_none_or(|c| c.version() != loaded.version() || c.source != Source::Server);
                    if changed {
                        install(&shared, &cfg, *loaded).await;
                    }
                    shared.set_status(crate::Status::Ready);
                }
                Fetched::Unchanged => shared.set_status(crate::Status::Ready),
                Fetched::Unauthorized(status) => {
                    tracing::error!(%status, "the server refused the SDK token; serving what is loaded");
                    shared.set_status(crate::Status::Error);
                }
                Fetched::Failed(why) => {
                    tracing::info!(%why, "polling failed");
                    shared.mark_disconnected();
                }
            }
            cfg.poll_interval
        };
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender (the client) is gone: stop as well.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One stream connection, until it ends.
async fn stream_once(
    shared: &Shared,
    http: &reqwest::Client,
    cfg: &SyncConfig,
    backoff: &mut Backoff,
    full: bool,
    retry_ms: &mut Option<u64>,
) -> StreamEnd {
    // Resume only from data this process got from this server: a cache or
    // bootstrap version may come from another database.
    let resume = shared
        .current()
        .filter(|c| c.source == Source::Server && !full)
        .map(|c| c.version());
    let mut request = http
        .get(cfg.stream_url.clone())
        .bearer_auth(&*cfg.token)
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache");
    if let Some(version) = resume {
        request = request.header("Last-Event-ID", version.to_string());
    }
    let response = match tokio::time::timeout(cfg.request_timeout, request.send()).await {
        Err(_) => return StreamEnd::Failed("no answer to the stream request".into()),
        Ok(Err(e)) => return StreamEnd::Failed(format!("stream request failed: {e}")),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return StreamEnd::Unauthorized(status),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
            return StreamEnd::Refused(format!("stream request answered {status}"));
        }
        s if !s.is_success() => return StreamEnd::Failed(format!("stream request answered {s}")),
        _ => {}
    }
    let is_event_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if !is_event_stream {
        return StreamEnd::Refused("the stream endpoint did not answer with text/event-stream".into());
    }
    if resume.is_some() {
        // Resumed from our own version: we are current until told otherwise.
        shared.set_status(crate::Status::Ready);
    }
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut received_any = false;
    loop {
        let chunk = match tokio::time::timeout(cfg.stream_read_timeout, body.next()).await {
            Err(_) => return StreamEnd::Failed("no data or heartbeat within the read timeout".into()),
            Ok(None) => return StreamEnd::Failed("the server closed the stream".into()),
            Ok(Some(Err(e))) => return StreamEnd::Failed(format!("stream read failed: {e}")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if !received_any {
            // The connection is proven; the next loss starts backing off anew.
            received_any = true;
            backoff.reset();
        }
        if parser.feed(&chunk, &mut events).is_err() {
            return StreamEnd::Resync("an event line exceeded the size limit".into());
        }
        *retry_ms = parser.retry_ms;
        for event in events.drain(..) {
            match event.event.as_str() {
                "snapshot" => match parse_snapshot(event.data.as_bytes()) {
                    Ok(loaded) => {
                        install(shared, cfg, loaded).await;
                        shared.set_status(crate::Status::Ready);
                    }
                    Err(why) => return StreamEnd::Failed(why),
                },
                "change" => {
                    let change: ChangeBody = match serde_json::from_str(&event.data) {
                        Ok(c) => c,
                        Err(e) => return StreamEnd::Resync(format!("change event does not parse: {e}")),
                    };
                    let Some(current) = shared.current().filter(|c| c.source == Source::Server) else {
                        return StreamEnd::Resync("a change arrived before any snapshot".into());
                    };
                    match current.apply(change) {
                        Ok(Some(next)) => {
                            install(shared, cfg, next).await;
                            shared.set_status(crate::Status::Ready);
                        }
                        Ok(None) => {}
                        Err(e @ ApplyError::Gap { .. }) | Err(e @ ApplyError::Compile(_)) => {
                            return StreamEnd::Resync(e.to_string());
                        }
                    }
                }
                other => tracing::debug!(event = other, "ignoring an unknown stream event"),
            }
        }
    }
}
