use serde_json::json;

use crate::support::Server;

const FLAGS: &str = r#"
segments:
  - key: staff
    conditions:
      - { attribute: email, op: ends_with, values: ["@example.com"] }
flags:
  - key: checkout
    kind: boolean
    hypothesis: { metric: checkout-conversion, direction: increase, minimum_effect: 0.02, reason: staff first }
    variations:
      - { key: "on", value: true }
      - { key: "off", value: false }
    environments:
      production:
        enabled: true
        off_variation: "off"
        rules:
          - conditions: [{ attribute: "", op: in_segment, values: [staff] }]
            serve: { variation: "on" }
        default_serve: { variation: "off" }
  - key: banner
    kind: string
    hypothesis: { operational: true, reason: site banner text }
    variations:
      - { key: a, value: "Hello" }
      - { key: b, value: "Hi" }
"#;

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn apply_shows_the_diff_first_then_makes_the_server_match_the_files() {
    let s = Server::start();
    s.file("gitops/flags.yaml", FLAGS);
    let dir = s.dir.path().join("gitops");
    let dir = dir.to_str().unwrap();

    let dry = s.run(&["apply", "-f", dir, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        dry.stdout,
        "Changes to workspace `default`:\n  + segment staff\n  + flag banner\n  + flag checkout (boolean; production)\n3 to create, 0 to change, 0 to delete.\n"
    );
    assert_eq!(s.json(&["flag", "list"]), json!([]), "a dry run changes nothing");

    let out = s.run(&["apply", "-f", dir]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.ends_with("Applied 3 changes.\n"), "{}", out.stdout);
    assert_eq!(keys(&s.json(&["flag", "list"])), ["banner", "checkout"]);
    assert_eq!(
        s.run(&["apply", "-f", dir]).stdout,
        "No changes: the server already matches.\n"
    );

    // A change in the files is shown field by field and applied.
    s.file(
        "gitops/flags.yaml",
        &FLAGS.replace(
            "default_serve: { variation: \"off\" }",
            "default_serve: { variation: \"on\" }",
        ),
    );
    let out = s.run(&["apply", "-f", dir]);
    assert!(
        out.stdout
            .contains("  ~ flag checkout in production\n      /default_serve/variation: \"off\" → \"on\"\n"),
        "{}",
        out.stdout
    );
    let f = s.json(&["flag", "get", "checkout"]);
    assert_eq!(
        f["flag"]["environments"]["production"]["default_serve"],
        json!({"variation": "on"})
    );

    // Removing a flag from the files is irreversible: refused without --allow-delete.
    let without_banner = FLAGS
        .split("  - key: banner")
        .next()
        .unwrap()
        .replace("\"off\" }\n", "\"on\" }\n");
    s.file("gitops/flags.yaml", &without_banner);
    let out = s.run(&["apply", "-f", dir]);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("  - flag banner   (irreversible: skipped without --allow-delete)"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("re-run with --allow-delete"), "{}", out.stderr);
    assert_eq!(keys(&s.json(&["flag", "list"])), ["banner", "checkout"]);

    // With --allow-delete the deletion is requested; another person approves it.
    let out = s.run(&["apply", "-f", dir, "--allow-delete", "--reason", "banner retired"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("approval by another person"), "{}", out.stderr);
    assert_eq!(keys(&s.json(&["flag", "list"])), ["banner", "checkout"]);
    let pending = s.json(&["change", "list"]);
    let id = pending[0]["id"].to_string();
    let product = s.json(&["token", "create", "pat", "--role", "product"]);
    let product = product["token"].as_str().unwrap();
    let approved = s.run_with(&["change", "approve", &id], &[("SEXTANT_TOKEN", product)]);
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    assert_eq!(keys(&s.json(&["flag", "list"])), ["checkout"]);
}

#[test]
fn apply_rejects_invalid_files_before_writing_anything() {
    let s = Server::start();
    let bad_env = s.file("a.yaml", &FLAGS.replace("      production:", "      qa:"));
    let out = s.run(&["apply", "-f", bad_env.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("flag `checkout` has targeting for `qa`"),
        "{}",
        out.stderr
    );

    let bad_variation = s.file(
        "b.yaml",
        &FLAGS.replace(
            "default_serve: { variation: \"off\" }",
            "default_serve: { variation: \"maybe\" }",
        ),
    );
    let out = s.run(&["apply", "-f", bad_variation.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not valid in environment `production`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("maybe"), "{}", out.stderr);

    s.file("dup/one.yaml", FLAGS);
    s.file("dup/two.yaml", FLAGS);
    let out = s.run(&["apply", "-f", s.dir.path().join("dup").to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is defined in both"), "{}", out.stderr);
    assert_eq!(s.json(&["flag", "list"]), json!([]));
    assert_eq!(s.json(&["segment", "list"]), json!([]));
}

#[test]
fn unleash_files_are_imported_and_exported_as_flagd_and_sextant() {
    let s = Server::start();
    let unleash = s.file(
        "unleash.json",
        r#"{"version": 1, "features": [
            {"name": "new-ui", "enabled": true, "strategies": [{"name": "default"}]},
            {"name": "old-ui", "enabled": false, "strategies": [{"name": "default"}]}
        ]}"#,
    );
    let out = s.run(&["import", unleash.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Importing 2 flags and 0 segments (unleash)"),
        "{}",
        out.stdout
    );
    assert_eq!(keys(&s.json(&["flag", "list"])), ["new-ui", "old-ui"]);
    assert_eq!(
        s.run(&["import", unleash.to_str().unwrap()]).stdout.lines().last(),
        Some("No changes: the server already matches.")
    );

    // flagd cannot express an off variation: the export says which flag and why.
    let refused = s.run(&["export", "--format", "flagd"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("flag `new-ui` cannot be exported to flagd: flagd has no off variation"),
        "{}",
        refused.stderr
    );

    // The Sextant export applied back is a no-op: export and apply agree.
    let out = s.run(&["export", "-o", "out/exported.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again = s.run(&["apply", "-f", "out", "--dry-run"]);
    assert_eq!(
        again.stdout, "No changes: the server already matches.\n",
        "{}",
        again.stderr
    );

    // Offline conversion: no server involved.
    let out = s.run_with(
        &["import", unleash.to_str().unwrap(), "-o", "converted.yaml"],
        &[("SEXTANT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(s.dir.path().join("converted.yaml")).unwrap();
    assert!(text.contains("key: new-ui"), "{text}");
}

#[test]
fn flagd_files_round_trip_through_a_server() {
    let s = Server::start();
    let file = s.file(
        "flags.flagd.json",
        r##"{"flags": {"color": {"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "blue"}}}"##,
    );
    let out = s.run(&["import", file.to_str().unwrap(), "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = s.run(&["export", "--format", "flagd", "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["flags"]["color"],
        json!({"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "blue"})
    );
    let missing = s.run(&["export", "--format", "flagd", "--env", "qa"]);
    assert_eq!(missing.code, 3);
    assert!(missing.stderr.contains("no environment `qa`"), "{}", missing.stderr);
}
