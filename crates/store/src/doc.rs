//! Backend-neutral parts of a write: the in-memory state a document edit
//! works on, validation by compiling snapshots, and the edits themselves.
//! Each backend loads a [`DocState`] inside its transaction, applies one of
//! these edits and persists the result in its own SQL dialect.

use serde_json::Value;
use sextant_core::{CompileError, Document, Flag, Location, Problem, Segment, Snapshot, Targeting};

use crate::error::{FieldError, Kind, Result, StoreError};
use crate::model::*;
use crate::now;

/// A workspace row.
pub(crate) struct WsRow {
    pub(crate) id: i64,
    pub(crate) ws: Workspace,
}

/// Everything a document write needs, loaded inside the transaction.
pub(crate) struct DocState {
    pub(crate) ws: WsRow,
    pub(crate) envs: Vec<Environment>,
    pub(crate) flags: Vec<FlagRecord>,
    pub(crate) segments: Vec<SegmentRecord>,
}

/// Which row a document edit touched.
pub(crate) enum RowWrite {
    UpsertFlag(String),
    DeleteFlag(String),
    UpsertSegment(String),
    DeleteSegment(String),
}

/// The outcome of an edit closure: what to persist and record.
pub(crate) struct DocEdit<T> {
    pub(crate) value: T,
    pub(crate) row: RowWrite,
    pub(crate) action: &'static str,
    pub(crate) kind: Kind,
    pub(crate) key: String,
    /// `Some(env)`: only that environment's snapshot changes; `None`: all.
    pub(crate) environment: Option<String>,
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
}

/// A change about to be recorded.
pub(crate) struct NewChange<'a> {
    pub(crate) meta: &'a ChangeMeta,
    pub(crate) action: &'a str,
    pub(crate) workspace: Option<&'a str>,
    pub(crate) kind: Kind,
    pub(crate) key: &'a str,
    pub(crate) environment: Option<&'a str>,
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(crate) fn not_found(kind: Kind, key: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        key: key.to_owned(),
    }
}

pub(crate) fn state_error(kind: Kind, key: &str, detail: &str) -> StoreError {
    StoreError::State {
        kind,
        key: key.to_owned(),
        detail: detail.to_owned(),
    }
}

/// A committed write that changed no snapshot.
pub(crate) fn committed<T>(value: T, change_id: i64) -> Committed<T> {
    Committed {
        value,
        change_id,
        snapshots: Vec::new(),
        removed_environments: Vec::new(),
    }
}

/// Reads a column of a SQLite or PostgreSQL row the same way, so mapping a
/// row to a record is written once for both backends (only the SQL differs).
pub(crate) trait ColumnRead {
    /// A `TEXT NOT NULL` column.
    fn text(&self, column: &str) -> Result<String>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// An `INTEGER`/`BIGINT NOT NULL` column.
    fn int(&self, column: &str) -> Result<i64>;
    /// A nullable `INTEGER`/`BIGINT` column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
}

macro_rules! column_read {
    ($row:ty) => {
        impl ColumnRead for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

column_read!(sqlx::sqlite::SqliteRow);
column_read!(sqlx::postgres::PgRow);

pub(crate) fn check_version(expected: Option<i64>, current: i64) -> Result<()> {
    match expected {
        Some(v) if v != current => Err(StoreError::VersionMismatch { current }),
        _ => Ok(()),
    }
}

pub(crate) fn check_environments(flag: &Flag, envs: &[Environment]) -> Result<()> {
    let unknown: Vec<FieldError> = flag
        .environments
        .keys()
        .filter(|k| !envs.iter().any(|e| e.key == **k))
        .map(|k| FieldError {
            field: format!("/environments/{k}"),
            message: format!("unknown environment `{k}`"),
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(unknown))
    }
}
pub(crate) fn document(state: &DocState) -> Document {
    Document {
        segments: state.segments.iter().map(|s| s.segment.clone()).collect(),
        flags: state.flags.iter().map(|f| f.flag.clone()).collect(),
    }
}

/// The document as one environment sees it: other environments' targeting removed.
pub(crate) fn env_document(doc: &Document, env: &str) -> Document {
    Document {
        segments: doc.segments.clone(),
        flags: doc
            .flags
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f.environments.retain(|k, _| k == env);
                f
            })
            .collect(),
    }
}

pub(crate) fn compile_env(
    ws: &str,
    env: &Environment,
    doc: &Document,
    version: i64,
    cause: Option<Cause>,
) -> Result<EnvSnapshot, CompileError> {
    let document = env_document(doc, &env.key);
    let snapshot = Snapshot::compile(&document, &env.key, version.max(0) as u64)?;
    Ok(EnvSnapshot {
        workspace: ws.to_owned(),
        environment: env.key.clone(),
        environment_id: env.id,
        production: env.production,
        document,
        snapshot,
        cause,
    })
}

