//! Shared server state.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sextant_store::{Committed, Store, StoreError, TokenGrant, TokenRecord};
use tokio::sync::{Semaphore, broadcast, watch};

use crate::dashboard::Sessions;
use crate::error::ApiError;
use crate::events::Ingest;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::ratelimit::{Limiter, RateLimit};

/// Tunables; `Config::default()` suits tests and small deployments.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL (`https://flags.example.com`) for absolute links such
    /// as OFREP `eventStreams`; without it the request's `Host` is used.
    pub public_url: Option<String>,
    /// Evaluation requests allowed in flight before 429.
    pub max_inflight_evaluations: usize,
    /// SSE heartbeat interval.
    pub heartbeat: Duration,
    /// Changes an SSE client may fall behind before it is dropped.
    pub stream_buffer: usize,
    /// Changes kept per environment for `Last-Event-ID` replay.
    pub replay: usize,
    /// Event-batch requests handled at once before 429 (bounds body memory).
    pub event_max_inflight: usize,
    /// Events accepted but not yet committed before 429.
    pub event_queue_capacity: usize,
    /// Most events in one batch.
    pub max_events_per_batch: usize,
    /// How long raw events are kept (they live on in the rollups), and the
    /// oldest event timestamp accepted.
    pub event_retention: Duration,
    /// How often the scheduler applies due changes and evaluates rollouts
    /// (a guardrail breach is acted on within one interval).
    pub evaluation_interval: Duration,
    /// With a shared database (PostgreSQL): how often a replica compares
    /// every stored snapshot version with its own, in case a change notice
    /// was lost. Notices normally arrive within milliseconds.
    pub resync_interval: Duration,
    /// Requests per token before 429 (`None`: unlimited).
    pub rate_limit: Option<RateLimit>,
    /// Wait before the second webhook attempt; doubles per failure.
    pub webhook_backoff: Duration,
    /// Attempts per webhook delivery before it is marked failed.
    pub webhook_max_attempts: u32,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// How often the alignment worker looks for first exposures, due
    /// reviews and due webhook retries.
    pub alignment_tick: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: None,
            max_inflight_evaluations: 10_000,
            heartbeat: Duration::from_secs(15),
            stream_buffer: 64,
            replay: 256,
            event_max_inflight: 64,
            event_queue_capacity: 200_000,
            max_events_per_batch: 10_000,
            event_retention: Duration::from_secs(30 * 24 * 3600),
            evaluation_interval: Duration::from_secs(30),
            resync_interval: Duration::from_secs(5),
            rate_limit: Some(RateLimit {
                per_second: 5_000,
                burst: 5_000,
            }),
            webhook_backoff: Duration::from_secs(10),
            webhook_max_attempts: 6,
            webhook_timeout: Duration::from_secs(10),
            alignment_tick: Duration::from_secs(5),
        }
    }
}

/// Tokens by hash, cached so the hot path never queries the database.
#[derive(Default)]
pub struct TokenCache {
    by_hash: RwLock<HashMap<String, Arc<TokenRecord>>>,
    origins: RwLock<HashSet<String>>,
}

impl TokenCache {
    /// The token with this SHA-256.
    pub fn get(&self, hash: &str) -> Option<Arc<TokenRecord>> {
        self.by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    /// Whether any client token allows `origin` (for CORS preflights, which carry no token).
    pub fn any_allows(&self, origin: &str) -> bool {
        let origins = self.origins.read().unwrap_or_else(|e| e.into_inner());
        origins.contains(origin) || origins.contains("*")
    }

    fn replace(&self, tokens: Vec<TokenRecord>) {
        let mut origins = HashSet::new();
        for t in &tokens {
            if let TokenGrant::Client { allowed_origins, .. } = &t.grant {
                origins.extend(allowed_origins.iter().cloned());
            }
        }
        let map = tokens.into_iter().map(|t| (t.hash.clone(), Arc::new(t))).collect();
        *self.by_hash.write().unwrap_or_else(|e| e.into_inner()) = map;
        *self.origins.write().unwrap_or_else(|e| e.into_inner()) = origins;
    }
}

/// Everything handlers share.
pub struct Inner {
    /// The database.
    pub store: Arc<Store>,
    /// Published snapshots and change feeds.
    pub live: Live,
    /// Token lookup.
    pub tokens: TokenCache,
    /// Request metrics.
    pub metrics: Metrics,
    /// Tunables.
    pub config: Config,
    /// Serialises "commit, then publish" — and publishing changes other
    /// replicas made — so snapshots are published in version order. Async:
    /// held across the database await.
    pub(crate) writes: tokio::sync::Mutex<()>,
    /// Flips to `true` on shutdown; streams end when they see it.
    shutdown: watch::Sender<bool>,
    /// Bounds evaluations in flight; none left → 429.
    pub evaluations: Arc<Semaphore>,
    /// Per-token request buckets; `None` when rate limiting is off.
    pub limiter: Option<Limiter>,
    /// The event pipeline (admission, group commit, rollup).
    pub events: Ingest,
    /// Held for one scheduler evaluation, so evaluations never overlap.
    pub scheduler: tokio::sync::Mutex<()>,
    /// Dashboard login sessions.
    pub sessions: Sessions,
    /// "Something changed" for the dashboard's live pages. Bounded: a page
    /// that falls behind just refreshes once (see `dashboard::live`).
    changes: broadcast::Sender<Arc<Change>>,
    /// Wakes the webhook worker when deliveries are queued.
    pub webhook_wakeup: tokio::sync::Notify,
}

/// A committed change, announced to live dashboard pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Workspace key, when the change belongs to one.
    pub workspace: Option<String>,
    /// Kind of thing changed (`flag`, `segment`, …), when known.
    pub kind: Option<String>,
    /// Its key, when known.
    pub key: Option<String>,
}

