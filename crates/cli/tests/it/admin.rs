use crate::support::Server;

#[test]
fn a_flag_goes_from_create_to_rollout_to_kill_to_delete() {
    let s = Server::start();
    let out = s.run(&[
        "flag",
        "create",
        "dark-mode",
        "--description",
        "Dark theme",
        "--owner",
        "web",
        "--hypothesis",
        "Night users stay longer",
        "--metric",
        "session-length",
        "--direction",
        "increase",
        "--minimum-effect",
        "0.05",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("created flag dark-mode (boolean), off in every environment")
    );

    let list = s.run(&["flag", "list"]);
    assert_eq!(list.code, 0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("PRODUCTION"),
        "{}",
        list.stdout
    );
    assert!(
        lines[1].starts_with("dark-mode") && lines[1].contains("session-length ↑"),
        "{}",
        list.stdout
    );

    let token = s.json(&[
        "token",
        "create",
        "web-app",
        "--kind",
        "client",
        "--env",
        "production",
        "--origin",
        "*",
    ]);
    let sdk = token["token"].as_str().unwrap().to_owned();
    assert_eq!(s.ofrep(&sdk, "dark-mode", "u1")["value"], false);

    assert_eq!(
        s.run(&["flag", "toggle", "dark-mode", "on", "--env", "production"])
            .code,
        0
    );
    assert_eq!(s.ofrep(&sdk, "dark-mode", "u1")["value"], true);

    let out = s.run(&["rollout", "set", "dark-mode", "25", "--env", "production"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let f = s.json(&["flag", "get", "dark-mode"]);
    assert_eq!(
        f["flag"]["environments"]["production"]["default_serve"]["split"]["weights"],
        serde_json::json!([{"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}])
    );
    let on = (0..200)
        .filter(|i| s.ofrep(&sdk, "dark-mode", &format!("user-{i}"))["value"] == true)
        .count();
    assert!((20..=80).contains(&on), "{on} of 200 units in a 25% rollout");

    let out = s.run(&["flag", "kill", "dark-mode", "--reason", "errors in checkout"]);
    assert_eq!(
        out.stdout.trim(),
        "killed dark-mode in production: it now serves its off variation"
    );
    assert_eq!(s.ofrep(&sdk, "dark-mode", "u1")["reason"], "DISABLED");

    let refused = s.run(&["flag", "delete", "dark-mode"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("re-run with --yes"), "{}", refused.stderr);
    // Deleting is irreversible: a change request that another person with
    // the product or admin role approves.
    let requested = s.run(&["flag", "delete", "dark-mode", "--yes", "--json"]);
    assert_eq!(requested.code, 6, "{}", requested.stderr);
    let requested: serde_json::Value = serde_json::from_str(&requested.stdout).unwrap();
    assert_eq!(requested["status"], "pending");
    let id = requested["id"].to_string();
    assert_eq!(s.run(&["flag", "get", "dark-mode"]).code, 0);
    let self_approval = s.run(&["change", "approve", &id]);
    assert_eq!(self_approval.code, 4, "{}", self_approval.stderr);
    assert!(
        self_approval.stderr.contains("self_approval_refused"),
        "{}",
        self_approval.stderr
    );
    let product = s.json(&["token", "create", "pat", "--role", "product"]);
    let product = product["token"].as_str().unwrap();
    let approved = s.run_with(&["change", "approve", &id], &[("SEXTANT_TOKEN", product)]);
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    assert!(
        approved.stdout.contains("flag.delete flag `dark-mode` — applied"),
        "{}",
        approved.stdout
    );
    let gone = s.run(&["flag", "get", "dark-mode"]);
    assert_eq!(gone.code, 3);
    assert!(
        gone.stderr.contains("flag `dark-mode` does not exist"),
        "{}",
        gone.stderr
    );
}

#[test]
fn errors_say_what_to_do_and_exit_with_the_documented_codes() {
    let s = Server::start();
    let no_token = s.run_with(&["flag", "list"], &[("SEXTANT_TOKEN", "")]);
    assert_eq!(no_token.code, 4);
    assert!(no_token.stderr.contains("set SEXTANT_TOKEN"), "{}", no_token.stderr);

    let bad_token = s.run_with(&["flag", "list"], &[("SEXTANT_TOKEN", "sxa_nope")]);
    assert_eq!(bad_token.code, 4);
    assert!(bad_token.stderr.contains("token_invalid"), "{}", bad_token.stderr);

    let invalid = s.run(&["flag", "create", "bad/key"]);
    assert_eq!(invalid.code, 1);
    assert!(
        invalid.stderr.contains("/flag/key: `bad/key` is not a valid key"),
        "{}",
        invalid.stderr
    );

    let twice = ["flag", "create", "twice", "--hypothesis", "ops toggle", "--operational"];
    let dup = s.run(&twice);
    assert_eq!(dup.code, 0, "{}", dup.stderr);
    let dup = s.run(&twice);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("flag `twice` already exists"), "{}", dup.stderr);

    let ws = s.run(&["flag", "list", "--workspace", "nope"]);
    assert_eq!(ws.code, 3);
    assert!(ws.stderr.contains("pick one with --workspace"), "{}", ws.stderr);

    let down = s.run_with(&["flag", "list"], &[("SEXTANT_URL", "http://127.0.0.1:9")]);
    assert_eq!(down.code, 5);
    assert!(
        down.stderr.contains("Start one with `sextant serve`"),
        "{}",
        down.stderr
    );

    let viewer = s.json(&["token", "create", "reader", "--role", "viewer"]);
    let viewer = viewer["token"].as_str().unwrap();
    let denied = s.run_with(&["flag", "create", "x"], &[("SEXTANT_TOKEN", viewer)]);
    assert_eq!(denied.code, 4);
    assert!(denied.stderr.contains("permission_denied"), "{}", denied.stderr);
}

#[test]
fn segments_and_tokens_are_managed_from_the_command_line() {
    let s = Server::start();
    let out = s.run(&[
        "segment",
        "create",
        "beta",
        "--include",
        "u1,u2",
        "--description",
        "Beta testers",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = s.run(&["segment", "list"]);
    assert!(
        list.stdout.lines().nth(1).unwrap().starts_with("beta  2         0"),
        "{}",
        list.stdout
    );
    let file = s.file("beta.yaml", "key: beta\nincluded: [u1, u2, u3]\n");
    assert_eq!(s.run(&["segment", "update", "-f", file.to_str().unwrap()]).code, 0);
    assert_eq!(
        s.json(&["segment", "get", "beta"])["segment"]["included"],
        serde_json::json!(["u1", "u2", "u3"])
    );
    assert_eq!(s.run(&["segment", "delete", "beta", "--yes"]).code, 0);
    assert_eq!(s.json(&["segment", "list"]), serde_json::json!([]));

    let out = s.run(&["token", "create", "ci", "--role", "engineer"]);
    assert!(out.stdout.contains("It is shown only this once"), "{}", out.stdout);
    let tokens = s.json(&["token", "list"]);
    let ci = tokens.as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap();
    assert_eq!(ci["role"], "engineer");
    let id = ci["id"].to_string();
    assert_eq!(s.run(&["token", "revoke", &id]).code, 0);
    assert_eq!(s.json(&["token", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_staged_rollout_is_planned_started_paused_and_ended_by_the_kill_switch() {
    let s = Server::start();
    let create = [
        "flag",
        "create",
        "dark",
        "--hypothesis",
        "Dark mode keeps night users",
        "--metric",
        "session-length",
        "--direction",
        "increase",
        "--minimum-effect",
        "0.02",
    ];
    assert_eq!(s.run(&create).code, 0);

    let missing = s.run(&[
        "rollout",
        "plan",
        "dark",
        "--env",
        "production",
        "--stages",
        "10,50,100",
        "--guardrail",
        "errors:decrease",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("/plan/guardrails/0/metric: workspace `default` has no metric `errors`"),
        "{}",
        missing.stderr
    );

    let out = s.run(&[
        "rollout",
        "plan",
        "dark",
        "--env",
        "production",
        "--stages",
        "10,50,100",
        "--hold",
        "2h",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("rollout plan for dark in production: 10% → 50% → 100% (draft)"),
        "{}",
        out.stdout
    );
    let plan = s.json(&["rollout", "status", "dark", "--env", "production"]);
    assert_eq!(
        plan[0]["plan"]["stages"][1],
        serde_json::json!({"percent": 50.0, "min_hold_seconds": 7200})
    );
    assert_eq!(
        (
            plan[0]["plan"]["treatment"].as_str(),
            plan[0]["plan"]["control"].as_str()
        ),
        (Some("on"), Some("off"))
    );

    let out = s.run(&["rollout", "start", "dark", "--env", "production"]);
    assert!(
        out.stdout.starts_with("rollout of dark in production is running"),
        "{}",
        out.stdout
    );
    let out = s.run(&[
        "rollout",
        "pause",
        "dark",
        "--env",
        "production",
        "--reason",
        "looking at logs",
    ]);
    assert!(
        out.stdout.starts_with("rollout of dark in production is paused"),
        "{}",
        out.stdout
    );
    let table = s.run(&["rollout", "status"]).stdout;
    assert!(
        table.lines().nth(1).unwrap().contains("paused") && table.contains("looking at logs"),
        "{table}"
    );

    // The top-level kill switch: ends the rollout and counts as a restore (DORA).
    let out = s.run(&["kill", "dark", "--env", "production", "--reason", "checkout errors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "killed dark in production: it now serves its off variation"
    );
    assert_eq!(s.json(&["rollout", "status"])[0]["status"], "killed");
    let restores = s.get("/api/v1/workspaces/default/restores");
    assert_eq!(restores["items"][0]["flag"], "dark", "{restores}");
    assert_eq!(restores["items"][0]["action"], "kill", "{restores}");
}
