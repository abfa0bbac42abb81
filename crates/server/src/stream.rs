//! Server-sent-event streams that follow an environment's changes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc, watch};

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
/// shutdown, when the environment is deleted, or when the client is
/// dropped for being slow.
///
/// Each client has a forwarder task between the environment's broadcast
/// and its response body, joined by a bounded channel of
/// `Config::stream_buffer` changes (`Arc`s of the shared change, rendered
/// only when the body is polled). The body is polled only while the
/// client's socket takes bytes, so a client that stops reading leaves its
/// channel full: the forwarder then drops it (and it leaves the
/// `sextant_sse_clients` gauge) at the next change, without waiting for
/// the body to be polled. Memory per client is therefore bounded by the
/// channel, hyper's write buffer and the socket's, whatever the client
/// does. A forwarder that itself falls a whole broadcast buffer behind is
/// dropped the same way. The client reconnects with `Last-Event-ID` and
/// gets what it missed (replay) or a fresh snapshot.
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
    let (tx, backlog) = mpsc::channel(state.config.stream_buffer.max(1));
    let counted = Counted::new(state.clone(), kind);
    tokio::spawn(forward(rx, tx, state.shutdown_signal(), last, counted));
    let changes = stream::unfold(backlog, |mut backlog| async move {
        let change = backlog.recv().await?;
        Some((change, backlog))
    })
    .map(move |change| Ok::<_, Infallible>(render(&change)));
    let events = stream::iter(initial.into_iter().map(Ok::<_, Infallible>)).chain(changes);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.heartbeat))
        .into_response()
}

/// Why a forwarder stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// Shutdown, the environment was deleted, or the client went away.
    Ended,
    /// The client left a whole backlog unread, or fell a whole broadcast
    /// buffer behind.
    Slow,
}

/// Moves changes newer than `last` from the environment's broadcast into
/// one client's bounded backlog until the client is gone, too slow, or
/// the server stops. Ends the client's count in the gauge before closing
/// its backlog, so whoever sees the stream end sees the gauge down.
async fn forward(
    mut rx: broadcast::Receiver<Arc<LiveEvent>>,
    tx: mpsc::Sender<Arc<LiveEvent>>,
    mut shutdown: watch::Receiver<bool>,
    mut last: u64,
    counted: Counted,
) {
    let stopped = loop {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = shutdown.wait_for(|stop| *stop) => break Stopped::Ended,
            // The response body was dropped: the client disconnected.
            () = tx.closed() => break Stopped::Ended,
        };
        match received {
            Ok(change) if change.version > last => {
                last = change.version;
                match tx.try_send(change) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => break Stopped::Slow,
                    Err(TrySendError::Closed(_)) => break Stopped::Ended,
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => break Stopped::Slow,
            Err(RecvError::Closed) => break Stopped::Ended,
        }
    };
    if stopped == Stopped::Slow {
        tracing::warn!(
            backlog = tx.max_capacity(),
            "dropping a slow SSE client: it left a whole backlog of changes unread"
        );
    }
    drop(counted);
    drop(tx);
}
