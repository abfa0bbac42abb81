//! Unleash client features JSON import.
//!
//! Reads the payload of Unleash's `/api/client/features`
//! (`{ "version", "features": [...], "segments": [...] }`), or a delta
//! payload (`{ "events": [...] }`, folded into the same shape first), and
//! produces a [`Document`] whose evaluation reproduces Unleash's, bucketing
//! included: nobody changes bucket on migration.
//!
//! # The model
//!
//! Every Unleash feature becomes a [`FlagKind::Json`] flag whose values are
//! what an Unleash client answers, `{"enabled": bool, "variant": {...}}`:
//!
//! | variation | value |
//! |---|---|
//! | `off` | `{"enabled": false, "variant": {"name": "disabled", "enabled": false, "feature_enabled": false}}` |
//! | `on` | `{"enabled": true, "variant": {"name": "disabled", "enabled": false, "feature_enabled": true}}` |
//! | `variant:<name>` (feature variant) | `{"enabled": true, "variant": {"name", "enabled": true, "feature_enabled": true, "payload"?}}` |
//! | `strategy<i>:<name>` (variant of strategy `i`) | the same shape |
//!
//! [`is_enabled`] and [`variant`] read a resolution's value back.
//!
//! Targeting in the environment given to [`import`]: `enabled` is the
//! feature's `enabled`, the off variation is `off`, and Unleash's strategies
//! (which are ORed) become rules in order. A strategy's constraints, its
//! segments' constraints (inlined) and its own test (user list, CIDR list,
//! …) become the rule's conditions; its percentage becomes the rule's
//! [`Rollout`] gate with [`BucketHash::UnleashRollout`], so a unit outside
//! falls through to the next strategy exactly as in Unleash. The rule serves
//! the strategy's variants, else the feature's variants, else `on` — variant
//! splits use [`BucketHash::UnleashVariant`] with Unleash's group ids and
//! weights as they are. Feature-variant overrides become extra rules in
//! front of the rule they belong to. When no rule matches the flag serves
//! `off`; a feature without strategies serves `on` (or its variants) to
//! everyone. A constraint Sextant cannot express as one condition (inverted
//! `SEMVER_GTE`, …) is expanded into several rules (disjunctive normal form).
//!
//! Dependencies become prerequisites. As in Unleash, a dependency on a
//! feature that does not exist, or on a feature that has dependencies of its
//! own, can never be satisfied: such a feature keeps its definition out of
//! the rules and always serves `off` (the reason is in its metadata under
//! `unleash_unsatisfiable`).
//!
//! # Context
//!
//! [`context_from_unleash`] maps an Unleash context: properties and
//! top-level fields (top level wins) become attributes of the same name, the
//! targeting key is `userId` or else `sessionId`, `currentTime` also sets
//! [`Context::now`].
//!
//! Two Unleash inputs are not part of a context and cannot come from a pure
//! core. **Randomness**: Unleash's `random` stickiness (and the fallback of
//! `default` stickiness when neither `userId` nor `sessionId` is set) draws a
//! fresh random number per evaluation. Sextant buckets by the attribute
//! [`RANDOM_ATTRIBUTE`] instead (after `userId`, `sessionId` and the
//! targeting key, for `default` stickiness); `context_from_unleash` sets it to a value
//! derived from the whole context (so equal contexts get equal answers) and a
//! caller with a random source may overwrite it. 0% and 100% are exact either
//! way. **Host name**: `applicationHostname` compares the attribute
//! [`HOSTNAME_ATTRIBUTE`], which the evaluating process sets.
//!
//! Where Unleash's reference clients differ, this follows Yggdrasil (the
//! engine behind Unleash's SDKs) and the client specification.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};
use sextant_core::bucketing::sextant_point;
use sextant_core::{
    BucketHash, Condition, Context, Document, Flag, FlagKind, Operator, Prerequisite, Rollout, Rule, Serve, Split,
    Targeting, Variation, Weight,
};

/// Attribute holding the unit for Unleash's random stickiness.
pub const RANDOM_ATTRIBUTE: &str = "$unleashRandom";
/// Attribute holding the evaluating host's name (`applicationHostname`).
pub const HOSTNAME_ATTRIBUTE: &str = "$hostname";
/// Variation served when the feature is off or no strategy matches.
pub const OFF: &str = "off";
/// Variation served when the feature is on without a variant.
pub const ON: &str = "on";

/// Unleash's `default` stickiness: `userId`, else `sessionId`, else random.
/// The targeting key comes before the random unit so that contexts not
/// built by [`context_from_unleash`] (OFREP, SDK) still bucket stably; for
/// those that are, it is `userId` or `sessionId` and changes nothing.
const DEFAULT_UNIT: [&str; 4] = ["userId", "sessionId", "targetingKey", RANDOM_ATTRIBUTE];

/// The most rules one strategy may expand into.
const MAX_ALTERNATIVES: usize = 64;

/// Where in an Unleash document something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The feature, when the problem is inside one.
    pub feature: Option<String>,
    /// The path inside the feature (or the document), e.g.
    /// `strategy 0 (flexibleRollout), constraint 1`.
    pub path: String,
}

impl Location {
    fn root(path: impl Into<String>) -> Self {
        Location {
            feature: None,
            path: path.into(),
        }
    }

    fn feature(name: &str) -> Self {
        Location {
            feature: Some(name.to_owned()),
            path: String::new(),
        }
    }

    fn at(&self, part: impl fmt::Display) -> Self {
        let path = if self.path.is_empty() {
            part.to_string()
        } else {
            format!("{}, {part}", self.path)
        };
        Location {
            feature: self.feature.clone(),
            path,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.feature, self.path.is_empty()) {
            (Some(feature), true) => write!(f, "feature `{feature}`"),
            (Some(feature), false) => write!(f, "feature `{feature}`, {}", self.path),
            (None, true) => f.write_str("document"),
            (None, false) => f.write_str(&self.path),
        }
    }
}

