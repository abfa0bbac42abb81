//! `GET /ui/live`: an SSE stream telling open pages that something changed.
//! Pages then re-fetch themselves and swap their live regions.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::session::Ui;
use crate::state::AppState;

/// Streams `change` events until shutdown. A page that falls behind the
/// bounded channel gets one `change` (it refreshes everything anyway), so
/// nothing is buffered per client beyond the channel.
pub async fn stream(State(state): State<AppState>, _ui: Ui) -> Response {
    let rx = state.changes();
    let shutdown = state.shutdown_signal();
    let hello = Event::default().event("hello").data("{}");
    let events = stream::unfold(
        (Some(hello), rx, shutdown),
        |(first, mut rx, mut shutdown)| async move {
            if let Some(e) = first {
                return Some((Ok::<_, Infallible>(e), (None, rx, shutdown)));
            }
            let received = tokio::select! {
                r = rx.recv() => Some(r),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let data = match received {
                Some(Ok(change)) => json!({"workspace": change.workspace, "kind": change.kind, "key": change.key}),
                Some(Err(RecvError::Lagged(_))) => json!({}),
                Some(Err(RecvError::Closed)) | None => return None,
            };
            let event = Event::default().event("change").data(data.to_string());
            Some((Ok(event), (None, rx, shutdown)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.heartbeat))
        .into_response()
}
