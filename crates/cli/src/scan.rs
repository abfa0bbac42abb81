//! `sextant scan PATH…`: finds flag keys in source code and reports what
//! should be cleaned up — flags nothing references, references to flags
//! that do not exist or are archived, and flags that have served one
//! variation to everyone in production for more than N days.
//!
//! The walk is `ignore`'s parallel walker (it honours `.gitignore`,
//! `.ignore` and hidden files like ripgrep). Each file is read once into a
//! buffer the worker reuses, and searched in two ways: one Aho-Corasick
//! DFA over every known key (a match counts only on identifier
//! boundaries, so `checkout` does not match inside `new-checkout-v2`), and
//! the SDK call shapes (`bool_value("key"`, `isEnabled("key")`,
//! `boolVariation("key"`, `.bool("key"`, `/ofrep/v1/evaluate/flags/key`,
//! …) whose quoted key, when it is not a known flag, is an unknown
//! reference.
//!
//! The call shapes are not run as regexes over every byte: every one is a
//! name, `(`, optional whitespace and a quote, so `memchr` finds each `(`
//! followed by a quote and one regex (the shapes combined, ASCII word
//! boundaries so the lazy DFA never falls back to the slow Unicode engine)
//! runs only from the name before it; OFREP paths are found with `memmem`.
//! Profiled on a 1.1 GB tree (BENCHMARKS.md), this cut the CPU time from
//! 8.8 s to 1.6 s: Unicode `\b` had sent the four regexes to the PikeVM,
//! and the shapes had been four full passes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use regex::bytes::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Remote, block_on};
use crate::{Failure, exit};

/// The SDK call shapes whose first (quoted) argument is a flag key. One
/// capture group: the key. Each is a name, `(`, optional whitespace and a
/// quote ([`Searcher`] relies on it to search only from such a `(`).
pub const CALL_PATTERNS: &[&str] = &[
    // OpenFeature and most SDKs: getBooleanValue("k", …), get_string_details("k", …),
    // bool_value("k"), booleanVariation("k"), boolVariation("k"), isEnabled("k").
    r#"(?i)(?-u:\b)(?:get_?)?(?:bool(?:ean)?|string|str|number|num|integer|int|float|double|f64|i64|json|object)_?(?:value|details?|variation(?:_?detail)?)\s*\(\s*["'`]([A-Za-z0-9][A-Za-z0-9._:/-]*)["'`]"#,
    r#"(?i)(?-u:\b)(?:is_?(?:feature_?)?enabled|is_?on|variation(?:_?detail)?|get_?feature_?value|feature_?gate|check_?gate|get_?feature|evaluate_?flag)\s*\(\s*["'`]([A-Za-z0-9][A-Za-z0-9._:/-]*)["'`]"#,
    // The Sextant Rust SDK: client.bool("k", …), .string_details("k", …).
    r#"\.(?:bool|string|number|json)(?:_details)?\s*\(\s*["'`]([A-Za-z0-9][A-Za-z0-9._:/-]*)["'`]"#,
];

/// OFREP over HTTP: the key is the path segment after this prefix.
const OFREP_PREFIX: &str = "/ofrep/v1/evaluate/flags/";

/// Bytes after a call's quote searched for the key and its closing quote
/// (longer keys are not flag keys).
const MAX_CALL_KEY: usize = 256;

/// Up to this many known keys the key matcher is a full DFA (fastest; its
/// memory grows with the keys), beyond it Aho-Corasick picks.
const MAX_DFA_KEYS: usize = 5_000;

/// Files larger than this are skipped (generated bundles, data dumps).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Locations kept per flag in the report (the count is always exact).
const MAX_LOCATIONS: usize = 20;

/// What a finding category is called on the command line and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Flags (not archived) that no scanned file mentions.
    Unused,
    /// SDK calls naming a key that is not a flag.
    Unknown,
    /// Code still referring to an archived flag.
    Archived,
    /// Flags at 0% or 100% in production for more than `--stale-days`.
    Stale,
    /// Any of the above.
    Any,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A human summary.
    Text,
    /// One JSON document.
    Json,
}

