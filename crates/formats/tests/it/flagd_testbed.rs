//! The flagd-testbed evaluator suite: every Gherkin scenario (outlines
//! expanded with their examples) run against `testkit-flags.json` imported
//! with the flagd importer and evaluated by the core.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gherkin::{Feature, GherkinEnv, Scenario, Step, Table};
use serde_json::Value;
use sextant_core::logic::FractionalVersion;
use sextant_core::{CompileOptions, Context, FlagKind, Snapshot};
use sextant_formats::flagd;

const ENVIRONMENT: &str = "production";

/// Scenarios not run, as (`file: scenario name`, reason). Every entry must
/// name a scenario that exists.
const SKIPPED: &[(&str, &str)] = &[];

fn testbed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/flagd-testbed/evaluator")
}

/// One runnable case: a scenario, or one example row of an outline.
struct Case {
    /// `file: scenario name`, the key of [`SKIPPED`].
    scenario: String,
    /// The scenario plus the example row, for messages.
    label: String,
    tags: Vec<String>,
    steps: Vec<(String, Option<Table>)>,
}

fn substitute(text: &str, header: &[String], row: &[String]) -> String {
    let mut out = text.to_owned();
    for (name, value) in header.iter().zip(row) {
        out = out.replace(&format!("<{name}>"), value);
    }
    out
}

fn expand(file: &str, feature: &Feature) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |scenario: &Scenario, background: &[Step], outer_tags: &[String]| {
        let id = format!("{file}: {}", scenario.name);
        let steps: Vec<&Step> = background.iter().chain(&scenario.steps).collect();
        let mut tags: Vec<String> = feature
            .tags
            .iter()
            .chain(outer_tags)
            .chain(&scenario.tags)
            .cloned()
            .collect();
        if scenario.examples.is_empty() {
            cases.push(Case {
                scenario: id.clone(),
                label: id.clone(),
                tags: tags.clone(),
                steps: steps.iter().map(|s| (s.value.clone(), s.table.clone())).collect(),
            });
            return;
        }
        for examples in &scenario.examples {
            let Some(table) = &examples.table else { continue };
            let Some((header, rows)) = table.rows.split_first() else {
                continue;
            };
            let before = tags.len();
            tags.extend(examples.tags.iter().cloned());
            for (i, row) in rows.iter().enumerate() {
                let steps = steps
                    .iter()
                    .map(|s| {
                        let table = s.table.clone().map(|mut t| {
                            for cells in &mut t.rows {
                                for cell in cells.iter_mut() {
                                    *cell = substitute(cell, header, row);
                                }
                            }
                            t
                        });
                        (substitute(&s.value, header, row), table)
                    })
                    .collect();
                cases.push(Case {
                    scenario: id.clone(),
                    label: format!(
                        "{id} [{} #{}: {}]",
                        examples.name.as_deref().unwrap_or("Examples"),
                        i + 1,
                        row.join(" | ")
                    ),
                    tags: tags.clone(),
                    steps,
                });
            }
            tags.truncate(before);
        }
    };
    let background = feature.background.as_ref().map(|b| b.steps.clone()).unwrap_or_default();
    for scenario in &feature.scenarios {
        add(scenario, &background, &[]);
    }
    for rule in &feature.rules {
        let mut steps = background.clone();
        steps.extend(rule.background.iter().flat_map(|b| b.steps.clone()));
        for scenario in &rule.scenarios {
            add(scenario, &steps, &rule.tags);
        }
    }
    cases
}

/// Matches `text` against `template`, where each `{}` captures text up to
/// the next literal part (the last capture runs to the final literal).
/// Captures have Gherkin's `\"` un-escaped.
fn capture(template: &str, text: &str) -> Option<Vec<String>> {
    let literals: Vec<&str> = template.split("{}").collect();
    let (first, rest) = literals.split_first()?;
    let mut remaining = text.strip_prefix(first)?;
    let mut captures = Vec::new();
    for (i, literal) in rest.iter().enumerate() {
        let end = if i + 1 == rest.len() {
            remaining.strip_suffix(literal)?.len()
        } else {
            remaining.find(literal)?
        };
        captures.push(remaining[..end].replace("\\\"", "\""));
        remaining = &remaining[end + literal.len()..];
    }
    if rest.is_empty() && !remaining.is_empty() {
        return None;
    }
    Some(captures)
}