/// Cheap-to-clone handle on [`Inner`].
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Loads every environment's snapshot and the tokens.
    pub async fn new(store: Arc<Store>, config: Config) -> Result<AppState, StoreError> {
        let shutdown = watch::channel(false).0;
        let events = Ingest::start(
            store.clone(),
            config.event_max_inflight,
            config.event_queue_capacity,
            config.event_retention,
            shutdown.subscribe(),
        );
        let state = AppState(Arc::new(Inner {
            live: Live::new(config.stream_buffer, config.replay),
            tokens: TokenCache::default(),
            metrics: Metrics::default(),
            evaluations: Arc::new(Semaphore::new(config.max_inflight_evaluations)),
            limiter: config.rate_limit.map(Limiter::new),
            writes: tokio::sync::Mutex::new(()),
            shutdown,
            events,
            scheduler: tokio::sync::Mutex::new(()),
            sessions: Sessions::default(),
            changes: broadcast::channel(64).0,
            webhook_wakeup: tokio::sync::Notify::new(),
            config,
            store,
        }));
        for env in state.store.load_snapshots().await? {
            state.live.publish(env);
        }
        state.reload_tokens().await?;
        Ok(state)
    }

    /// Re-reads tokens from the database.
    pub async fn reload_tokens(&self) -> Result<(), StoreError> {
        self.tokens.replace(self.store.list_tokens().await?);
        if let Some(limiter) = &self.limiter {
            limiter.retain(|hash| self.tokens.get(hash).is_some());
        }
        Ok(())
    }

    /// Runs a store write, then publishes the snapshots it changed, under
    /// one lock so versions are published in order. The future is lazy: it
    /// starts only once the lock is held.
    pub async fn commit<T>(
        &self,
        write: impl Future<Output = Result<Committed<T>, StoreError>>,
    ) -> Result<T, ApiError> {
        let _guard = self.writes.lock().await;
        let committed = write.await?;
        for id in &committed.removed_environments {
            self.live.remove(*id);
        }
        let change = match committed.snapshots.first() {
            Some(env) => Change {
                workspace: Some(env.workspace.clone()),
                kind: env.cause.as_ref().map(|c| c.kind.to_string()),
                key: env.cause.as_ref().map(|c| c.key.clone()),
            },
            None => Change {
                workspace: None,
                kind: None,
                key: None,
            },
        };
        for env in committed.snapshots {
            self.live.publish(env);
        }
        self.reload_tokens().await.map_err(ApiError::from)?;
        self.announce(change);
        Ok(committed.value)
    }

    /// Tells live dashboard pages that something changed (writes through
    /// [`AppState::commit`] announce themselves; other writers, such as
    /// metric ingestion, call this).
    pub fn announce(&self, change: Change) {
        // No receivers is fine: no dashboard page is open.
        let _ = self.changes.send(Arc::new(change));
    }

    /// Announces a write that does not go through [`AppState::commit`]
    /// (change requests filed or rejected, principles, violations), so
    /// open dashboard pages refresh whoever made it: API, CLI or dashboard.
    pub fn announce_in(&self, ws: &str, kind: &str, key: Option<String>) {
        self.announce(Change {
            workspace: Some(ws.to_owned()),
            kind: Some(kind.to_owned()),
            key,
        });
    }

    /// A receiver of future [`Change`] announcements.
    pub fn changes(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Tells streams to end (graceful shutdown).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns `true` on shutdown.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
