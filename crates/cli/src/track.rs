//! `sextant track --file FILE`: bulk event sends from a file of events,
//! one JSON object per line (NDJSON, as `jq -c` and most log pipelines
//! write it; `-` reads standard input).
//!
//! Each line is one event in the wire format of `POST /events/v1/batch`
//! (`{"event": "purchase", "targeting_key": "u1", "value": 25}`, or an
//! exposure with `"kind": "exposure"`); `kind` defaults to `track` and
//! `timestamp` to the time the line is read. Events go out in batches of
//! at most `--batch-size` (≤ 1,000) events and 4 MiB, one batch at a time.
//!
//! Every batch carries an id derived from its position and its lines'
//! bytes, so a batch retried after a 429, a 5xx or a lost connection — or
//! the whole command re-run after a failure — is stored once: the server
//! answers `duplicate` for an id it has stored. `--resend` mixes a fresh
//! run id into the ids for when the same file really is to be stored
//! again. A `Retry-After` from the server is honoured; without one the
//! wait doubles from 250 ms up to 30 s.
//!
//! Bad events do not stop the send: the server stores the good events of
//! a batch and names the bad ones by index, which maps back to a line
//! number; lines that are not JSON objects are reported without being
//! sent. The command exits 1 when any event was rejected.

use std::io::{BufRead, BufReader, IsTerminal as _, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::{Failure, exit};

/// The events endpoint.
const PATH: &[&str] = &["events", "v1", "batch"];

/// Most events per batch (the server accepts more; 1,000 keeps a retry cheap).
pub const MAX_BATCH_EVENTS: u64 = 1_000;

/// A batch is sent once its events reach this many bytes, well under the
/// server's 8 MiB body limit.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Rejections listed in the report (the count is always exact).
const MAX_LISTED: usize = 1_000;

/// Rejections printed in the human summary.
const MAX_PRINTED: usize = 20;

/// The longest wait honoured from a `Retry-After`.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Options of `sextant track --file`.
#[derive(Debug, Args)]
pub struct BulkOptions {
    /// With --file: events per batch, 1 to 1000.
    #[arg(long, default_value_t = MAX_BATCH_EVENTS, value_parser = clap::value_parser!(u64).range(1..=1000), value_name = "N")]
    batch_size: u64,
    /// With --file: attempts per batch after the first, on 429, 5xx or a
    /// lost connection.
    #[arg(long, default_value_t = 10, value_name = "N")]
    max_retries: u32,
    /// With --file: store the events even if this file was sent before
    /// (batch ids normally make a re-run store nothing twice).
    #[arg(long)]
    resend: bool,
    /// With --file: no progress bar (it is drawn only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
}

/// A refused event, by line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line number in the file.
    pub line: u64,
    /// The wrong field (`timestamp`), or empty when the whole line is wrong.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What a bulk send did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// The file sent (`-` for standard input).
    pub file: String,
    /// Events read (non-blank lines).
    pub events: u64,
    /// Events the server stored.
    pub stored: u64,
    /// Events in batches the server had stored before (a retry or re-run).
    pub already_stored: u64,
    /// Events refused, by the server or because the line is not a JSON object.
    pub rejected: u64,
    /// Batches sent.
    pub batches: u64,
    /// Batches the server had already stored.
    pub duplicate_batches: u64,
    /// Requests repeated after a 429, a 5xx or a lost connection.
    pub retries: u64,
    /// The first 1,000 rejections, by line.
    pub rejections: Vec<Rejection>,
}

impl Summary {
    fn reject(&mut self, r: Rejection) {
        self.rejected += 1;
        if self.rejections.len() < MAX_LISTED {
            self.rejections.push(r);
        }
    }