/// Why an Unleash document or context could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnleashError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// A field is missing or has the wrong type or value.
    #[error("{location}: field `{field}` {problem}")]
    Field {
        /// Where.
        location: Location,
        /// The field's name.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A constraint operator Sextant does not know.
    #[error("{location}: unknown constraint operator `{operator}`")]
    UnknownOperator {
        /// Where.
        location: Location,
        /// The operator as written.
        operator: String,
    },
    /// A strategy that is neither built in nor known to Sextant.
    #[error("{location}: unknown strategy `{name}` (custom strategies cannot be imported)")]
    UnknownStrategy {
        /// Where.
        location: Location,
        /// The strategy name.
        name: String,
    },
    /// Two features share a name.
    #[error("feature `{0}` is defined twice")]
    DuplicateFeature(String),
    /// A strategy's constraints expand into too many rules.
    #[error("{location}: constraints expand into more than {MAX_ALTERNATIVES} rules")]
    TooComplex {
        /// Where.
        location: Location,
    },
    /// An Unleash context field has the wrong type.
    #[error("context field `{field}` {problem}")]
    Context {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// What to do with what Sextant cannot import faithfully.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Fail the import, naming the feature and strategy (the default: a
    /// migration should not silently change behaviour).
    #[default]
    Reject,
    /// Do what an Unleash client does: an unknown operator makes its
    /// constraint false and an unknown (custom) strategy never matches.
    NeverMatch,
}

/// Import options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Unknown constraint operators and custom strategies.
    pub unknown: UnknownPolicy,
}

/// Imports Unleash client features JSON text for `environment`.
pub fn import(json: &str, environment: &str) -> Result<Document, UnleashError> {
    let value: Value = serde_json::from_str(json).map_err(|e| UnleashError::Syntax(e.to_string()))?;
    import_value(&value, environment, ImportOptions::default())
}

/// Imports an already parsed Unleash document (features payload or delta
/// events) for `environment`.
pub fn import_value(json: &Value, environment: &str, options: ImportOptions) -> Result<Document, UnleashError> {
    let root = object(json, &Location::root(""), "(document)")?;
    let (features, segments) = match root.get("events") {
        Some(events) if !events.is_null() => fold_delta(events)?,
        _ => (
            array(root, "features", &Location::root(""))?.to_vec(),
            array(root, "segments", &Location::root(""))?.to_vec(),
        ),
    };

    let mut segment_constraints: HashMap<i64, (Location, &[Value])> = HashMap::new();
    for (i, segment) in segments.iter().enumerate() {
        let location = Location::root(format!("segments[{i}]"));
        let obj = object(segment, &location, "(segment)")?;
        let id = segment_id(obj.get("id"), &location, "id")?;
        let location = Location::root(format!("segment {id}"));
        let constraints = array(obj, "constraints", &location)?;
        segment_constraints.insert(id, (location, constraints));
    }

    let mut imported: Vec<Imported> = Vec::with_capacity(features.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, feature) in features.iter().enumerate() {
        let one = import_feature(feature, i, environment, &segment_constraints, options)?;
        if by_name.insert(one.flag.key.clone(), imported.len()).is_some() {
            return Err(UnleashError::DuplicateFeature(one.flag.key));
        }
        imported.push(one);
    }

    // Dependencies need every feature's variations, so they come second.
    let mut prerequisites: Vec<Result<Vec<Prerequisite>, String>> = Vec::with_capacity(imported.len());
    for one in &imported {
        prerequisites.push(resolve_dependencies(&one.dependencies, &imported, &by_name));
    }
    let flags = imported
        .into_iter()
        .zip(prerequisites)
        .map(|(mut one, prerequisites)| {
            if let Some(targeting) = one.flag.environments.get_mut(environment) {
                match prerequisites {
                    Ok(p) => targeting.prerequisites = p,
                    Err(reason) => {
                        targeting.rules.clear();
                        targeting.default_serve = Some(Serve::Variation(OFF.to_owned()));
                        one.flag
                            .metadata
                            .insert("unleash_unsatisfiable".to_owned(), Value::String(reason));
                    }
                }
            }
            one.flag
        })
        .collect();
    Ok(Document {
        segments: Vec::new(),
        flags,
    })
}

/// Whether an imported flag's served value says the feature is enabled
/// (`None`, the caller's default, is not enabled).
pub fn is_enabled(value: Option<&Value>) -> bool {
    value
        .and_then(|v| v.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The Unleash variant in an imported flag's served value; the `disabled`
/// variant when there is none.
pub fn variant(value: Option<&Value>) -> Value {
    value
        .and_then(|v| v.get("variant"))
        .cloned()
        .unwrap_or_else(|| disabled_variant(false))
}

/// Builds a Sextant context from an Unleash context (`userId`, `sessionId`,
/// `remoteAddress`, `environment`, `appName`, `currentTime`,
/// `properties{...}`). See the module documentation.
pub fn context_from_unleash(json: &Value) -> Result<Context, UnleashError> {
    let Value::Object(obj) = json else {
        return Err(UnleashError::Context {
            field: "(context)".to_owned(),
            problem: format!("must be an object, got {}", sextant_core::json_type_name(json)),
        });
    };
    let mut attributes = Map::new();
    match obj.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(properties)) => {
            for (name, value) in properties {
                let value = match value {
                    Value::Null => continue,
                    Value::String(_) | Value::Array(_) | Value::Object(_) => value.clone(),
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::String(b.to_string()),
                };
                attributes.insert(name.clone(), value);
            }
        }
        Some(other) => {
            return Err(UnleashError::Context {
                field: "properties".to_owned(),
                problem: format!("must be an object, got {}", sextant_core::json_type_name(other)),
            });
        }
    }
    for (name, value) in obj {
        if name == "properties" {
            continue;
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(UnleashError::Context {
                    field: name.clone(),
                    problem: format!("must be a string, got {}", sextant_core::json_type_name(other)),
                });
            }
        };
        // Unleash treats an empty id as no id (`userId || sessionId || …`).
        if text.is_empty() && matches!(name.as_str(), "userId" | "sessionId" | "remoteAddress") {
            continue;
        }
        attributes.insert(name.clone(), Value::String(text));
    }
    let targeting_key = ["userId", "sessionId"]
        .iter()
        .find_map(|k| attributes.get(*k).and_then(Value::as_str).map(str::to_owned));
    let now = attributes
        .get("currentTime")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.timestamp());
    if !attributes.contains_key(RANDOM_ATTRIBUTE) {
        let seed = json.to_string();
        let derived = sextant_point("unleash-random", &seed, u32::MAX);
        attributes.insert(RANDOM_ATTRIBUTE.to_owned(), Value::String(format!("{derived:08x}")));
    }
    Ok(Context {
        targeting_key,
        attributes,
        now,
    })
}

