//! The web dashboard at `/`: server-rendered HTML (maud), a little
//! hand-written JavaScript for live updates, and SVG charts drawn here.
//!
//! Every page reads through the same [`Store`](sextant_store::Store) calls
//! as the JSON API, and every form calls the JSON API's own handler
//! functions (`api::flags::toggle`, …) with the signed-in token's
//! [`Admin`](crate::auth::Admin), so role checks, validation and the audit
//! trail are the API's — the dashboard adds no business rule of its own.
//! What a role may not do is asked of [`auth::allowed`](crate::auth::allowed)
//! and not offered.
//!
//! Sessions live in memory ([`Sessions`]): an HttpOnly, SameSite=Strict
//! cookie names a random session id; each session carries its CSRF token,
//! checked on every form. Pages update live over SSE (`/ui/live`), fed by
//! [`AppState::announce`](crate::state::AppState::announce).

mod alignment;
mod approvals;
mod assets;
mod audit;
mod charts;
mod context;
mod experiments;
mod flags;
mod layout;
mod live;
mod metrics;
mod rollouts;
mod session;
mod time;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{Redirect, Response};
use axum::routing::get;

pub use session::{Session, Sessions};

use crate::state::AppState;

/// The dashboard's routes: pages, forms, assets and the live stream.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/assets/{file}", get(assets::asset))
        .route("/ui/live", get(live::stream))
        .route("/w/{ws}", get(workspace_home))
        .route("/w/{ws}/flags", get(flags::list).post(flags::create))
        .route("/w/{ws}/flags-new", get(flags::new_page))
        .route("/w/{ws}/flags/{key}", get(flags::detail))
        .route(
            "/w/{ws}/flags/{key}/envs/{env}/toggle",
            get(flags::toggle_page).post(flags::toggle),
        )
        .route(
            "/w/{ws}/flags/{key}/envs/{env}/targeting",
            get(flags::targeting_page).post(flags::targeting),
        )
        .route("/w/{ws}/flags/{key}/envs/{env}/rollout", get(rollouts::detail))
        .route(
            "/w/{ws}/flags/{key}/envs/{env}/rollout/action",
            axum::routing::post(rollouts::action),
        )
        .route(
            "/w/{ws}/flags/{key}/archive",
            get(approvals::archive_page).post(approvals::archive),
        )
        .route(
            "/w/{ws}/flags/{key}/restore",
            get(approvals::restore_page).post(approvals::restore),
        )
        .route("/w/{ws}/rollouts", get(rollouts::list))
        .route("/w/{ws}/experiments", get(experiments::list))
        .route("/w/{ws}/experiments/{key}", get(experiments::detail))
        .route(
            "/w/{ws}/experiments/{key}/decide",
            axum::routing::post(experiments::decide),
        )
        .route("/w/{ws}/approvals", get(approvals::inbox))
        .route("/w/{ws}/approvals/{id}", get(approvals::detail))
        .route("/w/{ws}/approvals/{id}/decide", axum::routing::post(approvals::decide))
        .route("/w/{ws}/principles", get(alignment::principles).post(alignment::define))
        .route("/w/{ws}/violations", axum::routing::post(alignment::declare))
        .route(
            "/w/{ws}/violations/{id}/resolve",
            axum::routing::post(alignment::resolve),
        )
        .route("/w/{ws}/review", get(alignment::weekly))
        .route("/w/{ws}/dora", get(alignment::dora))
        .route("/w/{ws}/audit", get(audit::page))
        .route("/w/{ws}/metrics", get(metrics::page))
        .layer(middleware::map_response(security_headers))
}

/// `/`: the first workspace the caller can see.
async fn home(ui: session::Ui, axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.list_workspaces().await {
        Ok(list) => match list.first() {
            Some(ws) => Redirect::to(&format!("/w/{}/flags", layout::enc(&ws.key))).into_response(),
            None => layout::message_page(&ui, None, "No workspaces", "Create a workspace with the API first."),
        },
        Err(e) => layout::error_page(&ui, None, e.into()),
    }
}

async fn workspace_home(axum::extract::Path(ws): axum::extract::Path<String>) -> Redirect {
    Redirect::to(&format!("/w/{}/flags", layout::enc(&ws)))
}

use axum::response::IntoResponse;

/// Headers every dashboard response carries: no inline script or style, no
/// framing, no sniffing.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
