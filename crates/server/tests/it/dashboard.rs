//! The dashboard over plain HTTP: sign-in, cookies, CSRF, roles, forms, live.

use reqwest::redirect::Policy;
use serde_json::json;

use crate::support::{ADMIN, TestServer};

/// A browser-like client that keeps the session cookie by hand (no
/// redirects followed, so each step's status and headers can be checked).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        Browser {
            http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            base: server.url(""),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.text().await.unwrap(), headers)
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.text().await.unwrap(), headers)
    }

    /// Signs in with `token`; returns the session's CSRF token.
    async fn sign_in(&mut self, token: &str) -> String {
        let (_, page, _) = self.get("/login").await;
        let csrf = hidden(&page, "csrf");
        let (status, _, headers) = self
            .post("/login", &[("token", token), ("csrf", &csrf), ("next", "/")])
            .await;
        assert_eq!(status, 303, "sign-in should redirect");
        assert_eq!(headers["location"], "/");
        let (_, page, _) = self.get("/w/default/flags").await;
        hidden(&page, "csrf")
    }
}

/// The value of the first hidden input called `name`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_redirect_to_sign_in_without_a_session() {
    let server = TestServer::start().await;
    let mut b = Browser::new(&server);
    let (status, _, headers) = b.get("/w/default/flags?q=x").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/login?next=%2Fw%2Fdefault%2Fflags%3Fq%3Dx");
    let (status, _, _) = b.get("/ui/live").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn signing_in_sets_an_httponly_samesite_strict_cookie_and_shows_the_flags() {
    let server = TestServer::start().await;
    server.flag("new-checkout", "production").await;
    let mut b = Browser::new(&server);
    let (_, page, _) = b.get("/login").await;
    let csrf = hidden(&page, "csrf");
    let r = b
        .http
        .post(server.url("/login"))
        .header("cookie", b.cookie_header())
        .form(&[("token", ADMIN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("sextant_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    b.keep(&r);
    let (status, page, headers) = b.get("/w/default/flags").await;
    assert_eq!(status, 200);
    assert!(page.contains("new-checkout"));
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(server.state.sessions.len(), 1);
}

#[tokio::test]
async fn a_wrong_token_or_an_sdk_token_cannot_sign_in() {
    let server = TestServer::start().await;
    let sdk = server.server_token("production").await;
    for (token, status, text) in [
        ("sxa_nope", 401, "unknown or was revoked"),
        (sdk.as_str(), 403, "SDK tokens cannot sign in"),
    ] {
        let mut b = Browser::new(&server);
        let (_, page, _) = b.get("/login").await;
        let csrf = hidden(&page, "csrf");
        let (got, page, _) = b.post("/login", &[("token", token), ("csrf", &csrf)]).await;
        assert_eq!(got, status);
        assert!(page.contains(text), "{page}");
    }
    assert!(server.state.sessions.is_empty());
}

#[tokio::test]
async fn sign_in_without_the_login_forms_csrf_cookie_is_refused() {
    let server = TestServer::start().await;
    let mut b = Browser::new(&server);
    let (status, _, _) = b.post("/login", &[("token", ADMIN), ("csrf", "forged")]).await;
    assert_eq!(status, 403);
    assert!(server.state.sessions.is_empty());
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_changes_nothing() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (status, page, _) = b
        .post(
            "/w/default/flags/f/envs/production/toggle",
            &[("csrf", "wrong"), ("enabled", "false")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(page.contains("Form expired"));
    let flag = server.get("/api/v1/workspaces/default/flags/f").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], true);
}

#[tokio::test]
async fn the_kill_switch_form_turns_the_flag_off_with_the_reason_in_the_audit_log() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/w/default/flags/f/envs/production/toggle?enabled=false").await;
    assert_eq!(status, 200);
    assert!(page.contains("Context for this decision"));
    let (status, _, headers) = b
        .post(
            "/w/default/flags/f/envs/production/toggle",
            &[("csrf", &csrf), ("enabled", "false"), ("reason", "errors spiking")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/w/default/flags/f?done=off");
    let flag = server.get("/api/v1/workspaces/default/flags/f").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);
    let audit = server.get("/api/v1/audit?kind=flag&key=f&action=turn_off").await;
    assert_eq!(audit.body["entries"][0]["reason"], "errors spiking");
}

#[tokio::test]
async fn a_viewer_is_not_offered_changes_and_the_api_refuses_a_forged_one() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let viewer = server.token(json!({"kind": "admin", "role": "viewer"})).await;
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(&viewer).await;
    let (_, page, _) = b.get("/w/default/flags/f").await;
    assert!(
        !page.contains("Kill switch"),
        "viewer must not be offered the kill switch"
    );
    assert!(!page.contains("Edit targeting"));
    let (_, list, _) = b.get("/w/default/flags").await;
    assert!(!list.contains("New flag"));
    let (status, page, _) = b
        .post(
            "/w/default/flags/f/envs/production/toggle",
            &[("csrf", &csrf), ("enabled", "false")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(page.contains("permission_denied"), "{page}");
    let flag = server.get("/api/v1/workspaces/default/flags/f").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], true);
}

#[tokio::test]
async fn an_engineer_may_kill_in_production_but_is_not_offered_turning_on_there() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    server.toggle("f", "production", false).await;
    let engineer = server.token(json!({"kind": "admin", "role": "engineer"})).await;
    let mut b = Browser::new(&server);
    b.sign_in(&engineer).await;
    let (_, page, _) = b.get("/w/default/flags/f").await;
    assert!(
        !page.contains("production/toggle?enabled=true"),
        "engineers may not turn on in production"
    );
    assert!(
        page.contains("staging/toggle?enabled=true"),
        "but may outside production"
    );
}

#[tokio::test]
async fn creating_a_flag_through_the_form_uses_the_apis_validation() {
    let server = TestServer::start().await;
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let form = |key: &'static str, variations: &'static str| {
        vec![
            ("key", key),
            ("kind", "boolean"),
            ("variations", variations),
            ("owner", "growth"),
            ("tags", "checkout, web"),
            ("temporary", "1"),
            ("hypothesis", "One-page checkout lifts conversion"),
            ("metric", "checkout_conversion"),
            ("direction", "increase"),
            ("minimum_effect", "2"),
        ]
    };
    let mut bad = form("bad key!", "on=true\noff=false");
    bad.push(("csrf", &csrf));
    let (status, page, _) = b.post("/w/default/flags", &bad).await;
    assert_eq!(status, 422);
    assert!(page.contains("/flag/key"), "the wrong field is named");
    let mut wrong_kind = form("k1", "on=maybe\noff=false");
    wrong_kind.push(("csrf", &csrf));
    let (status, _, _) = b.post("/w/default/flags", &wrong_kind).await;
    assert_eq!(status, 422, "core validation rejects a non-boolean variation");
    let mut good = form("one-page-checkout", "on=true\noff=false");
    good.push(("csrf", &csrf));
    let (status, _, headers) = b.post("/w/default/flags", &good).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/w/default/flags/one-page-checkout?done=created");
    let flag = server.get("/api/v1/workspaces/default/flags/one-page-checkout").await;
    assert_eq!(flag.body["flag"]["hypothesis"]["minimum_effect"], 0.02);
    assert_eq!(flag.body["flag"]["tags"], json!(["checkout", "web"]));
}

#[tokio::test]
async fn a_targeting_form_with_bad_rules_names_the_field_and_a_good_one_is_stored() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let (_, page, _) = b.get("/w/default/flags/f/envs/production/targeting").await;
    let version = hidden(&page, "version");
    let (status, page, _) = b
        .post(
            "/w/default/flags/f/envs/production/targeting",
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("mode", "variation"),
                ("variation", "on"),
                ("rules", "[oops"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("/targeting/rules"));
    let (status, _, _) = b
        .post(
            "/w/default/flags/f/envs/production/targeting",
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("mode", "split"),
                ("weight.on", "25"),
                ("weight.off", "75"),
                ("off_variation", "off"),
                ("rules", "[]"),
                ("reason", "ramp to 25%"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let flag = server.get("/api/v1/workspaces/default/flags/f").await;
    let t = &flag.body["flag"]["environments"]["production"];
    assert_eq!(
        t["default_serve"]["split"]["weights"][0],
        json!({"variation": "on", "weight": 25_000})
    );
    assert_eq!(t["enabled"], true, "the form keeps the on/off state");
    // The form carried the version it read: a second save of the same form is stale.
    let (status, page, _) = b
        .post(
            "/w/default/flags/f/envs/production/targeting",
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("mode", "none"),
                ("rules", "[]"),
            ],
        )
        .await;
    assert_eq!(status, 412);
    assert!(page.contains("version_mismatch"));
}

/// The dashboard's live stream (`/ui/live`) as a signed-in admin's page
/// reads it: the text received so far.
struct Live {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    text: String,
}

impl Live {
    /// Signs in as admin and opens the stream, read past its `hello` event.
    async fn open(server: &TestServer) -> Self {
        use futures_util::StreamExt;
        let mut b = Browser::new(server);
        b.sign_in(ADMIN).await;
        let r = b
            .http
            .get(server.url("/ui/live"))
            .header("cookie", b.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let stream = r.bytes_stream().map(|chunk| chunk.map(|c| c.to_vec())).boxed();
        let mut live = Self {
            stream,
            text: String::new(),
        };
        live.until("event: hello", "the hello event").await;
        live
    }

    /// Reads until `needle` has arrived; `what` names it if it never does.
    async fn until(&mut self, needle: &str, what: &str) {
        use futures_util::StreamExt;
        while !self.text.contains(needle) {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("{what}: {}", self.text))
                .unwrap()
                .unwrap();
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn the_live_stream_announces_a_committed_change() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let mut live = Live::open(&server).await;
    server.toggle("f", "production", false).await;
    live.until("event: change", "a change event").await;
    assert!(live.text.contains(r#""key":"f""#), "{}", live.text);
}

#[tokio::test]
async fn the_audit_page_shows_entries_and_a_verified_chain() {
    let server = TestServer::start().await;
    server.flag("f", "production").await;
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/w/default/audit?kind=flag").await;
    assert_eq!(status, 200);
    assert!(page.contains("Hash chain verified"));
    assert!(page.contains("<code>f</code>"));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let server = TestServer::start().await;
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let (status, _, _) = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert!(server.state.sessions.is_empty());
    let (status, _, _) = b.get("/w/default/flags").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn the_metrics_page_shows_the_north_star_and_its_tree_with_sparklines() {
    let server = TestServer::start().await;
    for metric in [
        json!({"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
            "good_direction": "increase", "unit": "EUR", "north_star": true}),
        json!({"key": "buyers", "name": "Buyers", "aggregation": "conversion", "event": "purchase",
            "good_direction": "increase", "parent": "revenue"}),
    ] {
        let r = server
            .post("/api/v1/workspaces/default/metrics", json!({"metric": metric}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/w/default/metrics?window=7d").await;
    assert_eq!(status, 200);
    assert!(page.contains("North Star"));
    let revenue = page.find("id=\"metric-revenue\"").expect("the North Star node");
    let buyers = page.find("id=\"metric-buyers\"").expect("its child");
    assert!(revenue < buyers, "the child is drawn under its parent");
    assert!(page.contains("id=\"spark-revenue\""), "a sparkline per metric");
    assert!(page.contains("no trend yet"));
}

/// Conversion (North Star) and errors metrics, flag `checkout` on in
/// production, and a started experiment `checkout-button` on it.
pub(crate) async fn running_experiment(server: &TestServer) {
    server.flag("checkout", "production").await;
    for m in [
        json!({"key": "checkout_conversion", "name": "Checkout conversion", "aggregation": "conversion",
               "event": "purchase", "good_direction": "increase", "north_star": true}),
        json!({"key": "errors", "name": "Errors", "aggregation": "count", "event": "error",
               "good_direction": "decrease", "parent": "checkout_conversion"}),
    ] {
        let r = server
            .post("/api/v1/workspaces/default/metrics", json!({"metric": m}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let experiment = json!({
        "key": "checkout-button", "name": "Green checkout button", "environment": "production", "flag": "checkout",
        "arms": [{"variation": "off", "weight": 50}, {"variation": "on", "weight": 50}],
        "primary_metric": "checkout_conversion", "guardrails": ["errors"],
        "hypothesis": {"direction": "increase", "minimum_effect": 0.05},
        "success_criteria": "conversion up by at least 5% with errors not worse",
        "planned_sample_size": 4000, "analysis": "sequential"
    });
    let r = server
        .post(
            "/api/v1/workspaces/default/experiments",
            json!({"experiment": experiment}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = server
        .post(
            "/api/v1/workspaces/default/experiments/checkout-button/start",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Exposes `units` users to the experiment, `treated` of every 10 on `on`:
/// control buys every 11th unit, treatment every 7th; errors are rare in
/// both. Deterministic, written straight to the store and rolled up.
pub(crate) async fn simulate(server: &TestServer, units: u32, treated: u32) {
    let env = server
        .state
        .store
        .get_environment("default", "production")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 2);
    for i in 0..units {
        let unit = format!("u{i}");
        let on = i % 10 < treated;
        b.exposure("checkout", if on { "on" } else { "off" }, &unit, now);
        if (on && i % 7 == 0) || (!on && i % 11 == 0) {
            b.track("purchase", &unit, Some(20.0), now, None);
        }
        if i % 53 == 0 {
            b.track("error", &unit, None, now, None);
        }
    }
    server
        .state
        .store
        .append_event_batches(&[b.finish(env.id, None)])
        .await
        .unwrap();
    server.state.store.rollup_events(1_000).await.unwrap();
}

#[tokio::test]
async fn the_experiment_page_plots_lift_with_its_interval_and_prints_every_number() {
    let server = TestServer::start().await;
    running_experiment(&server).await;
    simulate(&server, 4000, 5).await;
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/w/default/experiments").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Green checkout button") && page.contains("running"),
        "{page}"
    );
    let (status, page, _) = b.get("/w/default/experiments/checkout-button").await;
    assert_eq!(status, 200, "{page}");
    let api = server
        .get("/api/v1/workspaces/default/experiments/checkout-button/results")
        .await;
    let c = &api.body["analysis"]["primary"]["comparisons"][0];
    // The chart is an SVG image whose description carries the numbers the
    // API reports, and the table repeats them, chance to win included.
    assert!(page.contains(r#"<svg id="primary-lift""#), "{page}");
    let lift = c["lift"].as_f64().unwrap();
    let shown = format!("{:+.1}%", lift * 100.0);
    assert!(
        page.contains(&format!("on: {shown} (")),
        "lift {shown} in the chart: {page}"
    );
    let chance = format!("{:.1}%", c["chance_to_win"].as_f64().unwrap() * 100.0);
    assert!(
        page.contains(&format!("<td class=\"chance\">{chance}</td>")),
        "{chance}: {page}"
    );
    assert!(page.contains("No sample ratio mismatch"), "{page}");
    // No pre-period is configured, and the page says so as the API does.
    assert_eq!(api.body["analysis"]["cuped"]["applied"], false);
    assert!(
        page.contains("Variance reduction (CUPED)") && page.contains("Not applied"),
        "{page}"
    );
    assert!(page.contains("Guardrail: <code>errors</code>"));
    // The decision form sits beside its context.
    assert!(page.contains("Record decision") && page.contains("Context for this decision"));
}

#[tokio::test]
async fn a_sample_ratio_mismatch_is_announced_as_an_alert_above_the_results() {
    let server = TestServer::start().await;
    running_experiment(&server).await;
    // 70% of units on treatment against a configured 50/50.
    simulate(&server, 4000, 7).await;
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (_, page, _) = b.get("/w/default/experiments/checkout-button").await;
    let alert = page.find(r#"id="srm""#).expect("an SRM notice");
    let tag = &page[page[..alert].rfind('<').unwrap()..alert + page[alert..].find('>').unwrap()];
    assert!(tag.contains(r#"role="alert""#), "announced as an alert: {tag}");
    assert!(page[alert..].contains("do not trust these results"), "{page}");
    assert!(
        alert < page.find("primary-lift").unwrap(),
        "the warning comes before the numbers"
    );
}

#[tokio::test]
async fn deciding_an_experiment_in_the_dashboard_records_the_learning_and_a_viewer_is_not_offered_it() {
    let server = TestServer::start().await;
    running_experiment(&server).await;
    simulate(&server, 1000, 5).await;
    let viewer = server.token(json!({"kind": "admin", "role": "viewer"})).await;
    let mut v = Browser::new(&server);
    v.sign_in(&viewer).await;
    let (_, page, _) = v.get("/w/default/experiments/checkout-button").await;
    assert!(!page.contains("Record decision") && page.contains("may not decide experiments"));
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let path = "/w/default/experiments/checkout-button/decide";
    let (status, page, _) = b
        .post(path, &[("csrf", &csrf), ("decision", "ship"), ("learning", "")])
        .await;
    assert_eq!(status, 422, "a decision without a learning is refused: {page}");
    let (status, _, headers) = b
        .post(
            path,
            &[
                ("csrf", &csrf),
                ("decision", "ship"),
                ("learning", "Green converts better"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        "/w/default/experiments/checkout-button?done=decided"
    );
    let r = server
        .get("/api/v1/workspaces/default/experiments/checkout-button")
        .await;
    assert_eq!(r.body["status"], "decided");
    assert_eq!(r.body["learning"], "Green converts better");
}

#[tokio::test]
async fn an_archive_request_waits_for_a_second_product_person_and_is_not_offered_to_its_requester() {
    let server = TestServer::start().await;
    server.flag("old-banner", "production").await;
    let mut requester = Browser::new(&server);
    let csrf = requester.sign_in(ADMIN).await;
    let (status, page, _) = requester.get("/w/default/flags/old-banner/archive").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Needs approval"),
        "the context says it is irreversible: {page}"
    );
    let (status, _, headers) = requester
        .post(
            "/w/default/flags/old-banner/archive",
            &[("csrf", &csrf), ("reason", "launched long ago")],
        )
        .await;
    assert_eq!(status, 303);
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/w/default/approvals?done=filed-"), "{location}");
    let id = location.rsplit('-').next().unwrap().to_owned();
    // Nothing changed yet, and the requester is not offered the decision.
    let flag = server.get("/api/v1/workspaces/default/flags/old-banner").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], true);
    let (_, page, _) = requester.get(&format!("/w/default/approvals/{id}")).await;
    assert!(
        page.contains("You filed this request") && !page.contains("id=\"approve\""),
        "{page}"
    );
    // A forged approval by the requester is refused by the API's rule.
    let (status, page, _) = requester
        .post(
            &format!("/w/default/approvals/{id}/decide"),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("self_approval_refused"));
    // An engineer may not decide either.
    let engineer = server.token(json!({"kind": "admin", "role": "engineer"})).await;
    let mut e = Browser::new(&server);
    e.sign_in(&engineer).await;
    let (_, page, _) = e.get("/w/default/approvals").await;
    assert!(page.contains("Your role (engineer) may not decide"), "{page}");
    // A second person with the product role approves; the flag is archived.
    let product = server
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    let mut p = Browser::new(&server);
    let pcsrf = p.sign_in(&product).await;
    let (_, page, _) = p.get("/w/default/approvals").await;
    assert!(page.contains(&format!("Review #{id}")), "{page}");
    let (_, page, _) = p.get(&format!("/w/default/approvals/{id}")).await;
    assert!(page.contains("id=\"approve\"") && page.contains("Context for this decision"));
    let (status, _, headers) = p
        .post(
            &format!("/w/default/approvals/{id}/decide"),
            &[("csrf", &pcsrf), ("decision", "approve"), ("reason", "agreed")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/w/default/approvals?done=approved");
    let r = server
        .get(&format!("/api/v1/workspaces/default/change-requests/{id}"))
        .await;
    assert_eq!(r.body["status"], "applied");
    assert!(r.body["decided_by"].as_str().unwrap().starts_with("pat"));
    let flag = server.get("/api/v1/workspaces/default/flags/old-banner").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);
    // The list marks it archived and filters by lifecycle; its page offers
    // no second archive request.
    let (_, page, _) = p.get("/w/default/flags?lifecycle=archived").await;
    assert!(
        page.contains("1 of 1 flags") && page.contains("archived</span>"),
        "{page}"
    );
    let (_, page, _) = p.get("/w/default/flags?lifecycle=active").await;
    assert!(page.contains("0 of 1 flags"), "{page}");
    let (_, page, _) = requester.get("/w/default/flags/old-banner").await;
    assert!(
        !page.contains("id=\"archive\"") && page.contains("id=\"restore\""),
        "{page}"
    );
    // Restoring is a request too.
    let (status, _, headers) = requester
        .post(
            "/w/default/flags/old-banner/restore",
            &[("csrf", &csrf), ("reason", "still needed")],
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/w/default/approvals?done=filed-")
    );
    let r = server
        .get("/api/v1/workspaces/default/change-requests?status=pending")
        .await;
    assert_eq!(r.body["items"][0]["action"], "flag.restore", "{:?}", r.body);
}

/// Defines `principle` and declares `violation` of it through the API.
async fn violated_principle(server: &TestServer, principle: serde_json::Value, violation: serde_json::Value) {
    for (path, body) in [("principles", principle), ("violations", violation)] {
        let r = server.post(&format!("/api/v1/workspaces/default/{path}"), body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
}

#[tokio::test]
async fn the_decision_context_shows_the_metric_experiments_principles_and_whether_approval_is_needed() {
    let server = TestServer::start().await;
    running_experiment(&server).await;
    simulate(&server, 1000, 5).await;
    violated_principle(
        &server,
        json!({"key": "privacy-first", "name": "Privacy first", "description": "No tracking without consent"}),
        json!({"principle": "privacy-first", "subject": "flag:checkout", "justification": "needed for fraud checks",
                   "owner": "risk-team", "review_date": "2030-01-01"}),
    )
    .await;
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (_, page, _) = b
        .get("/w/default/flags/checkout/envs/production/toggle?enabled=false")
        .await;
    let context = &page[page.find("Context for this decision").expect("a context panel")..];
    assert!(
        context.contains("Target metric now") && context.contains("Checkout conversion"),
        "{context}"
    );
    assert!(
        context.contains("Green checkout button"),
        "the running experiment: {context}"
    );
    assert!(
        context.contains("<code>errors</code>: <span class=\"muted\">no significant change</span>"),
        "the experiment's guardrail at this look: {context}"
    );
    assert!(
        context.contains("Privacy first") && context.contains("needed for fraud checks"),
        "{context}"
    );
    assert!(context.contains("No approval needed"), "{context}");
    // A policy that gates targeting shows on the targeting form, and saving
    // it files a change request instead of changing the flag.
    let policy = json!({"policy": {"require_approval": ["flag.targeting"]}});
    let r = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/workspaces/default/policy",
            ADMIN,
            Some(policy),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let product = server.token(json!({"kind": "admin", "role": "product"})).await;
    let r = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/workspaces/default/change-requests/{id}/approve"),
            &product,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, page, _) = b.get("/w/default/flags/checkout/envs/production/targeting").await;
    assert!(
        page.contains("this workspace's policy gates targeting changes"),
        "{page}"
    );
}

#[tokio::test]
async fn principles_weekly_review_and_dora_pages_show_stored_data() {
    let server = TestServer::start().await;
    server.flag("checkout", "production").await;
    violated_principle(
        &server,
        json!({"key": "mobile-parity", "name": "Mobile parity", "description": "Web and app ship together"}),
        json!({"principle": "mobile-parity", "subject": "flag:checkout", "justification": "web first for the sale",
                   "owner": "web-team", "review_date": "2020-01-01"}),
    )
    .await;
    let now = chrono::Utc::now();
    for (status, hours_ago) in [("success", 30), ("failed", 20), ("success", 10)] {
        let at = now - chrono::Duration::hours(hours_ago);
        let r = server
            .post(
                "/api/v1/deploys",
                json!({"workspace": "default", "service": "web", "version": format!("v{hours_ago}"),
                       "commit_time": (at - chrono::Duration::hours(2)).to_rfc3339(), "deploy_time": at.to_rfc3339(),
                       "status": status}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let mut b = Browser::new(&server);
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/w/default/principles").await;
    assert_eq!(status, 200);
    assert!(page.contains("Mobile parity") && page.contains("web first for the sale") && page.contains("overdue"));
    let (status, page, _) = b.get("/w/default/review").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Open principle violations (1)"), "{page}");
    assert!(page.contains("What we learned") && page.contains("Stop") && page.contains("Start"));
    let (status, page, _) = b.get("/w/default/dora").await;
    assert_eq!(status, 200, "{page}");
    let api = server.get("/api/v1/dora?workspace=default").await;
    assert_eq!(api.status, 200, "{:?}", api.body);
    assert!(page.contains("<th scope=\"row\">web</th>"), "{page}");
    assert!(page.contains("Deploys per service"), "{page}");
}

#[tokio::test]
async fn the_live_stream_announces_new_metric_data() {
    let server = TestServer::start().await;
    let sdk = server.server_token("production").await;
    let mut live = Live::open(&server).await;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = server
        .call(
            reqwest::Method::POST,
            "/events/v1/batch",
            &sdk,
            Some(json!({"batch_id": "live-1", "events": [
                {"kind": "track", "event": "purchase", "targeting_key": "u1", "value": 3.0, "timestamp": at}]})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    live.until(r#""kind":"metrics""#, "a metrics change event").await;
}

#[tokio::test]
async fn a_rollout_is_started_and_paused_from_its_page_and_a_viewer_is_not_offered_it() {
    let server = TestServer::start().await;
    server.flag("search-v2", "staging").await;
    let plan = json!({"plan": {"control": "off", "treatment": "on",
        "stages": [{"percent": 10, "min_hold_seconds": 86400}, {"percent": 100}]}});
    let r = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/workspaces/default/flags/search-v2/environments/staging/rollout",
            ADMIN,
            Some(plan),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let page_path = "/w/default/flags/search-v2/envs/staging/rollout";
    let viewer = server.token(json!({"kind": "admin", "role": "viewer"})).await;
    let mut v = Browser::new(&server);
    v.sign_in(&viewer).await;
    let (_, page, _) = v.get(page_path).await;
    assert!(
        page.contains("may not change this rollout") && !page.contains("rollout-start"),
        "{page}"
    );
    let mut b = Browser::new(&server);
    let csrf = b.sign_in(ADMIN).await;
    let (status, page, _) = b.get(page_path).await;
    assert_eq!(status, 200);
    assert!(page.contains("stage 1: 10% (todo), stage 2: 100% (todo)"), "{page}");
    let action = format!("{page_path}/action");
    let (status, _, headers) = b
        .post(
            &action,
            &[("csrf", &csrf), ("action", "start"), ("reason", "ship it slowly")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], format!("{page_path}?done=start"));
    let r = server
        .get("/api/v1/workspaces/default/flags/search-v2/environments/staging/rollout")
        .await;
    assert_eq!(r.body["status"], "running");
    // Pausing twice: the second is the API's conflict, shown on the page.
    let (status, _, _) = b.post(&action, &[("csrf", &csrf), ("action", "pause")]).await;
    assert_eq!(status, 303);
    let (status, page, _) = b.post(&action, &[("csrf", &csrf), ("action", "pause")]).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("only a running plan can be paused"), "{page}");
    let (_, page, _) = b.get("/w/default/rollouts").await;
    assert!(
        page.contains("search-v2 in staging") && page.contains("paused"),
        "{page}"
    );
}

#[tokio::test]
async fn violations_are_declared_and_resolved_through_the_principles_page_by_the_roles_the_api_allows() {
    let server = TestServer::start().await;
    let product = server.token(json!({"kind": "admin", "role": "product"})).await;
    let mut p = Browser::new(&server);
    let csrf = p.sign_in(&product).await;
    let (status, _, headers) = p
        .post(
            "/w/default/principles",
            &[
                ("csrf", &csrf),
                ("key", "mobile-parity"),
                ("name", "Mobile parity"),
                ("description", "Ship together"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/w/default/principles?done=principle");
    // A missing justification is named by the API's validation.
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("principle", "mobile-parity"),
        ("subject", "flag:checkout"),
        ("justification", ""),
        ("owner", "web-team"),
        ("review_date", "2031-02-03"),
    ];
    let (status, page, _) = p.post("/w/default/violations", &form).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("<code>/justification</code>"), "{page}");
    assert!(page.contains("value=\"web-team\""), "the draft is kept: {page}");
    form[3].1 = "web first for the sale";
    let (status, _, _) = p.post("/w/default/violations", &form).await;
    assert_eq!(status, 303);
    let r = server.get("/api/v1/workspaces/default/violations").await;
    let id = r.body["items"][0]["id"].as_i64().unwrap();
    // A viewer sees the violation but is offered no form.
    let viewer = server.token(json!({"kind": "admin", "role": "viewer"})).await;
    let mut v = Browser::new(&server);
    v.sign_in(&viewer).await;
    let (_, page, _) = v.get("/w/default/principles").await;
    assert!(page.contains("web first for the sale"));
    assert!(
        !page.contains("Declare violation") && !page.contains(">Resolve<"),
        "{page}"
    );
    let (status, _, _) = p
        .post(
            &format!("/w/default/violations/{id}/resolve"),
            &[("csrf", &csrf), ("resolution", "app caught up")],
        )
        .await;
    assert_eq!(status, 303);
    let r = server.get("/api/v1/workspaces/default/violations").await;
    assert_eq!(r.body["items"][0]["resolution"], "app caught up");
}

#[tokio::test]
async fn an_experiment_with_a_pre_period_shows_its_cuped_adjusted_comparison() {
    let server = TestServer::start().await;
    server.flag("checkout", "production").await;
    for m in [
        json!({"key": "checkout_conversion", "name": "Checkout conversion", "aggregation": "conversion",
               "event": "purchase", "good_direction": "increase", "north_star": true}),
        json!({"key": "revenue", "name": "Revenue per user", "aggregation": "mean", "event": "purchase",
               "good_direction": "increase", "parent": "checkout_conversion"}),
        json!({"key": "purchases", "name": "Purchases", "aggregation": "count", "event": "purchase",
               "good_direction": "increase", "parent": "checkout_conversion"}),
        json!({"key": "order_value", "name": "Order value", "aggregation": "ratio", "numerator": "revenue",
               "denominator": "purchases", "good_direction": "increase", "parent": "checkout_conversion"}),
    ] {
        let r = server
            .post("/api/v1/workspaces/default/metrics", json!({"metric": m}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let experiment = json!({
        "key": "price-anchor", "environment": "production", "flag": "checkout",
        "arms": [{"variation": "off", "weight": 50}, {"variation": "on", "weight": 50}],
        "guardrails": ["order_value"],
        "primary_metric": "revenue", "hypothesis": {"direction": "increase", "minimum_effect": 0.02},
        "success_criteria": "revenue per user up", "planned_sample_size": 2000, "pre_period_days": 7
    });
    let base = "/api/v1/workspaces/default/experiments";
    let r = server.post(base, json!({"experiment": experiment})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = server.post(&format!("{base}/price-anchor/start"), json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Each unit spends about the same before and after exposure (its own
    // level plus a little noise); treatment adds 2 after.
    let env = server
        .state
        .store
        .get_environment("default", "production")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut b = sextant_store::EventBatchBuilder::with_capacity(6000);
    for i in 0..2000u32 {
        let unit = format!("c{i}");
        let treated = i % 2 == 1;
        let level = 20.0 + f64::from(i % 40);
        let noise = f64::from((i * 7) % 5) - 2.0;
        b.track("purchase", &unit, Some(level + noise), now - 48 * 3_600_000, None);
        b.exposure("checkout", if treated { "on" } else { "off" }, &unit, now);
        let after = level - noise + if treated { 2.0 } else { 0.0 };
        b.track("purchase", &unit, Some(after), now, None);
    }
    server
        .state
        .store
        .append_event_batches(&[b.finish(env.id, None)])
        .await
        .unwrap();
    server.state.store.rollup_events(1_000).await.unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN).await;
    let (status, page, _) = browser.get("/w/default/experiments/price-anchor").await;
    assert_eq!(status, 200, "{page}");
    let api = server.get(&format!("{base}/price-anchor/results")).await;
    let cuped = &api.body["analysis"]["cuped"];
    assert_eq!(cuped["applied"], true, "{cuped}");
    let removed = cuped["comparisons"][0]["variance_reduction"].as_f64().unwrap();
    let section = &page[page.find("id=\"cuped\"").expect("a CUPED section")..];
    assert!(section.contains("7 days before its first exposure"), "{section}");
    assert!(
        section.contains(&format!("<td>{:.1}%</td>", removed * 100.0)),
        "{removed}: {section}"
    );
    // The guardrail, a ratio, has its own block, adjusted by its pre-period ratio.
    let guardrail = &api.body["analysis"]["guardrails"][0]["cuped"];
    assert_eq!(guardrail["applied"], true, "{guardrail}");
    let removed = guardrail["comparisons"][0]["variance_reduction"].as_f64().unwrap();
    let section = &page[page
        .find("id=\"guardrail-0-cuped\"")
        .expect("the guardrail's CUPED section")..];
    assert!(
        section.contains("Variance reduction (CUPED) of <code>order_value</code>"),
        "{section}"
    );
    assert!(section.contains("adjusted by its ratio"), "{section}");
    assert!(
        section.contains(&format!("<td>{:.1}%</td>", removed * 100.0)),
        "{removed}: {section}"
    );
}

#[tokio::test]
async fn the_live_stream_announces_a_principle_defined_through_the_api_not_only_the_dashboard() {
    let server = TestServer::start().await;
    let mut live = Live::open(&server).await;
    let created = server
        .post(
            "/api/v1/workspaces/default/principles",
            serde_json::json!({"key": "customers-first", "name": "Customers first", "description": "No dark patterns"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    live.until("event: change", "a change event").await;
    assert!(live.text.contains(r#""kind":"principle""#), "{}", live.text);
}
