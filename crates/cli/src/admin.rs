//! `sextant segment …`, `sextant token …`, `sextant env list`: the rest of
//! the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use sextant_core::Segment;

use crate::client::{Client, Remote, SegmentView, block_on};
use crate::output::{Table, json};
use crate::{Failure, exit};

/// `sextant segment …`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: SegmentCommand,
}

#[derive(Debug, Subcommand)]
enum SegmentCommand {
    /// List segments.
    List,
    /// Show one segment.
    Get {
        /// Segment key.
        key: String,
    },
    /// Create a segment from options or a YAML/JSON file.
    Create(SegmentInput),
    /// Replace a segment from options or a YAML/JSON file.
    Update(SegmentInput),
    /// Delete a segment (refused while a flag uses it). Needs --yes.
    Delete {
        /// Segment key.
        key: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
struct SegmentInput {
    /// Segment key.
    key: Option<String>,
    /// The whole segment as YAML/JSON (`key`, `description`, `included`, `excluded`, `conditions`).
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// What the segment is.
    #[arg(long)]
    description: Option<String>,
    /// Targeting keys always in the segment.
    #[arg(long = "include", value_delimiter = ',')]
    included: Vec<String>,
    /// Targeting keys never in the segment.
    #[arg(long = "exclude", value_delimiter = ',')]
    excluded: Vec<String>,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

impl SegmentInput {
    fn segment(&self) -> Result<Segment> {
        if let Some(path) = &self.file {
            let text = crate::read_file(path)?;
            let s: Segment =
                serde_norway::from_str(&text).with_context(|| format!("{} is not a segment", path.display()))?;
            if let Some(k) = &self.key
                && *k != s.key
            {
                bail!("the key argument `{k}` differs from the file's `{}`; drop one", s.key);
            }
            return Ok(s);
        }
        let Some(key) = self.key.clone() else {
            bail!("give the segment's key or a file (--file)");
        };
        Ok(Segment {
            key,
            description: self.description.clone(),
            included: self.included.clone(),
            excluded: self.excluded.clone(),
            conditions: Vec::new(),
        })
    }
}

/// `sextant segment …`.
pub fn segment(args: SegmentArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            SegmentCommand::List => {
                let items = client.segments().await?;
                if as_json {
                    return json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["KEY", "INCLUDED", "EXCLUDED", "CONDITIONS", "DESCRIPTION"]);
                for s in &items {
                    let g = &s.segment;
                    t.row([
                        s.key.clone(),
                        g.included.len().to_string(),
                        g.excluded.len().to_string(),
                        g.conditions.len().to_string(),
                        g.description.clone().unwrap_or_default(),
                    ]);
                }
                t.print("no segments yet; create one with `sextant segment create KEY`");
            }
            SegmentCommand::Get { key } => {
                let s: SegmentView = client.get(&client.ws_path(&["segments", &key])).await?;
                if as_json {
                    json(&s)?;
                } else {
                    outln!("# version {}", s.version);
                    out!("{}", serde_norway::to_string(&s.segment)?);
                }
            }
            SegmentCommand::Create(input) => {
                let seg = input.segment()?;
                let s: SegmentView = client
                    .send(
                        Method::POST,
                        &client.ws_path(&["segments"]),
                        &[],
                        Some(&json!({"segment": seg, "reason": input.reason})),
                        None,
                    )
                    .await?
                    .into()?;
                done(as_json, &s, &format!("created segment {}", s.key))?;
            }
            SegmentCommand::Update(input) => {
                let seg = input.segment()?;
                let s: SegmentView = client
                    .send(
                        Method::PUT,
                        &client.ws_path(&["segments", &seg.key]),
                        &[],
                        Some(&json!({"segment": seg, "reason": input.reason})),
                        None,
                    )
                    .await?
                    .into()?;
                done(
                    as_json,
                    &s,
                    &format!("updated segment {} (version {})", s.key, s.version),
                )?;
            }
            SegmentCommand::Delete { key, yes, reason } => {
                if !yes {
                    return Err(Failure::new(
                        exit::FAILURE,
                        format!("deleting segment `{key}` is irreversible; re-run with --yes to delete it"),
                    )
                    .into());
                }
                let q: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", r.as_str())).collect();
                client
                    .send(Method::DELETE, &client.ws_path(&["segments", &key]), &q, None, None)
                    .await?;
                done(as_json, &json!({"deleted": key}), &format!("deleted segment {key}"))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn done<T: serde::Serialize>(as_json: bool, value: &T, message: &str) -> Result<()> {
    if as_json {
        json(value)
    } else {
        outln!("{message}");
        Ok(())
    }
}

/// `sextant token …`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: TokenCommand,
}

/// Token kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TokenKindArg {
    /// Admin API and CLI, with a role.
    Admin,
    /// Server-side SDK for one environment (full ruleset, streaming).
    Server,
    /// Client-side SDK for one environment (OFREP evaluation only).
    Client,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its value is printed once.
    Create {
        /// Name (the actor recorded for changes made with it).
        name: String,
        /// Kind.
        #[arg(long, value_enum, default_value = "admin")]
        kind: TokenKindArg,
        /// Role of an admin token: viewer, engineer, product or admin.
        #[arg(long)]
        role: Option<String>,
        /// Environment: the one an SDK token serves, or (repeatable) the ones an admin token may change.
        #[arg(long, short)]
        env: Vec<String>,
        /// Browser origins allowed to use a client token (repeatable; `*` for any).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id.
    Revoke {
        /// Token id (from `sextant token list`).
        id: i64,
    },
}

/// `sextant token …`.
pub fn token(args: TokenArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            TokenCommand::Create {
                name,
                kind,
                role,
                env,
                origins,
                reason,
            } => {
                let body = match kind {
                    TokenKindArg::Admin => json!({
                        "name": name, "kind": "admin",
                        "role": role.unwrap_or_else(|| "viewer".into()),
                        "environments": if env.is_empty() { Value::Null } else { json!(env) },
                        "reason": reason,
                    }),
                    TokenKindArg::Server | TokenKindArg::Client => {
                        let [environment] = env.as_slice() else {
                            bail!("an SDK token serves exactly one environment: pass --env ENVIRONMENT once");
                        };
                        json!({
                            "name": name,
                            "kind": if matches!(kind, TokenKindArg::Server) { "server" } else { "client" },
                            "workspace": client.workspace, "environment": environment,
                            "allowed_origins": origins, "reason": reason,
                        })
                    }
                };
                let created: Value = client
                    .send(Method::POST, &["api", "v1", "tokens"], &[], Some(&body), None)
                    .await?
                    .into()?;
                if as_json {
                    json(&created)?;
                } else {
                    outln!(
                        "created {} token {} (id {}). It is shown only this once; store it now:\n\n    {}\n",
                        created["kind"].as_str().unwrap_or_default(),
                        created["name"].as_str().unwrap_or_default(),
                        created["id"],
                        created["token"].as_str().unwrap_or_default()
                    );
                }
            }
            TokenCommand::List => {
                let items = client.list(&["api", "v1", "tokens"]).await?;
                if as_json {
                    return json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["ID", "NAME", "KIND", "ROLE", "SCOPE", "PREFIX", "CREATED"]);
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                for i in &items {
                    let scope = match (i["workspace"].as_str(), i["environment"].as_str()) {
                        (Some(w), Some(e)) => format!("{w}/{e}"),
                        _ => i["environments"].as_array().map_or("all environments".into(), |a| {
                            a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                        }),
                    };
                    t.row([
                        i["id"].to_string(),
                        s(&i["name"]),
                        s(&i["kind"]),
                        s(&i["role"]),
                        scope,
                        s(&i["prefix"]),
                        s(&i["created_at"]),
                    ]);
                }
                t.print("no tokens");
            }
            TokenCommand::Revoke { id } => {
                client
                    .send(
                        Method::DELETE,
                        &["api", "v1", "tokens", &id.to_string()],
                        &[],
                        None,
                        None,
                    )
                    .await?;
                done(as_json, &json!({"revoked": id}), &format!("revoked token {id}"))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant env …`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: EnvCommand,
}

#[derive(Debug, Subcommand)]
enum EnvCommand {
    /// List the workspace's environments.
    List,
}

/// `sextant env …`.
pub fn env(args: EnvArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            EnvCommand::List => {
                let items = client.list(&client.ws_path(&["environments"])).await?;
                if as_json {
                    return json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["KEY", "NAME", "PRODUCTION", "SNAPSHOT"]);
                for e in &items {
                    t.row([
                        e["key"].as_str().unwrap_or_default().to_owned(),
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        if e["production"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_owned(),
                        e["snapshot_version"].to_string(),
                    ]);
                }
                t.print("no environments");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