    /// The human summary.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "sent {}: {} events in {} batches; {} stored, {} already stored, {} rejected",
            self.file, self.events, self.batches, self.stored, self.already_stored, self.rejected
        );
        if self.retries > 0 {
            let _ = write!(out, " ({} retries)", self.retries);
        }
        out.push('\n');
        for r in self.rejections.iter().take(MAX_PRINTED) {
            if r.field.is_empty() {
                let _ = writeln!(out, "  line {}: {}", r.line, r.message);
            } else {
                let _ = writeln!(out, "  line {}: {}: {}", r.line, r.field, r.message);
            }
        }
        if self.rejected > MAX_PRINTED as u64 {
            let _ = writeln!(
                out,
                "  … and {} more (--json lists the first {MAX_LISTED})",
                self.rejected - MAX_PRINTED as u64
            );
        }
        out
    }
}

/// The server's answer to a stored batch.
#[derive(Deserialize)]
struct Accepted {
    accepted: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    rejected: Vec<ServerRejection>,
}

#[derive(Deserialize)]
struct ServerRejection {
    index: usize,
    field: String,
    message: String,
}

/// A 422 problem: every event of the batch was refused.
#[derive(Deserialize)]
struct Invalid {
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Deserialize)]
struct FieldError {
    field: String,
    message: String,
}

/// Events read but not yet sent.
struct Batch {
    /// The events' JSON, comma-separated.
    events: Vec<u8>,
    /// The line of each event.
    lines: Vec<u64>,
    /// Hash of the batch's position and raw lines: its id.
    hash: Sha256,
}

impl Batch {
    fn new(salt: &[u8], number: u64) -> Batch {
        let mut hash = Sha256::new();
        hash.update(salt);
        hash.update(number.to_le_bytes());
        Batch {
            events: Vec::new(),
            lines: Vec::new(),
            hash,
        }
    }

    /// The request body with its batch id.
    fn body(self) -> (String, Vec<u8>, Vec<u64>) {
        let digest = self.hash.finalize();
        let id = format!("sextant-cli-{}", hex::encode(&digest[..16]));
        let mut body = Vec::with_capacity(self.events.len() + 80);
        body.extend_from_slice(br#"{"batch_id":""#);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(br#"","events":["#);
        body.extend_from_slice(&self.events);
        body.extend_from_slice(b"]}");
        (id, body, self.lines)
    }
}

/// One line as an event object with `kind` and `timestamp` filled in, or
/// why it is not one.
fn event_of(line: &[u8], now: &str) -> Result<Vec<u8>, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut event) = value else {
        return Err(format!(
            "is {}; each line is one event object, e.g. {{\"event\": \"purchase\", \"targeting_key\": \"u1\"}}",
            kind_of(&value)
        ));
    };
    event.entry("kind").or_insert_with(|| Value::from("track"));
    event.entry("timestamp").or_insert_with(|| Value::from(now));
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `/events/3/timestamp` → (3, `timestamp`).
fn index_of(field: &str) -> Option<(usize, String)> {
    let rest = field.strip_prefix("/events/")?;
    let (index, field) = rest.split_once('/').unwrap_or((rest, ""));
    Some((index.parse().ok()?, field.to_owned()))
}

/// The wait before attempt `attempt` (0-based) when the server named none.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(30))
}

fn progress_bar(hidden: bool, len: Option<u64>) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
            "{bar:30} {bytes}/{total_bytes} {msg} ({eta})",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {bytes} read, {msg} ({elapsed})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The sender: one client, the running totals and the progress bar.
struct Sender<'a> {
    client: &'a Client,
    options: &'a BulkOptions,
    summary: Summary,
    bar: ProgressBar,
}

