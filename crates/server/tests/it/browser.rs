//! The dashboard in a real browser: Debian's Chromium, headless, driven by
//! chromedriver over the W3C WebDriver protocol. Screenshots of the main
//! pages go to `test-output/dashboard/` (git-ignored).
//!
//! The WebDriver client is the few commands below, spoken over the
//! `reqwest` the tests already use; a WebDriver crate would switch on
//! `serde_json/preserve_order` for every test build of the workspace and
//! add a second `reqwest`.
//!
//! Without Chromium the test fails when `CI=true` (`scripts/test`
//! installs it) and says so and passes otherwise.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::dashboard::{running_experiment, simulate};
use crate::support::{ADMIN, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a test waits for. Generous: CI
/// machines are shared; the measured latency is printed.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running chromedriver; killed on drop.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (a WebDriver session).
struct Browser {
    http: reqwest::Client,
    url: String,
}

fn element_id(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an element: {v}"))
        .to_owned()
}

impl Driver {
    /// Starts chromedriver on a free port, or `None` (after saying why)
    /// when Chromium is not installed and this is not CI.
    async fn start() -> Option<Driver> {
        let present = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !present {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{CHROMIUM} and {CHROMEDRIVER} are required in CI (apt-get install chromium chromium-driver)");
            }
            eprintln!("browser tests not run: {CHROMIUM} or {CHROMEDRIVER} missing (scripts/test installs them)");
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Driver {
            child,
            base,
            http,
            _profile: tempfile::tempdir().unwrap(),
        })
    }

    /// A new headless Chromium with a fresh profile.
    async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir_in(self._profile.path()).unwrap().keep();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-sync",
                    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Browser {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.base),
        }
    }
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        element_id(
            &self
                .post("/element", json!({"using": "css selector", "value": css}))
                .await,
        )
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Replaces a field's text.
    async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text})).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Runs axe-core (WCAG 2 A and AA rules) on the current page; returns
    /// each violation as "rule: help (targets)".
    async fn axe(&self, source: &str) -> Vec<String> {
        self.js(&format!("{source}\n;return null;")).await;
        let script = "var done = arguments[arguments.length - 1];\n\
            axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\n\
              .then(function (r) { done(r.violations.map(function (v) {\n\
                return v.id + ': ' + v.help + ' (' + v.nodes.map(function (n) { return n.target.join(' '); }).join(', ') + ')';\n\
              })); }, function (e) { done(['axe failed: ' + e]); });";
        let v = self.post("/execute/async", json!({"script": script, "args": []})).await;
        v.as_array()
            .unwrap_or_else(|| panic!("axe returned {v}"))
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The text of the first element matching `css`, or "".
    async fn text(&self, css: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.textContent : '';",
            serde_json::to_string(css).unwrap()
        );
        self.js(&script).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `css`'s text contains `needle`; returns how long it took.
    async fn wait_text(&self, css: &str, needle: &str) -> Duration {
        let start = Instant::now();
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "`{css}` never showed `{needle}`; it shows: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn path(&self) -> String {
        let url = self.cmd(reqwest::Method::GET, "/url", None).await;
        let url = url.as_str().unwrap();
        url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Opens a second tab of the same browser (same session cookie) and
    /// switches to it; returns (old, new) handles.
    async fn new_tab(&self) -> (String, String) {
        let old = self.cmd(reqwest::Method::GET, "/window", None).await;
        let new = self.post("/window/new", json!({"type": "tab"})).await;
        let new = new["handle"].as_str().unwrap().to_owned();
        self.post("/window", json!({"handle": new})).await;
        (old.as_str().unwrap().to_owned(), new)
    }

    async fn switch(&self, handle: &str) {
        self.post("/window", json!({"handle": handle})).await;
    }

    async fn sign_in(&self, server: &TestServer, token: &str) {
        self.goto(&server.url("/login")).await;
        self.fill("#token", token).await;
        self.click("button[type=submit]").await;
        self.wait_text("h1", "Flags").await;
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-output/dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_manager_creates_targets_and_kills_a_flag_while_a_second_tab_follows_live() {
    let Some(driver) = Driver::start().await else { return };
    let server = TestServer::start().await;
    server.flag("dark-mode", "staging").await;
    let b = driver.browser().await;

    // Sign in.
    b.goto(&server.url("/")).await;
    assert!(
        b.path().await.starts_with("/login"),
        "signed-out visitors are sent to sign in"
    );
    b.screenshot("01-login").await;
    b.sign_in(&server, ADMIN).await;
    b.screenshot("02-flags").await;

    // Create a flag.
    b.click("a[href='/w/default/flags-new']").await;
    b.fill("#key", "one-page-checkout").await;
    b.fill("#description", "Checkout on a single page").await;
    b.fill("#owner", "growth-team").await;
    b.fill("#tags", "checkout, web").await;
    b.fill("#hypothesis", "Fewer steps lift checkout conversion").await;
    b.fill("#metric", "checkout_conversion").await;
    b.fill("#minimum_effect", "2").await;
    b.fill("#reason", "Q3 bet").await;
    b.screenshot("03-new-flag").await;
    b.click("#create").await;
    b.wait_text(".notice.done", "Flag created").await;

    // Turn it on in production, through the confirmation.
    b.click("#env-production a[href$='toggle?enabled=true']").await;
    b.wait_text("h1", "Turn on one-page-checkout").await;
    b.click("#confirm").await;
    b.wait_text("#env-production h3", "ON").await;

    // A second tab follows the flag; a marker shows it never reloads.
    let (first, second) = b.new_tab().await;
    b.goto(&server.url("/w/default/flags/one-page-checkout")).await;
    b.wait_text("#live-status", "Live").await;
    b.js("window.__noReload = 42; return null;").await;

    // Change targeting in the first tab: 25% get the new checkout.
    b.switch(&first).await;
    b.click("#env-production a[href$='/targeting']").await;
    b.click("#mode-split").await;
    b.fill("#weight-on", "25").await;
    b.fill("#weight-off", "75").await;
    b.click("#off_variation option[value='off']").await;
    b.fill("#reason", "ramp to a quarter").await;
    b.screenshot("04-targeting").await;
    b.click("#save").await;
    b.wait_text(".notice.done", "Targeting saved").await;
    b.switch(&second).await;
    let took = b.wait_text("#env-production", "on 25%").await;
    eprintln!("second tab showed the targeting change {took:?} after the first tab's save returned");
    assert_eq!(
        b.js("return window.__noReload;").await,
        json!(42),
        "the second tab updated without a reload"
    );

    // The kill switch, with confirmation, in the first tab.
    b.switch(&first).await;
    b.screenshot("05-flag-detail").await;
    b.click("#env-production a.danger").await;
    b.wait_text("h1", "Kill switch").await;
    b.wait_text("aside.context", "Fewer steps lift checkout conversion")
        .await;
    b.fill("#reason", "checkout errors spiking").await;
    b.screenshot("06-kill-confirm").await;
    b.click("#confirm").await;
    b.wait_text(".notice.done", "Kill switch applied").await;
    b.switch(&second).await;
    let took = b.wait_text("#env-production h3", "OFF").await;
    eprintln!("second tab showed the kill switch {took:?} after the first tab's confirm returned");
    assert_eq!(b.js("return window.__noReload;").await, json!(42));
    b.wait_text("#history", "checkout errors spiking").await;

    // What SDKs see agrees with what the page says.
    let flag = server.get("/api/v1/workspaces/default/flags/one-page-checkout").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);

    // The audit log.
    b.switch(&first).await;
    b.click("nav a[href='/w/default/audit']").await;
    b.wait_text("#chain", "Hash chain verified").await;
    b.screenshot("07-audit").await;

    // The North Star and metric tree.
    let r = server
        .post(
            "/api/v1/workspaces/default/metrics",
            json!({"metric": {"key": "checkout_conversion", "name": "Checkout conversion", "aggregation": "conversion",
                "event": "purchase", "good_direction": "increase", "north_star": true}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    b.click("nav a[href='/w/default/metrics']").await;
    b.wait_text("#tree", "Checkout conversion").await;
    b.screenshot("09-metrics").await;

    // Filtering the list by tag.
    b.goto(&server.url("/w/default/flags?tag=checkout")).await;
    b.wait_text("#flag-count", "1 of 2 flags").await;
    b.quit().await;

    // A second user, a viewer, is offered no change at all.
    let viewer = server.token(json!({"kind": "admin", "role": "viewer"})).await;
    let v = driver.browser().await;
    v.sign_in(&server, &viewer).await;
    v.goto(&server.url("/w/default/flags/one-page-checkout")).await;
    v.wait_text("h1", "one-page-checkout").await;
    let offered = v.js("return document.querySelectorAll('.actions a').length;").await;
    assert_eq!(
        offered,
        json!(0),
        "a viewer sees no kill switch, turn-on or targeting link"
    );
    v.screenshot("08-viewer-flag").await;
    v.quit().await;
}

/// axe-core's source from `tests/browser/node_modules` (scripts/test runs
/// `npm ci` there), or `None` (after saying why) outside CI.
fn axe_source() -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{} is required in CI (npm ci in tests/browser): {e}", path.display())
        }
        Err(e) => {
            eprintln!(
                "accessibility pass not run: {}: {e} (scripts/test installs it)",
                path.display()
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_person_approves_a_request_and_results_update_live_on_accessible_pages() {
    let Some(driver) = Driver::start().await else { return };
    let axe = axe_source();
    let server = TestServer::start().await;
    running_experiment(&server).await;
    simulate(&server, 4000, 5).await;
    let plan = json!({"plan": {"control": "off", "treatment": "on",
        "stages": [{"percent": 5, "min_hold_seconds": 3600}, {"percent": 25, "min_hold_seconds": 3600}, {"percent": 100}],
        "guardrails": [{"metric": "errors", "direction": "decrease", "tolerance": 0.01}]}});
    let r = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/workspaces/default/flags/checkout/environments/staging/rollout",
            ADMIN,
            Some(plan),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (path, body) in [
        (
            "/api/v1/workspaces/default/principles",
            json!({"key": "privacy-first", "name": "Privacy first", "description": "No tracking without consent"}),
        ),
        (
            "/api/v1/workspaces/default/violations",
            json!({"principle": "privacy-first", "subject": "flag:checkout", "justification": "fraud checks need it",
                "owner": "risk-team", "review_date": "2030-01-01"}),
        ),
    ] {
        let r = server.post(path, body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let now = chrono::Utc::now();
    for (status, hours_ago) in [("success", 50), ("failed", 30), ("success", 10)] {
        let at = now - chrono::Duration::hours(hours_ago);
        let r = server
            .post(
                "/api/v1/deploys",
                json!({"workspace": "default", "service": "web", "version": format!("v{hours_ago}"),
                       "commit_time": (at - chrono::Duration::hours(3)).to_rfc3339(), "deploy_time": at.to_rfc3339(),
                       "status": status}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    // The requester asks to archive a flag: irreversible, so a request.
    let a = driver.browser().await;
    a.sign_in(&server, ADMIN).await;
    a.goto(&server.url("/w/default/flags/checkout")).await;
    a.click("#archive").await;
    a.wait_text("aside.context", "Needs approval").await;
    a.fill("#reason", "replaced by the new checkout").await;
    a.screenshot("10-archive-request").await;
    a.click("#request").await;
    a.wait_text(".notice.done", "Change request #").await;
    let pending = a.text("#pending").await;
    assert!(pending.contains("You filed this request"), "{pending}");
    assert_eq!(
        a.js("return document.querySelectorAll('#pending a.button').length;")
            .await,
        json!(0),
        "the requester is not offered the decision"
    );
    a.js("window.__noReload = 7; return null;").await;
    a.wait_text("#live-status", "Live").await;

    // A second person, signed in with their own product token in another
    // browser, approves it from the inbox.
    let product = server
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    let b = driver.browser().await;
    b.sign_in(&server, &product).await;
    b.click("nav a[href='/w/default/approvals']").await;
    b.wait_text("#pending", "Review #").await;
    b.screenshot("11-approvals-inbox").await;
    b.click("#pending a.button").await;
    b.wait_text("aside.context", "Approving applies").await;
    b.fill("#reason", "agreed in the weekly review").await;
    b.screenshot("12-approve").await;
    // By keyboard: focus the approve button and press Enter.
    b.js("document.getElementById('approve').focus(); return null;").await;
    b.post(
        "/actions",
        json!({"actions": [{"type": "key", "id": "kb", "actions": [
            {"type": "keyDown", "value": "\u{E007}"}, {"type": "keyUp", "value": "\u{E007}"}]}]}),
    )
    .await;
    b.wait_text(".notice.done", "Approved").await;
    let took = a.wait_text("#decided", "applied").await;
    eprintln!("the requester's inbox showed the approval {took:?} after the approver's form returned");
    assert_eq!(
        a.js("return window.__noReload;").await,
        json!(7),
        "updated without a reload"
    );
    let flag = server.get("/api/v1/workspaces/default/flags/checkout").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);
    b.quit().await;

    // Experiment results: lift with its interval, chance to win, SRM.
    a.goto(&server.url("/w/default/experiments/checkout-button")).await;
    a.wait_text("#results", "Chance to win").await;
    a.wait_text("#srm", "No sample ratio mismatch").await;
    assert_eq!(
        a.js("return document.querySelectorAll('#primary-lift circle').length;")
            .await,
        json!(1),
        "one treatment arm, one estimate plotted"
    );
    a.screenshot("13-experiment-results").await;
    // New metric data reaches the open page without a reload.
    a.wait_text("#live-status", "Live").await;
    a.js("window.__noReload = 8; return null;").await;
    a.wait_text("#horizon", "4000 of 4000").await;
    let sdk = server.server_token("production").await;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"kind": "exposure", "flag": "checkout", "variation": if i % 2 == 0 { "on" } else { "off" },
                        "targeting_key": format!("late-{i}"), "timestamp": at})
        })
        .collect();
    let r = server
        .call(
            reqwest::Method::POST,
            "/events/v1/batch",
            &sdk,
            Some(json!({"batch_id": "late", "events": events})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let took = a.wait_text("#horizon", "4040 of 4000").await;
    eprintln!("the results page showed new metric data {took:?} after the event batch was accepted");
    assert_eq!(a.js("return window.__noReload;").await, json!(8));

    // The decision, with its learning, through the form beside its context.
    a.click("#decision-ship").await;
    a.fill("#learning", "A green button lifts checkout conversion").await;
    a.fill("#reason", "significant, guardrails clear").await;
    a.screenshot("13b-experiment-decide").await;
    a.click("#decide").await;
    a.wait_text(".notice.done", "Decision recorded").await;

    // The main pages: screenshots, and axe-core's WCAG 2 A/AA rules.
    let pages = [
        ("/w/default/flags", "h1", "Flags", "14-flags"),
        ("/w/default/flags/checkout", "h1", "checkout", "15-flag-detail"),
        (
            "/w/default/flags/checkout/envs/production/toggle?enabled=true",
            "h1",
            "Turn on",
            "16-turn-on",
        ),
        (
            "/w/default/flags/checkout/envs/staging/targeting",
            "h1",
            "Targeting",
            "17-targeting",
        ),
        ("/w/default/rollouts", "#rollouts", "draft", "18-rollouts"),
        (
            "/w/default/flags/checkout/envs/staging/rollout",
            "h1",
            "Rollout",
            "19-rollout-plan",
        ),
        (
            "/w/default/experiments",
            "#experiments",
            "Green checkout button",
            "20-experiments",
        ),
        (
            "/w/default/experiments/checkout-button",
            "#results",
            "Chance to win",
            "21-experiment",
        ),
        ("/w/default/approvals", "#decided", "applied", "22-approvals"),
        (
            "/w/default/principles",
            "#violations",
            "fraud checks need it",
            "23-principles",
        ),
        (
            "/w/default/review",
            "#learnings",
            "A green button lifts checkout conversion",
            "24-weekly-review",
        ),
        ("/w/default/dora", "#dora-table", "web", "25-dora"),
        ("/w/default/metrics", "#tree", "Checkout conversion", "26-metrics"),
        ("/w/default/audit", "#chain", "Hash chain verified", "27-audit"),
    ];
    let mut problems = Vec::new();
    for (path, css, text, shot) in pages {
        a.goto(&server.url(path)).await;
        a.wait_text(css, text).await;
        a.screenshot(shot).await;
        if let Some(source) = &axe {
            for v in a.axe(source).await {
                problems.push(format!("{path}: {v}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "accessibility violations:\n{}",
        problems.join("\n")
    );
    if let Some(source) = &axe {
        // The pass can fail: an unlabelled field added to a page is caught.
        a.js("var i = document.createElement('input'); i.id = 'axe-probe'; document.querySelector('main').appendChild(i); return null;")
            .await;
        let found = a.axe(source).await;
        assert!(
            found
                .iter()
                .any(|v| v.starts_with("label:") && v.contains("#axe-probe")),
            "axe-core missed an unlabelled input: {found:?}"
        );
    }
    // A live refresh never wipes what someone is typing in a live region;
    // the region catches up once they leave the field.
    a.goto(&server.url("/w/default/principles")).await;
    a.wait_text("#live-status", "Live").await;
    let field = "#violations input[name=resolution]";
    a.click(field).await;
    let id = a.find(field).await;
    a.post(&format!("/element/{id}/value"), json!({"text": "half-typed"}))
        .await;
    a.js("document.getElementById('live-status').textContent = 'waiting'; return null;")
        .await;
    let r = server
        .post(
            "/api/v1/workspaces/default/violations",
            json!({"principle": "privacy-first", "subject": "flag:other", "justification": "second one",
                   "owner": "growth", "review_date": "2031-01-01"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The dashboard announces its own writes; an API write to violations is
    // seen on the next announced change, so make one.
    server.flag("live-probe-1", "staging").await;
    a.wait_text("#live-status", "updated").await;
    let typed = a
        .js(&format!(
            "return document.querySelector({}).value;",
            serde_json::to_string(field).unwrap()
        ))
        .await;
    assert_eq!(typed, json!("half-typed"), "the field being typed in was kept");
    a.js("document.activeElement.blur(); document.getElementById('live-status').textContent = 'waiting'; return null;")
        .await;
    server.flag("live-probe-2", "staging").await;
    a.wait_text("#violations", "second one").await;

    // Keyboard: the skip link is the first stop and moves focus to the content.
    a.goto(&server.url("/w/default/flags")).await;
    a.wait_text("h1", "Flags").await;
    a.post(
        "/actions",
        json!({"actions": [{"type": "key", "id": "kb", "actions": [
            {"type": "keyDown", "value": "\u{E004}"}, {"type": "keyUp", "value": "\u{E004}"}]}]}),
    )
    .await;
    assert_eq!(a.js("return document.activeElement.className;").await, json!("skip"));
    a.quit().await;
}
