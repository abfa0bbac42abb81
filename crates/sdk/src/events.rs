//! Track and exposure events: deduplicated on the hot path, handed over a
//! bounded channel to one background task that batches them, posts them
//! to `POST /events/v1/batch`, retries with backoff and drops (counting)
//! what does not fit.
//!
//! Memory is bounded at every step: the hand-off channel holds at most
//! `capacity` events (a full channel drops the new event), the task's
//! buffer holds at most `capacity` events including the batch being
//! retried (a full buffer drops the new event, keeping the older ones in
//! order), and the exposure de-duplication cache holds at most
//! `max_dedup_entries` keys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::sync::{mpsc, oneshot};
use xxhash_rust::xxh3::Xxh3;

use crate::backoff::{Backoff, uuid_v4};
use crate::wire::{Batch, Event};

/// Event pipeline settings (see the builder for defaults).
#[derive(Debug, Clone)]
pub(crate) struct EventConfig {
    pub enabled: bool,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub capacity: usize,
    pub exposure_window: Duration,
    pub max_dedup_entries: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Counters of the event pipeline, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    recorded: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    deduplicated: AtomicU64,
    failed_requests: AtomicU64,
}

/// A point-in-time copy of the event counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events recorded (tracked, or exposures after de-duplication). At
    /// any time `recorded = sent + dropped + still buffered`.
    pub recorded: u64,
    /// Events the server acknowledged (202).
    pub sent: u64,
    /// Events dropped: buffer full while the server was unreachable,
    /// pipeline shut down, or a batch the server refused outright (4xx).
    pub dropped: u64,
    /// Exposures not sent because the same unit saw the same variation of
    /// the same flag within the de-duplication window.
    pub deduplicated: u64,
    /// Batch requests that failed and were retried.
    pub failed_requests: u64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn stats(&self) -> EventStats {
        EventStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            deduplicated: self.deduplicated.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
        }
    }
}

/// Why [`crate::Client::flush`] did not deliver everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The server could not be reached or asked to retry later; the events
    /// stay buffered and are retried in the background.
    #[error("{pending} events could not be delivered yet and stay buffered for retry")]
    NotDelivered {
        /// Events still buffered.
        pending: usize,
    },
    /// The server refused some events for good (a 4xx other than 408 and
    /// 429: bad token, no ingestion endpoint, …); they were dropped.
    #[error("the server refused {dropped} events ({status}); they were dropped")]
    Refused {
        /// Events dropped.
        dropped: usize,
        /// The last refusal's HTTP status.
        status: u16,
    },
    /// Events are disabled or the client is shut down.
    #[error("the event pipeline is not running")]
    NotRunning,
}

pub(crate) enum Command {
    Event(Event),
    Flush(oneshot::Sender<Result<(), FlushError>>),
}

/// Number of lock shards of the de-duplication cache: evaluations on
/// different threads rarely contend on one.
const SHARDS: usize = 16;

/// Recently sent exposures, keyed by a 128-bit hash of (unit, flag,
/// variation). Each shard is a std `Mutex` held for one hash-map probe and
/// never across an `.await` or IO.
#[derive(Debug)]
pub(crate) struct Dedup {
    shards: Box<[Mutex<HashMap<u128, Instant>>]>,
    window: Duration,
    per_shard: usize,
}

impl Dedup {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Dedup {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            window,
            per_shard: (max_entries / SHARDS).max(1),
        }
    }

    /// Whether the exposure is new within the window (and records it).
    pub fn first_seen(&self, unit: &str, flag: &str, variation: &str, now: Instant) -> bool {
        let mut h = Xxh3::new();
        for part in [unit, flag, variation] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let key = h.digest128();
        let mut shard = self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = shard.get(&key)
            && now.saturating_duration_since(*seen) < self.window
        {
            return false;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            let window = self.window;
            shard.retain(|_, seen| now.saturating_duration_since(*seen) < window);
            if shard.len() >= self.per_shard {
                // Still full of live entries: forget them rather than grow.
                // The cost is a few duplicate exposures, never memory.
                shard.clear();
            }
        }
        shard.insert(key, now);
        true
    }
}

