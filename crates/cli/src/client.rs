//! The admin API client every remote command shares: where the server is,
//! which token to send, and how a problem+json error becomes a message that
//! says what to do (and an exit code).

use anyhow::Result;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sextant_core::{Flag, Segment};

use crate::{Failure, exit};

/// How to reach the server; shared by every command that talks to one.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// Server URL.
    #[arg(long, env = "SEXTANT_URL", default_value = "http://127.0.0.1:7400", global = true)]
    pub url: String,
    /// Admin token (printed by `sextant serve` on first start; more with `sextant token create`).
    #[arg(long, env = "SEXTANT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Workspace key.
    #[arg(
        long,
        short = 'w',
        env = "SEXTANT_WORKSPACE",
        default_value = "default",
        global = true
    )]
    pub workspace: String,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connected admin API client.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// The workspace commands act on.
    pub workspace: String,
}

/// A successful response.
pub struct Reply {
    /// The body (`Null` when empty).
    pub body: Value,
}

impl Reply {
    /// The body as `T`, naming the request when the server sent something else.
    pub fn into<T: DeserializeOwned>(self) -> Result<T> {
        serde_json::from_value(self.body).map_err(|e| {
            anyhow::anyhow!("the server's answer has an unexpected shape: {e}; is --url a Sextant server?")
        })
    }
}

/// A response as it came, for callers that act on the status themselves
/// (bulk sends that retry).
pub struct RawReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<std::time::Duration>,
    /// The body.
    pub body: Vec<u8>,
}

/// A stored flag as the admin API returns it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct FlagView {
    /// Key.
    pub key: String,
    /// Version, for `If-Match`.
    pub version: i64,
    /// The flag with its targeting per environment.
    pub flag: Flag,
}

/// A stored segment as the admin API returns it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SegmentView {
    /// Key.
    pub key: String,
    /// Version, for `If-Match`.
    pub version: i64,
    /// The segment.
    pub segment: Segment,
}

/// An environment as the admin API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvironmentView {
    /// Key.
    pub key: String,
}

#[derive(Deserialize)]
struct List<T> {
    items: Vec<T>,
}

#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    detail: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    errors: Vec<FieldProblem>,
}

#[derive(Debug, Deserialize)]
struct FieldProblem {
    field: String,
    message: String,
}