/// [`context_from_unleash`] with the evaluation time: when the context has no
/// `currentTime`, date constraints compare `now` (Unix seconds), as Unleash
/// compares the clock.
pub fn context_from_unleash_at(json: &Value, now: i64) -> Result<Context, UnleashError> {
    let mut ctx = context_from_unleash(json)?;
    if !ctx.attributes.contains_key("currentTime") {
        ctx.attributes.insert("currentTime".to_owned(), Value::from(now));
        ctx.now = Some(now);
    }
    Ok(ctx)
}

// ---------------------------------------------------------------------------
// Features

/// A feature on its way to a flag.
struct Imported {
    flag: Flag,
    dependencies: Vec<Dependency>,
    /// Per variation: its key, the Unleash variant name it serves (`None`
    /// for `on`/`off`) and whether it means "feature enabled".
    served: Vec<Served>,
}

struct Served {
    key: String,
    variant: Option<String>,
    feature_enabled: bool,
}

struct Dependency {
    feature: String,
    enabled: bool,
    variants: Vec<String>,
}

/// An Unleash variant definition.
struct VariantDef {
    key: String,
    weight: u32,
    overrides: Vec<(String, Vec<String>)>,
}

fn disabled_variant(feature_enabled: bool) -> Value {
    json!({"name": "disabled", "enabled": false, "feature_enabled": feature_enabled})
}

fn import_feature(
    value: &Value,
    index: usize,
    environment: &str,
    segments: &HashMap<i64, (Location, &[Value])>,
    options: ImportOptions,
) -> Result<Imported, UnleashError> {
    let obj = object(value, &Location::root(format!("features[{index}]")), "(feature)")?;
    let name = required_str(obj, "name", &Location::root(format!("features[{index}]")))?;
    let at = Location::feature(name);
    let enabled = match obj.get("enabled") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Null) | None => return Err(field_error(&at, "enabled", "is missing")),
        Some(other) => return Err(wrong_type(&at, "enabled", "a boolean", other)),
    };
    let description = optional_str(obj, "description", &at)?.map(str::to_owned);
    let kind = optional_str(obj, "type", &at)?;
    let mut tags = Vec::new();
    if let Some(kind) = kind {
        tags.push(format!("unleash-type:{kind}"));
    }
    if let Some(project) = optional_str(obj, "project", &at)? {
        tags.push(format!("unleash-project:{project}"));
    }
    if obj.get("stale").and_then(Value::as_bool) == Some(true) {
        tags.push("stale".to_owned());
    }

    let mut variations = vec![
        Variation {
            key: OFF.to_owned(),
            value: json!({"enabled": false, "variant": disabled_variant(false)}),
            description: Some("Unleash: feature disabled".to_owned()),
        },
        Variation {
            key: ON.to_owned(),
            value: json!({"enabled": true, "variant": disabled_variant(true)}),
            description: Some("Unleash: feature enabled, no variant".to_owned()),
        },
    ];
    let mut served = vec![
        Served {
            key: OFF.to_owned(),
            variant: None,
            feature_enabled: false,
        },
        Served {
            key: ON.to_owned(),
            variant: None,
            feature_enabled: true,
        },
    ];

    // Feature variants.
    let feature_variants = array(obj, "variants", &at)?;
    let defs = variant_defs(
        feature_variants,
        "variant",
        &at.at("variants"),
        &mut variations,
        &mut served,
    )?;
    let stickiness = feature_variants
        .first()
        .and_then(|v| v.get("stickiness"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let feature_serve = variant_serve(&defs, stickiness, name, &at.at("variants"))?;
    let overrides: Vec<(Condition, String)> = if feature_serve.is_some() {
        defs.iter()
            .flat_map(|d| {
                d.overrides
                    .iter()
                    .filter(|(_, values)| !values.is_empty())
                    .map(|(attr, values)| {
                        (
                            condition(attr, Operator::In, values.iter().cloned().map(Value::String).collect()),
                            d.key.clone(),
                        )
                    })
            })
            .collect()
    } else {
        Vec::new()
    };
    let feature_serve_or_on = feature_serve.clone().unwrap_or_else(|| Serve::Variation(ON.to_owned()));

    // Strategies, ORed: one or more rules each.
    let strategies = array(obj, "strategies", &at)?;
    let mut rules = Vec::new();
    for (i, strategy) in strategies.iter().enumerate() {
        let sat = at.at(format!("strategy {i}"));
        let s = object(strategy, &sat, "(strategy)")?;
        let sname = required_str(s, "name", &sat)?;
        let sat = at.at(format!("strategy {i} ({sname})"));
        if s.get("disabled").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let params = match s.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(wrong_type(&sat, "parameters", "an object", other)),
        };
        let (test, gate) = strategy_test(sname, &params, name, &sat, options)?;
        let mut all = vec![test];
        for (j, c) in array(s, "constraints", &sat)?.iter().enumerate() {
            all.push(constraint_expr(c, &sat.at(format!("constraint {j}")), options)?);
        }
        for id in array(s, "segments", &sat)? {
            let id = segment_id(Some(id), &sat, "segments")?;
            match segments.get(&id) {
                // As in Unleash, a strategy naming a missing segment never matches.
                None => all.push(Expr::False),
                Some((seg_at, constraints)) => {
                    for (j, c) in constraints.iter().enumerate() {
                        let c_at = sat.at(format!("{}, constraint {j}", seg_at.path));
                        all.push(constraint_expr(c, &c_at, options)?);
                    }
                }
            }
        }

        let strategy_variants = array(s, "variants", &sat)?;
        let sdefs = variant_defs(
            strategy_variants,
            &format!("strategy{i}"),
            &sat.at("variants"),
            &mut variations,
            &mut served,
        )?;
        let stickiness = param_text(&params, "stickiness", &sat)?.unwrap_or_else(|| "default".to_owned());
        let group = param_text(&params, "groupId", &sat)?.unwrap_or_else(|| name.to_owned());
        let (serve, overrides) = match variant_serve(&sdefs, &stickiness, &group, &sat.at("variants"))? {
            Some(serve) => (serve, &[][..]),
            None => (feature_serve_or_on.clone(), &overrides[..]),
        };

        let alternatives = dnf(&Expr::And(all), false, &sat)?;
        let id = s
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("strategy-{i}"), str::to_owned);
        let many = alternatives.len() > 1;
        for (k, conditions) in alternatives.into_iter().enumerate() {
            let id = if many { format!("{id}/{k}") } else { id.clone() };
            for (o, (cond, key)) in overrides.iter().enumerate() {
                let mut conditions = conditions.clone();
                conditions.push(cond.clone());
                rules.push(Rule {
                    id: Some(format!("{id}/override-{o}")),
                    description: Some(format!("Unleash strategy `{sname}`, variant override")),
                    conditions,
                    rollout: gate.clone(),
                    serve: Serve::Variation(key.clone()),
                });
            }
            rules.push(Rule {
                id: Some(id),
                description: Some(format!("Unleash strategy `{sname}`")),
                conditions,
                rollout: gate.clone(),
                serve: serve.clone(),
            });
        }
    }

    let default_serve = if strategies.is_empty() {
        // No strategy: on for everyone (variant overrides still apply).
        for (o, (cond, key)) in overrides.iter().enumerate() {
            rules.push(Rule {
                id: Some(format!("override-{o}")),
                description: Some("Unleash variant override".to_owned()),
                conditions: vec![cond.clone()],
                rollout: None,
                serve: Serve::Variation(key.clone()),
            });
        }
        feature_serve_or_on
    } else {
        Serve::Variation(OFF.to_owned())
    };

    let mut dependencies = Vec::new();
    for (j, dep) in array(obj, "dependencies", &at)?.iter().enumerate() {
        let dat = at.at(format!("dependency {j}"));
        let d = object(dep, &dat, "(dependency)")?;
        let feature = required_str(d, "feature", &dat)?.to_owned();
        let enabled = match d.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type(&dat, "enabled", "a boolean", other)),
        };
        let variants = array(d, "variants", &dat)?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong_type(&dat, "variants", "a list of strings", v))
            })
            .collect::<Result<_, _>>()?;
        dependencies.push(Dependency {
            feature,
            enabled,
            variants,
        });
    }

    let temporary = !matches!(kind, Some("operational" | "kill-switch" | "permission"));
    let targeting = Targeting {
        enabled,
        off_variation: Some(OFF.to_owned()),
        prerequisites: Vec::new(),
        rules,
        default_serve: Some(default_serve),
        salt: None,
    };
    Ok(Imported {
        flag: Flag {
            key: name.to_owned(),
            kind: FlagKind::Json,
            variations,
            description,
            owner: None,
            tags,
            temporary,
            hypothesis: None,
            metadata: BTreeMap::new(),
            environments: BTreeMap::from([(environment.to_owned(), targeting)]),
        },
        dependencies,
        served,
    })
}

