//! The declarative flag model: what people write, store and exchange.
//!
//! These types are the wire/file shape (serde). They are validated and
//! compiled into a [`crate::Snapshot`] before anything is evaluated; nothing
//! here is trusted until [`crate::Snapshot::compile`] accepts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Weight units of a split: parts per 100,000, so 0.001% is expressible.
pub const WEIGHT_SCALE: u32 = 100_000;

/// A set of flags and segments, as stored or written in a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Reusable named sets of conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// The flags.
    #[serde(default)]
    pub flags: Vec<Flag>,
}

/// The type of value a flag serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// `true` / `false`.
    Boolean,
    /// A string.
    String,
    /// A number (integer or float).
    Number,
    /// Any JSON value (usually an object).
    Json,
}

impl FlagKind {
    /// Whether `value` has this kind.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagKind::Boolean => value.is_boolean(),
            FlagKind::String => value.is_string(),
            FlagKind::Number => value.is_number(),
            FlagKind::Json => true,
        }
    }

    /// The lower-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Boolean => "boolean",
            FlagKind::String => "string",
            FlagKind::Number => "number",
            FlagKind::Json => "json",
        }
    }
}

/// A feature flag: its identity, its variations, why it exists, and its
/// targeting per environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Unique key, used by code to ask for the flag.
    pub key: String,
    /// The type of every variation's value.
    pub kind: FlagKind,
    /// Named values the flag can serve, in display order.
    pub variations: Vec<Variation>,
    /// What the flag is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who answers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Temporary flags are expected to be removed after launch.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub temporary: bool,
    /// The metric this flag is expected to move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<Hypothesis>,
    /// Opaque metadata returned with evaluations (flagd `metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Targeting per environment name. A flag without an entry for an
    /// environment is disabled there.
    #[serde(default)]
    pub environments: BTreeMap<String, Targeting>,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A named value a flag can serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    /// Stable key, referenced by rules and reported in resolutions.
    pub key: String,
    /// The value; must match the flag's kind.
    pub value: Value,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a flag is expected to do to which metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// Key of the metric-tree node the flag targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Expected direction of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Smallest relative effect worth shipping (0.02 = 2%). Finite: YAML
    /// can write `.nan` and `.inf`, JSON cannot, so export would lose them.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "finite_effect")]
    pub minimum_effect: Option<f64>,
    /// One line of why.
    pub reason: String,
    /// An operational flag (kill switch, ops toggle) declares no metric.
    #[serde(default, skip_serializing_if = "is_false")]
    pub operational: bool,
}

/// Direction in which a metric is expected (or desired) to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Up is good / expected.
    Increase,
    /// Down is good / expected.
    Decrease,
}

/// A flag's behaviour in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targeting {
    /// Off is the kill switch: the flag serves `off_variation`.
    pub enabled: bool,
    /// Served when disabled or when a prerequisite fails. Without one the
    /// caller's default is used (reason `DISABLED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<String>,
    /// Other flags that must serve given variations first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    /// Ordered rules; the first that matches decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Served when no rule matches. Without one the caller's default is
    /// used (reason `DEFAULT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_serve: Option<Serve>,
    /// Bucketing salt; defaults to the flag key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// A flag that must serve one of `variations` for the dependent flag to
/// proceed past its prerequisites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    /// Key of the flag depended on.
    pub flag: String,
    /// Acceptable variation keys of that flag.
    pub variations: Vec<String>,
}

/// All conditions hold (and the unit is inside the optional rollout) → serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Optional stable id, for humans and change history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A percentage gate: units outside it fall through to the next rule
    /// (Unleash's gradual rollout strategies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// What the rule serves.
    pub serve: Serve,
}

/// One test on the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Attribute path; dots address nested objects (`user.plan`).
    /// `targetingKey` addresses the targeting key.
    pub attribute: String,
    /// The test.
    pub op: Operator,
    /// Operands; the condition holds if the test holds for any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
    /// Inverts the result (after a missing attribute made it false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
    /// Compare strings ignoring case.
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_insensitive: bool,
}

/// Condition operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// String equals any value.
    In,
    /// String equals none of the values (a missing attribute matches).
    NotIn,
    /// String starts with any value.
    StartsWith,
    /// String ends with any value.
    EndsWith,
    /// String contains any value.
    Contains,
    /// String matches any regular expression.
    Matches,
    /// Number equals any value.
    Eq,
    /// Number less than.
    Lt,
    /// Number less than or equal.
    Lte,
    /// Number greater than.
    Gt,
    /// Number greater than or equal.
    Gte,
    /// Date strictly before (RFC 3339 or epoch seconds).
    Before,
    /// Date strictly after (RFC 3339 or epoch seconds).
    After,
    /// Semantic version equal.
    SemverEq,
    /// Semantic version less than (pre-releases order below releases).
    SemverLt,
    /// Semantic version greater than.
    SemverGt,
    /// IP address inside any CIDR block (v4 or v6); a bare address is a /32 or /128.
    Cidr,
    /// Context is a member of any named segment.
    InSegment,
    /// The attribute is present (and not null).
    Exists,
}

