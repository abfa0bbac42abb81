//! `GET /ui/live`: an SSE stream telling open pages that something changed.
//! Pages then re-fetch themselves and swap their live regions.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::session::Ui;
use crate::state::AppState;

/// How often the stream checks whether new events were rolled up into
/// metric values. Half a second keeps "new metric data" on open pages
/// within a second of its rollup, and costs one atomic load per tick.
const METRICS_POLL: Duration = Duration::from_millis(500);

/// Streams `change` events until shutdown: one per announced change, and
/// one (`kind: metrics`) whenever the event rollup has added data since
/// the last check. A page that falls behind the bounded channel gets one
/// `change` (it refreshes everything anyway), so nothing is buffered per
/// client beyond the channel.
pub async fn stream(State(state): State<AppState>, _ui: Ui) -> Response {
    let rx = state.changes();
    let shutdown = state.shutdown_signal();
    let hello = Event::default().event("hello").data("{}");
    let mut poll = tokio::time::interval(METRICS_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rolled = state.events.counters.rolled_up.load(Ordering::Relaxed);
    let heartbeat = state.config.heartbeat;
    let events = stream::unfold(
        (Some(hello), rx, shutdown, poll, rolled, state),
        |(first, mut rx, mut shutdown, mut poll, mut rolled, state)| async move {
            if let Some(e) = first {
                return Some((Ok::<_, Infallible>(e), (None, rx, shutdown, poll, rolled, state)));
            }
            let data = loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Ok(change) => break json!({"workspace": change.workspace, "kind": change.kind, "key": change.key}),
                        Err(RecvError::Lagged(_)) => break json!({}),
                        Err(RecvError::Closed) => return None,
                    },
                    _ = poll.tick() => {
                        let now = state.events.counters.rolled_up.load(Ordering::Relaxed);
                        if now != rolled {
                            rolled = now;
                            break json!({"kind": "metrics"});
                        }
                    }
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            };
            let event = Event::default().event("change").data(data.to_string());
            Some((Ok(event), (None, rx, shutdown, poll, rolled, state)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response()
}