/// Reads variant definitions and adds a variation for each.
fn variant_defs(
    list: &[Value],
    prefix: &str,
    at: &Location,
    variations: &mut Vec<Variation>,
    served: &mut Vec<Served>,
) -> Result<Vec<VariantDef>, UnleashError> {
    let mut defs = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let vat = at.at(i);
        let obj = object(v, &vat, "(variant)")?;
        let name = required_str(obj, "name", &vat)?;
        let weight = match obj.get("weight") {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|w| u32::try_from(w).ok())
                .ok_or_else(|| field_error(&vat, "weight", format!("must be a non-negative integer, got {n}")))?,
            None | Some(Value::Null) => return Err(field_error(&vat, "weight", "is missing")),
            Some(other) => return Err(wrong_type(&vat, "weight", "an integer", other)),
        };
        let mut variant = json!({"name": name, "enabled": true, "feature_enabled": true});
        match obj.get("payload") {
            None | Some(Value::Null) => {}
            Some(payload @ Value::Object(_)) => {
                variant["payload"] = payload.clone();
            }
            Some(other) => return Err(wrong_type(&vat, "payload", "an object", other)),
        }
        let mut overrides = Vec::new();
        for (j, o) in array(obj, "overrides", &vat)?.iter().enumerate() {
            let oat = vat.at(format!("override {j}"));
            let o = object(o, &oat, "(override)")?;
            let context_name = required_str(o, "contextName", &oat)?.to_owned();
            let values = array(o, "values", &oat)?
                .iter()
                .map(|v| scalar_text(v).ok_or_else(|| wrong_type(&oat, "values", "a list of strings", v)))
                .collect::<Result<_, _>>()?;
            overrides.push((context_name, values));
        }
        let mut key = format!("{prefix}:{name}");
        let mut n = 1;
        while variations.iter().any(|v| v.key == key) {
            n += 1;
            key = format!("{prefix}:{name}#{n}");
        }
        variations.push(Variation {
            key: key.clone(),
            value: json!({"enabled": true, "variant": variant}),
            description: None,
        });
        served.push(Served {
            key: key.clone(),
            variant: Some(name.to_owned()),
            feature_enabled: true,
        });
        defs.push(VariantDef { key, weight, overrides });
    }
    Ok(defs)
}

/// The serve for a set of variants; `None` when they have no weight (then
/// Unleash answers the `disabled` variant of an enabled feature).
fn variant_serve(
    defs: &[VariantDef],
    stickiness: &str,
    group: &str,
    at: &Location,
) -> Result<Option<Serve>, UnleashError> {
    let total: u64 = defs.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return Ok(None);
    }
    if total > u64::from(u32::MAX) {
        return Err(field_error(at, "weight", format!("weights sum to {total}, too large")));
    }
    let weighted: Vec<&VariantDef> = defs.iter().filter(|d| d.weight > 0).collect();
    if let [only] = weighted[..] {
        // One arm: no bucketing, so no unit is needed.
        return Ok(Some(Serve::Variation(only.key.clone())));
    }
    let bucket_by = match stickiness {
        "default" | "" => DEFAULT_UNIT.iter().map(|s| (*s).to_owned()).collect(),
        "random" => vec![RANDOM_ATTRIBUTE.to_owned()],
        other => vec![other.to_owned(), RANDOM_ATTRIBUTE.to_owned()],
    };
    Ok(Some(Serve::Split(Split {
        weights: weighted
            .iter()
            .map(|d| Weight {
                variation: d.key.clone(),
                weight: d.weight,
            })
            .collect(),
        bucket_by,
        seed: None,
        hash: BucketHash::UnleashVariant {
            group_id: group.to_owned(),
        },
    })))
}

