//! Compiling a document into an immutable [`Snapshot`] and evaluating it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::bucketing::{UNLEASH_VARIANT_SEED, sextant_point, unleash_hash, unleash_percentage};
use crate::context::{AttributePath, Context, Lookup};
use crate::error::{CompileError, Issue, Location, Problem};
use crate::logic::{FractionalVersion, Logic, LogicResult};
use crate::model::{BucketHash, Document, Flag, FlagKind, Rollout, Serve, Split, WEIGHT_SCALE};
use crate::resolution::{ErrorCode, Reason, Resolution};
use crate::targeting::{CompiledCondition, CompiledSegment, compile_condition};

/// Options that change how a document compiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Bucketing of JSONLogic `fractional` (flagd).
    pub fractional: FractionalVersion,
}

/// An immutable, compiled ruleset of one environment. Readers share it
/// behind an `Arc`; a change builds a new one.
#[derive(Debug, Clone)]
pub struct Snapshot {
    environment: Box<str>,
    version: u64,
    flags: Vec<CompiledFlag>,
    index: FxHashMap<Box<str>, usize>,
    segments: Vec<CompiledSegment>,
}

#[derive(Debug, Clone)]
struct CompiledFlag {
    key: Box<str>,
    kind: FlagKind,
    variations: Box<[(Box<str>, Value)]>,
    metadata: BTreeMap<String, Value>,
    enabled: bool,
    off: Option<usize>,
    prerequisites: Box<[(usize, Box<[usize]>)]>,
    rules: Box<[CompiledRule]>,
    default: Option<CompiledServe>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    conditions: Box<[CompiledCondition]>,
    rollout: Option<(u32, Bucketing)>,
    serve: CompiledServe,
}

#[derive(Debug, Clone)]
enum CompiledServe {
    Fixed(usize),
    Split(CompiledSplit),
    Logic(Box<Logic>),
}

#[derive(Debug, Clone)]
struct CompiledSplit {
    /// Cumulative upper bounds paired with variation indexes.
    arms: Box<[(u32, usize)]>,
    total: u32,
    bucketing: Bucketing,
    /// More than one arm has weight: a unit placed here is in an experiment.
    experiment: bool,
}

#[derive(Debug, Clone)]
struct Bucketing {
    unit: Box<[AttributePath]>,
    hash: CompiledHash,
}

#[derive(Debug, Clone)]
enum CompiledHash {
    Sextant(Box<str>),
    UnleashRollout(Box<str>),
    UnleashVariant(Box<str>),
}

impl Bucketing {
    fn new(bucket_by: &[String], hash: &BucketHash, salt: &str, seed: Option<&str>) -> Self {
        let unit = if bucket_by.is_empty() {
            Box::from([AttributePath::TargetingKey])
        } else {
            bucket_by.iter().map(|a| AttributePath::parse(a)).collect()
        };
        let hash = match hash {
            BucketHash::Sextant => CompiledHash::Sextant(seed.unwrap_or(salt).into()),
            BucketHash::UnleashRollout { group_id } => CompiledHash::UnleashRollout(group_id.as_str().into()),
            BucketHash::UnleashVariant { group_id } => CompiledHash::UnleashVariant(group_id.as_str().into()),
        };
        Bucketing { unit, hash }
    }

    /// The first present unit attribute, as text.
    fn unit<'c>(&self, ctx: &'c Context) -> Option<Cow<'c, str>> {
        self.unit.iter().find_map(|path| match ctx.lookup(path)? {
            Lookup::Str(s) => Some(Cow::Borrowed(s)),
            Lookup::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Lookup::Json(Value::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Lookup::Json(_) => None,
        })
    }

    /// The unit's point in `[0, total)`.
    fn point(&self, unit: &str, total: u32) -> u32 {
        match &self.hash {
            CompiledHash::Sextant(seed) => sextant_point(seed, unit, total),
            CompiledHash::UnleashRollout(group) => unleash_hash(group, unit, 0) % total,
            CompiledHash::UnleashVariant(group) => unleash_hash(group, unit, UNLEASH_VARIANT_SEED) % total,
        }
    }

    /// Whether the unit passes a rollout gate of `weight` per 100,000.
    fn admits(&self, ctx: &Context, weight: u32) -> bool {
        if weight >= WEIGHT_SCALE {
            return true;
        }
        if weight == 0 {
            return false;
        }
        let Some(unit) = self.unit(ctx) else {
            return false;
        };
        match &self.hash {
            // Unleash: `normalized <= percentage`, normalized in 1..=100.
            CompiledHash::UnleashRollout(group) => {
                u64::from(unleash_percentage(group, &unit)) * 1000 <= u64::from(weight)
            }
            _ => self.point(&unit, WEIGHT_SCALE) < weight,
        }
    }
}

