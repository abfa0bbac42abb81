//! Server-sent-event streams that follow an environment's changes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::live::{EnvSlot, LiveEvent};
use crate::state::AppState;

/// Which gauge a stream counts in.
#[derive(Clone, Copy)]
pub enum StreamKind {
    /// `/sdk/v1/stream`.
    Sdk,
    /// `/ofrep/v1/events`.
    Ofrep,
}

/// Keeps a stream counted in `sextant_sse_clients` while it lives.
struct Counted(AppState, StreamKind);

impl Counted {
    fn new(state: AppState, kind: StreamKind) -> Self {
        Counted::gauge(&state, kind).fetch_add(1, Ordering::Relaxed);
        Counted(state, kind)
    }

    fn gauge(state: &AppState, kind: StreamKind) -> &std::sync::atomic::AtomicI64 {
        match kind {
            StreamKind::Sdk => &state.metrics.sdk_streams,
            StreamKind::Ofrep => &state.metrics.ofrep_streams,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        Counted::gauge(&self.0, self.1).fetch_sub(1, Ordering::Relaxed);
    }
}

/// `Last-Event-ID` as a snapshot version.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// An SSE response: `initial` events, then every change after version
/// `last`, rendered by `render`; heartbeats in between. The stream ends on
/// shutdown, when the environment is deleted, or when the client falls
/// more than the broadcast buffer behind (slow clients are dropped rather
/// than buffered without bound).
pub fn follow(
    state: &AppState,
    slot: &Arc<EnvSlot>,
    initial: impl FnOnce(&EnvSlot) -> (Vec<Event>, u64),
    render: impl Fn(&LiveEvent) -> Event + Send + 'static,
    kind: StreamKind,
) -> Response {
    // Subscribe first, then read the state: a change in between is in the
    // receiver and is skipped only if `initial` already covered it.
    let rx = slot.subscribe();
    let (initial, last) = initial(slot);
    let shutdown = state.shutdown_signal();
    let counted = Counted::new(state.clone(), kind);
    let seed = (VecDeque::from(initial), rx, shutdown, last, render, counted);
    let events = stream::unfold(
        seed,
        |(mut queue, mut rx, mut shutdown, mut last, render, counted)| async move {
            if let Some(event) = queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), (queue, rx, shutdown, last, render, counted)));
            }
            loop {
                let received = tokio::select! {
                    received = rx.recv() => Some(received),
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                match received {
                    Some(Ok(change)) if change.version > last => {
                        last = change.version;
                        let event = render(&change);
                        return Some((Ok(event), (queue, rx, shutdown, last, render, counted)));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(RecvError::Lagged(n))) => {
                        tracing::warn!(missed = n, "dropping a slow SSE client");
                        return None;
                    }
                    Some(Err(RecvError::Closed)) | None => return None,
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.heartbeat))
        .into_response()
}
