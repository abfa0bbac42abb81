//! The event pipeline: admission control, group commit and the live rollup.
//!
//! A request is admitted in two steps, each a non-blocking semaphore
//! acquire that answers 429 when it fails: a slot among
//! `event_max_inflight` requests (taken *before* the body is read, so
//! memory for bodies is bounded by slots × body limit), then one permit per
//! valid event among `event_queue_capacity` (events accepted but not yet
//! committed). The writer task takes every queued batch at once and
//! appends them in one transaction whose commit syncs the WAL (group
//! commit); only then are the requests answered 202 and their permits
//! released. Nothing acknowledged is ever dropped, and memory is bounded
//! whatever the offered load.
//!
//! After each commit the rollup task is woken; it reads the new batches,
//! aggregates them in memory (one row per unit, event and hour) and
//! upserts those rows into the per-unit hourly rollups, so metric values
//! follow within seconds without a full recompute. It also deletes raw batches older
//! than the retention once they are rolled up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sextant_store::{Appended, EventBatch, Store, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Most batches committed in one transaction.
const MAX_GROUP: usize = 256;

/// Most batches rolled up per run. The batches are read and aggregated
/// without the write lock; only the upserts of the aggregated rows hold it,
/// so ingestion commits interleave with a catch-up.
pub const ROLLUP_BATCHES: i64 = 32;

/// How often the rollup runs without being woken, and retention is checked.
const ROLLUP_INTERVAL: Duration = Duration::from_secs(1);

/// While the rollup is behind and batches wait for the writer, it pauses
/// after each run for this many times the run's duration. Its upserts hold
/// SQLite's one write lock and its aggregation a core, so a rollup that never
/// stops catching up would throttle durable ingestion to its own pace;
/// yielding puts acknowledging writes first. With no batch waiting it runs
/// flat out, so values stay live under moderate load and the (durable)
/// backlog drains as soon as a burst ends.
const ROLLUP_YIELD: u32 = 2;

/// Counters of the pipeline (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Events committed.
    pub accepted: AtomicU64,
    /// Events refused by validation.
    pub rejected: AtomicU64,
    /// Batches skipped as retries of a stored `batch_id`.
    pub duplicate_batches: AtomicU64,
    /// Requests answered 429.
    pub overloaded: AtomicU64,
    /// Group commits.
    pub commits: AtomicU64,
    /// Events rolled up.
    pub rolled_up: AtomicU64,
}

/// Why a batch was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No room: answer 429 with `Retry-After`.
    Full,
    /// The server is shutting down: answer 503.
    Closed,
}

/// Why an admitted batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The writer stopped (shutdown) before committing the batch.
    #[error("the event writer is shutting down")]
    Closed,
    /// The database refused the commit; the client may retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A batch waiting for the writer, with its queue permits (released when
/// the job is dropped, after the commit).
struct Job {
    batch: EventBatch,
    reply: oneshot::Sender<Result<Appended, String>>,
    _permits: OwnedSemaphorePermit,
}