/// `sextant scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    remote: Remote,
    /// Directories or files to scan (default: the current directory).
    paths: Vec<PathBuf>,
    /// Read the flags from this Sextant, Unleash or flagd file instead of
    /// the server (no archived or stale information then).
    #[arg(long, value_name = "FILE")]
    flags: Option<PathBuf>,
    /// Days a flag must have served one variation to everyone in
    /// production to be reported as stale.
    #[arg(long, default_value_t = 30, value_name = "N")]
    stale_days: i64,
    /// `text` or `json` (`--json` is the same as `--format json`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit with code 7 when these findings exist (comma-separated:
    /// unused, unknown, archived, stale, any). For CI.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    fail_on: Vec<Finding>,
    /// An extra regex whose first capture group is a flag key in an SDK
    /// call (repeatable); added to the built-in call shapes.
    #[arg(long = "pattern", value_name = "REGEX")]
    patterns: Vec<String>,
    /// Also scan hidden files and files that .gitignore excludes.
    #[arg(long)]
    no_ignore: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Never show the progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

/// A flag as the scan sees it.
#[derive(Debug, Clone)]
pub struct KnownFlag {
    /// Key.
    pub key: String,
    /// Archived (turned off everywhere by an approved change).
    pub archived: bool,
}

/// Where a reference is: `path:line`.
pub type Location = String;

/// References found for one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refs {
    /// Exact number of references.
    pub count: u64,
    /// The first locations (at most 20), sorted.
    pub locations: Vec<Location>,
}

impl Refs {
    fn add(&mut self, loc: Location) {
        self.count += 1;
        self.locations.push(loc);
    }

    fn merge(&mut self, other: Refs) {
        self.count += other.count;
        self.locations.extend(other.locations);
    }

    fn finish(&mut self) {
        self.locations.sort();
        self.locations.truncate(MAX_LOCATIONS);
    }
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Found {
    /// References to known keys, by key.
    pub known: BTreeMap<String, Refs>,
    /// Keys in SDK calls that are not known flags.
    pub unknown: BTreeMap<String, Refs>,
    /// Files searched.
    pub files: u64,
    /// Bytes searched.
    pub bytes: u64,
}

/// The search: keys, call-shape regexes and walk settings.
pub struct Searcher {
    keys: Vec<String>,
    known: BTreeSet<String>,
    automaton: Option<AhoCorasick>,
    /// [`CALL_PATTERNS`] as one regex (one capture group per shape).
    calls: Regex,
    ofrep: memchr::memmem::Finder<'static>,
    /// `--pattern`s: arbitrary shapes, searched over the whole text.
    extra: Vec<Regex>,
    no_ignore: bool,
    threads: usize,
}

fn ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn line_of(text: &[u8], offset: usize, cursor: &mut (usize, usize)) -> usize {
    // Matches come in increasing offsets, so counting resumes from the last one.
    let (pos, line) = *cursor;
    let start = pos.min(offset);
    let extra = memchr::memchr_iter(b'\n', &text[start..offset]).count();
    *cursor = (offset, line + extra);
    line + extra
}

/// The first capture group that took part in a match (the key).
fn key_of<'t>(caps: &regex::bytes::Captures<'t>) -> Option<regex::bytes::Match<'t>> {
    caps.iter().skip(1).flatten().next()
}

