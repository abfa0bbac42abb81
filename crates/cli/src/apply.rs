//! GitOps: `sextant apply`, `sextant import`, `sextant export`.
//!
//! A [`Plan`] is the difference between a desired [`Document`] and what the
//! server holds. Planning reads everything first and compiles the end state
//! of every environment locally, so a file with a mistake is rejected before
//! the first write. Applying runs the steps in dependency order (segments,
//! then flags with prerequisites before their dependents, deletions last)
//! with `If-Match` on every update, so a concurrent edit stops the run with
//! a 412 instead of being overwritten.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use sextant_core::{Document, Flag, Segment, Snapshot, Targeting};
use sextant_formats::SourceFormat;

use crate::client::{Client, FlagView, Remote, SegmentView, block_on};
use crate::{Failure, exit};

/// Whether things on the server but not in the files are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The files are the whole truth (`apply`): the rest is deleted.
    Sync,
    /// The files add and change, never delete (`import`, `demo`).
    Upsert,
}

/// One change to make.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create a segment.
    CreateSegment(Segment),
    /// Replace a segment.
    UpdateSegment {
        /// The new segment.
        segment: Segment,
        /// The version read.
        version: i64,
        /// What changes.
        diff: Vec<String>,
    },
    /// Create a flag with its targeting.
    CreateFlag(Flag),
    /// Replace a flag's definition (not its targeting).
    UpdateFlag {
        /// The new definition, without environments.
        flag: Flag,
        /// What changes.
        diff: Vec<String>,
    },
    /// Replace a flag's targeting in one environment.
    SetTargeting {
        /// Flag key.
        key: String,
        /// Environment.
        env: String,
        /// The new targeting.
        targeting: Targeting,
        /// What changes.
        diff: Vec<String>,
    },
    /// Delete a flag.
    DeleteFlag {
        /// Flag key.
        key: String,
        /// The version read.
        version: i64,
    },
    /// Delete a segment.
    DeleteSegment {
        /// Segment key.
        key: String,
        /// The version read.
        version: i64,
    },
}

/// A step as JSON for `--json`.
#[derive(Serialize)]
struct StepJson<'a> {
    action: &'static str,
    kind: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
    irreversible: bool,
    diff: &'a [String],
}

impl Step {
    /// Deleting cannot be undone by another apply: it needs approval.
    pub fn irreversible(&self) -> bool {
        matches!(self, Step::DeleteFlag { .. } | Step::DeleteSegment { .. })
    }