/// The hot-path side: non-blocking hand-off to the background task.
#[derive(Debug)]
pub(crate) struct Recorder {
    tx: Option<mpsc::Sender<Command>>,
    pub counters: Arc<Counters>,
    dedup: Dedup,
}

impl Recorder {
    /// A recorder whose events go nowhere (events disabled).
    pub fn disabled() -> Self {
        Recorder {
            tx: None,
            counters: Arc::default(),
            dedup: Dedup::new(Duration::ZERO, 1),
        }
    }

    /// Queues an event without waiting; a full queue drops it.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        Counters::add(&self.counters.recorded, 1);
        if tx.try_send(Command::Event(event)).is_err() {
            // Full (the task is behind) or closed (shutting down).
            Counters::add(&self.counters.dropped, 1);
        }
    }

    /// Queues an exposure unless it was sent within the window.
    pub fn exposure(&self, flag: &str, variation: &str, unit: &str) {
        if self.tx.is_none() {
            return;
        }
        if !self.dedup.first_seen(unit, flag, variation, Instant::now()) {
            Counters::add(&self.counters.deduplicated, 1);
            return;
        }
        self.record(Event::Exposure {
            flag: flag.to_owned(),
            variation: variation.to_owned(),
            targeting_key: unit.to_owned(),
            timestamp: crate::wire::timestamp_now(),
        });
    }

    /// Delivers everything queued so far.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let tx = self.tx.as_ref().ok_or(FlushError::NotRunning)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Command::Flush(reply))
            .await
            .map_err(|_| FlushError::NotRunning)?;
        answer.await.unwrap_or(Err(FlushError::NotRunning))
    }
}

/// Starts the event task; it ends (after a last flush) when every
/// [`Recorder`] is dropped.
pub(crate) fn start(
    config: EventConfig,
    http: reqwest::Client,
    url: reqwest::Url,
    token: Arc<str>,
) -> (Recorder, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    let counters = Arc::new(Counters::default());
    let dedup = Dedup::new(config.exposure_window, config.max_dedup_entries);
    let task = Pipeline {
        backoff: Backoff::new(config.retry_initial, config.retry_max),
        config,
        http,
        url,
        token,
        counters: counters.clone(),
        pending: VecDeque::new(),
        batch: None,
        retry_at: None,
    };
    let handle = tokio::spawn(task.run(rx));
    (
        Recorder {
            tx: Some(tx),
            counters,
            dedup,
        },
        handle,
    )
}

/// What one POST achieved.
enum Outcome {
    Delivered,
    /// Retry later; the server may say when.
    Retry(Option<Duration>),
    /// The server refused the batch for good (4xx other than 408/429).
    Refused(StatusCode),
}

struct Pipeline {
    config: EventConfig,
    http: reqwest::Client,
    url: reqwest::Url,
    token: Arc<str>,
    counters: Arc<Counters>,
    pending: VecDeque<Event>,
    /// The batch being delivered, with its idempotency key; kept as is
    /// across retries so the server can de-duplicate.
    batch: Option<(String, Vec<Event>)>,
    retry_at: Option<tokio::time::Instant>,
    backoff: Backoff,
}