/// A strategy's own test and rollout gate.
fn strategy_test(
    name: &str,
    params: &Map<String, Value>,
    feature: &str,
    at: &Location,
    options: ImportOptions,
) -> Result<(Expr, Option<Rollout>), UnleashError> {
    let list = |field: &str| -> Result<Vec<String>, UnleashError> {
        Ok(param_text(params, field, at)?
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
            .unwrap_or_default())
    };
    let gate = |percent: f64, unit: &[&str], group: &str| Rollout {
        // Unleash admits `normalized <= percentage` with normalized in 1..=100;
        // flooring to 1/1000 % keeps that exact for any percentage.
        weight: (percent.clamp(0.0, 100.0) * 1000.0).floor() as u32,
        bucket_by: unit.iter().map(|s| (*s).to_owned()).collect(),
        hash: BucketHash::UnleashRollout {
            group_id: group.to_owned(),
        },
    };
    let exists = |attr: &str| Expr::Atom(condition(attr, Operator::Exists, Vec::new()));
    Ok(match name {
        "default" => (Expr::True, None),
        "userWithId" => {
            let ids = list("userIds")?;
            if ids.is_empty() {
                (Expr::False, None)
            } else {
                let values = ids.into_iter().map(Value::String).collect();
                (Expr::Atom(condition("userId", Operator::In, values)), None)
            }
        }
        "gradualRolloutUserId" | "gradualRolloutSessionId" => {
            let attr = if name == "gradualRolloutUserId" {
                "userId"
            } else {
                "sessionId"
            };
            let percent = percentage(params, "percentage", at)?;
            match (percent, param_text(params, "groupId", at)?) {
                (Some(p), Some(group)) => (exists(attr), Some(gate(p, &[attr], &group))),
                // Yggdrasil: without both parameters the strategy is off.
                _ => (Expr::False, None),
            }
        }
        "gradualRolloutRandom" => match percentage(params, "percentage", at)? {
            Some(p) => (Expr::True, Some(gate(p, &[RANDOM_ATTRIBUTE], feature))),
            None => (Expr::False, None),
        },
        "flexibleRollout" => {
            let Some(p) = percentage(params, "rollout", at)? else {
                return Ok((Expr::False, None));
            };
            let group = param_text(params, "groupId", at)?.unwrap_or_else(|| feature.to_owned());
            let stickiness = param_text(params, "stickiness", at)?.unwrap_or_else(|| "default".to_owned());
            match stickiness.as_str() {
                "default" | "" => (Expr::True, Some(gate(p, &DEFAULT_UNIT, &group))),
                "random" => (Expr::True, Some(gate(p, &[RANDOM_ATTRIBUTE], &group))),
                // A named stickiness must be present, even at 100%.
                field => (exists(field), Some(gate(p, &[field], &group))),
            }
        }
        "remoteAddress" => {
            let nets: Vec<Value> = list("IPs")?
                .into_iter()
                .filter(|ip| parse_net(ip).is_some())
                .map(Value::String)
                .collect();
            if nets.is_empty() {
                (Expr::False, None)
            } else {
                (Expr::Atom(condition("remoteAddress", Operator::Cidr, nets)), None)
            }
        }
        "applicationHostname" => {
            let hosts: Vec<Value> = list("hostNames")?.into_iter().map(Value::String).collect();
            if hosts.is_empty() {
                (Expr::False, None)
            } else {
                let mut c = condition(HOSTNAME_ATTRIBUTE, Operator::In, hosts);
                c.case_insensitive = true;
                (Expr::Atom(c), None)
            }
        }
        other => match options.unknown {
            UnknownPolicy::Reject => {
                return Err(UnleashError::UnknownStrategy {
                    location: at.clone(),
                    name: other.to_owned(),
                });
            }
            UnknownPolicy::NeverMatch => (Expr::False, None),
        },
    })
}

