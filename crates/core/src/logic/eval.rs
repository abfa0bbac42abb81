//! Evaluation of compiled JSONLogic, with JavaScript's coercions as the
//! JSONLogic reference implementation has them.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::flagd;
use super::{FractionalVersion, LogicResult, Node, Op, VarPath};
use crate::Context;

/// What an evaluation can see.
pub(super) struct Env<'a> {
    pub(super) ctx: &'a Context,
    pub(super) flag_key: &'a str,
    pub(super) fractional: FractionalVersion,
}

/// A value during evaluation: scalars unboxed, JSON borrowed where possible.
#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// An array or object (never a scalar).
    Json(Cow<'a, Value>),
    /// A computed array.
    Arr(Vec<Val<'a>>),
}

impl<'a> Val<'a> {
    pub(super) fn from_json(value: &'a Value) -> Val<'a> {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            other => Val::Json(Cow::Borrowed(other)),
        }
    }

    pub(super) fn from_owned_json(value: Value) -> Val<'a> {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(b),
            Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            Value::String(s) => Val::Str(Cow::Owned(s)),
            other => Val::Json(Cow::Owned(other)),
        }
    }

    /// A finite number, or `null` (JSON has no NaN or infinity).
    fn num(n: f64) -> Val<'a> {
        if n.is_finite() { Val::Num(n) } else { Val::Null }
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// JSONLogic truthiness: `false`, `null`, `0`, `""` and `[]` are false.
    pub(super) fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Json(v) => match &**v {
                Value::Array(items) => !items.is_empty(),
                _ => true,
            },
            Val::Arr(items) => !items.is_empty(),
        }
    }

    /// The elements, if this is an array.
    pub(super) fn elements(&self) -> Option<Vec<Val<'_>>> {
        match self {
            Val::Json(v) => v.as_array().map(|items| items.iter().map(Val::from_json).collect()),
            Val::Arr(items) => Some(items.iter().map(Val::reborrow).collect()),
            _ => None,
        }
    }

    fn reborrow(&self) -> Val<'_> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
            Val::Num(n) => Val::Num(*n),
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
            Val::Json(v) => Val::Json(Cow::Borrowed(v)),
            Val::Arr(items) => Val::Arr(items.iter().map(Val::reborrow).collect()),
        }
    }

    /// JavaScript `Number(x)`; `NaN` when not numeric.
    pub(super) fn to_number(&self) -> f64 {
        match self {
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => str_to_number(s),
            Val::Json(_) | Val::Arr(_) => match self.elements() {
                Some(items) if items.is_empty() => 0.0,
                Some(items) if items.len() == 1 => items[0].to_number(),
                _ => f64::NAN,
            },
        }
    }

    /// JavaScript `String(x)`.
    pub(super) fn to_js_string(&self) -> Cow<'_, str> {
        match self {
            Val::Null => Cow::Borrowed("null"),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Num(n) => Cow::Owned(format_number(*n)),
            Val::Str(s) => Cow::Borrowed(s),
            Val::Json(v) if v.is_object() => Cow::Borrowed("[object Object]"),
            Val::Json(_) | Val::Arr(_) => {
                let items = self.elements().unwrap_or_default();
                let parts: Vec<Cow<'_, str>> = items
                    .iter()
                    .map(|item| match item {
                        Val::Null => Cow::Borrowed(""),
                        other => Cow::Owned(other.to_js_string().into_owned()),
                    })
                    .collect();
                Cow::Owned(parts.join(","))
            }
        }
    }

    /// The value as owned JSON; `None` for `null`.
    pub(super) fn into_json(self) -> Option<Value> {
        match self {
            Val::Null => None,
            Val::Bool(b) => Some(Value::Bool(b)),
            Val::Num(n) => Some(number_json(n)),
            Val::Str(s) => Some(Value::String(s.into_owned())),
            Val::Json(v) => Some(v.into_owned()),
            Val::Arr(items) => Some(Value::Array(
                items
                    .into_iter()
                    .map(|i| i.into_json().unwrap_or(Value::Null))
                    .collect(),
            )),
        }
    }

    pub(super) fn as_result(&self) -> LogicResult<'_> {
        match self {
            Val::Null => LogicResult::Null,
            Val::Bool(b) => LogicResult::Bool(*b),
            Val::Num(n) => LogicResult::Number(*n),
            Val::Str(s) => LogicResult::Str(s),
            Val::Json(_) | Val::Arr(_) => LogicResult::Other,
        }
    }
}

