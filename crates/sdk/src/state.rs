//! The data being served: a compiled snapshot plus the document it came
//! from (kept to apply deltas), and where it came from.

use std::collections::{BTreeSet, HashMap};

use sextant_core::{CompileError, Document, Flag, Operator, Snapshot};

use crate::wire::{ChangeBody, SnapshotBody};

/// Where the served flags came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Sextant server, in this process's lifetime.
    Server,
    /// The snapshot cached on disk by an earlier run.
    Cache,
    /// The bootstrap file given to the builder.
    Bootstrap,
}

/// An immutable, compiled state. Readers hold it behind an `Arc`; every
/// update builds a new one.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub snapshot: Snapshot,
    pub document: Document,
    pub workspace: Option<String>,
    pub source: Source,
}

/// Why a change event could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The change is not for the version held (events were missed).
    #[error("change {version} applies to version {previous}, but version {have} is held")]
    Gap { have: u64, previous: u64, version: u64 },
    /// The resulting document did not compile.
    #[error("the changed document does not compile: {0}")]
    Compile(#[from] CompileError),
}

impl Loaded {
    /// Compiles a snapshot body.
    pub fn from_body(body: SnapshotBody, source: Source) -> Result<Loaded, CompileError> {
        let snapshot = Snapshot::compile(&body.document, &body.environment, body.version)?;
        Ok(Loaded {
            snapshot,
            document: body.document,
            workspace: body.workspace,
            source,
        })
    }

