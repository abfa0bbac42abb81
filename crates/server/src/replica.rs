//! Following the writes of other replicas on a shared database.
//!
//! Each replica keeps its own published snapshots. A write committed by
//! any replica is announced by the store's [`ChangeFeed`]; this task loads
//! the environments the notice names whose stored version is ahead of the
//! published one and publishes them, so SSE clients of every replica see
//! the change. A notice produced exactly that version: the clients get the
//! same delta the writing replica sent. Notices can be lost (connection
//! loss, restart), so on every feed resync, and every
//! `Config::resync_interval`, the replica compares every environment's
//! stored snapshot version with its own and catches up on any difference:
//! a missed notice delays a change, it never leaves a replica stale.

use std::collections::HashSet;
use std::time::Duration;

use sextant_store::{Cause, ChangeFeed, ChangeNotice, EnvSnapshot, FeedEvent, Kind, StoreError};
use tokio::sync::mpsc;

use crate::state::AppState;

/// Follows `feed` until shutdown. Awaited by [`crate::run`] on exit.
pub(crate) async fn follow(state: AppState, mut feed: ChangeFeed) {
    // Reading the feed runs in its own task and hands events over a
    // channel, so the select below only waits on cancel-safe futures.
    // Bounded: if publishing falls behind, the reader waits (the database
    // buffers notices for it).
    let (tx, mut rx) = mpsc::channel(256);
    let reader = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match feed.next().await {
                Ok(event) => {
                    backoff = Duration::from_millis(100);
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "change feed lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    let mut shutdown = state.shutdown_signal();
    let mut resync = tokio::time::interval(state.config.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // The guard `wait_for` returns is dropped inside the block (not `Send`).
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            event = rx.recv() => match event {
                Some(FeedEvent::Change(notice)) => log(apply(&state, &notice).await),
                Some(FeedEvent::Resync) => log(catch_up(&state).await),
                None => break,
            },
            _ = resync.tick() => log(catch_up(&state).await),
        }
    }
    reader.abort();
    let _ = reader.await;
}

fn log(result: Result<(), StoreError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not apply a change from another replica; the next resync retries");
    }
}

/// The cause of a snapshot published by catching up: unknown, so SSE
/// clients get the whole document.
fn catch_up_cause(env: &EnvSnapshot) -> Cause {
    Cause {
        change_id: 0,
        kind: Kind::Environment,
        key: env.environment.clone(),
        action: "sync".into(),
    }
}

/// Whether the published version of `id` is behind `version`.
fn behind(state: &AppState, id: i64, version: i64) -> bool {
    state
        .live
        .slot(id)
        .is_none_or(|slot| (slot.load().version() as i64) < version)
}

/// Applies one notice: publishes the environments it names that are
/// behind, drops the ones it removed, and re-reads tokens.
async fn apply(state: &AppState, notice: &ChangeNotice) -> Result<(), StoreError> {
    let _guard = state.writes.lock().await;
    let stale: Vec<i64> = notice
        .snapshots
        .iter()
        .filter(|(id, version)| behind(state, *id, *version))
        .map(|(id, _)| *id)
        .collect();
    if !stale.is_empty() {
        for mut env in state.store.load_environment_snapshots(&stale).await? {
            let version = env.snapshot.version() as i64;
            if !behind(state, env.environment_id, version) {
                continue;
            }
            let cause = notice
                .cause_of(env.environment_id, version)
                .unwrap_or_else(|| catch_up_cause(&env));
            env.cause = Some(cause);
            state.live.publish(env);
        }
    }
    for id in &notice.removed {
        state.live.remove(*id);
    }
    state.reload_tokens().await
}

/// Compares every stored snapshot version with the published one and
/// publishes what is behind; drops environments deleted elsewhere.
pub(crate) async fn catch_up(state: &AppState) -> Result<(), StoreError> {
    let _guard = state.writes.lock().await;
    let stored = state.store.snapshot_versions().await?;
    let ids: HashSet<i64> = stored.iter().map(|(id, _)| *id).collect();
    for slot in state.live.all() {
        let id = slot.load().environment_id;
        if !ids.contains(&id) {
            state.live.remove(id);
        }
    }
    let stale: Vec<i64> = stored
        .iter()
        .filter(|(id, version)| behind(state, *id, *version))
        .map(|(id, _)| *id)
        .collect();
    if !stale.is_empty() {
        tracing::info!(environments = stale.len(), "catching up on changes made elsewhere");
        for mut env in state.store.load_environment_snapshots(&stale).await? {
            if behind(state, env.environment_id, env.snapshot.version() as i64) {
                env.cause = Some(catch_up_cause(&env));
                state.live.publish(env);
            }
        }
    }
    state.reload_tokens().await
}