/// A number as JSON: integral values within 2^53 become integers.
pub(super) fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// JavaScript's number formatting for the common cases: no `.0` on
/// integers.
pub(super) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        format!("{n}")
    }
}

fn str_to_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    // Rust accepts "inf"/"nan" spellings JavaScript does not.
    if t.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') {
        return f64::NAN;
    }
    t.parse().unwrap_or(f64::NAN)
}

/// JavaScript `==`, with arrays compared structurally.
fn loose_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Null, _) | (_, Val::Null) => false,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Bool(_), _) => loose_eq(&Val::Num(a.to_number()), b),
        (_, Val::Bool(_)) => loose_eq(a, &Val::Num(b.to_number())),
        (Val::Num(x), Val::Str(_)) => *x == b.to_number(),
        (Val::Str(_), Val::Num(y)) => a.to_number() == *y,
        (Val::Json(_) | Val::Arr(_), Val::Json(_) | Val::Arr(_)) => strict_eq(a, b),
        (Val::Json(_) | Val::Arr(_), _) => loose_eq(&Val::Str(Cow::Owned(a.to_js_string().into_owned())), b),
        (_, Val::Json(_) | Val::Arr(_)) => loose_eq(a, &Val::Str(Cow::Owned(b.to_js_string().into_owned()))),
    }
}

/// JavaScript `===`, with arrays and objects compared structurally.
pub(super) fn strict_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Json(x), Val::Json(y)) => json_eq(x, y),
        (Val::Json(_) | Val::Arr(_), Val::Json(_) | Val::Arr(_)) => match (a.elements(), b.elements()) {
            (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| strict_eq(p, q)),
            _ => false,
        },
        _ => false,
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// JavaScript relational comparison: strings lexicographically, anything
/// else as numbers (`None` when either is `NaN`).
fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    let prim = |v: &Val<'_>| -> Option<String> {
        match v {
            Val::Str(s) => Some(s.to_string()),
            Val::Json(_) | Val::Arr(_) => Some(v.to_js_string().into_owned()),
            _ => None,
        }
    };
    match (prim(a), prim(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => Val::Str(Cow::Owned(x)).to_number().partial_cmp(&b.to_number()),
        (None, Some(y)) => a.to_number().partial_cmp(&Val::Str(Cow::Owned(y)).to_number()),
        (None, None) => a.to_number().partial_cmp(&b.to_number()),
    }
}

/// Looks a compiled path up.
fn lookup<'a>(path: &VarPath, env: &Env<'a>) -> Val<'a> {
    match path {
        VarPath::Whole => Val::Json(Cow::Owned(whole_data(env))),
        VarPath::TargetingKey => match env.ctx.targeting_key.as_deref() {
            Some(key) => Val::Str(Cow::Borrowed(key)),
            None => env.ctx.attributes.get("targetingKey").map_or(Val::Null, Val::from_json),
        },
        VarPath::Flagd => Val::Json(Cow::Owned(flagd_object(env))),
        VarPath::FlagKey => Val::Str(Cow::Borrowed(env.flag_key)),
        VarPath::Timestamp => env.ctx.now.map_or(Val::Null, |t| Val::Num(t as f64)),
        VarPath::Attr(parts) => {
            let Some((first, rest)) = parts.split_first() else {
                return Val::Null;
            };
            let Some(mut value) = env.ctx.attributes.get(&**first) else {
                return Val::Null;
            };
            for part in rest {
                match step(value, part) {
                    Some(next) => value = next,
                    None => return Val::Null,
                }
            }
            Val::from_json(value)
        }
    }
}

fn step<'v>(value: &'v Value, part: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

fn flagd_object(env: &Env<'_>) -> Value {
    let mut map = Map::new();
    map.insert("flagKey".into(), Value::String(env.flag_key.into()));
    if let Some(now) = env.ctx.now {
        map.insert("timestamp".into(), Value::from(now));
    }
    Value::Object(map)
}

fn whole_data(env: &Env<'_>) -> Value {
    let mut map = env.ctx.attributes.clone();
    if let Some(key) = &env.ctx.targeting_key {
        map.insert("targetingKey".into(), Value::String(key.clone()));
    }
    map.insert("$flagd".into(), flagd_object(env));
    Value::Object(map)
}

