//! The page shell, notices and error pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::Ui;
use crate::error::ApiError;

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Flags list and detail.
    Flags,
    /// The audit log.
    Audit,
    /// The North Star and metric tree.
    Metrics,
    /// Rollout plans.
    Rollouts,
    /// Experiments and their results.
    Experiments,
    /// The approvals inbox.
    Approvals,
    /// Principles and violations.
    Principles,
    /// The weekly review.
    Review,
    /// DORA figures.
    Dora,
    /// Anything else.
    None,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sextant" }
            link rel="stylesheet" href=(assets::CSS_URL);
            script src=(assets::JS_URL) defer {}
        }
    }
}

/// A page without navigation (sign-in).
pub fn bare(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (main) }
        }
    }
}

/// A signed-in page: skip link, navigation, the user, the live indicator.
pub fn page(ui: &Ui, ws: Option<&str>, nav: Nav, title: &str, main: Markup) -> Markup {
    let link = |target: Nav, path: &str, label: &str| {
        html! {
            @if let Some(ws) = ws {
                li { a href=(format!("/w/{}/{path}", enc(ws))) aria-current=[(nav == target).then_some("page")] { (label) } }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-live-src="/ui/live" {
                a .skip href="#main" { "Skip to content" }
                header .top {
                    a .brand href="/" { "Sextant" }
                    nav aria-label="Main" {
                        ul {
                            (link(Nav::Metrics, "metrics", "Metrics"))
                            (link(Nav::Flags, "flags", "Flags"))
                            (link(Nav::Rollouts, "rollouts", "Rollouts"))
                            (link(Nav::Experiments, "experiments", "Experiments"))
                            (link(Nav::Approvals, "approvals", "Approvals"))
                            (link(Nav::Principles, "principles", "Principles"))
                            (link(Nav::Review, "review", "Weekly review"))
                            (link(Nav::Dora, "dora", "DORA"))
                            (link(Nav::Audit, "audit", "Audit log"))
                        }
                    }
                    div .who {
                        span #live-status role="status" aria-live="polite" { "Connecting…" }
                        span { (ui.name()) " · " (ui.role.as_str()) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(ui.csrf);
                            button type="submit" .link { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// An HTML response with status 200.
pub fn ok(markup: Markup) -> Response {
    markup.into_response()
}

/// A page saying one thing.
pub fn message_page(ui: &Ui, ws: Option<&str>, title: &str, text: &str) -> Response {
    message_page_status(StatusCode::OK, ui, ws, title, text)
}

/// A page saying one thing, with a status.
pub fn message_page_status(status: StatusCode, ui: &Ui, ws: Option<&str>, title: &str, text: &str) -> Response {
    let main = html! { h1 { (title) } p { (text) } };
    (status, page(ui, ws, Nav::None, title, main)).into_response()
}

/// The API's error as a page, with the API's status.
pub fn error_page(ui: &Ui, ws: Option<&str>, e: ApiError) -> Response {
    let (_, status, title) = e.code.meta();
    let main = html! {
        h1 { (title) }
        (error_box(&e))
    };
    (status, page(ui, ws, Nav::None, title, main)).into_response()
}

/// An error notice listing every wrong field, as the API reports them.
pub fn error_box(e: &ApiError) -> Markup {
    let (code, _, title) = e.code.meta();
    html! {
        div .notice.error role="alert" #form-error {
            p { strong { (title) } " — " (e.detail) " " span .code { "(" (code) ")" } }
            @if !e.errors.is_empty() {
                ul {
                    @for f in &e.errors {
                        li { @if !f.field.is_empty() { code { (f.field) } ": " } (f.message) }
                    }
                }
            }
        }
    }
}

/// A success notice.
pub fn done_box(text: &str) -> Markup {
    html! { div .notice.done role="status" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(enc("new-checkout_v2.1"), "new-checkout_v2.1");
        assert_eq!(enc("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(enc("é"), "%C3%A9");
    }
}