/// A rollout percentage parameter: absent → `None`; text or number → the
/// percentage; anything else is an error.
fn percentage(params: &Map<String, Value>, field: &str, at: &Location) -> Result<Option<f64>, UnleashError> {
    let Some(text) = param_text(params, field, at)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(Some(0.0));
    }
    match text.parse::<f64>() {
        Ok(p) if p.is_finite() => Ok(Some(p)),
        _ => Err(field_error(
            &at.at("parameters"),
            field,
            format!("must be a percentage, got {text:?}"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Constraints

/// A boolean formula over conditions, flattened into rules by [`dnf`].
#[derive(Debug, Clone)]
enum Expr {
    True,
    False,
    Atom(Condition),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

fn condition(attribute: &str, op: Operator, values: Vec<Value>) -> Condition {
    Condition {
        attribute: attribute.to_owned(),
        op,
        values,
        negate: false,
        case_insensitive: false,
    }
}

/// Disjunctive normal form: a list of alternatives, each a list of
/// conditions that must all hold. `negated` pushes a negation down (a
/// condition's `negate` is its exact complement).
fn dnf(expr: &Expr, negated: bool, at: &Location) -> Result<Vec<Vec<Condition>>, UnleashError> {
    let product = |parts: &[Expr], negated: bool| -> Result<Vec<Vec<Condition>>, UnleashError> {
        let mut acc: Vec<Vec<Condition>> = vec![Vec::new()];
        for part in parts {
            let alternatives = dnf(part, negated, at)?;
            let mut next = Vec::with_capacity(acc.len() * alternatives.len());
            for a in &acc {
                for b in &alternatives {
                    let mut both = a.clone();
                    both.extend(b.iter().cloned());
                    next.push(both);
                }
            }
            if next.len() > MAX_ALTERNATIVES {
                return Err(UnleashError::TooComplex { location: at.clone() });
            }
            acc = next;
        }
        Ok(acc)
    };
    let union = |parts: &[Expr], negated: bool| -> Result<Vec<Vec<Condition>>, UnleashError> {
        let mut all = Vec::new();
        for part in parts {
            all.extend(dnf(part, negated, at)?);
            if all.len() > MAX_ALTERNATIVES {
                return Err(UnleashError::TooComplex { location: at.clone() });
            }
        }
        Ok(all)
    };
    match expr {
        Expr::True if negated => Ok(Vec::new()),
        Expr::True => Ok(vec![Vec::new()]),
        Expr::False if negated => Ok(vec![Vec::new()]),
        Expr::False => Ok(Vec::new()),
        Expr::Atom(c) => {
            let mut c = c.clone();
            c.negate ^= negated;
            Ok(vec![vec![c]])
        }
        Expr::Not(inner) => dnf(inner, !negated, at),
        Expr::And(parts) if negated => union(parts, true),
        Expr::And(parts) => product(parts, false),
        Expr::Or(parts) if negated => product(parts, true),
        Expr::Or(parts) => union(parts, false),
    }
}

/// One Unleash constraint as a formula.
fn constraint_expr(value: &Value, at: &Location, options: ImportOptions) -> Result<Expr, UnleashError> {
    let obj = object(value, at, "(constraint)")?;
    let attr = required_str(obj, "contextName", at)?;
    let operator = required_str(obj, "operator", at)?;
    let inverted = optional_bool(obj, "inverted", at)?.unwrap_or(false);
    let case_insensitive = optional_bool(obj, "caseInsensitive", at)?.unwrap_or(false);
    // List operators read `values`, single-value operators `value`; each
    // falls back to the other when its own field is absent.
    let single = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(scalar_text(v).ok_or_else(|| wrong_type(at, "value", "a string", v))?),
    };
    let listed: Option<Vec<String>> = match obj.get("values") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| scalar_text(v).ok_or_else(|| wrong_type(at, "values", "a list of strings", v)))
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => return Err(wrong_type(at, "values", "a list of strings", other)),
    };
    let values = || {
        listed
            .clone()
            .or_else(|| single.clone().map(|s| vec![s]))
            .unwrap_or_default()
    };
    let operand = || {
        single
            .clone()
            .or_else(|| listed.clone().and_then(|l| l.into_iter().next()))
    };
    let strings = |list: Vec<String>| list.into_iter().map(Value::String).collect::<Vec<_>>();
    let atom = |op: Operator, values: Vec<Value>, ci: bool| {
        let mut c = condition(attr, op, values);
        c.case_insensitive = ci;
        Expr::Atom(c)
    };

    let positive = match operator {
        "IN" | "NOT_IN" => {
            let list = values();
            match (operator, list.is_empty()) {
                ("IN", true) => Expr::False,
                ("IN", false) => atom(Operator::In, strings(list), false),
                (_, true) => Expr::True,
                (_, false) => atom(Operator::NotIn, strings(list), false),
            }
        }
        "STR_CONTAINS" | "STR_STARTS_WITH" | "STR_ENDS_WITH" => {
            let list = values();
            if list.is_empty() {
                Expr::False
            } else {
                let op = match operator {
                    "STR_CONTAINS" => Operator::Contains,
                    "STR_STARTS_WITH" => Operator::StartsWith,
                    _ => Operator::EndsWith,
                };
                atom(op, strings(list), case_insensitive)
            }
        }
        "NUM_EQ" | "NUM_GT" | "NUM_GTE" | "NUM_LT" | "NUM_LTE" => {
            match operand().and_then(|s| s.trim().parse::<f64>().ok().filter(|f| f.is_finite())) {
                // An operand that is not a number never matches.
                None => return Ok(Expr::False),
                Some(n) => {
                    let op = match operator {
                        "NUM_EQ" => Operator::Eq,
                        "NUM_GT" => Operator::Gt,
                        "NUM_GTE" => Operator::Gte,
                        "NUM_LT" => Operator::Lt,
                        _ => Operator::Lte,
                    };
                    atom(op, vec![json!(n)], false)
                }
            }
        }
        "DATE_AFTER" | "DATE_BEFORE" => {
            match operand().filter(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).is_ok()) {
                None => return Ok(Expr::False),
                Some(date) => {
                    let op = if operator == "DATE_AFTER" {
                        Operator::After
                    } else {
                        Operator::Before
                    };
                    atom(op, vec![Value::String(date)], false)
                }
            }
        }
        "SEMVER_EQ" | "SEMVER_GT" | "SEMVER_LT" | "SEMVER_GTE" | "SEMVER_LTE" => {
            // Unleash parses versions strictly: a leading `v` or surrounding
            // space makes a version invalid (and an invalid operand makes
            // the constraint false, inverted or not).
            let Some(version) = operand().filter(|s| semver::Version::parse(s).is_ok()) else {
                return Ok(Expr::False);
            };
            let cmp = |op: Operator| atom(op, vec![Value::String(version.clone())], false);
            let strict = Expr::Not(Box::new(atom(Operator::Matches, vec![json!(r"^[vV]|^\s|\s$")], false)));
            let test = match operator {
                "SEMVER_EQ" => cmp(Operator::SemverEq),
                "SEMVER_GT" => cmp(Operator::SemverGt),
                "SEMVER_LT" => cmp(Operator::SemverLt),
                "SEMVER_GTE" => Expr::Or(vec![cmp(Operator::SemverGt), cmp(Operator::SemverEq)]),
                _ => Expr::Or(vec![cmp(Operator::SemverLt), cmp(Operator::SemverEq)]),
            };
            Expr::And(vec![test, strict])
        }
        "REGEX" => {
            let pattern = operand().unwrap_or_default();
            // Same limits as the core's compiler; a pattern it would reject
            // (lookaround, back-references, …) never matches, as in Unleash.
            let compiles = regex::RegexBuilder::new(&pattern)
                .case_insensitive(case_insensitive)
                .size_limit(1 << 20)
                .build()
                .is_ok();
            if !compiles {
                return Ok(Expr::False);
            }
            atom(Operator::Matches, vec![Value::String(pattern)], case_insensitive)
        }
        "IN_CIDR" => {
            let nets: Vec<String> = values().into_iter().filter(|s| parse_net(s).is_some()).collect();
            if nets.is_empty() {
                Expr::False
            } else {
                atom(Operator::Cidr, strings(nets), false)
            }
        }
        other => match options.unknown {
            UnknownPolicy::Reject => {
                return Err(UnleashError::UnknownOperator {
                    location: at.clone(),
                    operator: other.to_owned(),
                });
            }
            UnknownPolicy::NeverMatch => return Ok(Expr::False),
        },
    };
    Ok(if inverted {
        Expr::Not(Box::new(positive))
    } else {
        positive
    })
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

// ---------------------------------------------------------------------------
// Dependencies

/// Prerequisites for a feature's dependencies, or why they can never hold.
fn resolve_dependencies(
    dependencies: &[Dependency],
    imported: &[Imported],
    by_name: &HashMap<String, usize>,
) -> Result<Vec<Prerequisite>, String> {
    let mut prerequisites = Vec::with_capacity(dependencies.len());
    for dep in dependencies {
        let Some(&parent) = by_name.get(&dep.feature) else {
            return Err(format!("parent feature `{}` does not exist", dep.feature));
        };
        let parent = &imported[parent];
        if !parent.dependencies.is_empty() {
            return Err(format!(
                "parent feature `{}` has dependencies of its own, which Unleash does not follow",
                dep.feature
            ));
        }
        let variations = parent
            .served
            .iter()
            .filter(|s| {
                if !dep.enabled {
                    return !s.feature_enabled;
                }
                // Yggdrasil: a parent that serves no variant satisfies any
                // variant list.
                s.feature_enabled
                    && (dep.variants.is_empty() || s.variant.as_ref().is_none_or(|name| dep.variants.contains(name)))
            })
            .map(|s| s.key.clone())
            .collect();
        prerequisites.push(Prerequisite {
            flag: dep.feature.clone(),
            variations,
        });
    }
    Ok(prerequisites)
}

// ---------------------------------------------------------------------------
// Delta payloads

/// Folds Unleash delta events (`hydration`, `feature-updated`,
/// `feature-removed`, `segment-updated`, `segment-removed`) into features
/// and segments.
fn fold_delta(events: &Value) -> Result<(Vec<Value>, Vec<Value>), UnleashError> {
    let Value::Array(events) = events else {
        return Err(wrong_type(&Location::root(""), "events", "an array", events));
    };
    let mut features: Vec<Value> = Vec::new();
    let mut segments: Vec<Value> = Vec::new();
    let name_of = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
    for (i, event) in events.iter().enumerate() {
        let at = Location::root(format!("events[{i}]"));
        let obj = object(event, &at, "(event)")?;
        match required_str(obj, "type", &at)? {
            "hydration" => {
                features = array(obj, "features", &at)?.to_vec();
                segments = array(obj, "segments", &at)?.to_vec();
            }
            "feature-updated" => {
                let feature = obj
                    .get("feature")
                    .filter(|f| f.is_object())
                    .ok_or_else(|| field_error(&at, "feature", "must be an object"))?;
                let name = name_of(feature);
                features.retain(|f| name_of(f) != name);
                features.push(feature.clone());
            }
            "feature-removed" => {
                let name = required_str(obj, "featureName", &at)?;
                features.retain(|f| name_of(f).as_deref() != Some(name));
            }
            "segment-updated" => {
                let segment = obj
                    .get("segment")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| field_error(&at, "segment", "must be an object"))?;
                let id = segment.get("id").cloned();
                segments.retain(|s| s.get("id").cloned() != id);
                segments.push(segment.clone());
            }
            "segment-removed" => {
                let id = obj.get("segmentId").or_else(|| obj.get("id")).cloned();
                segments.retain(|s| s.get("id").cloned() != id);
            }
            other => {
                return Err(field_error(&at, "type", format!("is an unknown event type `{other}`")));
            }
        }
    }
    Ok((features, segments))
}

// ---------------------------------------------------------------------------
// Field access with errors that name the field

fn field_error(at: &Location, field: &str, problem: impl Into<String>) -> UnleashError {
    UnleashError::Field {
        location: at.clone(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn wrong_type(at: &Location, field: &str, expected: &str, got: &Value) -> UnleashError {
    field_error(
        at,
        field,
        format!("must be {expected}, got {}", sextant_core::json_type_name(got)),
    )
}

fn object<'v>(value: &'v Value, at: &Location, what: &str) -> Result<&'v Map<String, Value>, UnleashError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(at, what, "an object", value))
}

fn array<'v>(obj: &'v Map<String, Value>, field: &str, at: &Location) -> Result<&'v [Value], UnleashError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(at, field, "an array", other)),
    }
}