/// Looks a path computed at evaluation time up.
fn lookup_dynamic<'a>(path: &Val<'_>, env: &Env<'a>) -> Val<'a> {
    let text = match path {
        Val::Null => return lookup(&VarPath::Whole, env),
        Val::Str(s) => s.to_string(),
        Val::Num(n) => format_number(*n),
        _ => return Val::Null,
    };
    lookup(&VarPath::parse(&text), env)
}

fn var<'a>(found: Val<'a>, default: Option<&'a Node>, env: &Env<'a>) -> Val<'a> {
    match (found, default) {
        (Val::Null, Some(default)) => eval(default, env),
        (found, _) => found,
    }
}

/// Evaluates a node.
pub(super) fn eval<'a>(node: &'a Node, env: &Env<'a>) -> Val<'a> {
    match node {
        Node::Lit(value) => Val::from_json(value),
        Node::Array(items) => Val::Arr(items.iter().map(|item| eval(item, env)).collect()),
        Node::Var(path, default) => var(lookup(path, env), default.as_deref(), env),
        Node::DynVar(path, default) => {
            let path = eval(path, env);
            var(lookup_dynamic(&path, env), default.as_deref(), env)
        }
        Node::Op(op, args) => apply(*op, args, env),
    }
}

fn arg<'a>(args: &'a [Node], i: usize, env: &Env<'a>) -> Val<'a> {
    args.get(i).map_or(Val::Null, |node| eval(node, env))
}

fn all<'a>(args: &'a [Node], env: &Env<'a>) -> Vec<Val<'a>> {
    args.iter().map(|node| eval(node, env)).collect()
}

