//! Sample ratio mismatch: did the arms receive the traffic the split
//! promised? A mismatch means assignment or logging is broken and the
//! experiment's results cannot be trusted, whatever they say.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};
use crate::special::chi2_sf;

/// p-value under which a split is flagged as mismatched. Deliberately
/// strict: the check runs on every look of every experiment.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Result of the chi-square goodness-of-fit test of arm counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmResult {
    /// Pearson's χ² statistic.
    pub chi_square: f64,
    /// Degrees of freedom (arms − 1).
    pub df: u64,
    /// P(χ²_df ≥ chi_square).
    pub p_value: f64,
    /// Expected count of each arm under the configured weights.
    pub expected: Vec<f64>,
    /// Whether `p_value < SRM_THRESHOLD`.
    pub mismatch: bool,
}

/// Chi-square goodness of fit of observed `counts` against the configured
/// `weights` (any positive scale: fractions, percentages, parts per 100 000;
/// they are normalised).
pub fn sample_ratio_mismatch(counts: &[u64], weights: &[f64]) -> Result<SrmResult> {
    if counts.len() != weights.len() {
        return Err(StatsError::LengthMismatch {
            what: "counts and weights",
            left: counts.len(),
            right: weights.len(),
        });
    }
    if counts.len() < 2 {
        return Err(StatsError::TooFewEntries {
            what: "arms",
            min: 2,
            got: counts.len(),
        });
    }
    for &w in weights {
        crate::error::positive("weight", w)?;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Err(StatsError::TooFewUnits {
            what: "sample ratio check",
            min: 1,
            got: 0,
        });
    }
    let weight_sum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| total as f64 * (w / weight_sum)).collect();
    let chi_square: f64 = counts
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| {
            let d = o as f64 - e;
            d * d / e
        })
        .sum();
    let df = counts.len() as u64 - 1;
    let p_value = chi2_sf(chi_square, df as f64)?;
    Ok(SrmResult {
        chi_square,
        df,
        p_value,
        expected,
        mismatch: p_value < SRM_THRESHOLD,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_split_has_p_value_one() {
        let r = sample_ratio_mismatch(&[500, 500], &[1.0, 1.0]).unwrap();
        assert_eq!(r.chi_square, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert!(!r.mismatch);
    }

    #[test]
    fn weights_in_any_scale_agree() {
        let a = sample_ratio_mismatch(&[480, 520], &[0.5, 0.5]).unwrap();
        let b = sample_ratio_mismatch(&[480, 520], &[50_000.0, 50_000.0]).unwrap();
        assert_eq!(a.p_value, b.p_value);
    }

    #[test]
    fn mismatched_lengths_and_zero_weights_are_errors() {
        assert!(matches!(
            sample_ratio_mismatch(&[1, 2], &[1.0]),
            Err(StatsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            sample_ratio_mismatch(&[1, 2], &[1.0, 0.0]),
            Err(StatsError::OutOfRange { what: "weight", .. })
        ));
    }
}
