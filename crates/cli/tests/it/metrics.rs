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