    fn parts(&self) -> StepJson<'_> {
        let (action, kind, key, environment, diff): (_, _, &str, _, &[String]) = match self {
            Step::CreateSegment(s) => ("create", "segment", &s.key, None, &[]),
            Step::UpdateSegment { segment, diff, .. } => ("update", "segment", &segment.key, None, diff),
            Step::CreateFlag(f) => ("create", "flag", &f.key, None, &[]),
            Step::UpdateFlag { flag, diff } => ("update", "flag", &flag.key, None, diff),
            Step::SetTargeting { key, env, diff, .. } => ("update", "flag", key, Some(env.as_str()), diff),
            Step::DeleteFlag { key, .. } => ("delete", "flag", key, None, &[]),
            Step::DeleteSegment { key, .. } => ("delete", "segment", key, None, &[]),
        };
        StepJson {
            action,
            kind,
            key,
            environment,
            irreversible: self.irreversible(),
            diff,
        }
    }

    /// One line: `+ flag new-checkout`, `~ flag x in production`, `- segment y`.
    pub fn headline(&self) -> String {
        let p = self.parts();
        let sign = match p.action {
            "create" => '+',
            "update" => '~',
            _ => '-',
        };
        let mut s = format!("{sign} {} {}", p.kind, p.key);
        if let Some(e) = p.environment {
            s.push_str(&format!(" in {e}"));
        }
        if let Step::CreateFlag(f) = self
            && !f.environments.is_empty()
        {
            s.push_str(&format!(
                " ({}; {})",
                f.kind.as_str(),
                f.environments.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        s
    }
}

/// What `apply` would change.
pub struct Plan {
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
    /// Flag versions read, updated as steps run (for `If-Match`).
    versions: HashMap<String, i64>,
}

impl Plan {
    /// Human rendering: one headline per step and its field changes.
    pub fn render(&self, allow_delete: bool) -> String {
        if self.steps.is_empty() {
            return "No changes: the server already matches.\n".into();
        }
        let mut out = String::new();
        let (mut create, mut change, mut delete) = (0, 0, 0);
        for step in &self.steps {
            out.push_str("  ");
            out.push_str(&step.headline());
            if step.irreversible() && !allow_delete {
                out.push_str("   (irreversible: skipped without --allow-delete)");
            }
            out.push('\n');
            for d in &step.parts().diff.to_vec() {
                out.push_str(&format!("      {d}\n"));
            }
            match step.parts().action {
                "create" => create += 1,
                "update" => change += 1,
                _ => delete += 1,
            }
        }
        out.push_str(&format!(
            "{create} to create, {change} to change, {delete} to delete.\n"
        ));
        out
    }

    /// JSON rendering of the steps.
    pub fn to_json(&self) -> Value {
        json!(self.steps.iter().map(Step::parts).collect::<Vec<_>>())
    }
}

/// Compares `desired` with the workspace and returns the steps to run.
pub async fn plan(client: &Client, desired: &Document, mode: Mode) -> Result<Plan> {
    let envs: Vec<String> = client.environments().await?.into_iter().map(|e| e.key).collect();
    let segments = client.segments().await?;
    let flags = client.flags().await?;

    // Every environment a file names must exist; report them all at once.
    let mut unknown = BTreeSet::new();
    for f in &desired.flags {
        for e in f.environments.keys() {
            if !envs.contains(e) {
                unknown.insert(format!("flag `{}` has targeting for `{e}`", f.key));
            }
        }
    }
    if !unknown.is_empty() {
        bail!(
            "workspace `{}` has no such environment ({} exist):\n  {}",
            client.workspace,
            envs.join(", "),
            unknown.into_iter().collect::<Vec<_>>().join("\n  ")
        );
    }
    check_duplicates(desired)?;

    // The end state, compiled per environment: the server's own checks, run
    // before anything is written.
    let mut end = desired.clone();
    if mode == Mode::Upsert {
        let have: BTreeSet<&str> = desired.segments.iter().map(|s| s.key.as_str()).collect();
        end.segments.extend(
            segments
                .iter()
                .filter(|s| !have.contains(s.key.as_str()))
                .map(|s| s.segment.clone()),
        );
        let have: BTreeSet<&str> = desired.flags.iter().map(|f| f.key.as_str()).collect();
        end.flags.extend(
            flags
                .iter()
                .filter(|f| !have.contains(f.key.as_str()))
                .map(|f| f.flag.clone()),
        );
    }
    for env in &envs {
        if let Err(e) = Snapshot::compile(&end, env, 1) {
            bail!("the files are not valid in environment `{env}`:\n{e}");
        }
    }

    let mut steps = Vec::new();
    let server_segments: HashMap<&str, &SegmentView> = segments.iter().map(|s| (s.key.as_str(), s)).collect();
    for s in &desired.segments {
        match server_segments.get(s.key.as_str()) {
            None => steps.push(Step::CreateSegment(s.clone())),
            Some(cur) => {
                let diff = diff_values(&json!(cur.segment), &json!(s));
                if !diff.is_empty() {
                    steps.push(Step::UpdateSegment {
                        segment: s.clone(),
                        version: cur.version,
                        diff,
                    });
                }
            }
        }
    }

    let server_flags: HashMap<&str, &FlagView> = flags.iter().map(|f| (f.key.as_str(), f)).collect();
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for f in &desired.flags {
        let Some(cur) = server_flags.get(f.key.as_str()) else {
            creates.push(f.clone());
            continue;
        };
        let definition = Flag {
            environments: BTreeMap::new(),
            ..f.clone()
        };
        let current = Flag {
            environments: BTreeMap::new(),
            ..cur.flag.clone()
        };
        let diff = diff_values(&json!(current), &json!(definition));
        if !diff.is_empty() {
            updates.push(Step::UpdateFlag { flag: definition, diff });
        }
        for (env, t) in &f.environments {
            let before = cur.flag.environments.get(env).map_or(Value::Null, |t| json!(t));
            let diff = diff_values(&before, &json!(t));
            if !diff.is_empty() {
                updates.push(Step::SetTargeting {
                    key: f.key.clone(),
                    env: env.clone(),
                    targeting: t.clone(),
                    diff,
                });
            }
        }
    }
    steps.extend(prerequisites_first(creates).into_iter().map(Step::CreateFlag));
    steps.extend(updates);

    if mode == Mode::Sync {
        let keep: BTreeSet<&str> = desired.flags.iter().map(|f| f.key.as_str()).collect();
        for f in &flags {
            if !keep.contains(f.key.as_str()) {
                steps.push(Step::DeleteFlag {
                    key: f.key.clone(),
                    version: f.version,
                });
            }
        }
        let keep: BTreeSet<&str> = desired.segments.iter().map(|s| s.key.as_str()).collect();
        for s in &segments {
            if !keep.contains(s.key.as_str()) {
                steps.push(Step::DeleteSegment {
                    key: s.key.clone(),
                    version: s.version,
                });
            }
        }
    }
    Ok(Plan {
        steps,
        versions: flags.iter().map(|f| (f.key.clone(), f.version)).collect(),
    })
}

fn check_duplicates(doc: &Document) -> Result<()> {
    let mut seen = BTreeSet::new();
    for f in &doc.flags {
        if !seen.insert(&f.key) {
            bail!("flag `{}` is defined twice", f.key);
        }
    }
    let mut seen = BTreeSet::new();
    for s in &doc.segments {
        if !seen.insert(&s.key) {
            bail!("segment `{}` is defined twice", s.key);
        }
    }
    Ok(())
}

/// Orders new flags so each comes after the new flags it depends on.
fn prerequisites_first(flags: Vec<Flag>) -> Vec<Flag> {
    let keys: BTreeSet<String> = flags.iter().map(|f| f.key.clone()).collect();
    let mut by_key: BTreeMap<String, Flag> = flags.into_iter().map(|f| (f.key.clone(), f)).collect();
    let order: Vec<String> = by_key.keys().cloned().collect();
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    fn visit(
        key: &str,
        keys: &BTreeSet<String>,
        by_key: &mut BTreeMap<String, Flag>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Flag>,
    ) {
        if !done.insert(key.to_owned()) {
            return;
        }
        let Some(flag) = by_key.remove(key) else { return };
        let deps: BTreeSet<String> = flag
            .environments
            .values()
            .flat_map(|t| t.prerequisites.iter().map(|p| p.flag.clone()))
            .filter(|k| keys.contains(k))
            .collect();
        for d in deps {
            visit(&d, keys, by_key, done, out);
        }
        out.push(flag);
    }
    for k in order {
        visit(&k, &keys, &mut by_key, &mut done, &mut out);
    }
    out
}

/// Field-level differences between two JSON values, as `path: old → new`.
pub fn diff_values(before: &Value, after: &Value) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        if a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        &format!("{path}/{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (a, b)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}/{i}"), a, b, out);
                }
            }
            _ => out.push(format!(
                "{}: {} → {}",
                if path.is_empty() { "/" } else { path },
                short(a),
                short(b)
            )),
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