/// How a serve ended.
enum Served {
    Variation { index: usize, split: bool },
    FallThrough,
    Error(ErrorCode),
}

impl CompiledServe {
    fn serve(&self, flag: &CompiledFlag, ctx: &Context) -> Served {
        match self {
            CompiledServe::Fixed(index) => Served::Variation {
                index: *index,
                split: false,
            },
            CompiledServe::Split(split) => {
                let Some(unit) = split.bucketing.unit(ctx) else {
                    return Served::Error(ErrorCode::TargetingKeyMissing);
                };
                let point = split.bucketing.point(&unit, split.total);
                // Arms are cumulative bounds; the last bound equals `total`.
                let index = split
                    .arms
                    .iter()
                    .find(|(bound, _)| point < *bound)
                    .map_or(split.arms[split.arms.len() - 1].1, |(_, v)| *v);
                Served::Variation {
                    index,
                    split: split.experiment,
                }
            }
            // Borrowing the result avoids an allocation per evaluation.
            CompiledServe::Logic(logic) => logic.evaluate_with(ctx, &flag.key, |result| {
                let key: Cow<'_, str> = match result {
                    LogicResult::Null => return Served::FallThrough,
                    LogicResult::Str(s) => Cow::Borrowed(s),
                    LogicResult::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
                    LogicResult::Number(n) => Cow::Owned(n.to_string()),
                    LogicResult::Other => return Served::Error(ErrorCode::General),
                };
                match flag.variation_index(&key) {
                    Some(index) => Served::Variation { index, split: false },
                    None => Served::Error(ErrorCode::General),
                }
            }),
        }
    }
}

impl CompiledFlag {
    fn variation_index(&self, key: &str) -> Option<usize> {
        self.variations.iter().position(|(k, _)| &**k == key)
    }
}

/// Evaluation depth bound; prerequisite cycles are rejected at compile
/// time, this only guards against pathological chains.
const MAX_PREREQUISITE_DEPTH: usize = 64;

impl Snapshot {
    /// Compiles `document` for `environment`. Reports every problem found.
    pub fn compile(document: &Document, environment: &str, version: u64) -> Result<Snapshot, CompileError> {
        Self::compile_with(document, environment, version, CompileOptions::default())
    }

    /// [`Snapshot::compile`] with options.
    pub fn compile_with(
        document: &Document,
        environment: &str,
        version: u64,
        options: CompileOptions,
    ) -> Result<Snapshot, CompileError> {
        let mut issues = Vec::new();

        let mut segment_index: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, segment) in document.segments.iter().enumerate() {
            if segment_index.insert(segment.key.as_str(), i).is_some() {
                issues.push(Issue {
                    location: Location::Segment {
                        key: segment.key.clone(),
                    },
                    problem: Problem::DuplicateKey,
                });
            }
        }
        let mut segments = Vec::with_capacity(document.segments.len());
        for segment in &document.segments {
            let mut conditions = Vec::with_capacity(segment.conditions.len());
            for condition in &segment.conditions {
                match compile_condition(condition, None) {
                    Ok(c) => conditions.push(c),
                    Err(problem) => issues.push(Issue {
                        location: Location::Segment {
                            key: segment.key.clone(),
                        },
                        problem,
                    }),
                }
            }
            segments.push(CompiledSegment::new(&segment.included, &segment.excluded, conditions));
        }

        let mut index: FxHashMap<Box<str>, usize> = FxHashMap::default();
        for (i, flag) in document.flags.iter().enumerate() {
            if flag.key.is_empty() {
                issues.push(flag_issue(flag, None, Problem::EmptyKey));
            } else if index.insert(flag.key.as_str().into(), i).is_some() {
                issues.push(flag_issue(flag, None, Problem::DuplicateKey));
            }
        }