/// The longest `Retry-After` honoured; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl Pipeline {
    fn buffered(&self) -> usize {
        self.pending.len() + self.batch.as_ref().map_or(0, |(_, b)| b.len())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut interval = tokio::time::interval(self.config.flush_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Event(event)) => {
                        if self.buffered() >= self.config.capacity {
                            Counters::add(&self.counters.dropped, 1);
                            tracing::debug!("event buffer full; dropping an event");
                        } else {
                            self.pending.push_back(event);
                        }
                        if self.pending.len() >= self.config.batch_size && self.retry_at.is_none() {
                            let _ = self.deliver().await;
                        }
                    }
                    Some(Command::Flush(reply)) => {
                        let result = self.deliver().await;
                        let _ = reply.send(result);
                    }
                    None => break,
                },
                _ = interval.tick(), if self.retry_at.is_none() => {
                    let _ = self.deliver().await;
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    let _ = self.deliver().await;
                }
            }
        }
        // Every client handle is gone: one last attempt, bounded in time.
        let timeout = self.config.shutdown_timeout;
        if tokio::time::timeout(timeout, self.deliver()).await.is_err() {
            tracing::warn!("final event flush timed out");
        }
        let lost = self.buffered();
        if lost > 0 {
            Counters::add(&self.counters.dropped, lost);
            tracing::warn!(events = lost, "events not delivered before shutdown were dropped");
        }
    }

    /// Sends everything buffered, batch by batch, until done or a failure
    /// (which schedules a retry).
    async fn deliver(&mut self) -> Result<(), FlushError> {
        self.retry_at = None;
        let mut refused: Option<(usize, u16)> = None;
        loop {
            if self.batch.is_none() {
                if self.pending.is_empty() {
                    return match refused {
                        None => Ok(()),
                        Some((dropped, status)) => Err(FlushError::Refused { dropped, status }),
                    };
                }
                let n = self.pending.len().min(self.config.batch_size.max(1));
                self.batch = Some((uuid_v4(), self.pending.drain(..n).collect()));
            }
            let Some((id, events)) = &self.batch else { continue };
            let n = events.len();
            match self.post(id, events).await {
                Outcome::Delivered => {
                    Counters::add(&self.counters.sent, n);
                    self.batch = None;
                    self.backoff.reset();
                }
                Outcome::Refused(status) => {
                    Counters::add(&self.counters.dropped, n);
                    tracing::warn!(%status, events = n, "the server refused an event batch; dropped");
                    self.batch = None;
                    let before = refused.map_or(0, |(d, _)| d);
                    refused = Some((before + n, status.as_u16()));
                }
                Outcome::Retry(after) => {
                    Counters::add(&self.counters.failed_requests, 1);
                    let delay = after.map_or_else(|| self.backoff.next_delay(), |d| d.min(MAX_RETRY_AFTER));
                    self.retry_at = Some(tokio::time::Instant::now() + delay);
                    return Err(FlushError::NotDelivered {
                        pending: self.buffered(),
                    });
                }
            }
        }
    }

    async fn post(&self, batch_id: &str, events: &[Event]) -> Outcome {
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(&*self.token)
            .timeout(self.config.request_timeout)
            .json(&Batch { batch_id, events })
            .send()
            .await;
        match response {
            Err(error) => {
                tracing::debug!(%error, "event batch not delivered");
                Outcome::Retry(None)
            }
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let status = r.status();
                match status {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        Outcome::Retry(retry_after(r.headers(), std::time::SystemTime::now()))
                    }
                    StatusCode::REQUEST_TIMEOUT => Outcome::Retry(None),
                    s if s.is_server_error() => Outcome::Retry(None),
                    s => Outcome::Refused(s),
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = std::time::SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, std::time::SystemTime::now()), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(&h, std::time::SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_767);
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn exposures_are_deduplicated_per_unit_flag_and_variation_within_the_window() {
        let dedup = Dedup::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        assert!(dedup.first_seen("u1", "f", "on", t0));
        assert!(!dedup.first_seen("u1", "f", "on", t0 + Duration::from_secs(59)));
        assert!(dedup.first_seen("u1", "f", "off", t0));
        assert!(dedup.first_seen("u2", "f", "on", t0));
        assert!(dedup.first_seen("u1", "g", "on", t0));
        assert!(dedup.first_seen("u1", "f", "on", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn the_dedup_cache_never_grows_past_its_bound() {
        let dedup = Dedup::new(Duration::from_secs(3600), 160);
        let t0 = Instant::now();
        for i in 0..10_000 {
            dedup.first_seen(&format!("u{i}"), "f", "on", t0);
        }
        let total: usize = dedup.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 160, "{total} entries");
    }

    #[test]
    fn field_boundaries_are_part_of_the_key() {
        let dedup = Dedup::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        assert!(dedup.first_seen("ab", "c", "v", t0));
        assert!(dedup.first_seen("a", "bc", "v", t0));
    }
}
