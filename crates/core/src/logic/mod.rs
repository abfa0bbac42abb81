//! JSONLogic targeting (flagd's rule language), compiled once per snapshot.
//!
//! [`Logic::compile`] turns a JSON expression into a small tree of
//! [`Node`]s: operator names are resolved, variable paths are split and
//! constant sub-trees are kept as borrowed JSON, so evaluation never
//! re-parses anything. [`Logic::evaluate`] walks the tree against a
//! [`Context`]; it is pure (no IO, no clock: `$flagd.timestamp` is
//! [`Context::now`]) and total: wrong types, missing attributes and
//! division by zero yield `null` (or JavaScript's coercions), never a panic.
//!
//! Supported: the JSONLogic operators flagd relies on (`var`, `missing`,
//! `missing_some`, `if`/`?:`, `==`, `===`, `!=`, `!==`, `!`, `!!`, `and`,
//! `or`, `<`, `<=`, `>`, `>=`, `in`, `cat`, `substr`, `merge`, `+`, `-`,
//! `*`, `/`, `%`, `min`, `max`) plus flagd's `fractional`, `sem_ver`,
//! `starts_with` and `ends_with`. Anything else is rejected at compile time.

mod eval;
mod flagd;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::Context;

/// Deepest expression nesting accepted; deeper input is rejected at
/// compile time so that evaluation cannot exhaust the stack.
pub const MAX_DEPTH: usize = 96;

/// Why a JSONLogic expression was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The expression uses something this evaluator does not implement.
    #[error("unsupported JSONLogic: {0}")]
    Unsupported(String),
    /// An operator this evaluator does not know.
    #[error("unknown JSONLogic operator `{0}`")]
    UnknownOperator(String),
    /// An object that is not `{"operator": arguments}`.
    #[error("JSONLogic object must have exactly one key (the operator), found {0} keys")]
    NotAnOperation(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("JSONLogic expression nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Which `fractional` bucketing flagd variant to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FractionalVersion {
    /// Legacy float bucketing: `abs(hash) / i32::MAX * 100`.
    V1,
    /// Integer bucketing: `(hash * total_weight) >> 32`.
    #[default]
    V2,
}

/// A compiled JSONLogic expression.
#[derive(Debug, Clone)]
pub struct Logic {
    root: Node,
    fractional: FractionalVersion,
}

/// One node of a compiled expression.
#[derive(Debug, Clone)]
enum Node {
    /// A constant: a scalar, or an array/object without operations inside.
    Lit(Value),
    /// An array literal with operations inside.
    Array(Box<[Node]>),
    /// `var` with a path known at compile time.
    Var(VarPath, Option<Box<Node>>),
    /// `var` whose path is computed.
    DynVar(Box<Node>, Option<Box<Node>>),
    /// An operation and its (unevaluated) arguments.
    Op(Op, Box<[Node]>),
}

/// A pre-split variable path.
#[derive(Debug, Clone, PartialEq)]
enum VarPath {
    /// `""` or `[]`: the whole data object.
    Whole,
    /// `targetingKey`.
    TargetingKey,
    /// `$flagd`: the object `{flagKey, timestamp}`.
    Flagd,
    /// `$flagd.flagKey`.
    FlagKey,
    /// `$flagd.timestamp`.
    Timestamp,
    /// A dotted path into the attributes.
    Attr(Box<[Box<str>]>),
}

impl VarPath {
    fn parse(path: &str) -> VarPath {
        match path {
            "" => VarPath::Whole,
            "targetingKey" => VarPath::TargetingKey,
            "$flagd" => VarPath::Flagd,
            "$flagd.flagKey" => VarPath::FlagKey,
            "$flagd.timestamp" => VarPath::Timestamp,
            _ => VarPath::Attr(path.split('.').map(Box::from).collect()),
        }
    }
}

/// Operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    If,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Not,
    NotNot,
    And,
    Or,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
    Fractional,
    SemVer,
    StartsWith,
    EndsWith,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "if" | "?:" => Op::If,
            "==" => Op::Eq,
            "===" => Op::StrictEq,
            "!=" => Op::Ne,
            "!==" => Op::StrictNe,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "and" => Op::And,
            "or" => Op::Or,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "merge" => Op::Merge,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "min" => Op::Min,
            "max" => Op::Max,
            "fractional" => Op::Fractional,
            "sem_ver" => Op::SemVer,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            _ => return None,
        })
    }
}