        let resolve_segment = |key: &str| segment_index.get(key).copied();
        let mut flags = Vec::with_capacity(document.flags.len());
        for flag in &document.flags {
            let before = issues.len();
            let compiled = compile_flag(
                flag,
                &document.flags,
                environment,
                &index,
                &resolve_segment,
                options,
                &mut issues,
            );
            if issues.len() == before {
                flags.push(compiled);
            }
        }
        if issues.is_empty() {
            check_prerequisite_cycles(&flags, &mut issues);
        }
        if !issues.is_empty() {
            return Err(CompileError { issues });
        }
        Ok(Snapshot {
            environment: environment.into(),
            version,
            flags,
            index,
            segments,
        })
    }

    /// The environment this snapshot serves.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Monotonic version of this environment's ruleset.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the snapshot has no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag keys in document order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| &*f.key)
    }

    /// A flag's kind, if it exists.
    pub fn kind(&self, key: &str) -> Option<FlagKind> {
        self.index.get(key).map(|&i| self.flags[i].kind)
    }

    /// A flag's metadata, if it exists.
    pub fn metadata(&self, key: &str) -> Option<&BTreeMap<String, Value>> {
        self.index.get(key).map(|&i| &self.flags[i].metadata)
    }

    /// Evaluates a flag for a context. Never panics, never allocates for
    /// flags without case-insensitive non-ASCII text, numeric bucketing
    /// units or JSONLogic.
    pub fn evaluate<'s>(&'s self, key: &str, ctx: &Context) -> Resolution<'s> {
        match self.index.get(key) {
            Some(&i) => self.evaluate_index(i, ctx, 0),
            None => Resolution::error(ErrorCode::FlagNotFound),
        }
    }

    /// Evaluates a flag expecting a kind; a different kind is `TYPE_MISMATCH`.
    pub fn evaluate_as<'s>(&'s self, key: &str, kind: FlagKind, ctx: &Context) -> Resolution<'s> {
        match self.index.get(key) {
            Some(&i) if self.flags[i].kind != kind => Resolution::error(ErrorCode::TypeMismatch),
            Some(&i) => self.evaluate_index(i, ctx, 0),
            None => Resolution::error(ErrorCode::FlagNotFound),
        }
    }

    /// Evaluates every flag (bulk evaluation), in document order.
    pub fn evaluate_all<'s, 'c>(
        &'s self,
        ctx: &'c Context,
    ) -> impl Iterator<Item = (&'s str, Resolution<'s>)> + use<'s, 'c> {
        (0..self.flags.len()).map(move |i| (&*self.flags[i].key, self.evaluate_index(i, ctx, 0)))
    }

    fn evaluate_index<'s>(&'s self, i: usize, ctx: &Context, depth: usize) -> Resolution<'s> {
        let flag = &self.flags[i];
        let variation = |index: usize, reason: Reason, rule: Option<usize>, in_experiment: bool| {
            let (key, value) = &flag.variations[index];
            Resolution {
                value: Some(value),
                variation: Some(key),
                reason,
                rule,
                error: None,
                in_experiment,
            }
        };
        let off = |reason: Reason| match flag.off {
            Some(index) => variation(index, reason, None, false),
            None => Resolution::no_value(reason),
        };
        if !flag.enabled {
            return off(Reason::Disabled);
        }
        if depth > MAX_PREREQUISITE_DEPTH {
            return Resolution::error(ErrorCode::General);
        }
        for (parent, accepted) in flag.prerequisites.iter() {
            let served = self.evaluate_index(*parent, ctx, depth + 1);
            let parent_variation = served
                .variation
                .and_then(|key| self.flags[*parent].variation_index(key));
            if !parent_variation.is_some_and(|v| accepted.contains(&v)) {
                return off(Reason::PrerequisiteFailed);
            }
        }
        for (r, rule) in flag.rules.iter().enumerate() {
            if !rule.conditions.iter().all(|c| c.holds(ctx, &self.segments)) {
                continue;
            }
            if let Some((weight, bucketing)) = &rule.rollout
                && !bucketing.admits(ctx, *weight)
            {
                continue;
            }
            match rule.serve.serve(flag, ctx) {
                Served::Variation { index, split } => {
                    let reason = if split { Reason::Split } else { Reason::TargetingMatch };
                    return variation(index, reason, Some(r), split);
                }
                Served::FallThrough => continue,
                Served::Error(code) => return Resolution::error(code),
            }
        }
        match &flag.default {
            None => Resolution::no_value(Reason::Default),
            Some(serve) => match serve.serve(flag, ctx) {
                Served::Variation { index, split: true } => variation(index, Reason::Split, None, true),
                Served::Variation { index, split: false } => {
                    let reason = if flag.rules.is_empty() {
                        Reason::Static
                    } else {
                        Reason::Default
                    };
                    variation(index, reason, None, false)
                }
                Served::FallThrough => Resolution::no_value(Reason::Default),
                Served::Error(code) => Resolution::error(code),
            },
        }
    }
}