fn short(v: &Value) -> String {
    if v.is_null() {
        return "(none)".into();
    }
    let s = v.to_string();
    if s.chars().count() > 72 {
        format!("{}…", s.chars().take(71).collect::<String>())
    } else {
        s
    }
}

/// What running a plan did.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Steps applied.
    pub applied: usize,
    /// Irreversible steps not applied (their headlines).
    pub skipped: Vec<String>,
    /// Irreversible steps filed as change requests awaiting approval.
    pub requested: Vec<String>,
}

/// Runs the plan's steps in order with a progress bar on stderr.
pub async fn execute(client: &Client, plan: &mut Plan, allow_delete: bool, reason: Option<&str>) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let bar = ProgressBar::new(plan.steps.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let steps = plan.steps.clone();
    let total = steps.len();
    for step in &steps {
        bar.set_message(step.headline());
        if step.irreversible() && !allow_delete {
            outcome.skipped.push(step.headline());
            bar.inc(1);
            continue;
        }
        let done = run_step(client, plan, step, reason).await;
        if let Ok(Some(request)) = &done {
            outcome.requested.push(request.clone());
        }
        if let Err(e) = done {
            bar.abandon();
            let prefix = format!(
                "applied {} of {total} changes, then `{}` failed",
                outcome.applied,
                step.headline().trim_start_matches(['+', '~', '-', ' '])
            );
            return Err(match e.downcast::<Failure>() {
                Ok(f) => Failure::new(f.code, format!("{prefix}: {}", f.message)).into(),
                Err(e) => e.context(prefix),
            });
        }
        outcome.applied += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(outcome)
}

/// Runs one step; `Some(request)` when it was filed as a change request.
async fn run_step(client: &Client, plan: &mut Plan, step: &Step, reason: Option<&str>) -> Result<Option<String>> {
    let q: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", *r)).collect();
    match step {
        Step::CreateSegment(s) => {
            client
                .send(
                    Method::POST,
                    &client.ws_path(&["segments"]),
                    &[],
                    Some(&json!({"segment": s, "reason": reason})),
                    None,
                )
                .await?;
        }
        Step::UpdateSegment { segment, version, .. } => {
            client
                .send(
                    Method::PUT,
                    &client.ws_path(&["segments", &segment.key]),
                    &[],
                    Some(&json!({"segment": segment, "reason": reason})),
                    Some(*version),
                )
                .await?;
        }
        Step::CreateFlag(f) => {
            let v: FlagView = client
                .send(
                    Method::POST,
                    &client.ws_path(&["flags"]),
                    &[],
                    Some(&json!({"flag": f, "reason": reason})),
                    None,
                )
                .await?
                .into()?;
            plan.versions.insert(v.key, v.version);
        }
        Step::UpdateFlag { flag, .. } => {
            let v: FlagView = client
                .send(
                    Method::PUT,
                    &client.ws_path(&["flags", &flag.key]),
                    &[],
                    Some(&json!({"flag": flag, "reason": reason})),
                    plan.versions.get(&flag.key).copied(),
                )
                .await?
                .into()?;
            plan.versions.insert(v.key, v.version);
        }
        Step::SetTargeting {
            key, env, targeting, ..
        } => {
            let version = plan.versions.get(key).copied();
            let v = crate::flag::set_targeting(client, key, env, targeting, version, reason.map(str::to_owned)).await?;
            plan.versions.insert(v.key, v.version);
        }
        Step::DeleteFlag { key, version } => {
            let reply = client
                .send(
                    Method::DELETE,
                    &client.ws_path(&["flags", key]),
                    &q,
                    None,
                    Some(*version),
                )
                .await?;
            // Deleting a flag is irreversible: the server files a change
            // request that another product/admin person approves.
            if reply.body["status"] == "pending" {
                return Ok(Some(crate::change::describe(&reply.body)));
            }
        }
        Step::DeleteSegment { key, version } => {
            client
                .send(
                    Method::DELETE,
                    &client.ws_path(&["segments", key]),
                    &q,
                    None,
                    Some(*version),
                )
                .await?;
        }
    }
    Ok(None)
}

/// Reads and merges every flag file under `paths` (directories: their
/// `.yaml`, `.yml` and `.json` files, recursively, in name order).
pub fn read_documents(paths: &[PathBuf], format: Option<SourceFormat>, env: &str) -> Result<Document> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no .yaml, .yml or .json files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut doc = Document::default();
    let mut flag_files: HashMap<String, PathBuf> = HashMap::new();
    let mut segment_files: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let text = crate::read_file(&file)?;
        let (_, d) =
            sextant_formats::import(&text, format, env).with_context(|| format!("cannot read {}", file.display()))?;
        for f in d.flags {
            if let Some(first) = flag_files.insert(f.key.clone(), file.clone()) {
                bail!(
                    "flag `{}` is defined in both {} and {}",
                    f.key,
                    first.display(),
                    file.display()
                );
            }
            doc.flags.push(f);
        }
        for s in d.segments {
            if let Some(first) = segment_files.insert(s.key.clone(), file.clone()) {
                bail!(
                    "segment `{}` is defined in both {} and {}",
                    s.key,
                    first.display(),
                    file.display()
                );
            }
            doc.segments.push(s);
        }
    }
    Ok(doc)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect(&e, out)?;
        } else if e
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        {
            out.push(e);
        }
    }
    Ok(())
}