impl Logic {
    /// Compiles an expression. Unknown operators, objects that are not
    /// single-operator objects and nesting deeper than [`MAX_DEPTH`] are
    /// rejected; wrong argument counts are not (they evaluate to `null`,
    /// as in flagd).
    pub fn compile(expr: &Value, fractional: FractionalVersion) -> Result<Logic, LogicError> {
        Ok(Logic {
            root: compile_node(expr, 0)?,
            fractional,
        })
    }

    /// Evaluates the expression; the result names a variation (a string, or
    /// a bool/number turned into its string), `Ok(None)` means no match
    /// (the expression gave `null`).
    pub fn evaluate(&self, ctx: &Context, flag_key: &str) -> Result<Option<Value>, LogicError> {
        let env = eval::Env {
            ctx,
            flag_key,
            fractional: self.fractional,
        };
        Ok(eval::eval(&self.root, &env).into_json())
    }

    /// Evaluates and hands the result to `f` without building an owned
    /// [`Value`] for string results (the hot path of snapshot evaluation).
    pub fn evaluate_with<R>(&self, ctx: &Context, flag_key: &str, f: impl FnOnce(LogicResult<'_>) -> R) -> R {
        let env = eval::Env {
            ctx,
            flag_key,
            fractional: self.fractional,
        };
        let value = eval::eval(&self.root, &env);
        f(value.as_result())
    }
}

/// A borrowed view of an evaluation result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogicResult<'a> {
    /// `null`: no match.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Str(&'a str),
    /// An array or object.
    Other,
}

fn is_logic_free(value: &Value, depth: usize) -> Result<bool, LogicError> {
    if depth > MAX_DEPTH {
        return Err(LogicError::TooDeep);
    }
    Ok(match value {
        Value::Array(items) => {
            for item in items {
                if !is_logic_free(item, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        Value::Object(_) => false,
        _ => true,
    })
}

fn compile_node(expr: &Value, depth: usize) -> Result<Node, LogicError> {
    if depth > MAX_DEPTH {
        return Err(LogicError::TooDeep);
    }
    match expr {
        Value::Array(items) => {
            if is_logic_free(expr, depth)? {
                return Ok(Node::Lit(expr.clone()));
            }
            let nodes = items
                .iter()
                .map(|item| compile_node(item, depth + 1))
                .collect::<Result<_, _>>()?;
            Ok(Node::Array(nodes))
        }
        Value::Object(map) => {
            if map.len() != 1 {
                return Err(LogicError::NotAnOperation(map.len()));
            }
            let Some((name, args)) = map.iter().next() else {
                return Err(LogicError::NotAnOperation(0));
            };
            if name == "var" {
                return compile_var(args, depth);
            }
            let op = Op::from_name(name).ok_or_else(|| LogicError::UnknownOperator(name.clone()))?;
            let args: Box<[Node]> = match args {
                Value::Array(items) => items
                    .iter()
                    .map(|item| compile_node(item, depth + 1))
                    .collect::<Result<_, _>>()?,
                single => Box::new([compile_node(single, depth + 1)?]),
            };
            Ok(Node::Op(op, args))
        }
        scalar => Ok(Node::Lit(scalar.clone())),
    }
}

fn compile_var(args: &Value, depth: usize) -> Result<Node, LogicError> {
    let (path, default) = match args {
        Value::Array(items) => (items.first(), items.get(1)),
        other => (Some(other), None),
    };
    let default = default.map(|d| compile_node(d, depth + 1).map(Box::new)).transpose()?;
    let path = match path {
        None | Some(Value::Null) => VarPath::Whole,
        Some(Value::String(s)) => VarPath::parse(s),
        Some(Value::Number(n)) => VarPath::parse(&n.to_string()),
        Some(dynamic) => {
            return Ok(Node::DynVar(Box::new(compile_node(dynamic, depth + 1)?), default));
        }
    };
    Ok(Node::Var(path, default))
}
