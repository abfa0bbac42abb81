//! Compiled conditions: operands parsed once, tested without allocating
//! (except for case-insensitive comparison of non-ASCII text).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use rustc_hash::FxHashSet;
use semver::Version;
use serde_json::Value;

use crate::context::{AttributePath, Context, Lookup};
use crate::error::Problem;
use crate::model::{Condition, Operator};

/// A condition ready to test.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCondition {
    path: AttributePath,
    test: Test,
    negate: bool,
    case_insensitive: bool,
}

#[derive(Debug, Clone)]
enum Test {
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    Number(Ordering, bool, Box<[f64]>),
    Date(Ordering, Box<[i64]>),
    Semver(Ordering, Box<[Version]>),
    Cidr(Box<[IpNet]>),
    Segment(Box<[usize]>),
    Exists,
}

/// A compiled segment.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSegment {
    included: FxHashSet<Box<str>>,
    excluded: FxHashSet<Box<str>>,
    conditions: Box<[CompiledCondition]>,
}

impl CompiledSegment {
    pub(crate) fn new(included: &[String], excluded: &[String], conditions: Vec<CompiledCondition>) -> Self {
        CompiledSegment {
            included: included.iter().map(|k| Box::from(k.as_str())).collect(),
            excluded: excluded.iter().map(|k| Box::from(k.as_str())).collect(),
            conditions: conditions.into(),
        }
    }

    fn contains(&self, ctx: &Context, segments: &[CompiledSegment]) -> bool {
        if let Some(key) = ctx.targeting_key.as_deref() {
            if self.excluded.contains(key) {
                return false;
            }
            if self.included.contains(key) {
                return true;
            }
        }
        !self.conditions.is_empty() && self.conditions.iter().all(|c| c.holds(ctx, segments))
    }
}

/// Operator name as written in files, for error messages.
pub(crate) fn operator_name(op: Operator) -> &'static str {
    match op {
        Operator::In => "in",
        Operator::NotIn => "not_in",
        Operator::StartsWith => "starts_with",
        Operator::EndsWith => "ends_with",
        Operator::Contains => "contains",
        Operator::Matches => "matches",
        Operator::Eq => "eq",
        Operator::Lt => "lt",
        Operator::Lte => "lte",
        Operator::Gt => "gt",
        Operator::Gte => "gte",
        Operator::Before => "before",
        Operator::After => "after",
        Operator::SemverEq => "semver_eq",
        Operator::SemverLt => "semver_lt",
        Operator::SemverGt => "semver_gt",
        Operator::Cidr => "cidr",
        Operator::InSegment => "in_segment",
        Operator::Exists => "exists",
    }
}