/// Locates each compile issue as a field path in the workspace document.
pub(crate) fn field_errors(err: CompileError, env: &str) -> Vec<FieldError> {
    err.issues
        .into_iter()
        .map(|issue| {
            let field = match &issue.location {
                Location::Segment { key } => format!("/segments/{key}"),
                Location::Flag { key, rule: Some(r) } => format!("/flags/{key}/environments/{env}/rules/{r}"),
                Location::Flag { key, rule: None } => match issue.problem {
                    Problem::EmptyKey | Problem::DuplicateKey => format!("/flags/{key}/key"),
                    Problem::NoVariations | Problem::DuplicateVariation(_) | Problem::VariationKind { .. } => {
                        format!("/flags/{key}/variations")
                    }
                    _ => format!("/flags/{key}/environments/{env}"),
                },
            };
            FieldError {
                field,
                message: issue.problem.to_string(),
            }
        })
        .collect()
}

pub(crate) fn dedup(v: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|e| seen.insert((e.field.clone(), e.message.clone())));
}
/// A token as recorded in changes: never its hash.
pub(crate) fn token_json(t: &TokenRecord) -> Value {
    serde_json::json!({"id": t.id, "name": t.name, "grant": t.grant, "prefix": t.prefix})
}

/// Used by `update_flag` callers that replace one environment's targeting.
pub(crate) fn set_targeting(flag: &mut Flag, env: &str, targeting: Targeting) {
    flag.environments.insert(env.to_owned(), targeting);
}

// ------------------------------------------------------------------ edits
//
// Each edit runs inside the backend's write transaction on the state it
// loaded there, so the version checks see the committed rows of every writer.

/// Adds a new flag (version 1).
pub(crate) fn create_flag(state: &mut DocState, flag: Flag) -> Result<DocEdit<FlagRecord>> {
    if state.flags.iter().any(|f| f.flag.key == flag.key) {
        return Err(StoreError::Conflict {
            kind: Kind::Flag,
            key: flag.key,
        });
    }
    check_environments(&flag, &state.envs)?;
    let at = now();
    let rec = FlagRecord {
        flag,
        version: 1,
        created_at: at.clone(),
        updated_at: at,
    };
    state.flags.push(rec.clone());
    Ok(DocEdit {
        row: RowWrite::UpsertFlag(rec.flag.key.clone()),
        action: "create",
        kind: Kind::Flag,
        key: rec.flag.key.clone(),
        environment: None,
        before: None,
        after: Some(json(&rec.flag)),
        value: rec,
    })
}

/// Applies `change` to a stored flag. `environment` names the only
/// environment the change touches, if any.
pub(crate) fn update_flag(
    state: &mut DocState,
    key: &str,
    expected: Option<i64>,
    environment: Option<&str>,
    action: &'static str,
    change: impl FnOnce(&mut Flag) -> Result<()>,
) -> Result<DocEdit<FlagRecord>> {
    if let Some(env) = environment
        && !state.envs.iter().any(|e| e.key == env)
    {
        return Err(not_found(Kind::Environment, env));
    }
    let envs = state.envs.clone();
    let rec = state
        .flags
        .iter_mut()
        .find(|f| f.flag.key == key)
        .ok_or_else(|| not_found(Kind::Flag, key))?;
    check_version(expected, rec.version)?;
    let before = json(&rec.flag);
    let mut flag = rec.flag.clone();
    change(&mut flag)?;
    flag.key = key.to_owned();
    check_environments(&flag, &envs)?;
    rec.flag = flag;
    rec.version += 1;
    rec.updated_at = now();
    Ok(DocEdit {
        value: rec.clone(),
        row: RowWrite::UpsertFlag(key.to_owned()),
        action,
        kind: Kind::Flag,
        key: key.to_owned(),
        environment: environment.map(str::to_owned),
        before: Some(before),
        after: Some(json(&rec.flag)),
    })
}

/// Removes a flag.
pub(crate) fn delete_flag(state: &mut DocState, key: &str, expected: Option<i64>) -> Result<DocEdit<()>> {
    let i = state
        .flags
        .iter()
        .position(|f| f.flag.key == key)
        .ok_or_else(|| not_found(Kind::Flag, key))?;
    check_version(expected, state.flags[i].version)?;
    let rec = state.flags.remove(i);
    Ok(DocEdit {
        value: (),
        row: RowWrite::DeleteFlag(key.to_owned()),
        action: "delete",
        kind: Kind::Flag,
        key: key.to_owned(),
        environment: None,
        before: Some(json(&rec.flag)),
        after: None,
    })
}