/// `sextant apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    remote: Remote,
    /// Flag files or directories (Sextant YAML/JSON; Unleash or flagd JSON go into --env).
    #[arg(long = "file", short = 'f', required = true)]
    files: Vec<PathBuf>,
    /// Show the changes and stop.
    #[arg(long)]
    dry_run: bool,
    /// Also delete flags and segments that are not in the files (irreversible).
    #[arg(long)]
    allow_delete: bool,
    /// Environment that Unleash and flagd files configure.
    #[arg(long, short, default_value = "production")]
    env: String,
    /// Why (recorded in the audit log for every change).
    #[arg(long)]
    reason: Option<String>,
}

/// `sextant apply`.
pub fn apply(args: ApplyArgs) -> Result<ExitCode> {
    let doc = read_documents(&args.files, None, &args.env)?;
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        let mut plan = plan(&client, &doc, Mode::Sync).await?;
        run_plan(
            &client,
            &mut plan,
            args.dry_run,
            args.allow_delete,
            args.reason.as_deref(),
            as_json,
        )
        .await
    })
}

/// Shows a plan, runs it unless `dry_run`, and reports.
async fn run_plan(
    client: &Client,
    plan: &mut Plan,
    dry_run: bool,
    allow_delete: bool,
    reason: Option<&str>,
    as_json: bool,
) -> Result<ExitCode> {
    if !as_json {
        if !plan.steps.is_empty() {
            outln!("Changes to workspace `{}`:", client.workspace);
        }
        out!("{}", plan.render(allow_delete));
    }
    if dry_run || plan.steps.is_empty() {
        if as_json {
            crate::output::json(&json!({"dry_run": dry_run, "changes": plan.to_json(), "applied": 0, "skipped": []}))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = execute(client, plan, allow_delete, reason).await?;
    if as_json {
        crate::output::json(
            &json!({"dry_run": false, "changes": plan.to_json(), "applied": outcome.applied, "skipped": outcome.skipped,
                "requested": outcome.requested}),
        )?;
    } else {
        outln!(
            "Applied {} change{}.",
            outcome.applied,
            if outcome.applied == 1 { "" } else { "s" }
        );
    }
    if !outcome.requested.is_empty() {
        eprintln!(
            "warning: {} irreversible change{} await{} approval by another person with the product or admin role:\n  {}\n  hint: sextant change approve <id>",
            outcome.requested.len(),
            if outcome.requested.len() == 1 { "" } else { "s" },
            if outcome.requested.len() == 1 { "s" } else { "" },
            outcome.requested.join("\n  ")
        );
    }
    if outcome.skipped.is_empty() {
        return Ok(if outcome.requested.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(exit::PENDING)
        });
    }
    eprintln!(
        "warning: {} irreversible change{} not applied:\n  {}\n  hint: re-run with --allow-delete to request them (each needs another person's approval)",
        outcome.skipped.len(),
        if outcome.skipped.len() == 1 { " was" } else { "s were" },
        outcome.skipped.join("\n  ")
    );
    Ok(ExitCode::from(exit::PENDING))
}

/// `sextant import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    remote: Remote,
    /// Unleash features JSON, flagd JSON or Sextant YAML/JSON.
    file: PathBuf,
    /// File format; detected from the content when omitted.
    #[arg(long)]
    format: Option<SourceFormat>,
    /// Environment that Unleash and flagd flags are configured in.
    #[arg(long, short, default_value = "production")]
    env: String,
    /// Write the flags as a Sextant file (YAML, or JSON for `.json`) instead of sending them to a server.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Show the changes and stop.
    #[arg(long)]
    dry_run: bool,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

/// `sextant import`.
pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let text = crate::read_file(&args.file)?;
    let (format, mut doc) = sextant_formats::import(&text, args.format, &args.env)
        .with_context(|| format!("cannot import {}", args.file.display()))?;
    // Every flag on a server carries a hypothesis. Unleash and flagd have
    // none, so an imported flag without one is recorded as operational,
    // saying where it came from; `sextant flag` can give it a real one.
    for flag in doc.flags.iter_mut().filter(|f| f.hypothesis.is_none()) {
        flag.hypothesis = Some(sextant_core::Hypothesis {
            metric: None,
            direction: None,
            minimum_effect: None,
            reason: format!("imported from {format} without a hypothesis"),
            operational: true,
        });
    }
    if let Some(out) = &args.output {
        let text = if out.extension().is_some_and(|e| e == "json") {
            sextant_formats::sextant::to_json(&doc)?
        } else {
            sextant_formats::sextant::to_yaml(&doc)?
        };
        write_file(out, &text)?;
        eprintln!(
            "wrote {} flag{} and {} segment{} from {format} to {}",
            doc.flags.len(),
            if doc.flags.len() == 1 { "" } else { "s" },
            doc.segments.len(),
            if doc.segments.len() == 1 { "" } else { "s" },
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        if !as_json {
            outln!(
                "Importing {} flag{} and {} segment{} ({format}) from {}",
                doc.flags.len(),
                if doc.flags.len() == 1 { "" } else { "s" },
                doc.segments.len(),
                if doc.segments.len() == 1 { "" } else { "s" },
                args.file.display()
            );
        }
        let mut plan = plan(&client, &doc, Mode::Upsert).await?;
        run_plan(&client, &mut plan, args.dry_run, false, args.reason.as_deref(), as_json).await
    })
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Sextant declarative YAML (JSON when --output ends in `.json`).
    Sextant,
    /// flagd flag definitions JSON for one environment.
    Flagd,
}

