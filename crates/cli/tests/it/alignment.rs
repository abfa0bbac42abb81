use serde_json::{Value, json};

use crate::support::{ADMIN, Server};

/// POSTs JSON with the admin token (for what the CLI has no command for).
fn post(s: &Server, path: &str, body: Value, token: &str) -> Value {
    let url = format!("{}{path}", s.url);
    let token = token.to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        })
}

fn operational(s: &Server, key: &str) {
    let out = s.run(&["flag", "create", key, "--operational", "--hypothesis", "ops toggle"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn scan_reports_unused_unknown_archived_and_stale_flags_and_fails_ci_on_request() {
    let s = Server::start();
    for key in ["used-flag", "unused-flag", "old-flag"] {
        operational(&s, key);
    }
    // Archive old-flag: a change request approved by another person.
    let req = post(
        &s,
        "/api/v1/workspaces/default/flags/old-flag/archive",
        json!({"reason": "done"}),
        ADMIN,
    );
    let product = s.json(&["token", "create", "pat", "--role", "product"]);
    let product = product["token"].as_str().unwrap();
    let id = req["id"].to_string();
    let ok = s.run_with(&["approve", &id], &[("SEXTANT_TOKEN", product)]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.contains("flag.archive flag `old-flag` — applied"),
        "{}",
        ok.stdout
    );

    s.file(
        "proj/src/app.ts",
        "const a = client.getBooleanValue('used-flag', false);\nconst b = client.getBooleanValue('ghost', false);\n",
    );
    s.file("proj/src/legacy.py", "if client.is_enabled(\"old-flag\"):\n    pass\n");
    s.file("proj/.gitignore", "dist/\n");
    s.file("proj/dist/bundle.js", "isEnabled('unused-flag')\n");

    let out = s.run(&["scan", "proj", "--format", "json", "--no-progress"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["files_scanned"], 2, "{r:#}");
    assert_eq!(r["flags"]["used-flag"]["count"], 1);
    assert_eq!(r["flags"]["used-flag"]["locations"], json!(["proj/src/app.ts:1"]));
    assert_eq!(r["unused"], json!(["unused-flag"]));
    assert_eq!(r["unknown"]["ghost"]["locations"], json!(["proj/src/app.ts:2"]));
    assert_eq!(r["archived"]["old-flag"]["locations"], json!(["proj/src/legacy.py:1"]));
    assert_eq!(r["stale"], json!([]), "nothing has been at 0% for 30 days");

    // Flags off in production for 0+ days are stale; archived ones are not listed.
    let r = s.json(&["scan", "proj", "--stale-days", "0", "--no-progress"]);
    let stale: Vec<&str> = r["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["flag"].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["unused-flag", "used-flag"], "{r:#}");
    assert_eq!(r["stale"][1]["references"], 1);

    // CI: exit 7 when a named finding exists, 0 otherwise.
    let fail = s.run(&["scan", "proj", "--fail-on", "unknown,archived", "--no-progress"]);
    assert_eq!(fail.code, 7, "{}", fail.stderr);
    assert!(fail.stderr.contains("found unknown, archived"), "{}", fail.stderr);
    assert!(
        fail.stdout
            .contains("references to unknown flags: 1\n  ghost — proj/src/app.ts:2"),
        "{}",
        fail.stdout
    );
    let pass = s.run(&["scan", "proj", "--fail-on", "stale", "--no-progress"]);
    assert_eq!(pass.code, 0, "{}", pass.stderr);

    // Offline, from a flag file.
    let file = s.file(
        "flags.json",
        r#"{"flags": [{"key": "used-flag", "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}]}"#,
    );
    let r = s.json(&["scan", "proj", "--flags", file.to_str().unwrap(), "--no-progress"]);
    assert_eq!(r["unused"], json!([]));
    assert_eq!(r["stale_days"], Value::Null);
    let unknown: Vec<&String> = r["unknown"].as_object().unwrap().keys().collect();
    assert_eq!(unknown, ["ghost", "old-flag"]);

    let missing = s.run(&["scan", "nowhere", "--no-progress"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("nowhere: no such file or directory"),
        "{}",
        missing.stderr
    );
}

#[test]
fn reviews_deploys_and_dora_come_from_the_server() {
    let s = Server::start();
    let weekly = s.run(&["review", "weekly"]);
    assert_eq!(weekly.code, 0, "{}", weekly.stderr);
    assert!(
        weekly.stdout.starts_with("# Weekly review — default"),
        "{}",
        weekly.stdout
    );
    for section in [
        "## What we learned",
        "## What to stop",
        "### Experiments reaching significance",
        "### Rollouts ready to advance",
        "## Metric tree movement",
    ] {
        assert!(weekly.stdout.contains(section), "{section} missing:\n{}", weekly.stdout);
    }
    let monthly = s.json(&["review", "monthly"]);
    assert_eq!(monthly["cadence"], "monthly");
    assert!(monthly["initiatives"].is_array());

    let out = s.run(&[
        "deploy",
        "record",
        "--service",
        "api",
        "--version",
        "v1",
        "--commit-time",
        "2020-01-01T00:00:00Z",
        "--status",
        "failed",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("of api v1 (failed)"), "{}", out.stdout);
    let d = s.json(&[
        "deploy",
        "record",
        "--service",
        "api",
        "--version",
        "v2",
        "--commit-time",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(d["status"], "success");
    let bad = s.run(&[
        "deploy",
        "record",
        "--service",
        "api",
        "--version",
        "v3",
        "--commit-time",
        "yesterday",
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("/commit_time"), "{}", bad.stderr);

    let dora = s.json(&["dora"]);
    let api = &dora["items"][0];
    assert_eq!(
        (&api["service"], &api["deploys"], &api["failed_changes"]),
        (&json!("api"), &json!(2), &json!(1))
    );
    let table = s.run(&["dora"]);
    assert!(
        table.stdout.lines().next().unwrap().starts_with("SERVICE"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("50%"), "{}", table.stdout);
}
