//! flagd's custom JSONLogic operators: `fractional` and `sem_ver`
//! (`starts_with` / `ends_with` are small enough to live in `eval`).

use std::borrow::Cow;

use semver::{BuildMetadata, Prerelease, Version};

use serde_json::Value;

use super::eval::{Env, Val, eval, format_number};
use super::{FractionalVersion, Node};

/// The largest total (and single) weight flagd accepts.
const MAX_WEIGHT: u64 = i32::MAX as u64;

/// MurmurHash3 x86_32 with seed 0 of the concatenation of `parts`,
/// computed in one pass without concatenating (the `murmur3` crate reads
/// through `io::Read`, several times slower on short keys).
pub(super) fn murmur3_x86_32(parts: &[&[u8]]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h: u32 = 0;
    let mut block = [0u8; 4];
    let mut fill = 0;
    let mut len: usize = 0;
    for part in parts {
        len += part.len();
        let mut bytes = *part;
        // Complete a block left over from the previous part.
        while fill > 0 && fill < 4 {
            let Some((&b, rest)) = bytes.split_first() else { break };
            block[fill] = b;
            fill += 1;
            bytes = rest;
        }
        if fill == 4 {
            h ^= mix(u32::from_le_bytes(block));
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
            fill = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            let k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            h ^= mix(k);
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        }
        for &b in chunks.remainder() {
            block[fill] = b;
            fill += 1;
        }
    }
    if fill > 0 {
        let mut k = 0u32;
        for &b in block[..fill].iter().rev() {
            k = (k << 8) | u32::from(b);
        }
        h ^= mix(k);
    }
    // The length is mixed in modulo 2^32, as in the reference.
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// `fractional`: `[bucketBy?, [variant, weight?], ...]`. The bucketing
/// value is the first argument when it evaluates to a string; otherwise
/// (`null`, or a bucket) it is flag key + targeting key. Variants and
/// weights may be expressions. Malformed input yields `null` (the default
/// variant), as in flagd.
pub(super) fn fractional<'a>(args: &'a [Node], env: &Env<'a>) -> Val<'a> {
    let first = args.first().map(|node| eval(node, env));
    let (hash, buckets) = match first {
        Some(Val::Str(bucket_by)) => (murmur3_x86_32(&[bucket_by.as_bytes()]), &args[1..]),
        first => {
            let Some(key) = env.ctx.targeting_key.as_deref() else {
                return Val::Null;
            };
            let hash = murmur3_x86_32(&[env.flag_key.as_bytes(), key.as_bytes()]);
            match first {
                Some(Val::Null) => (hash, &args[1..]),
                _ => (hash, args),
            }
        }
    };

    let mut parsed: Vec<(Val<'a>, u64)> = Vec::with_capacity(buckets.len());
    let mut total: u64 = 0;
    for node in buckets {
        let Some((variant, weight)) = bucket(eval(node, env)) else {
            return Val::Null;
        };
        total += weight;
        if total > MAX_WEIGHT {
            return Val::Null;
        }
        parsed.push((variant, weight));
    }
    if total == 0 {
        return Val::Null;
    }

    match env.fractional {
        FractionalVersion::V2 => {
            let point = (u64::from(hash) * total) >> 32;
            let mut end = 0;
            for (variant, weight) in parsed {
                end += weight;
                if point < end {
                    return variant;
                }
            }
        }
        FractionalVersion::V1 => {
            let point = f64::from(hash as i32).abs() / f64::from(i32::MAX) * 100.0;
            let mut end = 0.0;
            for (variant, weight) in parsed {
                end += 100.0 * weight as f64 / total as f64;
                if point < end {
                    return variant;
                }
            }
        }
    }
    Val::Null
}

/// One evaluated bucket, `[variant, weight?]`: the variant must be a
/// scalar or null, the weight a whole number (absent or null = 1, negative
/// = 0, at most `i32::MAX`).
fn bucket(value: Val<'_>) -> Option<(Val<'_>, u64)> {
    let (variant, weight) = match value {
        Val::Json(Cow::Borrowed(Value::Array(items))) => {
            (items.first().map(Val::from_json), items.get(1).map(Val::from_json))
        }
        Val::Arr(items) => {
            let mut items = items.into_iter();
            (items.next(), items.next())
        }
        Val::Json(Cow::Owned(Value::Array(items))) => {
            let mut items = items.into_iter().map(Val::from_owned_json);
            (items.next(), items.next())
        }
        _ => return None,
    };
    let variant = match variant? {
        v @ (Val::Str(_) | Val::Bool(_) | Val::Num(_) | Val::Null) => v,
        _ => return None,
    };
    let weight = match weight {
        None | Some(Val::Null) => 1,
        Some(Val::Num(w)) if w.fract() == 0.0 && w <= MAX_WEIGHT as f64 => {
            if w < 0.0 {
                0
            } else {
                w as u64
            }
        }
        Some(_) => return None,
    };
    Some((variant, weight))
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