/// A typed value as the steps spell it (`Boolean`, `String`, `Integer`,
/// `Float`, `Object`).
fn typed(ty: &str, text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}` is not a {ty}");
    Ok(match ty {
        "Boolean" => Value::Bool(text.parse().map_err(|_| bad())?),
        "String" => Value::String(text.to_owned()),
        "Integer" => Value::from(text.parse::<i64>().map_err(|_| bad())?),
        "Float" => Value::from(text.parse::<f64>().map_err(|_| bad())?),
        "Object" => serde_json::from_str(text).map_err(|_| bad())?,
        _ => return Err(format!("unknown type `{ty}`")),
    })
}

/// Whether `actual` is `expected` for a value of type `ty`.
fn same(ty: &str, actual: &Value, expected: &Value) -> bool {
    match ty {
        "Integer" => actual.as_i64().is_some() && actual.as_i64() == expected.as_i64(),
        "Float" => match (actual.as_f64(), expected.as_f64()) {
            (Some(a), Some(e)) => (a - e).abs() < 1e-9,
            _ => false,
        },
        _ => actual == expected,
    }
}

/// An evaluation as an OpenFeature provider reports it.
struct Details {
    value: Value,
    variant: Option<String>,
    reason: String,
    error: Option<String>,
    metadata: BTreeMap<String, Value>,
}

struct Suite {
    v1: Snapshot,
    v2: Snapshot,
    /// Flags the importer rejected: flagd answers `PARSE_ERROR` for them.
    rejected: Vec<String>,
}

#[derive(Default)]
struct World {
    flag: Option<(String, String, Value)>,
    ctx: Context,
    details: Option<Details>,
}

impl Suite {
    fn evaluate(&self, snapshot: &Snapshot, key: &str, ty: &str, fallback: &Value, ctx: &Context) -> Details {
        let error = |code: &str| Details {
            value: fallback.clone(),
            variant: None,
            reason: "ERROR".into(),
            error: Some(code.into()),
            metadata: BTreeMap::new(),
        };
        if self.rejected.iter().any(|k| k == key) {
            return error("PARSE_ERROR");
        }
        let kind = match ty {
            "Boolean" => FlagKind::Boolean,
            "String" => FlagKind::String,
            "Integer" | "Float" => FlagKind::Number,
            _ => FlagKind::Json,
        };
        let r = snapshot.evaluate_as(key, kind, ctx);
        // OpenFeature's integer request of a non-integer number is a type
        // mismatch (the core has one number kind).
        if ty == "Integer" && r.value.is_some_and(|v| !v.is_i64() && !v.is_u64()) {
            return error("TYPE_MISMATCH");
        }
        Details {
            value: r.value.cloned().unwrap_or_else(|| fallback.clone()),
            variant: r.variation.map(str::to_owned),
            reason: r.reason.as_str().to_owned(),
            error: r.error.map(|e| e.as_str().to_owned()),
            metadata: snapshot.metadata(key).cloned().unwrap_or_default(),
        }
    }

    fn run(&self, case: &Case) -> Result<(), String> {
        let v1 = case.tags.iter().any(|t| t.trim_start_matches('@') == "fractional-v1");
        let snapshot = if v1 { &self.v1 } else { &self.v2 };
        let mut world = World::default();
        for (text, table) in &case.steps {
            self.step(snapshot, &mut world, text, table.as_ref())
                .map_err(|e| format!("step `{text}`: {e}"))?;
        }
        Ok(())
    }

    fn step(&self, snapshot: &Snapshot, world: &mut World, text: &str, table: Option<&Table>) -> Result<(), String> {
        let check = |what: &str, actual: &dyn std::fmt::Debug, ok: bool, expected: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("{what}: expected {expected}, got {actual:?}"))
            }
        };
        if text == "an evaluator" {
            return Ok(());
        }
        if let Some([ty, key, fallback]) =
            capture("a {}-flag with key \"{}\" and a fallback value \"{}\"", text).as_deref()
        {
            world.flag = Some((key.clone(), ty.clone(), typed(ty, fallback)?));
            return Ok(());
        }
        if let Some([key]) = capture("a context containing a targeting key with value \"{}\"", text).as_deref() {
            world.ctx.targeting_key = Some(key.clone());
            return Ok(());
        }
        if let Some([key, ty, value]) = capture(
            "a context containing a key \"{}\", with type \"{}\" and with value \"{}\"",
            text,
        )
        .as_deref()
        {
            world.ctx.attributes.insert(key.clone(), typed(ty, value)?);
            return Ok(());
        }
        if let Some([outer, inner, value]) = capture(
            "a context containing a nested property with outer key \"{}\" and inner key \"{}\", with value \"{}\"",
            text,
        )
        .as_deref()
        {
            let entry = world
                .ctx
                .attributes
                .entry(outer.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            let Value::Object(map) = entry else {
                return Err(format!("`{outer}` is not an object"));
            };
            map.insert(inner.clone(), Value::String(value.clone()));
            return Ok(());
        }
        if text == "the flag was evaluated with details" {
            let (key, ty, fallback) = world.flag.as_ref().ok_or("no flag was chosen")?;
            world.details = Some(self.evaluate(snapshot, key, ty, fallback, &world.ctx));
            return Ok(());
        }
        if let Some([expected]) = capture("the resolved details value should be \"{}\"", text).as_deref() {
            let (_, ty, _) = world.flag.as_ref().ok_or("no flag was chosen")?;
            let expected = typed(ty, expected)?;
            let d = details(world)?;
            return check("value", &d.value, same(ty, &d.value, &expected), &expected.to_string());
        }
        if let Some([expected]) = capture("the reason should be \"{}\"", text).as_deref() {
            let d = details(world)?;
            return check("reason", &d.reason, d.reason == *expected, expected);
        }
        if let Some([expected]) = capture("the error-code should be \"{}\"", text).as_deref() {
            let d = details(world)?;
            let ok = d.error.as_deref() == Some(expected.as_str()) || (expected.is_empty() && d.error.is_none());
            return check("error code", &d.error, ok, expected);
        }
        if let Some([expected]) = capture("the variant should be \"{}\"", text).as_deref() {
            let d = details(world)?;
            return check(
                "variant",
                &d.variant,
                d.variant.as_deref() == Some(expected.as_str()),
                expected,
            );
        }
        if text == "the resolved metadata is empty" {
            let d = details(world)?;
            return check("metadata", &d.metadata, d.metadata.is_empty(), "none");
        }
        if text == "the resolved metadata should contain" {
            let d = details(world)?;
            let table = table.ok_or("the step has no table")?;
            let Some((header, rows)) = table.rows.split_first() else {
                return Err("empty table".into());
            };
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| format!("no `{name}` column"))
            };
            let (k, t, v) = (column("key")?, column("metadata_type")?, column("value")?);
            for row in rows {
                let expected = typed(&row[t], &row[v])?;
                let actual = d.metadata.get(&row[k]).cloned().unwrap_or(Value::Null);
                check(
                    &format!("metadata `{}`", row[k]),
                    &actual,
                    same(&row[t], &actual, &expected),
                    &expected.to_string(),
                )?;
            }
            return Ok(());
        }
        Err("unsupported step".into())
    }
}

fn details(world: &World) -> Result<&Details, String> {
    world
        .details
        .as_ref()
        .ok_or_else(|| "the flag was not evaluated".to_owned())
}

fn load_suite() -> Suite {
    let path = testbed_dir().join("flags/testkit-flags.json");
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let imported = flagd::import_lenient(&json, ENVIRONMENT).expect("the testkit file imports");
    let rejected: Vec<String> = imported
        .rejected
        .iter()
        .map(|e| e.flag().expect("only single flags are rejected").to_owned())
        .collect();
    let compile = |fractional| {
        Snapshot::compile_with(&imported.document, ENVIRONMENT, 1, CompileOptions { fractional })
            .unwrap_or_else(|e| panic!("the testkit flags compile: {e}"))
    };
    Suite {
        v1: compile(FractionalVersion::V1),
        v2: compile(FractionalVersion::V2),
        rejected,
    }
}

/// In Gherkin table cells a backslash not followed by `|`, `\\` or `n` is
/// literal (`{\"a\": 1}` in the testbed's examples); the parser crate
/// rejects it, so such backslashes are doubled on table lines first.
fn escape_lone_backslashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.trim_start().starts_with('|') {
            out.push_str(line);
            continue;
        }
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '\\' {
                match chars.peek() {
                    Some('|' | '\\' | 'n') => out.extend(chars.next()),
                    _ => out.push('\\'),
                }
            }
        }
    }
    out
}