/// A percentage gate on a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Share of units let through, in parts per 100,000.
    pub weight: u32,
    /// Attributes tried in order for the bucketing unit; empty = targeting key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_by: Vec<String>,
    /// Hash used to place a unit.
    #[serde(default, skip_serializing_if = "BucketHash::is_default")]
    pub hash: BucketHash,
}

/// What a rule or the default serves. Written as a map with exactly one
/// key (`variation`, `split` or `logic`) — the same shape in JSON and YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ServeRepr", into = "ServeRepr")]
pub enum Serve {
    /// Always this variation.
    Variation(String),
    /// A weighted split of units between variations.
    Split(Split),
    /// A JSONLogic expression (flagd targeting) that names the variation;
    /// `null` falls through to the next rule.
    Logic(Value),
}

/// The file shape of [`Serve`]: one of three optional keys.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    split: Option<Split>,
    // `Some(Value::Null)` is a valid (if useless) expression, so presence is
    // tracked separately from the value.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    logic: Option<Value>,
}

/// Refuses NaN and infinities, which JSON writes as `null`: a document
/// holding one would change on export and re-import (found by fuzzing).
fn finite_effect<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        Some(x) if !x.is_finite() => Err(serde::de::Error::custom(format!(
            "minimum_effect must be a finite number, found {x}"
        ))),
        x => Ok(x),
    }
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl TryFrom<ServeRepr> for Serve {
    type Error = String;

    fn try_from(repr: ServeRepr) -> Result<Self, Self::Error> {
        match (repr.variation, repr.split, repr.logic) {
            (Some(v), None, None) => Ok(Serve::Variation(v)),
            (None, Some(s), None) => Ok(Serve::Split(s)),
            (None, None, Some(l)) => Ok(Serve::Logic(l)),
            (None, None, None) => Err("serve needs one of `variation`, `split` or `logic`".to_owned()),
            _ => Err("serve takes only one of `variation`, `split` or `logic`".to_owned()),
        }
    }
}

impl From<Serve> for ServeRepr {
    fn from(serve: Serve) -> Self {
        let mut repr = ServeRepr {
            variation: None,
            split: None,
            logic: None,
        };
        match serve {
            Serve::Variation(v) => repr.variation = Some(v),
            Serve::Split(s) => repr.split = Some(s),
            Serve::Logic(l) => repr.logic = Some(l),
        }
        repr
    }
}

/// A weighted split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Variations and their weights. With the default hash they sum to
    /// [`WEIGHT_SCALE`].
    pub weights: Vec<Weight>,
    /// Attributes tried in order for the bucketing unit; empty = targeting key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_by: Vec<String>,
    /// Flags with the same seed place a unit identically (shared assignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Hash used to place a unit.
    #[serde(default, skip_serializing_if = "BucketHash::is_default")]
    pub hash: BucketHash,
}

/// One arm of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    /// Variation key.
    pub variation: String,
    /// Weight in the split's units.
    pub weight: u32,
}

/// How a unit is hashed to a bucket. Imported flags keep their source's
/// hash so that nobody changes bucket on migration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum BucketHash {
    /// xxh3-64 of `seed-or-salt \0 unit`, modulo the total weight.
    #[default]
    Sextant,
    /// Unleash gradual rollout: MurmurHash3 x86_32 seed 0 of
    /// `group_id:unit`, `% 100 + 1`, compared with the percentage.
    UnleashRollout {
        /// Unleash `groupId`.
        group_id: String,
    },
    /// Unleash variants: MurmurHash3 x86_32 seed 86028157 of
    /// `group_id:unit`, `% total_weight + 1`.
    UnleashVariant {
        /// Unleash `groupId` (the feature or strategy group).
        group_id: String,
    },
}

impl BucketHash {
    fn is_default(&self) -> bool {
        *self == BucketHash::Sextant
    }
}

/// A reusable named set of conditions plus explicit include/exclude lists
/// of targeting keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Unique key.
    pub key: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Targeting keys always in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<String>,
    /// Targeting keys always out (wins over everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// All must hold for a unit not listed. An empty list matches only the
    /// included units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