impl Searcher {
    /// A searcher for `keys` with the built-in call shapes plus `extra`.
    pub fn new(keys: Vec<String>, extra: &[String], no_ignore: bool, threads: usize) -> Result<Searcher> {
        let automaton = if keys.is_empty() {
            None
        } else {
            let mut builder = AhoCorasick::builder();
            builder.match_kind(MatchKind::LeftmostLongest);
            if keys.len() <= MAX_DFA_KEYS {
                builder.kind(Some(AhoCorasickKind::DFA));
            }
            Some(builder.build(&keys).context("cannot build the key matcher")?)
        };
        let combined = CALL_PATTERNS
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let calls = Regex::new(&combined).context("the built-in call shapes")?;
        let mut extras = Vec::new();
        for p in extra {
            let re =
                Regex::new(p).map_err(|e| Failure::new(exit::USAGE, format!("--pattern `{p}` is not a regex: {e}")))?;
            if re.captures_len() < 2 {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "--pattern `{p}` needs one capture group around the flag key, e.g. flag\\(\"([a-z0-9-]+)\""
                    ),
                )
                .into());
            }
            extras.push(re);
        }
        Ok(Searcher {
            known: keys.iter().cloned().collect(),
            keys,
            automaton,
            calls,
            ofrep: memchr::memmem::Finder::new(OFREP_PREFIX.as_bytes()).into_owned(),
            extra: extras,
            no_ignore,
            threads: threads.max(1),
        })
    }

    /// Searches one file's bytes; `path` is how locations name it.
    pub fn search(&self, path: &Path, text: &[u8], into: &mut Found) {
        into.files += 1;
        into.bytes += text.len() as u64;
        let at = |line: usize| format!("{}:{line}", path.display());
        if let Some(ac) = &self.automaton {
            let mut cursor = (0, 1);
            for m in ac.find_iter(text) {
                let before = m.start().checked_sub(1).map(|i| text[i]);
                let after = text.get(m.end()).copied();
                if before.is_some_and(ident) || after.is_some_and(ident) {
                    continue;
                }
                let line = line_of(text, m.start(), &mut cursor);
                let key = &self.keys[m.pattern().as_usize()];
                into.known.entry(key.clone()).or_default().add(at(line));
            }
        }
        let mut unknown = |start: usize, key: &[u8], cursor: &mut (usize, usize)| {
            let Ok(key) = std::str::from_utf8(key) else {
                return;
            };
            if self.known.contains(key) {
                return;
            }
            let line = line_of(text, start, cursor);
            into.unknown.entry(key.to_owned()).or_default().add(at(line));
        };
        // SDK calls: from the name before each `(` that a quote follows.
        let mut cursor = (0, 1);
        let mut searched_to = 0;
        for open in memchr::memchr_iter(b'(', text) {
            if open < searched_to {
                continue;
            }
            let quote = open + 1 + text[open + 1..].iter().take_while(|b| b.is_ascii_whitespace()).count();
            if !matches!(text.get(quote), Some(b'"' | b'\'' | b'`')) {
                continue;
            }
            let mut name = open;
            while name > searched_to && text[name - 1].is_ascii_whitespace() {
                name -= 1;
            }
            while name > searched_to && (text[name - 1].is_ascii_alphanumeric() || text[name - 1] == b'_') {
                name -= 1;
            }
            if name > searched_to && text[name - 1] == b'.' {
                name -= 1;
            }
            let end = (quote + 2 + MAX_CALL_KEY).min(text.len());
            let Some(caps) = self.calls.captures_at(&text[..end], name) else {
                continue;
            };
            if let Some(whole) = caps.get(0) {
                searched_to = whole.end();
            }
            if let Some(k) = key_of(&caps) {
                unknown(k.start(), k.as_bytes(), &mut cursor);
            }
        }
        // OFREP paths: the segment after the prefix, `[A-Za-z0-9][A-Za-z0-9._:-]*`.
        let mut cursor = (0, 1);
        for hit in self.ofrep.find_iter(text) {
            let from = hit + OFREP_PREFIX.len();
            let rest = &text[from..];
            if !rest.first().is_some_and(u8::is_ascii_alphanumeric) {
                continue;
            }
            let len = rest
                .iter()
                .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
                .count();
            unknown(from, &rest[..len], &mut cursor);
        }
        for re in &self.extra {
            let mut cursor = (0, 1);
            for caps in re.captures_iter(text) {
                if let Some(k) = key_of(&caps) {
                    unknown(k.start(), k.as_bytes(), &mut cursor);
                }
            }
        }
    }

    /// Walks `roots` in parallel and searches every text file.
    pub fn walk(&self, roots: &[PathBuf], progress: &ProgressBar) -> Result<Found> {
        let Some((first, rest)) = roots.split_first() else {
            return Ok(Found::default());
        };
        for r in roots {
            if !r.exists() {
                return Err(Failure::new(exit::FAILURE, format!("{}: no such file or directory", r.display())).into());
            }
        }
        let mut builder = ignore::WalkBuilder::new(first);
        for r in rest {
            builder.add(r);
        }
        builder
            .threads(self.threads)
            .require_git(false)
            .max_filesize(Some(MAX_FILE_BYTES));
        if self.no_ignore {
            builder.standard_filters(false);
        }
        let total = Mutex::new(Found::default());
        let bytes = AtomicU64::new(0);
        builder.build_parallel().run(|| {
            // Each worker collects into its own `Found` and merges once,
            // when the walker drops it: no lock per file.
            let mut local = Local {
                found: Found::default(),
                into: &total,
            };
            let bytes = &bytes;
            // One buffer per worker, reused for every file it reads.
            let mut buffer = Vec::new();
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    return ignore::WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return ignore::WalkState::Continue;
                }
                buffer.clear();
                let read = std::fs::File::open(entry.path()).and_then(|mut f| f.read_to_end(&mut buffer));
                if read.is_err() {
                    return ignore::WalkState::Continue;
                }
                let text = buffer.as_slice();
                // Binary files (a NUL in the first 8 KiB, as ripgrep decides) are skipped.
                if memchr::memchr(0, &text[..text.len().min(8192)]).is_some() {
                    return ignore::WalkState::Continue;
                }
                self.search(entry.path(), text, &mut local.found);
                let b = bytes.fetch_add(text.len() as u64, Ordering::Relaxed) + text.len() as u64;
                progress.inc(1);
                if local.found.files.is_multiple_of(64) {
                    progress.set_message(format!("{} MiB", b >> 20));
                }
                ignore::WalkState::Continue
            })
        });
        let mut found = total.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in found.known.values_mut().chain(found.unknown.values_mut()) {
            r.finish();
        }
        Ok(found)
    }
}