fn apply<'a>(op: Op, args: &'a [Node], env: &Env<'a>) -> Val<'a> {
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if eval(&args[i], env).truthy() {
                    return eval(&args[i + 1], env);
                }
                i += 2;
            }
            if i < args.len() { eval(&args[i], env) } else { Val::Null }
        }
        Op::And | Op::Or => {
            let mut last = Val::Null;
            for node in args {
                last = eval(node, env);
                if last.truthy() != (op == Op::And) {
                    return last;
                }
            }
            last
        }
        Op::Not => Val::Bool(!arg(args, 0, env).truthy()),
        Op::NotNot => Val::Bool(arg(args, 0, env).truthy()),
        Op::Eq => Val::Bool(loose_eq(&arg(args, 0, env), &arg(args, 1, env))),
        Op::Ne => Val::Bool(!loose_eq(&arg(args, 0, env), &arg(args, 1, env))),
        Op::StrictEq => Val::Bool(strict_eq(&arg(args, 0, env), &arg(args, 1, env))),
        Op::StrictNe => Val::Bool(!strict_eq(&arg(args, 0, env), &arg(args, 1, env))),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let holds = |o: Option<Ordering>| match (op, o) {
                (_, None) => false,
                (Op::Lt, Some(o)) => o == Ordering::Less,
                (Op::Le, Some(o)) => o != Ordering::Greater,
                (Op::Gt, Some(o)) => o == Ordering::Greater,
                (_, Some(o)) => o != Ordering::Less,
            };
            let a = arg(args, 0, env);
            let b = arg(args, 1, env);
            if !holds(compare(&a, &b)) {
                return Val::Bool(false);
            }
            if args.len() >= 3 {
                let c = arg(args, 2, env);
                return Val::Bool(holds(compare(&b, &c)));
            }
            Val::Bool(true)
        }
        Op::In => {
            let needle = arg(args, 0, env);
            let haystack = arg(args, 1, env);
            let found = match &haystack {
                Val::Str(h) => h.contains(&*needle.to_js_string()),
                other => other
                    .elements()
                    .is_some_and(|items| items.iter().any(|item| strict_eq(item, &needle))),
            };
            Val::Bool(found)
        }
        Op::Cat => {
            let mut out = String::new();
            for node in args {
                out.push_str(&eval(node, env).to_js_string());
            }
            Val::Str(Cow::Owned(out))
        }
        Op::Substr => substr(
            &arg(args, 0, env),
            &arg(args, 1, env),
            args.get(2).map(|n| eval(n, env)),
        ),
        Op::Merge => {
            let mut out = Vec::new();
            for value in all(args, env) {
                match value {
                    Val::Arr(items) => out.extend(items),
                    Val::Json(Cow::Borrowed(Value::Array(items))) => out.extend(items.iter().map(Val::from_json)),
                    Val::Json(Cow::Owned(Value::Array(items))) => {
                        out.extend(items.into_iter().map(Val::from_owned_json));
                    }
                    other => out.push(other),
                }
            }
            Val::Arr(out)
        }
        Op::Missing => {
            let values = all(args, env);
            let keys: Vec<Val<'_>> = match values.first().and_then(Val::elements) {
                Some(items) => items
                    .into_iter()
                    .map(|v| Val::Str(Cow::Owned(v.to_js_string().into_owned())))
                    .collect(),
                None => values
                    .iter()
                    .map(|v| Val::Str(Cow::Owned(v.to_js_string().into_owned())))
                    .collect(),
            };
            Val::Arr(missing(&keys, env))
        }
        Op::MissingSome => {
            let need = arg(args, 0, env).to_number();
            let keys_val = arg(args, 1, env);
            let keys: Vec<Val<'_>> = keys_val
                .elements()
                .unwrap_or_default()
                .into_iter()
                .map(|v| Val::Str(Cow::Owned(v.to_js_string().into_owned())))
                .collect();
            let absent = missing(&keys, env);
            if (keys.len() - absent.len()) as f64 >= need {
                Val::Arr(Vec::new())
            } else {
                Val::Arr(absent)
            }
        }
        Op::Add => Val::num(all(args, env).iter().map(Val::to_number).sum()),
        Op::Mul => {
            if args.is_empty() {
                return Val::Null;
            }
            Val::num(all(args, env).iter().map(Val::to_number).product())
        }
        Op::Sub => match args.len() {
            0 => Val::Null,
            1 => Val::num(-arg(args, 0, env).to_number()),
            _ => Val::num(arg(args, 0, env).to_number() - arg(args, 1, env).to_number()),
        },
        Op::Div | Op::Mod => {
            let a = arg(args, 0, env).to_number();
            let b = arg(args, 1, env).to_number();
            if b == 0.0 || args.len() < 2 {
                return Val::Null;
            }
            Val::num(if op == Op::Div { a / b } else { a % b })
        }
        Op::Min | Op::Max => {
            let values = all(args, env);
            let mut numbers = values.iter().map(Val::to_number);
            let Some(mut best) = numbers.next() else {
                return Val::Null;
            };
            for n in numbers {
                if n.is_nan() {
                    return Val::Null;
                }
                best = if op == Op::Min { best.min(n) } else { best.max(n) };
            }
            Val::num(best)
        }
        Op::Fractional => flagd::fractional(args, env),
        Op::SemVer => flagd::sem_ver(&all(args, env)),
        Op::StartsWith | Op::EndsWith => {
            if args.len() != 2 {
                return Val::Null;
            }
            let (a, b) = (eval(&args[0], env), eval(&args[1], env));
            match (a.as_str(), b.as_str()) {
                (Some(s), Some(affix)) => Val::Bool(if op == Op::StartsWith {
                    s.starts_with(affix)
                } else {
                    s.ends_with(affix)
                }),
                _ => Val::Null,
            }
        }
    }
}

/// Keys (strings) whose value is `null`, absent or `""`.
fn missing<'a>(keys: &[Val<'_>], env: &Env<'a>) -> Vec<Val<'a>> {
    keys.iter()
        .filter(|key| {
            let value = lookup_dynamic(key, env);
            value.is_null() || value.as_str() == Some("")
        })
        .map(|key| Val::Str(Cow::Owned(key.to_js_string().into_owned())))
        .collect()
}

/// JavaScript `String(source).substr(start, length)`, with JSONLogic's
/// negative length (characters dropped from the end).
fn substr<'a>(source: &Val<'_>, start: &Val<'_>, length: Option<Val<'_>>) -> Val<'a> {
    let text = source.to_js_string();
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() as f64;
    let start = start.to_number();
    let start = if start.is_nan() { 0.0 } else { start.trunc() };
    let from = if start < 0.0 {
        (n + start).max(0.0)
    } else {
        start.min(n)
    };
    let to = match length.map(|l| l.to_number()) {
        None => n,
        Some(l) if l.is_nan() => from,
        Some(l) if l < 0.0 => (n + l.trunc()).max(from),
        Some(l) => (from + l.trunc()).min(n),
    };
    let (from, to) = (from as usize, to as usize);
    Val::Str(Cow::Owned(chars[from..to.max(from)].iter().collect()))
}