/// Creates (`create`) or replaces a segment.
pub(crate) fn put_segment(
    state: &mut DocState,
    segment: Segment,
    create: bool,
    expected: Option<i64>,
) -> Result<DocEdit<SegmentRecord>> {
    let key = segment.key.clone();
    let existing = state.segments.iter_mut().find(|s| s.segment.key == key);
    let (rec, before, action) = match (existing, create) {
        (Some(_), true) => {
            return Err(StoreError::Conflict {
                kind: Kind::Segment,
                key,
            });
        }
        (None, false) => return Err(not_found(Kind::Segment, &key)),
        (Some(rec), false) => {
            check_version(expected, rec.version)?;
            let before = json(&rec.segment);
            rec.segment = segment;
            rec.version += 1;
            rec.updated_at = now();
            (rec.clone(), Some(before), "update")
        }
        (None, true) => {
            let at = now();
            let rec = SegmentRecord {
                segment,
                version: 1,
                created_at: at.clone(),
                updated_at: at,
            };
            state.segments.push(rec.clone());
            (rec, None, "create")
        }
    };
    Ok(DocEdit {
        row: RowWrite::UpsertSegment(key.clone()),
        action,
        kind: Kind::Segment,
        key,
        environment: None,
        before,
        after: Some(json(&rec.segment)),
        value: rec,
    })
}

/// Removes a segment (compilation then refuses it if a flag still uses it).
pub(crate) fn delete_segment(state: &mut DocState, key: &str, expected: Option<i64>) -> Result<DocEdit<()>> {
    let i = state
        .segments
        .iter()
        .position(|s| s.segment.key == key)
        .ok_or_else(|| not_found(Kind::Segment, key))?;
    check_version(expected, state.segments[i].version)?;
    let rec = state.segments.remove(i);
    Ok(DocEdit {
        value: (),
        row: RowWrite::DeleteSegment(key.to_owned()),
        action: "delete",
        kind: Kind::Segment,
        key: key.to_owned(),
        environment: None,
        before: Some(json(&rec.segment)),
        after: None,
    })
}

/// Compiles every environment the edit affects at its next snapshot
/// version: the new snapshots and the environments to bump, or every
/// problem found (the write is then refused before anything is stored).
pub(crate) fn compile_affected<T>(state: &DocState, e: &DocEdit<T>) -> Result<(Vec<EnvSnapshot>, Vec<i64>)> {
    let doc = document(state);
    let affected: Vec<&Environment> = state
        .envs
        .iter()
        .filter(|env| e.environment.as_deref().is_none_or(|k| k == env.key))
        .collect();
    let mut snapshots = Vec::with_capacity(affected.len());
    let mut problems = Vec::new();
    for env in &affected {
        match compile_env(&state.ws.ws.key, env, &doc, env.snapshot_version + 1, None) {
            Ok(s) => snapshots.push(s),
            Err(err) => problems.extend(field_errors(err, &env.key)),
        }
    }
    if !problems.is_empty() {
        dedup(&mut problems);
        return Err(StoreError::Invalid(problems));
    }
    Ok((snapshots, affected.iter().map(|env| env.id).collect()))
}

/// Every environment of a loaded workspace compiled at its stored version.
pub(crate) fn compile_stored(state: &DocState) -> Result<Vec<EnvSnapshot>> {
    let doc = document(state);
    state
        .envs
        .iter()
        .map(|env| {
            compile_env(&state.ws.ws.key, env, &doc, env.snapshot_version, None).map_err(|e| {
                StoreError::Corrupt(format!(
                    "stored flags of `{}`/`{}` do not compile: {e}",
                    state.ws.ws.key, env.key
                ))
            })
        })
        .collect()
}

/// The stored columns of a new token's grant: (kind, role, environment
/// scope as JSON, (workspace, environment) of SDK tokens, allowed origins).
#[expect(clippy::type_complexity, reason = "a private column tuple")]
pub(crate) fn grant_columns(
    grant: &NewGrant,
) -> (
    &'static str,
    Option<&'static str>,
    Option<String>,
    Option<(&str, &str)>,
    Vec<String>,
) {
    match grant {
        NewGrant::Admin { role, environments } => (
            "admin",
            Some(role.as_str()),
            environments.as_ref().map(|e| json(e).to_string()),
            None,
            Vec::new(),
        ),
        NewGrant::Server { workspace, environment } => {
            ("server", None, None, Some((workspace, environment)), Vec::new())
        }
        NewGrant::Client {
            workspace,
            environment,
            allowed_origins,
        } => (
            "client",
            None,
            None,
            Some((workspace, environment)),
            allowed_origins.clone(),
        ),
    }
}

/// The environments, by key, of a first start.
pub(crate) fn default_environments() -> [EnvironmentInput; 3] {
    [
        ("development", "Development", false),
        ("staging", "Staging", false),
        ("production", "Production", true),
    ]
    .map(|(key, name, production)| EnvironmentInput {
        key: key.into(),
        name: name.into(),
        production,
    })
}