impl Sender<'_> {
    /// Sends one batch, retrying what can be retried, and records the answer.
    async fn send(&mut self, batch: Batch) -> Result<()> {
        let (id, body, lines) = batch.body();
        let (first, last) = (lines.first().copied().unwrap_or(0), lines.last().copied().unwrap_or(0));
        let mut attempt = 0;
        let reply = loop {
            let why = match self.client.post_raw(PATH, body.clone()).await {
                Ok(r) if r.status.is_success() || r.status == StatusCode::UNPROCESSABLE_ENTITY => break r,
                Ok(r) if matches!(r.status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504) => {
                    let wait = r.retry_after.map_or_else(|| backoff(attempt), |w| w.min(MAX_WAIT));
                    (format!("HTTP {}", r.status), wait, Some(r))
                }
                Ok(r) => {
                    let f = self.client.failure_of(&r, PATH);
                    return Err(Failure::new(
                        f.code,
                        format!("the batch of lines {first}–{last} was refused: {}", f.message),
                    )
                    .into());
                }
                Err(e) => (e, backoff(attempt), None),
            };
            let (cause, wait, reply) = why;
            if attempt >= self.options.max_retries {
                let detail = match &reply {
                    Some(r) => self.client.failure_of(r, PATH).message,
                    None => format!("cannot reach the server at {}: {cause}", self.client.base_url()),
                };
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "gave up on the batch of lines {first}–{last} after {} attempts: {detail}\n  \
                         {} events before line {first} were stored; run the same command again to send \
                         the rest (batches already stored are recognised by their ids and not stored twice)",
                        attempt + 1,
                        self.summary.stored + self.summary.already_stored,
                    ),
                )
                .into());
            }
            attempt += 1;
            self.summary.retries += 1;
            self.bar.set_message(format!(
                "{cause}: retrying lines {first}–{last} in {} ms",
                wait.as_millis()
            ));
            tokio::time::sleep(wait).await;
        };
        self.summary.batches += 1;
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            // Every event refused; the errors say which field of which event.
            let invalid: Invalid = serde_json::from_slice(&reply.body).unwrap_or(Invalid { errors: Vec::new() });
            let mapped: Option<Vec<(usize, String, String)>> = invalid
                .errors
                .iter()
                .map(|e| index_of(&e.field).map(|(i, f)| (i, f, e.message.clone())))
                .collect();
            match mapped {
                Some(mapped) if !mapped.is_empty() => {
                    for (index, field, message) in mapped {
                        let line = lines.get(index).copied().unwrap_or(0);
                        self.summary.reject(Rejection { line, field, message });
                    }
                }
                _ => {
                    let f = self.client.failure_of(&reply, PATH);
                    return Err(Failure::new(
                        f.code,
                        format!("the batch of lines {first}–{last} ({id}) was refused: {}", f.message),
                    )
                    .into());
                }
            }
        } else {
            let accepted: Accepted = serde_json::from_slice(&reply.body)
                .with_context(|| format!("the server's answer to batch {id} is not a batch result"))?;
            let refused = accepted.rejected.len() as u64;
            for r in accepted.rejected {
                let line = lines.get(r.index).copied().unwrap_or(0);
                let field = index_of(&r.field).map_or(r.field, |(_, f)| f);
                self.summary.reject(Rejection {
                    line,
                    field,
                    message: r.message,
                });
            }
            if accepted.duplicate {
                self.summary.duplicate_batches += 1;
                self.summary.already_stored += (lines.len() as u64).saturating_sub(refused);
            } else {
                self.summary.stored += accepted.accepted;
            }
        }
        self.bar.set_message(format!(
            "{} events sent",
            self.summary.stored + self.summary.already_stored
        ));
        Ok(())
    }
}