impl Client {
    /// A client for `remote`.
    pub fn new(remote: &Remote) -> Result<Client> {
        let base = Url::parse(&remote.url).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!(
                    "--url `{}` is not a URL ({e}); use e.g. http://127.0.0.1:7400",
                    remote.url
                ),
            )
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Failure::new(
                exit::FAILURE,
                format!(
                    "--url `{}` must be an http:// URL such as http://127.0.0.1:7400",
                    remote.url
                ),
            )
            .into());
        }
        Ok(Client {
            http: reqwest::Client::builder()
                .user_agent(concat!("sextant-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base,
            token: remote.token.clone().filter(|t| !t.trim().is_empty()),
            workspace: remote.workspace.clone(),
        })
    }

    /// The URL of `segments` under the base, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `segments` under `/api/v1/workspaces/{ws}`.
    pub fn ws_path<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["api", "v1", "workspaces", self.workspace.as_str()];
        v.extend_from_slice(rest);
        v
    }

    /// Sends a request; non-2xx answers become a [`Failure`] with the
    /// server's detail, each wrong field and a hint.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_match: Option<i64>,
    ) -> Result<Reply> {
        let url = self.url(segments);
        let mut req = self.http.request(method.clone(), url.clone());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(v) = if_match {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let response = req.send().await.map_err(|e| {
            Failure::new(
                exit::UNAVAILABLE,
                format!(
                    "cannot reach the Sextant server at {}: {}\n  hint: is it running? Start one with `sextant serve`, or point --url / SEXTANT_URL at it",
                    self.base,
                    root_cause(&e)
                ),
            )
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Failure::new(
                exit::UNAVAILABLE,
                format!("the server at {} broke off its answer: {e}", self.base),
            )
        })?;
        if status.is_success() {
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{method} {url} answered with something that is not JSON: {e}"))?
            };
            return Ok(Reply { body });
        }
        let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(self.failure(status, problem, &method, &url).into())
    }

    /// POSTs a JSON body that is already serialised and returns the answer
    /// whatever its status; only a transport error (no answer) is an `Err`.
    pub async fn post_raw(&self, segments: &[&str], body: Vec<u8>) -> Result<RawReply, String> {
        let url = self.url(segments);
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let response = req.send().await.map_err(|e| root_cause(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let body = response.bytes().await.map_err(|e| root_cause(&e))?.to_vec();
        Ok(RawReply {
            status,
            retry_after,
            body,
        })
    }

    /// The [`Failure`] (message, hint, exit code) for a non-2xx `reply` to
    /// a POST to `segments`.
    pub fn failure_of(&self, reply: &RawReply, segments: &[&str]) -> Failure {
        let problem: Problem = serde_json::from_slice(&reply.body).unwrap_or_default();
        self.failure(reply.status, problem, &Method::POST, &self.url(segments))
    }

    fn failure(&self, status: StatusCode, p: Problem, method: &Method, url: &Url) -> Failure {
        let code = match status.as_u16() {
            404 => exit::NOT_FOUND,
            401 | 403 => exit::AUTH,
            429 | 500.. => exit::UNAVAILABLE,
            _ => exit::FAILURE,
        };
        let mut msg = if p.detail.is_empty() {
            format!("{method} {} failed with HTTP {status}", url.path())
        } else {
            p.detail.clone()
        };
        for f in &p.errors {
            let field = if f.field.is_empty() { "body" } else { f.field.as_str() };
            msg.push_str(&format!("\n  {field}: {}", f.message));
        }
        let hint = match p.code.as_str() {
            "token_missing" => Some(
                "pass --token or set SEXTANT_TOKEN; `sextant serve` prints an admin token on its first start"
                    .to_owned(),
            ),
            "token_invalid" => Some("the token is unknown or was revoked; check SEXTANT_TOKEN / --token".to_owned()),
            "token_kind_forbidden" => Some("this is an SDK token; the admin commands need an admin token".to_owned()),
            "permission_denied" => {
                Some("ask an admin for a token whose role allows this (`sextant token create`)".to_owned())
            }
            "version_mismatch" => Some("someone changed it after it was read; run the command again".to_owned()),
            "workspace_not_found" => Some(format!(
                "workspace `{}` does not exist; pick one with --workspace / SEXTANT_WORKSPACE",
                self.workspace
            )),
            "route_not_found" => Some(format!(
                "the server at {} does not have this endpoint; is it a Sextant server of the same version?",
                self.base
            )),
            "overloaded" | "unavailable" => Some("the server is busy or restarting; try again in a moment".to_owned()),
            _ => None,
        };
        if let Some(h) = hint {
            msg.push_str(&format!("\n  hint: {h}"));
        }
        if !p.code.is_empty() {
            msg.push_str(&format!("\n  ({}, HTTP {})", p.code, status.as_u16()));
        }
        Failure::new(code, msg)
    }

    /// GET, decoded.
    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.send(Method::GET, segments, &[], None, None).await?.into()
    }

    /// The workspace's flags.
    pub async fn flags(&self) -> Result<Vec<FlagView>> {
        Ok(self.get::<List<FlagView>>(&self.ws_path(&["flags"])).await?.items)
    }

    /// One flag.
    pub async fn flag(&self, key: &str) -> Result<FlagView> {
        self.get(&self.ws_path(&["flags", key])).await
    }

    /// The workspace's segments.
    pub async fn segments(&self) -> Result<Vec<SegmentView>> {
        Ok(self.get::<List<SegmentView>>(&self.ws_path(&["segments"])).await?.items)
    }

    /// The workspace's environments.
    pub async fn environments(&self) -> Result<Vec<EnvironmentView>> {
        Ok(self
            .get::<List<EnvironmentView>>(&self.ws_path(&["environments"]))
            .await?
            .items)
    }

    /// A list endpoint's raw items.
    pub async fn list(&self, segments: &[&str]) -> Result<Vec<Value>> {
        Ok(self.get::<List<Value>>(segments).await?.items)
    }
}

/// The innermost cause of a transport error ("Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Runs `f` on a single-threaded runtime (the CLI does one thing at a time).
pub fn block_on<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