/// A worker's results, merged into the shared total when the walker drops it.
struct Local<'a> {
    found: Found,
    into: &'a Mutex<Found>,
}

impl Drop for Local<'_> {
    fn drop(&mut self) {
        let mut total = self.into.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = std::mem::take(&mut self.found);
        total.files += mine.files;
        total.bytes += mine.bytes;
        for (k, r) in mine.known {
            total.known.entry(k).or_default().merge(r);
        }
        for (k, r) in mine.unknown {
            total.unknown.entry(k).or_default().merge(r);
        }
    }
}

/// A stale flag as the server reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Stale {
    /// Flag key.
    pub flag: String,
    /// Production environment.
    pub environment: String,
    /// `0%` or `100%`.
    pub serving: String,
    /// Days since its last change.
    pub days: i64,
    /// References still in code (remove them with the flag).
    pub references: u64,
}

/// The scan's report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Files searched.
    pub files_scanned: u64,
    /// Bytes searched.
    pub bytes_scanned: u64,
    /// Wall time of the walk, in milliseconds.
    pub elapsed_ms: u64,
    /// Where the flags came from (`server` or the file).
    pub flags_from: String,
    /// Every known flag with its references.
    pub flags: BTreeMap<String, Refs>,
    /// Flags (not archived) with no reference.
    pub unused: Vec<String>,
    /// Keys in SDK calls that are not flags.
    pub unknown: BTreeMap<String, Refs>,
    /// Archived flags still referenced.
    pub archived: BTreeMap<String, Refs>,
    /// Flags at 0% / 100% in production for more than `stale_days`.
    pub stale: Vec<Stale>,
    /// The stale threshold used (`null` when flags came from a file).
    pub stale_days: Option<i64>,
}