/// The pipeline's handles, owned by the server state.
pub struct Ingest {
    /// Bounded by `event_max_inflight`: every sender holds a slot first,
    /// so a send never waits long.
    tx: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    queue: Arc<Semaphore>,
    queue_capacity: usize,
    /// Counters.
    pub counters: Arc<IngestCounters>,
    /// Events rolled up since start (follows `counters.rolled_up`), for
    /// waiting on the rollup without polling.
    rolled: watch::Receiver<u64>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Holds a request slot until the request is answered.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Ingest {
    /// Starts the writer and rollup tasks; they stop when `shutdown`
    /// turns true, after committing every batch already queued.
    pub fn start(
        store: Arc<Store>,
        max_inflight: usize,
        queue_capacity: usize,
        retention: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Ingest {
        let (tx, rx) = mpsc::channel(max_inflight.max(1));
        let counters = Arc::new(IngestCounters::default());
        let wake = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(
            store.clone(),
            rx,
            shutdown.clone(),
            wake.clone(),
            counters.clone(),
        ));
        let (rolled_tx, rolled) = watch::channel(0);
        let queue_capacity = queue_capacity.max(1);
        let queue = Arc::new(Semaphore::new(queue_capacity));
        let rollup = tokio::spawn(rollup_loop(
            store,
            wake,
            shutdown,
            retention,
            counters.clone(),
            rolled_tx,
            Backlog {
                queue: queue.clone(),
                capacity: queue_capacity,
            },
        ));
        Ingest {
            tx,
            slots: Arc::new(Semaphore::new(max_inflight.max(1))),
            queue,
            queue_capacity,
            counters,
            rolled,
            tasks: std::sync::Mutex::new(vec![writer, rollup]),
        }
    }

    /// A request slot, or [`Refused::Full`] when `event_max_inflight`
    /// requests are being handled.
    pub fn slot(&self) -> Result<Slot, Refused> {
        if self.tx.is_closed() {
            return Err(Refused::Closed);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(p) => Ok(Slot(p)),
            Err(TryAcquireError::NoPermits) => {
                self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(Refused::Full)
            }
            Err(TryAcquireError::Closed) => Err(Refused::Closed),
        }
    }

    /// Queues a batch and waits until it is durable (or refused).
    pub async fn submit(&self, batch: EventBatch) -> Result<Result<Appended, IngestError>, Refused> {
        let n = batch.count.max(1) as usize;
        if n > self.queue_capacity {
            return Err(Refused::Full);
        }
        let permits = match self.queue.clone().try_acquire_many_owned(n as u32) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Full);
            }
            Err(TryAcquireError::Closed) => return Err(Refused::Closed),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            batch,
            reply,
            _permits: permits,
        };
        if self.tx.send(job).await.is_err() {
            return Err(Refused::Closed);
        }
        Ok(match answer.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(message)) => Err(IngestError::Store(StoreError::Database(message))),
            Err(_) => Err(IngestError::Closed),
        })
    }

    /// Waits until the rollup has taken in at least `events` events since
    /// the server started (every event committed before them is then in
    /// the metric values). Returns early if the rollup task has stopped.
    pub async fn rolled_up(&self, events: u64) {
        let mut rx = self.rolled.clone();
        let _ = rx.wait_for(|n| *n >= events).await;
    }

    /// Events queued but not yet committed.
    pub fn queued(&self) -> usize {
        self.queue_capacity - self.queue.available_permits()
    }

    /// Waits for the tasks to finish (after shutdown was signalled).
    pub async fn finish(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn write_loop(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<bool>,
    wake: Arc<Notify>,
    counters: Arc<IngestCounters>,
) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    loop {
        let stopping = *shutdown.borrow();
        if stopping {
            // No new batches; commit what was already queued, then stop.
            rx.close();
        }
        let n = tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_GROUP) => n,
            _ = shutdown.changed(), if !stopping => continue,
        };
        if n == 0 {
            break;
        }
        commit(&store, &mut jobs, &counters).await;
        wake.notify_one();
    }
    tracing::debug!("event writer stopped");
}

async fn commit(store: &Store, jobs: &mut Vec<Job>, counters: &IngestCounters) {
    // The batches move out of their jobs (no copy of the encoded events);
    // each job keeps its reply and its queue permits until it is answered.
    let batches: Vec<EventBatch> = jobs.iter_mut().map(|j| std::mem::take(&mut j.batch)).collect();
    match store.append_event_batches(&batches).await {
        Ok(outcomes) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            for ((job, outcome), batch) in jobs.drain(..).zip(outcomes).zip(&batches) {
                match outcome {
                    Appended::Stored => counters.accepted.fetch_add(u64::from(batch.count), Ordering::Relaxed),
                    Appended::Duplicate => counters.duplicate_batches.fetch_add(1, Ordering::Relaxed),
                };
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batches = jobs.len(), "event commit failed; clients will retry");
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(e.to_string()));
            }
        }
    }
}

/// The writer's queue as the rollup sees it: whether events wait for a commit.
struct Backlog {
    queue: Arc<Semaphore>,
    capacity: usize,
}

impl Backlog {
    fn writes_waiting(&self) -> bool {
        self.queue.available_permits() < self.capacity
    }
}

async fn rollup_loop(
    store: Arc<Store>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    retention: Duration,
    counters: Arc<IngestCounters>,
    rolled: watch::Sender<u64>,
    backlog: Backlog,
) {
    let mut tick = tokio::time::interval(ROLLUP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tick.tick() => {
                let cutoff = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
                match store.prune_events(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(batches = n, "deleted raw event batches past retention (rolled up)"),
                    Err(e) => tracing::warn!(error = %e, "event retention failed"),
                }
            }
            _ = shutdown.changed() => continue,
        }
        // Catch up in short transactions, yielding to shutdown between them.
        loop {
            let started = tokio::time::Instant::now();
            match store.rollup_events(ROLLUP_BATCHES).await {
                Ok(p) => {
                    let total = counters.rolled_up.fetch_add(p.events, Ordering::Relaxed) + p.events;
                    rolled.send_replace(total);
                    if p.caught_up || *shutdown.borrow() {
                        break;
                    }
                    if !backlog.writes_waiting() {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(started.elapsed() * ROLLUP_YIELD) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event rollup failed; retrying");
                    break;
                }
            }
        }
    }
    tracing::debug!("event rollup stopped");
}
