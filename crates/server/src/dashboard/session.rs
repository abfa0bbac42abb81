//! Login with an admin token, cookie sessions and CSRF tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sextant_store::{TokenGrant, hash_token};
use sha2::{Digest, Sha256};

use super::layout;
use crate::auth::{Action, Admin, resolve};
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "sextant_session";
/// The login form's double-submit CSRF cookie.
const LOGIN_COOKIE: &str = "sextant_login";
/// How long a session lasts without a new login.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first. Bounds memory.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// SHA-256 of the admin token it signed in with; the token's role and
    /// scope are looked up on every request, so revocation ends the session.
    pub token_hash: String,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
    /// When it stops being valid.
    pub expires: Instant,
}

/// Sessions by SHA-256 of their id (the id itself is never kept).
///
/// In memory, per process: a restart signs everyone out, and several
/// replicas behind one address need sticky sessions. A std `Mutex`: it is
/// never held across an `.await`.
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// Starts a session for `token_hash`; returns the cookie value.
    fn create(&self, token_hash: String) -> Option<String> {
        let id = random_hex()?;
        let session = Arc::new(Session {
            token_hash,
            csrf: random_hex()?,
            expires: Instant::now() + LIFETIME,
        });
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(sha256_hex(&id), session);
        Some(id)
    }

    /// The live session with this cookie value.
    fn get(&self, id: &str) -> Option<Arc<Session>> {
        let key = sha256_hex(id);
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.by_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sha256_hex(id));
    }

    /// Number of live sessions (for tests and metrics).
    pub fn len(&self) -> usize {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, `Secure` when the
/// dashboard is served over https.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in dashboard user: the admin token's role and scope, and the
/// session's CSRF token for the forms it renders.
pub struct Ui {
    token: Arc<sextant_store::TokenRecord>,
    /// The token's role.
    pub role: sextant_store::Role,
    environments: Option<Vec<String>>,
    /// The CSRF token to embed in forms.
    pub csrf: String,
}

impl Ui {
    /// The API caller this user acts as.
    pub fn admin(&self) -> Admin {
        Admin {
            token: self.token.clone(),
            role: self.role,
            environments: self.environments.clone(),
        }
    }

    /// Whether the user may do `action` (the API's own decision).
    pub fn may(&self, action: Action<'_>) -> bool {
        self.admin().require(action).is_ok()
    }

    /// The token's display name.
    pub fn name(&self) -> &str {
        &self.token.name
    }

    /// A 403 page when a submitted CSRF token is not this session's.
    pub fn reject_csrf(&self, submitted: &str) -> Option<Response> {
        if same(&self.csrf, submitted) {
            None
        } else {
            Some(layout::message_page_status(
                StatusCode::FORBIDDEN,
                self,
                None,
                "Form expired",
                "This form's security token does not match your session. Reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            if parts.uri.path() == "/ui/live" {
                return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
            }
            Redirect::to(&format!("/login?next={}", layout::enc(&next))).into_response()
        };
        let Some(id) = cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        let Some(session) = state.sessions.get(id) else {
            return Err(to_login());
        };
        let Some(token) = state.tokens.get(&session.token_hash) else {
            // The token was revoked: the session ends with it.
            state.sessions.remove(id);
            return Err(to_login());
        };
        let TokenGrant::Admin { role, environments } = &token.grant else {
            return Err(to_login());
        };
        Ok(Ui {
            role: *role,
            environments: environments.clone(),
            csrf: session.csrf.clone(),
            token: token.clone(),
        })
    }
}

/// `?next=` after login.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// A local path to go to after login (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `GET /login`.
pub async fn login_page(State(state): State<AppState>, Query(q): Query<Next>) -> Response {
    login_form(&state, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(state: &AppState, next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let Some(csrf) = random_hex() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no randomness available").into_response();
    };
    let body = html! {
        main #main .login {
            h1 { "Sign in to Sextant" }
            p { "Paste an admin token. Its role decides what you can do here." }
            @if let Some(e) = error {
                p .notice.error role="alert" #login-error { (e) }
            }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(safe_next(next));
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus
                    aria-describedby=[error.map(|_| "login-error")];
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, layout::bare("Sign in", body)).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(state, LOGIN_COOKIE, &csrf, 3600));
    response
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: checks the token with the API's own resolver.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(expected, &form.csrf) {
        return login_form(
            &state,
            form.next.as_deref(),
            Some("The sign-in form expired. Please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = match resolve(&state, Some(form.token.trim())) {
        Ok(t) => t,
        Err(e) => return login_form(&state, form.next.as_deref(), Some(&e.detail), StatusCode::UNAUTHORIZED),
    };
    if !matches!(token.grant, TokenGrant::Admin { .. }) {
        return login_form(
            &state,
            form.next.as_deref(),
            Some("SDK tokens cannot sign in; use an admin token."),
            StatusCode::FORBIDDEN,
        );
    }
    let Some(id) = state.sessions.create(hash_token(form.token.trim())) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no randomness available").into_response();
    };
    tracing::info!(token = %token.name, "dashboard sign-in");
    let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(&state, COOKIE, &id, LIFETIME.as_secs()));
    h.append(header::SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", 0));
    response
}

/// A form that carries only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, ui: Ui, Form(form): Form<CsrfForm>) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.remove(id);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, COOKIE, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_login_stays_on_this_site() {
        assert_eq!(safe_next(Some("/w/default/flags?q=a")), "/w/default/flags?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sextant_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn expired_sessions_are_not_returned() {
        let sessions = Sessions::default();
        let id = sessions.create("h".into()).unwrap();
        assert!(sessions.get(&id).is_some());
        let key = sha256_hex(&id);
        sessions.by_hash.lock().unwrap().insert(
            key,
            Arc::new(Session {
                token_hash: "h".into(),
                csrf: "c".into(),
                expires: Instant::now() - Duration::from_secs(1),
            }),
        );
        assert!(sessions.get(&id).is_none());
        assert!(sessions.is_empty());
    }
}