    /// The body to cache on disk.
    pub fn to_body(&self) -> SnapshotBody {
        SnapshotBody {
            workspace: self.workspace.clone(),
            environment: self.snapshot.environment().to_owned(),
            version: self.snapshot.version(),
            document: self.document.clone(),
        }
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// Applies a change event. `Ok(None)`: the change is already included.
    pub fn apply(&self, change: ChangeBody) -> Result<Option<Loaded>, ApplyError> {
        let have = self.version();
        if change.version <= have {
            return Ok(None);
        }
        if change.previous != have {
            return Err(ApplyError::Gap {
                have,
                previous: change.previous,
                version: change.version,
            });
        }
        let document = match change.document {
            Some(document) => document,
            None => {
                let mut doc = self.document.clone();
                doc.flags.retain(|f| !change.deleted_flags.contains(&f.key));
                for flag in change.flags {
                    match doc.flags.iter_mut().find(|f| f.key == flag.key) {
                        Some(slot) => *slot = flag,
                        None => doc.flags.push(flag),
                    }
                }
                doc.segments.retain(|s| !change.deleted_segments.contains(&s.key));
                for segment in change.segments {
                    match doc.segments.iter_mut().find(|s| s.key == segment.key) {
                        Some(slot) => *slot = segment,
                        None => doc.segments.push(segment),
                    }
                }
                doc
            }
        };
        let snapshot = Snapshot::compile(&document, self.snapshot.environment(), change.version)?;
        Ok(Some(Loaded {
            snapshot,
            document,
            workspace: self.workspace.clone(),
            source: Source::Server,
        }))
    }
}

/// The keys of flags whose evaluation in `new`'s environment may differ
/// from `old`: changed definitions, flags using a changed segment, and,
/// transitively, flags that have one of those as a prerequisite. Sorted.
pub(crate) fn changed_keys(old: Option<&Loaded>, new: &Loaded) -> Vec<String> {
    let env = new.snapshot.environment();
    let empty = Document::default();
    let old_doc = old.map_or(&empty, |o| &o.document);
    let old_env = old.map_or(env, |o| o.snapshot.environment());

    let old_flags: HashMap<&str, &Flag> = old_doc.flags.iter().map(|f| (f.key.as_str(), f)).collect();
    let new_flags: HashMap<&str, &Flag> = new.document.flags.iter().map(|f| (f.key.as_str(), f)).collect();
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for (key, flag) in &new_flags {
        match old_flags.get(key) {
            Some(before) if same_behaviour(before, old_env, flag, env) => {}
            _ => {
                changed.insert(key);
            }
        }
    }
    changed.extend(old_flags.keys().filter(|k| !new_flags.contains_key(*k)));

    let old_segments: HashMap<&str, _> = old_doc.segments.iter().map(|s| (s.key.as_str(), s)).collect();
    let new_segments: HashMap<&str, _> = new.document.segments.iter().map(|s| (s.key.as_str(), s)).collect();
    let changed_segments: BTreeSet<&str> = old_segments
        .keys()
        .chain(new_segments.keys())
        .filter(|k| old_segments.get(*k) != new_segments.get(*k))
        .copied()
        .collect();
    if !changed_segments.is_empty() {
        for flag in &new.document.flags {
            if uses_segment(flag, env, &changed_segments) {
                changed.insert(&flag.key);
            }
        }
    }

    // Dependents through prerequisites, to a fixpoint.
    loop {
        let before = changed.len();
        for flag in &new.document.flags {
            if let Some(t) = flag.environments.get(env)
                && t.prerequisites.iter().any(|p| changed.contains(p.flag.as_str()))
            {
                changed.insert(&flag.key);
            }
        }
        if changed.len() == before {
            break;
        }
    }
    changed.into_iter().map(str::to_owned).collect()
}

/// Whether two flags evaluate identically in their environments (fields
/// that only describe the flag are ignored).
fn same_behaviour(a: &Flag, a_env: &str, b: &Flag, b_env: &str) -> bool {
    a.kind == b.kind
        && a.variations == b.variations
        && a.metadata == b.metadata
        && a.environments.get(a_env) == b.environments.get(b_env)
}

fn uses_segment(flag: &Flag, env: &str, segments: &BTreeSet<&str>) -> bool {
    let Some(targeting) = flag.environments.get(env) else {
        return false;
    };
    targeting.rules.iter().flat_map(|r| &r.conditions).any(|c| {
        c.op == Operator::InSegment
            && c.values
                .iter()
                .any(|v| v.as_str().is_some_and(|s| segments.contains(s)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loaded(doc: serde_json::Value, version: u64) -> Loaded {
        let body = SnapshotBody {
            workspace: Some("default".into()),
            environment: "production".into(),
            version,
            document: serde_json::from_value(doc).unwrap(),
        };
        Loaded::from_body(body, Source::Server).unwrap()
    }

    fn flag(key: &str, enabled: bool, rules: serde_json::Value) -> serde_json::Value {
        json!({
            "key": key, "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": enabled, "off_variation": "off",
                "rules": rules, "default_serve": {"variation": "on"}}}
        })
    }

    fn change(v: serde_json::Value) -> ChangeBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_delta_upserts_and_deletes_flags_and_bumps_the_version() {
        let base = loaded(
            json!({"flags": [flag("a", true, json!([])), flag("b", true, json!([]))]}),
            3,
        );
        let next = base
            .apply(change(json!({"version": 4, "previous": 3,
                "flags": [flag("a", false, json!([])), flag("c", true, json!([]))], "deleted_flags": ["b"]})))
            .unwrap()
            .unwrap();
        assert_eq!(next.version(), 4);
        assert_eq!(next.snapshot.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(changed_keys(Some(&base), &next), ["a", "b", "c"]);
    }

    #[test]
    fn an_old_change_is_ignored_and_a_gap_is_reported() {
        let base = loaded(json!({"flags": []}), 5);
        assert!(
            base.apply(change(json!({"version": 5, "previous": 4})))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            base.apply(change(json!({"version": 8, "previous": 7}))),
            Err(ApplyError::Gap {
                have: 5,
                previous: 7,
                version: 8
            })
        ));
    }

    #[test]
    fn a_whole_document_change_replaces_everything() {
        let base = loaded(json!({"flags": [flag("a", true, json!([]))]}), 1);
        let next = base
            .apply(change(
                json!({"version": 2, "previous": 1, "document": {"flags": [flag("z", true, json!([]))]}}),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(next.snapshot.keys().collect::<Vec<_>>(), ["z"]);
    }

    #[test]
    fn a_change_that_does_not_compile_is_rejected() {
        let base = loaded(json!({"flags": []}), 1);
        let broken = json!({"key": "x", "kind": "boolean", "variations": [{"key": "on", "value": true}],
            "environments": {"production": {"enabled": true, "default_serve": {"variation": "missing"}}}});
        assert!(matches!(
            base.apply(change(json!({"version": 2, "previous": 1, "flags": [broken]}))),
            Err(ApplyError::Compile(_))
        ));
    }

    #[test]
    fn segment_changes_report_the_flags_that_use_them_and_their_dependents() {
        let uses = flag(
            "uses",
            true,
            json!([{"conditions": [{"attribute": "x", "op": "in_segment", "values": ["beta"]}],
            "serve": {"variation": "off"}}]),
        );
        let mut dependent = flag("dependent", true, json!([]));
        dependent["environments"]["production"]["prerequisites"] = json!([{"flag": "uses", "variations": ["on"]}]);
        let unrelated = flag("unrelated", true, json!([]));
        let seg = |included: serde_json::Value| json!({"key": "beta", "included": included});
        let base = loaded(
            json!({"segments": [seg(json!(["u1"]))], "flags": [uses.clone(), dependent.clone(), unrelated.clone()]}),
            1,
        );
        let next = base
            .apply(change(
                json!({"version": 2, "previous": 1, "segments": [seg(json!(["u1", "u2"]))]}),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(changed_keys(Some(&base), &next), ["dependent", "uses"]);
    }

    #[test]
    fn description_only_edits_are_not_reported_as_changes() {
        let base = loaded(json!({"flags": [flag("a", true, json!([]))]}), 1);
        let mut described = flag("a", true, json!([]));
        described["description"] = json!("now documented");
        let next = base
            .apply(change(json!({"version": 2, "previous": 1, "flags": [described]})))
            .unwrap()
            .unwrap();
        assert!(changed_keys(Some(&base), &next).is_empty());
        assert_eq!(changed_keys(None, &next), ["a"]);
    }
}
