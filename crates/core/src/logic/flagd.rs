//! flagd's custom JSONLogic operators: `fractional` and `sem_ver`
//! (`starts_with` / `ends_with` are small enough to live in `eval`).

use std::borrow::Cow;
use std::io::Read;

use semver::{BuildMetadata, Prerelease, Version};

use super::FractionalVersion;
use super::eval::{Env, Val, format_number};

/// The largest total (and single) weight flagd accepts.
const MAX_WEIGHT: u64 = i32::MAX as u64;

/// MurmurHash3 x86_32, seed 0, of `a` followed by `b`, without allocating.
fn murmur2(a: &str, b: &str) -> u32 {
    let mut reader = a.as_bytes().chain(b.as_bytes());
    murmur3::murmur3_32(&mut reader, 0).unwrap_or_default()
}

/// `fractional`: `[bucketBy?, [variant, weight?], ...]`, arguments already
/// evaluated. The bucketing value is the first argument when it is a
/// string; otherwise (absent or `null`) it is flag key + targeting key.
/// Malformed input yields `null` (the default variant), as in flagd.
pub(super) fn fractional<'a>(args: Vec<Val<'a>>, env: &Env<'a>) -> Val<'a> {
    let mut args = args.into_iter().peekable();
    let hash = match args.peek() {
        Some(Val::Str(bucket_by)) => {
            let h = murmur2(bucket_by, "");
            args.next();
            h
        }
        first => {
            if matches!(first, Some(Val::Null)) {
                args.next();
            }
            let Some(key) = env.ctx.targeting_key.as_deref() else {
                return Val::Null;
            };
            murmur2(env.flag_key, key)
        }
    };

    let mut buckets: Vec<(Val<'a>, u64)> = Vec::new();
    let mut total: u64 = 0;
    for bucket in args {
        let Some(parts) = owned_elements(bucket) else {
            return Val::Null;
        };
        let mut parts = parts.into_iter();
        let variant = match parts.next() {
            Some(v @ (Val::Str(_) | Val::Bool(_) | Val::Num(_) | Val::Null)) => v,
            _ => return Val::Null,
        };
        let weight = match parts.next() {
            None | Some(Val::Null) => 1,
            Some(Val::Num(w)) if w.fract() == 0.0 && w <= MAX_WEIGHT as f64 => {
                // Negative weights count as zero.
                if w < 0.0 { 0 } else { w as u64 }
            }
            Some(_) => return Val::Null,
        };
        total += weight;
        if total > MAX_WEIGHT {
            return Val::Null;
        }
        buckets.push((variant, weight));
    }
    if total == 0 {
        return Val::Null;
    }

    match env.fractional {
        FractionalVersion::V2 => {
            let point = (u64::from(hash) * total) >> 32;
            let mut end = 0;
            for (variant, weight) in buckets {
                end += weight;
                if point < end {
                    return variant;
                }
            }
        }
        FractionalVersion::V1 => {
            let point = f64::from(hash as i32).abs() / f64::from(i32::MAX) * 100.0;
            let mut end = 0.0;
            for (variant, weight) in buckets {
                end += 100.0 * weight as f64 / total as f64;
                if point < end {
                    return variant;
                }
            }
        }
    }
    Val::Null
}

fn owned_elements(value: Val<'_>) -> Option<Vec<Val<'_>>> {
    match value {
        Val::Arr(items) => Some(items),
        Val::Json(Cow::Borrowed(serde_json::Value::Array(items))) => Some(items.iter().map(Val::from_json).collect()),
        Val::Json(Cow::Owned(serde_json::Value::Array(items))) => {
            Some(items.into_iter().map(Val::from_owned_json).collect())
        }
        _ => None,
    }
}

/// `sem_ver`: `[version, operator, target]`, arguments already evaluated.
/// Returns `null` for a wrong argument count, an unknown operator or a
/// value that is not a version.
pub(super) fn sem_ver<'a>(args: &[Val<'_>]) -> Val<'a> {
    let [version, op, target] = args else {
        return Val::Null;
    };
    let (Some(version), Some(target)) = (version_of(version), version_of(target)) else {
        return Val::Null;
    };
    let order = version.cmp(&target);
    let holds = match op.as_str() {
        Some("=") => order.is_eq(),
        Some("!=") => order.is_ne(),
        Some("<") => order.is_lt(),
        Some("<=") => order.is_le(),
        Some(">") => order.is_gt(),
        Some(">=") => order.is_ge(),
        Some("^") => version.major == target.major,
        Some("~") => version.major == target.major && version.minor == target.minor,
        _ => return Val::Null,
    };
    Val::Bool(holds)
}

fn version_of(value: &Val<'_>) -> Option<Version> {
    match value {
        Val::Str(s) => parse_version(s),
        Val::Num(n) if n.is_finite() && *n >= 0.0 => parse_version(&format_number(*n)),
        _ => None,
    }
}

/// Parses a version as flagd does: an optional `v`/`V`, then `MAJOR`,
/// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` (missing parts are zero; the short
/// forms take no pre-release or build), build metadata ignored.
pub(crate) fn parse_version(s: &str) -> Option<Version> {
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let mut numbers = [0u64; 3];
    let mut count = 0;
    for part in core.split('.') {
        if count == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        numbers[count] = part.parse().ok()?;
        count += 1;
    }
    if count < 3 && (pre.is_some() || build.is_some()) {
        return None;
    }
    if let Some(build) = build {
        BuildMetadata::new(build).ok()?;
    }
    let pre = match pre {
        Some(pre) => Prerelease::new(pre).ok()?,
        None => Prerelease::EMPTY,
    };
    Some(Version {
        major: numbers[0],
        minor: numbers[1],
        patch: numbers[2],
        pre,
        build: BuildMetadata::EMPTY,
    })
}
