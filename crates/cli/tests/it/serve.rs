use std::process::Command;

use crate::support::{ADMIN, BIN, Server, clean_env, sextant, spawn_until_listening};

#[test]
fn serve_demo_loads_the_demo_workspace_and_loading_it_again_changes_nothing() {
    let s = Server::start_with(&["--demo"]);
    assert!(s.banner.contains("Loaded the demo workspace"), "{}", s.banner);
    let flags = s.json(&["flag", "list"]);
    let checkout = flags
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "new-checkout")
        .unwrap();
    assert_eq!(checkout["flag"]["hypothesis"]["metric"], "checkout-conversion");
    let weights = checkout["flag"]["environments"]["production"]["default_serve"]["split"]["weights"]
        .as_array()
        .unwrap();
    let on = weights.iter().find(|w| w["variation"] == "on").unwrap();
    assert_eq!(on["weight"], 25000, "a rollout in progress");
    let list = s.run(&["flag", "list"]);
    assert!(list.stdout.contains("on, 2 rules, 25% on"), "{}", list.stdout);
    assert_eq!(s.json(&["segment", "list"]).as_array().unwrap().len(), 3);
    // The loader's temporary tokens (admin, and SDK for the traffic) are gone.
    assert_eq!(s.json(&["token", "list"]).as_array().unwrap().len(), 1);
    // A metric tree under a North Star, with the metrics hypotheses name.
    let metrics = s.json(&["metric", "list"]);
    let keys: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["metric"]["key"].as_str())
        .collect();
    for k in [
        "purchases",
        "checkout-conversion",
        "search-success",
        "items-per-order",
        "checkout-errors",
    ] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    // A staged rollout running under a guardrail.
    let plans = s.json(&["rollout", "status"]);
    assert_eq!(plans[0]["flag"], "new-checkout", "{plans}");
    assert_eq!(plans[0]["status"], "running", "{plans}");
    // An experiment with results from simulated traffic.
    let results = s.get("/api/v1/workspaces/default/experiments/search-ranking-learned/results");
    assert_eq!(results["experiment"]["status"], "running", "{results}");
    let units = results["analysis"]["units"].as_u64().unwrap();
    assert!(units > 2_500, "{results}");
    let c = &results["analysis"]["primary"]["comparisons"][0];
    assert!(c["difference"].as_f64().unwrap() > 0.0, "{c}");
    // Visitors' search success before exposure is the CUPED covariate.
    let cuped = &results["analysis"]["cuped"];
    assert_eq!(cuped["applied"], true, "{cuped}");
    assert!(
        cuped["comparisons"][0]["variance_reduction"].as_f64().unwrap() > 0.1,
        "{cuped}"
    );
    // Buying and ticket habits before exposure adjust the guardrails.
    for g in results["analysis"]["guardrails"].as_array().unwrap() {
        assert_eq!(g["cuped"]["applied"], true, "{g}");
    }
    let table = s.run(&["experiment", "results", "search-ranking-learned"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("search-success"), "{}", table.stdout);

    let again = s.run(&["demo"]);
    assert_eq!(
        again.stdout, "The demo is already loaded in workspace `default`.\n",
        "{}",
        again.stderr
    );
}

#[test]
fn sextant_demo_loads_the_demo_into_a_running_server() {
    let s = Server::start();
    let out = s.run(&["demo"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Loaded the demo into workspace `default`"),
        "{}",
        out.stdout
    );
    assert!(s.json(&["flag", "list"]).as_array().unwrap().len() >= 6);
}

/// Starts `serve` in `dir` with `args` and `env`; returns the banner and URL.
fn serve_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    cmd.current_dir(dir).arg("serve").args(args).envs(env.iter().copied());
    let (child, _stdout, _banner, url) = spawn_until_listening(cmd, dir);
    (child, url)
}

#[test]
fn serve_takes_flags_over_environment_over_the_toml_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("sextant.toml"),
        format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite:from-file.db\"\nadmin_token = \"{ADMIN}\"\n"),
    )
    .unwrap();

    // ./sextant.toml alone.
    let (mut child, url) = serve_in(d, &[], &[]);
    let out = sextant(d, &["env", "list"], &[("SEXTANT_URL", &url), ("SEXTANT_TOKEN", ADMIN)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(d.join("from-file.db").exists());

    // The environment beats the file; the flag beats the environment.
    let (mut child, _) = serve_in(d, &[], &[("SEXTANT_DATABASE_URL", "sqlite:from-env.db")]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(d.join("from-env.db").exists());
    let (mut child, _) = serve_in(
        d,
        &["--database-url", "sqlite:from-flag.db"],
        &[("SEXTANT_DATABASE_URL", "sqlite:from-env.db")],
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(d.join("from-flag.db").exists());

    // A mistake in the file is named.
    std::fs::write(d.join("bad.toml"), "listen = \"127.0.0.1:0\"\nport = 7\n").unwrap();
    let out = sextant(d, &["serve", "--config", "bad.toml"], &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("bad.toml is not a valid Sextant config"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("port"), "{}", out.stderr);
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let bash = sextant(dir.path(), &["completions", "bash"], &[]);
    assert_eq!(bash.code, 0);
    assert!(
        bash.stdout.contains("_sextant()") && bash.stdout.contains("rollout"),
        "{}",
        bash.stdout
    );
    let man = sextant(dir.path(), &["man"], &[]);
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq") && man.stdout.contains(".TH sextant 1"),
        "{}",
        &man.stdout[..200]
    );
    let out = sextant(dir.path(), &["man", "--out-dir", "man"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(dir.path().join("man/sextant-flag-create.1").exists());
    let help = sextant(dir.path(), &["--help"], &[]);
    assert!(
        help.stdout
            .contains("6  irreversible changes were left undone or await approval"),
        "{}",
        help.stdout
    );
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_command_quietly_not_with_a_panic() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    // The bash completion script is larger than a pipe's buffer, so the
    // writer is still writing when the reader goes away (`… | head -1`).
    let mut child = Command::new(crate::support::BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sextant");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the first line");
    assert!(first.starts_with("_sextant"), "{first}");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
