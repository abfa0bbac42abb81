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

#[test]
fn principles_violations_learnings_and_post_mortems_have_commands_with_tables_json_and_exit_codes() {
    let s = Server::start();
    let out = s.run(&[
        "principle",
        "define",
        "privacy-first",
        "--name",
        "Privacy first",
        "--description",
        "No tracking without consent",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "defined principle privacy-first: Privacy first\n");
    let engineer = s.json(&["token", "create", "erin", "--role", "engineer"]);
    let engineer = engineer["token"].as_str().unwrap();
    let denied = s.run_with(
        &[
            "principle",
            "define",
            "speed",
            "--name",
            "Speed",
            "--description",
            "Ship daily",
        ],
        &[("SEXTANT_TOKEN", engineer)],
    );
    assert_eq!(denied.code, 4, "{}", denied.stderr);
    assert!(denied.stderr.contains("product or admin"), "{}", denied.stderr);
    let list = s.run(&["principle", "list"]);
    assert!(list.stdout.starts_with("KEY"), "{}", list.stdout);
    assert!(
        list.stdout
            .contains("privacy-first  Privacy first  No tracking without consent"),
        "{}",
        list.stdout
    );

    let v = post(
        &s,
        "/api/v1/workspaces/default/violations",
        json!({"principle": "privacy-first", "subject": "flag:tracking-pixel", "justification": "partner contract",
               "owner": "ana", "review_date": "2030-01-01"}),
        ADMIN,
    );
    let id = v["id"].to_string();
    let open = s.run(&["principle", "violations"]);
    assert!(open.stdout.contains("flag:tracking-pixel"), "{}", open.stdout);
    assert_eq!(s.json(&["principle", "violations"]).as_array().unwrap().len(), 1);
    let resolved = s.run(&["principle", "resolve", &id, "--resolution", "pixel removed"]);
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    assert!(
        resolved.stdout.contains("resolved") && resolved.stdout.contains("pixel removed"),
        "{}",
        resolved.stdout
    );
    assert_eq!(s.run(&["principle", "violations"]).stdout, "no open violations\n");
    assert!(s.run(&["principle", "violations", "--all"]).stdout.contains("resolved"));
    let missing = s.run(&["principle", "resolve", "9999", "--resolution", "x"]);
    assert_eq!(missing.code, 3, "{}", missing.stderr);

    post(
        &s,
        "/api/v1/workspaces/default/learnings",
        json!({"what": "Bigger buttons convert better", "evidence": "exp-42", "owner": "ana"}),
        ADMIN,
    );
    post(
        &s,
        "/api/v1/workspaces/default/learnings",
        json!({"what": "Dark mode does not move retention", "owner": "bo"}),
        ADMIN,
    );
    let found = s.json(&["learning", "list", "--search", "BUTTON"]);
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let table = s.run(&["learning", "list", "--owner", "bo"]);
    assert!(table.stdout.starts_with("DATE"), "{}", table.stdout);
    assert!(
        table.stdout.contains("Dark mode does not move retention"),
        "{}",
        table.stdout
    );
    let report = s.run(&["learning", "report"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    for part in [
        "Learnings of ",
        "\nana (1)\n",
        "Bigger buttons convert better (manual, evidence: exp-42)",
        "\nbo (1)\n",
    ] {
        assert!(report.stdout.contains(part), "{part:?} missing in\n{}", report.stdout);
    }
    let json = s.json(&["learning", "report", "--owner", "ana"]);
    assert_eq!(json["owners"]["ana"].as_array().unwrap().len(), 1, "{json}");
    assert!(json["owners"]["bo"].is_null(), "{json}");
    let bad = s.run(&["learning", "report", "--month", "November"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("YYYY-MM"), "{}", bad.stderr);

    post(
        &s,
        "/api/v1/workspaces/default/post-mortems",
        json!({"initiative": "faster-checkout", "owner": "ana", "due_at": "2020-01-15T00:00:00Z",
               "expected": "checkout conversion +5%"}),
        ADMIN,
    );
    let due = s.run(&["post-mortem", "list", "--due"]);
    assert!(due.stdout.starts_with("INITIATIVE"), "{}", due.stdout);
    assert!(
        due.stdout.contains("faster-checkout") && due.stdout.contains("OVERDUE"),
        "{}",
        due.stdout
    );
    let incomplete = s.run(&[
        "post-mortem",
        "complete",
        "faster-checkout",
        "--happened",
        "",
        "--learned",
        "x",
    ]);
    assert_eq!(incomplete.code, 1);
    assert!(incomplete.stderr.contains("/happened"), "{}", incomplete.stderr);
    let done = s.run(&[
        "post-mortem",
        "complete",
        "faster-checkout",
        "--happened",
        "conversion flat",
        "--learned",
        "latency was not the bottleneck",
    ]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        done.stdout.contains("What we expected: checkout conversion +5%"),
        "{}",
        done.stdout
    );
    assert_eq!(s.run(&["post-mortem", "list", "--due"]).stdout, "no post-mortems due\n");
    let all = s.json(&["post-mortem", "list"]);
    assert_eq!(all[0]["learned"], "latency was not the bottleneck");
    assert_eq!(
        s.json(&["learning", "list", "--source", "post_mortem"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn deleting_events_files_a_change_request_that_another_person_approves() {
    let s = Server::start();
    let sdk = s.json(&["token", "create", "--kind", "server", "--env", "production", "sdk"]);
    let sdk = sdk["token"].as_str().unwrap().to_owned();
    let out = s.run_with(
        &["track", "purchase", "--unit", "u1", "--value", "25"],
        &[("SEXTANT_SDK_TOKEN", sdk.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let args = [
        "events",
        "delete",
        "--env",
        "production",
        "--event",
        "purchase",
        "--reason",
        "erasure request",
    ];
    // The rollup runs in the background: until it has the event there is nothing to delete (exit 3).
    let mut filed = s.run(&args);
    for _ in 0..100 {
        if filed.code != 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        filed = s.run(&args);
    }
    assert_eq!(filed.code, 6, "{}{}", filed.stdout, filed.stderr);
    assert!(filed.stdout.contains("(1 rolled up now)"), "{}", filed.stdout);
    assert!(filed.stdout.contains("revert: impossible"), "{}", filed.stdout);
    let id = s.json(&["change", "list"])[0]["id"].to_string();
    let own = s.run(&["change", "approve", &id]);
    assert_eq!(own.code, 4, "{}", own.stderr);
    assert!(own.stderr.contains("self_approval_refused"), "{}", own.stderr);
    let product = s.json(&["token", "create", "pat", "--role", "product"]);
    let ok = s.run_with(
        &["change", "approve", &id],
        &[("SEXTANT_TOKEN", product["token"].as_str().unwrap())],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.contains("events.delete events `purchase` — applied"),
        "{}",
        ok.stdout
    );
    let again = s.run(&args);
    assert_eq!(again.code, 3, "nothing left: {}", again.stderr);
    let bad = s.run(&[
        "events",
        "delete",
        "--env",
        "production",
        "--event",
        "purchase",
        "--from",
        "2026-11-20T10:30:00Z",
    ]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("/from") && bad.stderr.contains("on the hour"),
        "{}",
        bad.stderr
    );
}