fn load_cases() -> Vec<Case> {
    let dir = testbed_dir().join("gherkin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "found only {} feature files", files.len());
    let mut cases = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let feature = Feature::parse(escape_lone_backslashes(&text), GherkinEnv::default())
            .unwrap_or_else(|e| panic!("{} does not parse: {e:?}", path.display()));
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        cases.extend(expand(file, &feature));
    }
    cases
}

#[test]
fn flagd_testbed_evaluator_scenarios_pass() {
    let suite = load_suite();
    let cases = load_cases();
    for (name, _) in SKIPPED {
        assert!(
            cases.iter().any(|c| c.scenario == *name),
            "skip list names `{name}`, which is not a scenario"
        );
    }
    let (mut passed, mut skipped) = (0usize, 0usize);
    let mut failures = Vec::new();
    for case in &cases {
        if SKIPPED.iter().any(|(name, _)| *name == case.scenario) {
            skipped += 1;
            continue;
        }
        match suite.run(case) {
            Ok(()) => passed += 1,
            Err(e) => failures.push(format!("{}: {e}", case.label)),
        }
    }
    println!(
        "flagd testbed: {passed} passed, {} failed, {skipped} skipped ({} cases)",
        failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 100, "only {passed} cases ran");
}

#[test]
fn the_missing_evaluator_flag_is_the_only_rejected_one() {
    let suite = load_suite();
    assert_eq!(suite.rejected, ["ref-to-nonexistent-evaluator-flag"]);
}