fn flag_issue(flag: &Flag, rule: Option<usize>, problem: Problem) -> Issue {
    Issue {
        location: Location::Flag {
            key: flag.key.clone(),
            rule,
        },
        problem,
    }
}

fn compile_flag(
    flag: &Flag,
    all: &[Flag],
    environment: &str,
    index: &FxHashMap<Box<str>, usize>,
    resolve_segment: &dyn Fn(&str) -> Option<usize>,
    options: CompileOptions,
    issues: &mut Vec<Issue>,
) -> CompiledFlag {
    let mut report = |rule: Option<usize>, problem: Problem| issues.push(flag_issue(flag, rule, problem));

    if flag.variations.is_empty() {
        report(None, Problem::NoVariations);
    }
    let mut variations: Vec<(Box<str>, Value)> = Vec::with_capacity(flag.variations.len());
    for v in &flag.variations {
        if variations.iter().any(|(k, _)| **k == *v.key) {
            report(None, Problem::DuplicateVariation(v.key.clone()));
        }
        if !flag.kind.accepts(&v.value) {
            report(
                None,
                Problem::VariationKind {
                    variation: v.key.clone(),
                    expected: flag.kind,
                },
            );
        }
        variations.push((v.key.as_str().into(), v.value.clone()));
    }
    let find = |key: &str| variations.iter().position(|(k, _)| &**k == key);

    let Some(targeting) = flag.environments.get(environment) else {
        // Not configured here: disabled, caller's default.
        return CompiledFlag {
            key: flag.key.as_str().into(),
            kind: flag.kind,
            variations: variations.into(),
            metadata: flag.metadata.clone(),
            enabled: false,
            off: None,
            prerequisites: Box::new([]),
            rules: Box::new([]),
            default: None,
        };
    };
    let salt = targeting.salt.as_deref().unwrap_or(&flag.key);

    let off = targeting.off_variation.as_deref().and_then(|key| {
        let found = find(key);
        if found.is_none() {
            report(None, Problem::UnknownVariation(key.to_owned()));
        }
        found
    });

    let mut prerequisites = Vec::with_capacity(targeting.prerequisites.len());
    for p in &targeting.prerequisites {
        let Some(&parent) = index.get(p.flag.as_str()) else {
            report(None, Problem::UnknownPrerequisite(p.flag.clone()));
            continue;
        };
        let parent_variations = &all[parent].variations;
        let mut accepted = Vec::with_capacity(p.variations.len());
        for key in &p.variations {
            match parent_variations.iter().position(|v| v.key == *key) {
                Some(v) => accepted.push(v),
                None => report(
                    None,
                    Problem::UnknownPrerequisiteVariation {
                        flag: p.flag.clone(),
                        variation: key.clone(),
                    },
                ),
            }
        }
        prerequisites.push((parent, accepted.into_boxed_slice()));
    }

    let compile_serve = |serve: &Serve, rule: Option<usize>, report: &mut dyn FnMut(Option<usize>, Problem)| {
        compile_serve(serve, salt, options, &find, &mut |p| report(rule, p))
    };

    let mut rules = Vec::with_capacity(targeting.rules.len());
    for (r, rule) in targeting.rules.iter().enumerate() {
        let mut conditions = Vec::with_capacity(rule.conditions.len());
        for condition in &rule.conditions {
            match compile_condition(condition, Some(resolve_segment)) {
                Ok(c) => conditions.push(c),
                Err(problem) => report(Some(r), problem),
            }
        }
        let rollout = rule.rollout.as_ref().map(
            |Rollout {
                 weight,
                 bucket_by,
                 hash,
             }| {
                if *weight > WEIGHT_SCALE {
                    report(Some(r), Problem::RolloutWeight(*weight));
                }
                (*weight, Bucketing::new(bucket_by, hash, salt, None))
            },
        );
        if let Some(serve) = compile_serve(&rule.serve, Some(r), &mut report) {
            rules.push(CompiledRule {
                conditions: conditions.into(),
                rollout,
                serve,
            });
        }
    }
    let default = targeting
        .default_serve
        .as_ref()
        .and_then(|serve| compile_serve(serve, None, &mut report));

    CompiledFlag {
        key: flag.key.as_str().into(),
        kind: flag.kind,
        variations: variations.into(),
        metadata: flag.metadata.clone(),
        enabled: targeting.enabled,
        off,
        prerequisites: prerequisites.into(),
        rules: rules.into(),
        default,
    }
}