/// `sextant track --file FILE`: sends every event of `file` with `client`
/// (an SDK token) and prints the summary.
pub fn send_file(client: &Client, file: &Path, options: &BulkOptions, json: bool) -> Result<ExitCode> {
    let (reader, len, name): (Box<dyn Read>, Option<u64>, String) = if file == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None, "-".into())
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let len = f.metadata().ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
        (Box::new(f), len, file.display().to_string())
    };
    let salt: Vec<u8> = if options.resend {
        // A run id: the time and process make each run's ids new.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}:{}", now.as_nanos(), std::process::id()).into_bytes()
    } else {
        Vec::new()
    };
    let bar = progress_bar(options.no_progress, len);
    let summary = crate::client::block_on(async {
        let mut sender = Sender {
            client,
            options,
            summary: Summary {
                file: name,
                ..Summary::default()
            },
            bar: bar.clone(),
        };
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut line = Vec::new();
        let mut number = 0u64;
        let mut batches = 0u64;
        let mut batch = Batch::new(&salt, batches);
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if read == 0 {
                break;
            }
            number += 1;
            bar.inc(read as u64);
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            sender.summary.events += 1;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            match event_of(text, &now) {
                Ok(event) => {
                    if !batch.lines.is_empty() {
                        batch.events.push(b',');
                    }
                    batch.events.extend_from_slice(&event);
                    batch.lines.push(number);
                    batch.hash.update(text);
                    batch.hash.update(b"\n");
                }
                Err(message) => sender.summary.reject(Rejection {
                    line: number,
                    field: String::new(),
                    message,
                }),
            }
            if batch.lines.len() as u64 >= options.batch_size || batch.events.len() >= MAX_BATCH_BYTES {
                batches += 1;
                let full = std::mem::replace(&mut batch, Batch::new(&salt, batches));
                sender.send(full).await?;
            }
        }
        if !batch.lines.is_empty() {
            sender.send(batch).await?;
        }
        Ok(sender.summary)
    });
    bar.finish_and_clear();
    let mut summary = summary?;
    // Server rejections arrive per batch, after the lines read since.
    summary.rejections.sort_by_key(|r| r.line);
    if json {
        crate::output::json(&summary)?;
    } else {
        out!("{}", summary.text());
    }
    if summary.rejected > 0 {
        eprintln!(
            "error: {} of {} events were rejected (listed by line); the others were stored",
            summary.rejected, summary.events
        );
        return Ok(ExitCode::from(exit::FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_timestamp_default_and_explicit_ones_are_kept() {
        let e: Value =
            serde_json::from_slice(&event_of(br#"{"event":"buy","targeting_key":"u"}"#, "T").unwrap()).unwrap();
        assert_eq!(e["kind"], "track");
        assert_eq!(e["timestamp"], "T");
        let e: Value = serde_json::from_slice(
            &event_of(br#"{"kind":"exposure","timestamp":"2026-01-01T00:00:00Z"}"#, "T").unwrap(),
        )
        .unwrap();
        assert_eq!(e["kind"], "exposure");
        assert_eq!(e["timestamp"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_line_that_is_not_an_object_says_what_it_is() {
        assert!(
            event_of(b"[1]", "T")
                .unwrap_err()
                .starts_with("is an array; each line is one event object")
        );
        assert!(event_of(b"{oops", "T").unwrap_err().starts_with("not JSON: "));
    }

    #[test]
    fn server_fields_map_to_an_index_and_the_field_within_the_event() {
        assert_eq!(index_of("/events/3/timestamp"), Some((3, "timestamp".to_owned())));
        assert_eq!(index_of("/events/12"), Some((12, String::new())));
        assert_eq!(index_of("/batch_id"), None);
        assert_eq!(index_of("/events"), None);
    }

    #[test]
    fn batch_ids_depend_on_position_lines_and_run_salt() {
        let id = |salt: &[u8], n: u64, line: &[u8]| {
            let mut b = Batch::new(salt, n);
            b.hash.update(line);
            b.body().0
        };
        assert_eq!(id(b"", 0, b"a"), id(b"", 0, b"a"));
        assert_ne!(id(b"", 0, b"a"), id(b"", 1, b"a"));
        assert_ne!(id(b"", 0, b"a"), id(b"", 0, b"b"));
        assert_ne!(id(b"", 0, b"a"), id(b"run", 0, b"a"));
        assert!(id(b"", 0, b"a").len() <= 128);
    }

    #[test]
    fn the_wait_doubles_from_a_quarter_second_up_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }
}