impl Report {
    /// Builds the report from what the walk found.
    pub fn new(
        flags: &[KnownFlag],
        found: Found,
        stale: Vec<Stale>,
        stale_days: Option<i64>,
        from: String,
        elapsed: Duration,
    ) -> Report {
        let mut all = BTreeMap::new();
        let mut unused = Vec::new();
        let mut archived = BTreeMap::new();
        let mut known = found.known;
        for f in flags {
            let refs = known.remove(&f.key).unwrap_or_default();
            if f.archived {
                if refs.count > 0 {
                    archived.insert(f.key.clone(), refs.clone());
                }
            } else if refs.count == 0 {
                unused.push(f.key.clone());
            }
            all.insert(f.key.clone(), refs);
        }
        let mut stale: Vec<Stale> = stale
            .into_iter()
            .map(|mut s| {
                s.references = all.get(&s.flag).map_or(0, |r| r.count);
                s
            })
            .collect();
        stale.sort_by(|a, b| (&a.flag, &a.environment).cmp(&(&b.flag, &b.environment)));
        Report {
            files_scanned: found.files,
            bytes_scanned: found.bytes,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            flags_from: from,
            flags: all,
            unused,
            unknown: found.unknown,
            archived,
            stale,
            stale_days,
        }
    }

    /// Whether a finding of `kind` exists.
    pub fn has(&self, kind: Finding) -> bool {
        match kind {
            Finding::Unused => !self.unused.is_empty(),
            Finding::Unknown => !self.unknown.is_empty(),
            Finding::Archived => !self.archived.is_empty(),
            Finding::Stale => !self.stale.is_empty(),
            Finding::Any => [Finding::Unused, Finding::Unknown, Finding::Archived, Finding::Stale]
                .into_iter()
                .any(|k| self.has(k)),
        }
    }

    /// The human summary.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "scanned {} files ({:.1} MiB) in {} ms; {} flags from {}\n",
            self.files_scanned,
            self.bytes_scanned as f64 / 1_048_576.0,
            self.elapsed_ms,
            self.flags.len(),
            self.flags_from
        );
        let refs = |r: &Refs| {
            let more = if r.count as usize > r.locations.len() {
                format!(" (+{} more)", r.count as usize - r.locations.len())
            } else {
                String::new()
            };
            format!(
                "{}{more}",
                r.locations.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )
        };
        let _ = writeln!(out, "\nunused flags (no reference in code): {}", self.unused.len());
        for k in &self.unused {
            let _ = writeln!(out, "  {k}");
        }
        let _ = writeln!(out, "\nreferences to unknown flags: {}", self.unknown.len());
        for (k, r) in &self.unknown {
            let _ = writeln!(out, "  {k} — {}", refs(r));
        }
        let _ = writeln!(out, "\nreferences to archived flags: {}", self.archived.len());
        for (k, r) in &self.archived {
            let _ = writeln!(out, "  {k} — {}", refs(r));
        }
        match self.stale_days {
            Some(days) => {
                let _ = writeln!(
                    out,
                    "\nstale flags (one variation for everyone in production for more than {days} days): {}",
                    self.stale.len()
                );
                for s in &self.stale {
                    let _ = writeln!(
                        out,
                        "  {} at {} in {} for {} days, {} references to remove",
                        s.flag, s.serving, s.environment, s.days, s.references
                    );
                }
            }
            None => out.push_str("\nstale flags: not checked (flags read from a file)\n"),
        }
        out
    }
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} scanning: {pos} files, {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `sextant scan`.
pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let json = args.remote.json || args.format == Format::Json;
    let (flags, stale, stale_days, from) = match &args.flags {
        Some(file) => {
            let text = crate::read_file(file)?;
            let (_, doc) = sextant_formats::import(&text, None, "production")
                .map_err(|e| Failure::new(exit::FAILURE, format!("{}: {e}", file.display())))?;
            let flags = doc
                .flags
                .into_iter()
                .map(|f| KnownFlag {
                    key: f.key,
                    archived: false,
                })
                .collect::<Vec<_>>();
            (flags, Vec::new(), None, file.display().to_string())
        }
        None => {
            let client = Client::new(&args.remote)?;
            let days = args.stale_days;
            if days < 0 {
                return Err(Failure::new(exit::USAGE, "--stale-days must be 0 or more").into());
            }
            let (flags, stale) = block_on(async {
                let views = client.flags().await?;
                let lifecycle = client.list(&client.ws_path(&["flag-lifecycle"])).await?;
                let archived: BTreeSet<&str> = lifecycle
                    .iter()
                    .filter(|l| !l["archived_at"].is_null())
                    .filter_map(|l| l["flag"].as_str())
                    .collect();
                let flags: Vec<KnownFlag> = views
                    .iter()
                    .map(|v| KnownFlag {
                        key: v.key.clone(),
                        archived: archived.contains(v.key.as_str()),
                    })
                    .collect();
                let days_text = days.to_string();
                let stale = client
                    .send(
                        reqwest::Method::GET,
                        &client.ws_path(&["stale-flags"]),
                        &[("days", days_text.as_str())],
                        None,
                        None,
                    )
                    .await?
                    .body;
                let archived_keys: BTreeSet<String> = archived.iter().map(|s| (*s).to_owned()).collect();
                let stale = stale["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["flag"].as_str().is_some_and(|f| !archived_keys.contains(f)))
                    .map(|s: &Value| Stale {
                        flag: s["flag"].as_str().unwrap_or_default().to_owned(),
                        environment: s["environment"].as_str().unwrap_or_default().to_owned(),
                        serving: s["serving"].as_str().unwrap_or_default().to_owned(),
                        days: s["days"].as_i64().unwrap_or_default(),
                        references: 0,
                    })
                    .collect::<Vec<_>>();
                Ok((flags, stale))
            })?;
            (
                flags,
                stale,
                Some(days),
                format!("{} (workspace {})", args.remote.url, args.remote.workspace),
            )
        }
    };
    let roots = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let searcher = Searcher::new(
        flags.iter().map(|f| f.key.clone()).collect(),
        &args.patterns,
        args.no_ignore,
        threads,
    )?;
    let bar = progress_bar(args.no_progress);
    let started = Instant::now();
    let found = searcher.walk(&roots, &bar)?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let report = Report::new(&flags, found, stale, stale_days, from, elapsed);
    if json {
        crate::output::json(&report)?;
    } else {
        out!("{}", report.text());
    }
    let failed: Vec<String> = args
        .fail_on
        .iter()
        .filter(|k| report.has(**k))
        .map(|k| format!("{k:?}").to_lowercase())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("scan: found {} (--fail-on)", failed.join(", "));
        Ok(ExitCode::from(exit::FINDINGS))
    }
}

