//! Placing a unit in a bucket: sticky, uniform and monotone.
//!
//! A unit's *point* depends only on (hash kind, seed, unit), never on the
//! weights, so growing an arm's range from `[0, p)` to `[0, q)` keeps every
//! unit that was in. Imported flags keep their source's hash exactly.

use std::io::Read;

use xxhash_rust::xxh3::Xxh3;

/// Unleash's seed for variant hashing.
pub const UNLEASH_VARIANT_SEED: u32 = 86_028_157;

/// Sextant's hash: xxh3-64 of `seed \0 unit`, reduced to `[0, modulus)`.
pub fn sextant_point(seed: &str, unit: &str, modulus: u32) -> u32 {
    let mut hasher = Xxh3::new();
    hasher.update(seed.as_bytes());
    hasher.update(&[0]);
    hasher.update(unit.as_bytes());
    // Multiply-shift keeps the full 64-bit entropy and avoids modulo bias.
    ((u128::from(hasher.digest()) * u128::from(modulus)) >> 64) as u32
}

/// MurmurHash3 x86_32 of `group:unit` with `seed`, as Unleash computes it.
pub fn unleash_hash(group: &str, unit: &str, seed: u32) -> u32 {
    let mut input = group.as_bytes().chain(&b":"[..]).chain(unit.as_bytes());
    // Reading from byte slices cannot fail.
    murmur3::murmur3_32(&mut input, seed).unwrap_or_default()
}

/// Unleash's normalized rollout value in `1..=100`.
pub fn unleash_percentage(group: &str, unit: &str) -> u32 {
    unleash_hash(group, unit, 0) % 100 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sextant_points_are_sticky_and_in_range() {
        for unit in ["a", "b", "user-123", ""] {
            let p = sextant_point("flag", unit, 100_000);
            assert!(p < 100_000);
            assert_eq!(p, sextant_point("flag", unit, 100_000));
        }
        assert_ne!(
            sextant_point("flag-a", "user-1", u32::MAX),
            sextant_point("flag-b", "user-1", u32::MAX)
        );
    }
}
