use crate::support::Server;

#[test]
fn metrics_are_added_listed_tracked_and_shown_as_a_tree() {
    let s = Server::start();
    let out = s.run(&[
        "metric",
        "add",
        "revenue",
        "--aggregation",
        "sum",
        "--event",
        "purchase",
        "--north-star",
        "--unit",
        "EUR",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = s.run(&[
        "metric",
        "add",
        "buyers",
        "--aggregation",
        "conversion",
        "--event",
        "purchase",
        "--parent",
        "revenue",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let orphan = s.run(&["metric", "add", "orphan", "--event", "x"]);
    assert_ne!(orphan.code, 0);
    assert!(
        orphan
            .stderr
            .contains("/parent: every metric but the North Star has a parent"),
        "{}",
        orphan.stderr
    );

    let list = s.run(&["metric", "list"]);
    assert!(
        list.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("revenue") && l.contains("yes")),
        "{}",
        list.stdout
    );

    let token = s.json(&["token", "create", "--kind", "server", "--env", "production", "sdk"]);
    let token = token["token"].as_str().unwrap().to_owned();
    let out = s.run_with(
        &[
            "track",
            "purchase",
            "--unit",
            "u1",
            "--value",
            "25",
            "--properties",
            r#"{"plan":"pro"}"#,
        ],
        &[("SEXTANT_SDK_TOKEN", token.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("tracked `purchase` for `u1`"));

    // The rollup runs in the background; the tree shows the event within seconds.
    let mut tree = String::new();
    for _ in 0..100 {
        tree = s.run(&["metric", "tree", "--window", "24h"]).stdout;
        if tree.contains("★ revenue = 25.0000 EUR") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(tree.contains("★ revenue = 25.0000 EUR"), "{tree}");
    assert!(tree.contains("\n  buyers = 1.0000"), "{tree}");
}

/// An SDK token of production on `s`.
fn sdk_token(s: &Server) -> String {
    let token = s.json(&["token", "create", "--kind", "server", "--env", "production", "bulk"]);
    token["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_file_of_events_is_sent_in_batches_rejections_name_their_line_and_a_rerun_stores_nothing_twice() {
    let s = Server::start();
    let out = s.run(&[
        "metric",
        "add",
        "revenue",
        "--aggregation",
        "sum",
        "--event",
        "purchase",
        "--north-star",
        "--unit",
        "EUR",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = sdk_token(&s);
    let mut lines = vec![
        r#"{"event": "purchase", "targeting_key": "u1", "value": 10}"#.to_owned(),
        String::new(),
        r#"{"event": "purchase", "targeting_key": "u2", "value": 5, "timestamp": "yesterday"}"#.to_owned(),
        "{not json".to_owned(),
    ];
    lines.extend((0..2_000).map(|i| format!(r#"{{"event": "purchase", "targeting_key": "v{i}", "value": 1}}"#)));
    let file = s.file("events.ndjson", &(lines.join("\n") + "\n"));
    let file = file.to_str().unwrap();
    let env = [("SEXTANT_SDK_TOKEN", token.as_str())];

    let out = s.run_with(&["track", "--file", file, "--json"], &env);
    assert_eq!(out.code, 1, "rejected events make the exit code 1: {}", out.stderr);
    assert!(out.stderr.contains("2 of 2003 events were rejected"), "{}", out.stderr);
    let first: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(first["events"], 2_003);
    assert_eq!(first["batches"], 3, "1,000 events per batch: {first}");
    assert_eq!(first["stored"], 2_001);
    assert_eq!(first["already_stored"], 0);
    assert_eq!(first["rejected"], 2);
    assert_eq!(first["rejections"][0]["line"], 3);
    assert_eq!(first["rejections"][0]["field"], "timestamp");
    assert!(
        first["rejections"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`yesterday` is not an RFC 3339 time"),
        "{first}"
    );
    assert_eq!(first["rejections"][1]["line"], 4);
    assert!(
        first["rejections"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("not JSON")
    );

    // The same file again: every batch id is known, nothing is stored twice.
    let again = s.run_with(&["track", "--file", file], &env);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stdout.starts_with(&format!(
            "sent {file}: 2003 events in 3 batches; 0 stored, 2001 already stored, 2 rejected\n"
        )),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("\n  line 3: timestamp: `yesterday` is not an RFC 3339 time"),
        "{}",
        again.stdout
    );

    // A batch whose every event is refused (a 422) still names each line.
    let bad = s.file(
        "bad.ndjson",
        "{\"targeting_key\": \"u\"}\n{\"event\": \"purchase\", \"targeting_key\": \"u\", \"value\": \"ten\"}\n",
    );
    let out = s.run_with(&["track", "--file", bad.to_str().unwrap(), "--json"], &env);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let bad: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(bad["stored"], 0);
    let fields: Vec<(u64, &str)> = bad["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, vec![(1, "event"), (2, "value")]);

    // 10 + 2,000 × 1, once: the rerun added nothing.
    let mut tree = String::new();
    for _ in 0..100 {
        tree = s.run(&["metric", "tree", "--window", "24h"]).stdout;
        if tree.contains("★ revenue = 2010.0000 EUR") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(tree.contains("★ revenue = 2010.0000 EUR"), "{tree}");
}

#[test]
fn a_bulk_send_waits_out_429s_as_retry_after_says_and_stores_every_batch_once() {
    // One request per second per token: every batch after the first is
    // refused with 429 and `Retry-After: 1` until the bucket refills.
    let s = Server::start_with(&["--token-rate-limit", "1", "--token-rate-burst", "1"]);
    let token = sdk_token(&s);
    let lines: Vec<String> = (0..2_500)
        .map(|i| format!(r#"{{"event": "signup", "targeting_key": "u{i}"}}"#))
        .collect();
    let file = s.file("signups.ndjson", &lines.join("\n"));
    let file = file.to_str().unwrap();
    let env = [("SEXTANT_SDK_TOKEN", token.as_str())];
    let out = s.run_with(&["track", "--file", file, "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sent: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sent["stored"], 2_500, "{sent}");
    assert_eq!(sent["batches"], 3);
    assert!(sent["retries"].as_u64().unwrap() >= 1, "{sent}");
    // Every batch arrived exactly once: sent again, all three are known.
    let out = s.run_with(&["track", "--file", file, "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (again["stored"].as_u64(), again["already_stored"].as_u64()),
        (Some(0), Some(2_500))
    );
    assert_eq!(again["duplicate_batches"], 3);
}