/// Names a path relative to `root` for stable test output.
#[cfg(test)]
fn rel(root: &std::path::Path, loc: &str) -> String {
    loc.strip_prefix(&format!("{}/", root.display()))
        .unwrap_or(loc)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &std::path::Path, name: &str, text: &str) {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn flags(keys: &[(&str, bool)]) -> Vec<KnownFlag> {
        keys.iter()
            .map(|(k, archived)| KnownFlag {
                key: (*k).into(),
                archived: *archived,
            })
            .collect()
    }

    fn scan(root: &std::path::Path, known: &[KnownFlag]) -> Report {
        let s = Searcher::new(known.iter().map(|f| f.key.clone()).collect(), &[], false, 2).unwrap();
        let found = s.walk(&[root.to_path_buf()], &ProgressBar::hidden()).unwrap();
        Report::new(known, found, Vec::new(), None, "test".into(), Duration::ZERO)
    }

    #[test]
    fn keys_are_found_on_identifier_boundaries_only() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "src/app.ts",
            "const a = client.getBooleanValue('checkout', false);\n// new-checkout-v2 is elsewhere\nif (checkout_total) {}\n",
        );
        let known = flags(&[("checkout", false), ("new-checkout-v2", false), ("unused-one", false)]);
        let r = scan(dir.path(), &known);
        let checkout = &r.flags["checkout"];
        assert_eq!(checkout.count, 1, "{checkout:?}");
        assert_eq!(rel(dir.path(), &checkout.locations[0]), "src/app.ts:1");
        assert_eq!(
            rel(dir.path(), &r.flags["new-checkout-v2"].locations[0]),
            "src/app.ts:2"
        );
        assert_eq!(r.unused, vec!["unused-one".to_owned()]);
    }

    #[test]
    fn sdk_calls_naming_no_flag_are_unknown_references() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.rs",
            "let x = client.bool(\"ghost-flag\", &ctx, false);\nlet y = client.bool(\"real\", &ctx, false);\n",
        );
        write(
            dir.path(),
            "b.py",
            "\n\nif ld.variation('old_banner', user, False):\n    pass\n",
        );
        write(
            dir.path(),
            "c.sh",
            "curl -X POST $URL/ofrep/v1/evaluate/flags/typo-flag\n",
        );
        let r = scan(dir.path(), &flags(&[("real", false)]));
        let unknown: Vec<(&str, String)> = r
            .unknown
            .iter()
            .map(|(k, v)| (k.as_str(), rel(dir.path(), &v.locations[0])))
            .collect();
        assert_eq!(
            unknown,
            vec![
                ("ghost-flag", "a.rs:1".to_owned()),
                ("old_banner", "b.py:3".to_owned()),
                ("typo-flag", "c.sh:1".to_owned())
            ]
        );
        assert!(r.has(Finding::Unknown) && r.has(Finding::Any) && !r.has(Finding::Unused));
    }

    #[test]
    fn gitignored_hidden_and_binary_files_are_not_searched() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".gitignore", "build/\n");
        write(dir.path(), "build/gen.js", "isEnabled('kept')\n");
        write(dir.path(), ".hidden/x.js", "isEnabled('kept')\n");
        write(dir.path(), "blob.bin", "kept\0\0\0");
        write(
            dir.path(),
            "src/main.go",
            "client.BooleanValue(ctx, \"other\", false)\n",
        );
        let known = flags(&[("kept", false), ("archived-one", true)]);
        let r = scan(dir.path(), &known);
        assert_eq!(r.flags["kept"].count, 0);
        assert_eq!(r.unused, vec!["kept".to_owned()], "archived flags are never `unused`");
        assert!(r.archived.is_empty());
        // Only src/main.go: .gitignore is hidden, blob.bin is binary.
        assert_eq!(r.files_scanned, 1);
    }

    #[test]
    fn archived_flags_still_referenced_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "x.kt",
            "if (client.getBooleanValue(\"legacy-nav\", false)) {}\n",
        );
        let r = scan(dir.path(), &flags(&[("legacy-nav", true)]));
        assert_eq!(r.archived["legacy-nav"].count, 1);
        assert!(r.unknown.is_empty() && r.unused.is_empty());
        assert!(r.has(Finding::Archived));
    }

    #[test]
    fn calls_split_over_lines_beside_non_ascii_text_and_in_urls_are_found() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.ts",
            "// café ünïcode — text\nconst v = client.getBooleanValue(\n    \"wrapped-flag\",\n    false);\nfoo(\"not-a-call\"); isEnabled ( 'spaced' )\n",
        );
        write(
            dir.path(),
            "b.sh",
            "curl $U/ofrep/v1/evaluate/flags/url-flag -d '{}'\ncurl $U/ofrep/v1/evaluate/flags/\n",
        );
        // A user pattern runs over the whole text.
        let s = Searcher::new(vec!["known".into()], &[r"flag!\((\w+)\)".into()], false, 1).unwrap();
        write(dir.path(), "c.rs", "let x = flag!(custom_one);\n");
        let found = s.walk(&[dir.path().to_path_buf()], &ProgressBar::hidden()).unwrap();
        let unknown: Vec<(&str, String)> = found
            .unknown
            .iter()
            .map(|(k, v)| (k.as_str(), rel(dir.path(), &v.locations[0])))
            .collect();
        assert_eq!(
            unknown,
            vec![
                ("custom_one", "c.rs:1".to_owned()),
                ("spaced", "a.ts:5".to_owned()),
                ("url-flag", "b.sh:1".to_owned()),
                ("wrapped-flag", "a.ts:3".to_owned()),
            ]
        );
    }

    #[test]
    fn a_pattern_without_a_capture_group_is_refused() {
        let err = Searcher::new(vec![], &["flag\\(".into()], false, 1).err().unwrap();
        assert!(err.to_string().contains("needs one capture group"), "{err}");
    }
}