fn compile_serve(
    serve: &Serve,
    salt: &str,
    options: CompileOptions,
    find: &dyn Fn(&str) -> Option<usize>,
    report: &mut dyn FnMut(Problem),
) -> Option<CompiledServe> {
    match serve {
        Serve::Variation(key) => match find(key) {
            Some(index) => Some(CompiledServe::Fixed(index)),
            None => {
                report(Problem::UnknownVariation(key.clone()));
                None
            }
        },
        Serve::Split(Split {
            weights,
            bucket_by,
            seed,
            hash,
        }) => {
            let mut arms = Vec::with_capacity(weights.len());
            let mut total: u64 = 0;
            let mut ok = true;
            for w in weights {
                match find(&w.variation) {
                    Some(index) => {
                        total += u64::from(w.weight);
                        if w.weight > 0 {
                            arms.push((u32::try_from(total).unwrap_or(u32::MAX), index));
                        }
                    }
                    None => {
                        report(Problem::UnknownVariation(w.variation.clone()));
                        ok = false;
                    }
                }
            }
            if *hash == BucketHash::Sextant && total != u64::from(WEIGHT_SCALE) {
                report(Problem::WeightsSum {
                    sum: total,
                    expected: WEIGHT_SCALE,
                });
                return None;
            }
            if total == 0 || total > u64::from(u32::MAX) {
                report(Problem::EmptySplit);
                return None;
            }
            ok.then(|| {
                CompiledServe::Split(CompiledSplit {
                    experiment: arms.len() > 1,
                    arms: arms.into(),
                    total: total as u32,
                    bucketing: Bucketing::new(bucket_by, hash, salt, seed.as_deref()),
                })
            })
        }
        Serve::Logic(expr) => match Logic::compile(expr, options.fractional) {
            Ok(logic) => Some(CompiledServe::Logic(Box::new(logic))),
            Err(e) => {
                report(Problem::Logic(e));
                None
            }
        },
    }
}

/// Rejects prerequisite cycles, naming the flags on the cycle.
fn check_prerequisite_cycles(flags: &[CompiledFlag], issues: &mut Vec<Issue>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; flags.len()];
    let mut path: Vec<usize> = Vec::new();
    // Iterative DFS so a long chain cannot overflow the stack.
    for start in 0..flags.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        path.push(start);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(child, _)) = flags[node].prerequisites.get(*next) {
                *next += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::OnPath;
                        path.push(child);
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|&n| n == child).unwrap_or(0);
                        let mut cycle: Vec<String> = path[from..].iter().map(|&n| flags[n].key.to_string()).collect();
                        cycle.push(flags[child].key.to_string());
                        issues.push(Issue {
                            location: Location::Flag {
                                key: flags[child].key.to_string(),
                                rule: None,
                            },
                            problem: Problem::PrerequisiteCycle(cycle),
                        });
                        return;
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
                stack.pop();
            }
        }
    }
}