/// `sextant export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    remote: Remote,
    /// Output format.
    #[arg(long, value_enum, default_value = "sextant")]
    format: ExportFormat,
    /// Environment (flagd files hold one).
    #[arg(long, short, default_value = "production")]
    env: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Writes `text` to `path`, creating its directory.
fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `sextant export`.
pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    block_on(async move {
        let doc = Document {
            segments: client.segments().await?.into_iter().map(|s| s.segment).collect(),
            flags: client.flags().await?.into_iter().map(|f| f.flag).collect(),
        };
        let text = match args.format {
            ExportFormat::Sextant
                if args
                    .output
                    .as_ref()
                    .is_some_and(|o| o.extension().is_some_and(|e| e == "json")) =>
            {
                sextant_formats::sextant::to_json(&doc)?
            }
            ExportFormat::Sextant => sextant_formats::sextant::to_yaml(&doc)?,
            ExportFormat::Flagd => {
                let envs = client.environments().await?;
                if !envs.iter().any(|e| e.key == args.env) {
                    return Err(Failure::new(
                        exit::NOT_FOUND,
                        format!(
                            "workspace `{}` has no environment `{}` (it has {})",
                            client.workspace,
                            args.env,
                            envs.iter().map(|e| e.key.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .into());
                }
                let v = sextant_formats::flagd::export(&doc, &args.env)
                    .with_context(|| format!("cannot express the flags of `{}` in flagd's format", args.env))?;
                serde_json::to_string_pretty(&v)? + "\n"
            }
        };
        match &args.output {
            Some(path) => {
                write_file(path, &text)?;
                eprintln!(
                    "wrote {} flags and {} segments to {}",
                    doc.flags.len(),
                    doc.segments.len(),
                    path.display()
                );
            }
            None => out!("{text}"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_field_with_old_and_new_values() {
        let a = json!({"enabled": false, "rules": [], "default_serve": {"variation": "off"}});
        let b = json!({"enabled": true, "rules": [], "default_serve": {"variation": "on"}});
        assert_eq!(
            diff_values(&a, &b),
            vec![
                "/default_serve/variation: \"off\" → \"on\"".to_owned(),
                "/enabled: false → true".to_owned()
            ]
        );
        assert!(diff_values(&a, &a).is_empty());
    }

    #[test]
    fn new_flags_come_after_the_new_flags_they_depend_on() {
        let doc = sextant_formats::sextant::parse(
            r#"
flags:
  - key: a-child
    kind: boolean
    variations: [{key: "on", value: true}]
    environments:
      production: {enabled: true, prerequisites: [{flag: z-parent, variations: ["on"]}]}
  - key: z-parent
    kind: boolean
    variations: [{key: "on", value: true}]
"#,
        )
        .unwrap();
        let order: Vec<String> = prerequisites_first(doc.flags).into_iter().map(|f| f.key).collect();
        assert_eq!(order, ["z-parent", "a-child"]);
    }
}
