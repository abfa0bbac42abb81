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