fn required_str<'v>(obj: &'v Map<String, Value>, field: &str, at: &Location) -> Result<&'v str, UnleashError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(field_error(at, field, "is missing")),
        Some(other) => Err(wrong_type(at, field, "a string", other)),
    }
}

fn optional_str<'v>(obj: &'v Map<String, Value>, field: &str, at: &Location) -> Result<Option<&'v str>, UnleashError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) => Ok(None),
        Some(other) => Err(wrong_type(at, field, "a string", other)),
    }
}

fn optional_bool(obj: &Map<String, Value>, field: &str, at: &Location) -> Result<Option<bool>, UnleashError> {
    match obj.get(field) {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        None | Some(Value::Null) => Ok(None),
        Some(other) => Err(wrong_type(at, field, "a boolean", other)),
    }
}

/// A strategy parameter as text (Unleash sends strings; numbers are taken).
fn param_text(params: &Map<String, Value>, field: &str, at: &Location) -> Result<Option<String>, UnleashError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v)
            .map(Some)
            .ok_or_else(|| wrong_type(&at.at("parameters"), field, "a string", v)),
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

fn segment_id(value: Option<&Value>, at: &Location, field: &str) -> Result<i64, UnleashError> {
    match value {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| field_error(at, field, format!("must be an integer id, got {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| field_error(at, field, format!("must be an integer id, got {s:?}"))),
        None | Some(Value::Null) => Err(field_error(at, field, "is missing")),
        Some(other) => Err(wrong_type(at, field, "an integer id", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_core::Snapshot;

    fn doc(features: Value) -> Value {
        json!({"version": 1, "features": features})
    }

    fn evaluate(state: &Value, flag: &str, context: Value) -> (bool, Value) {
        let document = import_value(state, "production", ImportOptions::default()).unwrap();
        let snapshot = Snapshot::compile(&document, "production", 1).unwrap();
        let ctx = context_from_unleash(&context).unwrap();
        let r = snapshot.evaluate(flag, &ctx);
        (is_enabled(r.value), variant(r.value))
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        let err = import("{\"features\": [", "production").unwrap_err();
        assert!(matches!(err, UnleashError::Syntax(_)), "{err}");
    }

    #[test]
    fn unknown_operator_names_feature_strategy_and_constraint() {
        let state = doc(json!([{"name": "checkout", "enabled": true, "strategies": [
            {"name": "default", "constraints": [
                {"contextName": "a", "operator": "IN", "values": ["x"]},
                {"contextName": "a", "operator": "SOUNDS_LIKE", "values": ["x"]}
            ]}
        ]}]));
        let err = import_value(&state, "production", ImportOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature `checkout`, strategy 0 (default), constraint 1: unknown constraint operator `SOUNDS_LIKE`"
        );
        let lenient = ImportOptions {
            unknown: UnknownPolicy::NeverMatch,
        };
        let document = import_value(&state, "production", lenient).unwrap();
        assert_eq!(document.flags[0].environments["production"].rules.len(), 0);
    }

    #[test]
    fn unknown_strategy_is_rejected_by_default() {
        let state = doc(json!([{"name": "f", "enabled": true, "strategies": [{"name": "myCustom"}]}]));
        let err = import_value(&state, "production", ImportOptions::default()).unwrap_err();
        assert!(matches!(err, UnleashError::UnknownStrategy { ref name, .. } if name == "myCustom"));
        assert!(err.to_string().contains("feature `f`, strategy 0 (myCustom)"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (
                json!([{"name": "f", "enabled": "yes"}]),
                "feature `f`: field `enabled` must be a boolean, got string",
            ),
            (json!([{"enabled": true}]), "features[0]: field `name` is missing"),
            (
                json!([{"name": "f", "enabled": true, "strategies": {}}]),
                "feature `f`: field `strategies` must be an array, got object",
            ),
            (
                json!([{"name": "f", "enabled": true, "strategies": [
                    {"name": "flexibleRollout", "parameters": {"rollout": "lots"}}]}]),
                "feature `f`, strategy 0 (flexibleRollout), parameters: field `rollout` must be a percentage, got \"lots\"",
            ),
            (
                json!([{"name": "f", "enabled": true, "variants": [{"name": "a", "weight": -1}]}]),
                "feature `f`, variants, 0: field `weight` must be a non-negative integer, got -1",
            ),
            (
                json!([{"name": "f", "enabled": true, "strategies": [
                    {"name": "default", "constraints": [{"contextName": "a", "operator": "IN", "values": "x"}]}]}]),
                "feature `f`, strategy 0 (default), constraint 0: field `values` must be a list of strings, got string",
            ),
        ];
        for (features, message) in cases {
            let err = import_value(&doc(features), "production", ImportOptions::default()).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let err = import("[1, 2]", "production").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document: field `(document)` must be an object, got array"
        );
    }

    #[test]
    fn imported_documents_compile() {
        let state = doc(json!([
            {"name": "a", "enabled": true, "strategies": [], "variants": [
                {"name": "x", "weight": 1, "overrides": [{"contextName": "userId", "values": ["7"]}]},
                {"name": "y", "weight": 1}]},
            {"name": "b", "enabled": false, "strategies": [{"name": "remoteAddress", "parameters": {"IPs": "10.0.0.0/8, junk"}}],
             "dependencies": [{"feature": "a", "variants": ["x"]}]}
        ]));
        let document = import_value(&state, "production", ImportOptions::default()).unwrap();
        Snapshot::compile(&document, "production", 1).unwrap();
        let (on, v) = evaluate(&state, "a", json!({"userId": "7"}));
        assert!(on);
        assert_eq!(v["name"], "x");
    }

    #[test]
    fn inverted_semver_gte_expands_into_rules() {
        let state = doc(
            json!([{"name": "f", "enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "version", "operator": "SEMVER_GTE", "value": "1.2.0", "inverted": true}]}]}]),
        );
        let ctx = |v: &str| json!({"properties": {"version": v}});
        assert!(evaluate(&state, "f", ctx("1.1.9")).0);
        assert!(!evaluate(&state, "f", ctx("1.2.0")).0);
        assert!(!evaluate(&state, "f", ctx("1.3.0")).0);
        // Not a strict semantic version: the positive test is false.
        assert!(evaluate(&state, "f", ctx("v1.3.0")).0);
        assert!(evaluate(&state, "f", json!({})).0);
    }

    #[test]
    fn named_stickiness_must_be_present_even_at_full_rollout() {
        let state = doc(json!([{"name": "f", "enabled": true, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "100", "stickiness": "userId"}}]}]));
        assert!(!evaluate(&state, "f", json!({"sessionId": "s"})).0);
        assert!(evaluate(&state, "f", json!({"userId": "u"})).0);
    }

    #[test]
    fn contexts_without_unleash_fields_bucket_by_targeting_key() {
        let state = doc(json!([{"name": "f", "enabled": true, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "50", "groupId": "g"}}],
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}]));
        let document = import_value(&state, "production", ImportOptions::default()).unwrap();
        let snapshot = Snapshot::compile(&document, "production", 1).unwrap();
        for user in ["1", "2", "3", "4", "5", "6", "7", "8"] {
            let unleash = context_from_unleash(&json!({"userId": user})).unwrap();
            let plain = Context::with_key(user);
            let (a, b) = (snapshot.evaluate("f", &unleash), snapshot.evaluate("f", &plain));
            assert_eq!(a.value, b.value, "user {user}");
            assert!(b.error.is_none());
        }
    }

    #[test]
    fn unsatisfiable_dependency_serves_off_and_says_why() {
        let state = doc(json!([{"name": "child", "enabled": true, "strategies": [],
            "dependencies": [{"feature": "ghost"}]}]));
        let document = import_value(&state, "production", ImportOptions::default()).unwrap();
        assert_eq!(
            document.flags[0].metadata["unleash_unsatisfiable"],
            json!("parent feature `ghost` does not exist")
        );
        let (on, v) = evaluate(&state, "child", json!({}));
        assert!(!on);
        assert_eq!(v, disabled_variant(false));
    }

    #[test]
    fn context_maps_fields_and_properties() {
        let ctx = context_from_unleash(&json!({
            "userId": "", "sessionId": "s1", "currentTime": "2022-01-29T13:00:00Z",
            "properties": {"plan": "pro", "sessionId": "shadowed", "seats": 3}
        }))
        .unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("s1"));
        assert_eq!(ctx.get("sessionId"), Some(&json!("s1")));
        assert_eq!(ctx.get("plan"), Some(&json!("pro")));
        assert_eq!(ctx.get("seats"), Some(&json!("3")));
        assert!(ctx.get("userId").is_none());
        assert_eq!(ctx.now, Some(1_643_461_200));
        assert!(ctx.get(RANDOM_ATTRIBUTE).is_some());

        let at = context_from_unleash_at(&json!({}), 1_000).unwrap();
        assert_eq!(at.get("currentTime"), Some(&json!(1_000)));
        assert_eq!(at.now, Some(1_000));
    }

    #[test]
    fn context_rejects_wrong_types() {
        assert_eq!(
            context_from_unleash(&json!([])).unwrap_err().to_string(),
            "context field `(context)` must be an object, got array"
        );
        assert_eq!(
            context_from_unleash(&json!({"properties": "x"}))
                .unwrap_err()
                .to_string(),
            "context field `properties` must be an object, got string"
        );
        assert_eq!(
            context_from_unleash(&json!({"userId": {"id": 1}}))
                .unwrap_err()
                .to_string(),
            "context field `userId` must be a string, got object"
        );
    }
}