/// Resolves a segment key to its index in the snapshot.
pub(crate) type SegmentResolver<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// Compiles one condition. `segment_index` resolves segment keys; `None`
/// means segments are not allowed here (inside a segment).
pub(crate) fn compile_condition(
    condition: &Condition,
    segment_index: Option<SegmentResolver<'_>>,
) -> Result<CompiledCondition, Problem> {
    let op = condition.op;
    let name = operator_name(op);
    let ci = condition.case_insensitive;
    if op != Operator::Exists && condition.values.is_empty() {
        return Err(Problem::NoOperands(name));
    }
    let strings = || -> Result<Box<[Box<str>]>, Problem> {
        condition
            .values
            .iter()
            .map(|v| {
                let text = scalar_text(v).ok_or_else(|| bad(name, v, "a string, number or boolean"))?;
                Ok(if ci { text.to_lowercase().into() } else { text.into() })
            })
            .collect()
    };
    let numbers = || -> Result<Box<[f64]>, Problem> {
        condition
            .values
            .iter()
            .map(|v| number_of(v).ok_or_else(|| bad(name, v, "a number")))
            .collect()
    };
    let test = match op {
        Operator::In => Test::In(strings()?),
        Operator::NotIn => Test::NotIn(strings()?),
        Operator::StartsWith => Test::StartsWith(strings()?),
        Operator::EndsWith => Test::EndsWith(strings()?),
        Operator::Contains => Test::Contains(strings()?),
        Operator::Matches => Test::Matches(
            condition
                .values
                .iter()
                .map(|v| {
                    let pattern = v.as_str().ok_or_else(|| bad(name, v, "a regex string"))?;
                    RegexBuilder::new(pattern)
                        .case_insensitive(ci)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| Problem::BadRegex {
                            pattern: pattern.to_owned(),
                            message: e.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?,
        ),
        Operator::Eq => Test::Number(Ordering::Equal, true, numbers()?),
        Operator::Lt => Test::Number(Ordering::Less, false, numbers()?),
        Operator::Lte => Test::Number(Ordering::Less, true, numbers()?),
        Operator::Gt => Test::Number(Ordering::Greater, false, numbers()?),
        Operator::Gte => Test::Number(Ordering::Greater, true, numbers()?),
        Operator::Before | Operator::After => Test::Date(
            if op == Operator::Before {
                Ordering::Less
            } else {
                Ordering::Greater
            },
            condition
                .values
                .iter()
                .map(|v| date_millis(v).ok_or_else(|| bad(name, v, "an RFC 3339 date or epoch seconds")))
                .collect::<Result<_, _>>()?,
        ),
        Operator::SemverEq | Operator::SemverLt | Operator::SemverGt => Test::Semver(
            match op {
                Operator::SemverEq => Ordering::Equal,
                Operator::SemverLt => Ordering::Less,
                _ => Ordering::Greater,
            },
            condition
                .values
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(parse_semver)
                        .ok_or_else(|| bad(name, v, "a semantic version such as 1.2.3-beta.1"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Operator::Cidr => Test::Cidr(
            condition
                .values
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(parse_net)
                        .ok_or_else(|| bad(name, v, "a CIDR block or IP address"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Operator::InSegment => {
            let Some(resolve) = segment_index else {
                return Err(Problem::NestedSegment);
            };
            Test::Segment(
                condition
                    .values
                    .iter()
                    .map(|v| {
                        let key = v.as_str().ok_or_else(|| bad(name, v, "a segment key"))?;
                        resolve(key).ok_or_else(|| Problem::UnknownSegment(key.to_owned()))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        Operator::Exists => Test::Exists,
    };
    Ok(CompiledCondition {
        path: AttributePath::parse(&condition.attribute),
        test,
        negate: condition.negate,
        case_insensitive: ci,
    })
}

fn bad(op: &'static str, value: &Value, expected: &'static str) -> Problem {
    Problem::BadOperand {
        op,
        value: value.to_string(),
        expected,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// Dates: RFC 3339 strings, or numbers / numeric strings of epoch seconds.
fn date_millis(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => parse_date_str(s),
        Value::Number(n) => n.as_f64().and_then(seconds_to_millis),
        _ => None,
    }
}

fn parse_date_str(s: &str) -> Option<i64> {
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Some(dt.timestamp_millis());
    }
    s.trim().parse::<f64>().ok().and_then(seconds_to_millis)
}

fn seconds_to_millis(secs: f64) -> Option<i64> {
    let ms = secs * 1000.0;
    (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
}

/// Parses a semantic version, tolerating a leading `v`.
pub(crate) fn parse_semver(s: &str) -> Option<Version> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    Version::parse(s).ok()
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl CompiledCondition {
    /// Whether the condition holds for `ctx`. Missing attributes make the
    /// positive test false (never an error); `negate` then inverts.
    pub(crate) fn holds(&self, ctx: &Context, segments: &[CompiledSegment]) -> bool {
        let positive = match &self.test {
            Test::Segment(indexes) => indexes.iter().any(|&i| segments[i].contains(ctx, segments)),
            Test::NotIn(values) => match ctx.lookup(&self.path) {
                None => true,
                Some(found) => !self.any_text(found, values, |a, b| a == b),
            },
            test => match ctx.lookup(&self.path) {
                None => false,
                Some(found) => self.test_present(test, found),
            },
        };
        positive != self.negate
    }

    fn test_present(&self, test: &Test, found: Lookup<'_>) -> bool {
        match test {
            Test::In(values) => self.any_text(found, values, |a, b| a == b),
            Test::StartsWith(values) => self.any_text(found, values, |a, b| a.starts_with(b)),
            Test::EndsWith(values) => self.any_text(found, values, |a, b| a.ends_with(b)),
            Test::Contains(values) => self.any_text(found, values, |a, b| a.contains(b)),
            Test::Matches(regexes) => with_text(found, |text| regexes.iter().any(|r| r.is_match(text))),
            Test::Number(ord, or_equal, values) => found_number(found).is_some_and(|x| {
                values.iter().any(|&v| match x.partial_cmp(&v) {
                    Some(Ordering::Equal) => *or_equal,
                    Some(o) => o == *ord,
                    None => false,
                })
            }),
            Test::Date(ord, values) => found_date(found).is_some_and(|x| values.iter().any(|v| x.cmp(v) == *ord)),
            Test::Semver(ord, values) => found
                .as_str()
                .and_then(parse_semver)
                .is_some_and(|x| values.iter().any(|v| x.cmp_precedence(v) == *ord)),
            Test::Cidr(nets) => found
                .as_str()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Test::Exists => true,
            Test::NotIn(_) | Test::Segment(_) => false,
        }
    }

    /// Applies a string predicate to the attribute's text (lower-cased when
    /// case-insensitive; operands were lower-cased at compile time).
    fn any_text(&self, found: Lookup<'_>, values: &[Box<str>], pred: impl Fn(&str, &str) -> bool) -> bool {
        with_text(found, |text| {
            if !self.case_insensitive {
                return values.iter().any(|v| pred(text, v));
            }
            let lowered: Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                Cow::Owned(text.to_lowercase())
            } else {
                Cow::Borrowed(text)
            };
            values.iter().any(|v| pred(&lowered, v))
        })
    }
}

/// Runs `f` on the attribute as text: strings as they are, numbers and
/// booleans in their JSON spelling; lists match if any element does.
fn with_text(found: Lookup<'_>, f: impl Fn(&str) -> bool + Copy) -> bool {
    match found {
        Lookup::Str(s) => f(s),
        Lookup::Json(Value::Bool(b)) => f(if *b { "true" } else { "false" }),
        Lookup::Json(Value::Number(n)) => f(&n.to_string()),
        Lookup::Json(Value::Array(items)) => items.iter().any(|item| match item {
            Value::String(s) => f(s),
            Value::Null | Value::Array(_) | Value::Object(_) => false,
            other => with_text(Lookup::Json(other), f),
        }),
        Lookup::Json(_) => false,
    }
}

fn found_number(found: Lookup<'_>) -> Option<f64> {
    match found {
        Lookup::Str(s) => s.trim().parse().ok(),
        Lookup::Json(Value::Number(n)) => n.as_f64(),
        Lookup::Json(_) => None,
    }
}

fn found_date(found: Lookup<'_>) -> Option<i64> {
    match found {
        Lookup::Str(s) => parse_date_str(s),
        Lookup::Json(Value::Number(n)) => n.as_f64().and_then(seconds_to_millis),
        Lookup::Json(_) => None,
    }
}
