//! Sufficient statistics: what the store computes in SQL per arm.
//!
//! No method in this crate sees raw rows. Each input type validates its
//! sums once (`new`), and the analysis functions take the checked types.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError, finite};

/// Relative tolerance under which a slightly negative variance from the
/// sums is treated as rounding (and clamped to zero) rather than an error.
const VARIANCE_ROUNDING: f64 = 1e-10;

/// Sample variance (n − 1 denominator) from n, Σx and Σx².
fn variance_from_sums(what: &'static str, n: u64, sum: f64, sum_sq: f64) -> Result<f64> {
    let nf = n as f64;
    let centered = sum_sq - sum * (sum / nf);
    if centered < 0.0 {
        if -centered <= VARIANCE_ROUNDING * sum_sq.abs() {
            return Ok(0.0);
        }
        return Err(StatsError::NegativeVariance {
            what,
            value: centered / (nf - 1.0),
        });
    }
    Ok(centered / (nf - 1.0))
}

/// Sample covariance (n − 1 denominator) from n, Σx, Σy and Σxy.
fn covariance_from_sums(n: u64, sum_x: f64, sum_y: f64, sum_xy: f64) -> f64 {
    let nf = n as f64;
    (sum_xy - sum_x * (sum_y / nf)) / (nf - 1.0)
}

fn check_units(what: &'static str, n: u64) -> Result<()> {
    if n < 2 {
        return Err(StatsError::TooFewUnits { what, min: 2, got: n });
    }
    Ok(())
}

/// Per-arm sufficient statistics of a per-unit metric: n, Σx, Σx².
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SufficientStats {
    /// Number of units (at least 2).
    pub n: u64,
    /// Σx over units.
    pub sum: f64,
    /// Σx² over units.
    pub sum_sq: f64,
}

impl SufficientStats {
    /// Checks the sums: n ≥ 2, finite sums, a non-negative variance.
    pub fn new(n: u64, sum: f64, sum_sq: f64) -> Result<Self> {
        let s = Self { n, sum, sum_sq };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        check_units("metric", self.n)?;
        finite("Σx", self.sum)?;
        finite("Σx²", self.sum_sq)?;
        variance_from_sums("metric", self.n, self.sum, self.sum_sq)?;
        Ok(())
    }

    /// Sample mean.
    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// Sample variance with the n − 1 denominator.
    pub fn variance(&self) -> Result<f64> {
        check_units("metric", self.n)?;
        variance_from_sums("metric", self.n, self.sum, self.sum_sq)
    }

    /// Variance of the mean, s²/n.
    pub fn variance_of_mean(&self) -> Result<f64> {
        Ok(self.variance()? / self.n as f64)
    }
}

/// Per-arm counts of a conversion metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProportionStats {
    /// Number of units (at least 1).
    pub n: u64,
    /// Units that converted (at most `n`).
    pub conversions: u64,
}

impl ProportionStats {
    /// Checks that 1 ≤ n and conversions ≤ n.
    pub fn new(n: u64, conversions: u64) -> Result<Self> {
        let s = Self { n, conversions };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        if self.n < 1 {
            return Err(StatsError::TooFewUnits {
                what: "proportion",
                min: 1,
                got: self.n,
            });
        }
        if self.conversions > self.n {
            return Err(StatsError::ConversionsExceedUnits {
                what: "proportion",
                conversions: self.conversions,
                n: self.n,
            });
        }
        Ok(())
    }

    /// Conversion rate p̂ = conversions / n.
    pub fn rate(&self) -> f64 {
        self.conversions as f64 / self.n as f64
    }

    /// Bernoulli variance of the rate's estimate, p̂(1 − p̂)/n.
    pub fn variance_of_rate(&self) -> f64 {
        let p = self.rate();
        p * (1.0 - p) / self.n as f64
    }
}

/// Per-arm sums of a ratio metric: per unit a numerator (e.g. revenue) and
/// a denominator (e.g. sessions). The metric is Σnum / Σden.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioStats {
    /// Number of units (at least 2).
    pub n: u64,
    /// Σ numerator.
    pub sum_num: f64,
    /// Σ numerator².
    pub sum_num_sq: f64,
    /// Σ denominator.
    pub sum_den: f64,
    /// Σ denominator².
    pub sum_den_sq: f64,
    /// Σ numerator · denominator.
    pub sum_num_den: f64,
}

impl RatioStats {
    /// Checks the sums; the denominator total must be non-zero.
    pub fn new(n: u64, sum_num: f64, sum_num_sq: f64, sum_den: f64, sum_den_sq: f64, sum_num_den: f64) -> Result<Self> {
        let s = Self {
            n,
            sum_num,
            sum_num_sq,
            sum_den,
            sum_den_sq,
            sum_num_den,
        };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        check_units("ratio metric", self.n)?;
        finite("Σnum", self.sum_num)?;
        finite("Σnum²", self.sum_num_sq)?;
        finite("Σden", self.sum_den)?;
        finite("Σden²", self.sum_den_sq)?;
        finite("Σnum·den", self.sum_num_den)?;
        variance_from_sums("ratio numerator", self.n, self.sum_num, self.sum_num_sq)?;
        variance_from_sums("ratio denominator", self.n, self.sum_den, self.sum_den_sq)?;
        if self.sum_den == 0.0 {
            return Err(StatsError::ZeroBaseline {
                what: "ratio denominator total",
            });
        }
        Ok(())
    }

    /// The ratio Σnum / Σden.
    pub fn ratio(&self) -> f64 {
        self.sum_num / self.sum_den
    }

    /// Delta-method variance of the ratio estimate:
    /// (s²_num − 2R·s_num,den + R²·s²_den) / (n · mean_den²).
    pub fn variance_of_ratio(&self) -> Result<f64> {
        self.validate()?;
        let nf = self.n as f64;
        let r = self.ratio();
        let var_num = variance_from_sums("ratio numerator", self.n, self.sum_num, self.sum_num_sq)?;
        let var_den = variance_from_sums("ratio denominator", self.n, self.sum_den, self.sum_den_sq)?;
        let cov = covariance_from_sums(self.n, self.sum_num, self.sum_den, self.sum_num_den);
        let mean_den = self.sum_den / nf;
        let v = (var_num - 2.0 * r * cov + r * r * var_den) / (nf * mean_den * mean_den);
        // A numerator proportional to the denominator gives zero up to rounding.
        Ok(v.max(0.0))
    }
}

/// Per-arm sums for CUPED: per unit the metric `y` in the experiment and a
/// covariate `x` from before it started (usually the same metric).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CupedStats {
    /// Number of units (at least 2).
    pub n: u64,
    /// Σy (metric).
    pub sum_y: f64,
    /// Σy².
    pub sum_y_sq: f64,
    /// Σx (pre-period covariate).
    pub sum_x: f64,
    /// Σx².
    pub sum_x_sq: f64,
    /// Σxy.
    pub sum_xy: f64,
}

impl CupedStats {
    /// Checks the sums.
    pub fn new(n: u64, sum_y: f64, sum_y_sq: f64, sum_x: f64, sum_x_sq: f64, sum_xy: f64) -> Result<Self> {
        let s = Self {
            n,
            sum_y,
            sum_y_sq,
            sum_x,
            sum_x_sq,
            sum_xy,
        };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        check_units("CUPED metric", self.n)?;
        finite("Σy", self.sum_y)?;
        finite("Σy²", self.sum_y_sq)?;
        finite("Σx", self.sum_x)?;
        finite("Σx²", self.sum_x_sq)?;
        finite("Σxy", self.sum_xy)?;
        variance_from_sums("CUPED metric", self.n, self.sum_y, self.sum_y_sq)?;
        variance_from_sums("CUPED covariate", self.n, self.sum_x, self.sum_x_sq)?;
        Ok(())
    }

    /// The metric alone, without the covariate.
    pub fn metric(&self) -> SufficientStats {
        SufficientStats {
            n: self.n,
            sum: self.sum_y,
            sum_sq: self.sum_y_sq,
        }
    }

    /// Centered sums (Σ(y−ȳ)², Σ(x−x̄)², Σ(x−x̄)(y−ȳ)).
    pub(crate) fn centered(&self) -> Result<(f64, f64, f64)> {
        self.validate()?;
        let df = self.n as f64 - 1.0;
        let syy = variance_from_sums("CUPED metric", self.n, self.sum_y, self.sum_y_sq)? * df;
        let sxx = variance_from_sums("CUPED covariate", self.n, self.sum_x, self.sum_x_sq)? * df;
        let sxy = covariance_from_sums(self.n, self.sum_x, self.sum_y, self.sum_xy) * df;
        Ok((syy, sxx, sxy))
    }
}

/// Per-arm sums for CUPED on a ratio metric (Deng, Knoblich & Lu 2018,
/// "Applying the delta method in metric analytics"): per unit the metric's
/// numerator and denominator in the experiment, the same two over the
/// pre-period (the covariate is the pre-period ratio), and the four cross
/// products between them that the delta method needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioCupedStats {
    /// The ratio in the experiment: n, Σnum, Σnum², Σden, Σden², Σnum·den.
    pub metric: RatioStats,
    /// The same ratio over the pre-period, over the same units (many may
    /// have zeros there; only its denominator total must be non-zero).
    pub covariate: RatioStats,
    /// Σ num · pre-period num.
    pub sum_num_pre_num: f64,
    /// Σ num · pre-period den.
    pub sum_num_pre_den: f64,
    /// Σ den · pre-period num.
    pub sum_den_pre_num: f64,
    /// Σ den · pre-period den.
    pub sum_den_pre_den: f64,
}

impl RatioCupedStats {
    /// Checks the sums: both ratios valid over the same units, finite
    /// cross products.
    pub fn new(
        metric: RatioStats,
        covariate: RatioStats,
        sum_num_pre_num: f64,
        sum_num_pre_den: f64,
        sum_den_pre_num: f64,
        sum_den_pre_den: f64,
    ) -> Result<Self> {
        let s = Self {
            metric,
            covariate,
            sum_num_pre_num,
            sum_num_pre_den,
            sum_den_pre_num,
            sum_den_pre_den,
        };
        s.validate()?;
        Ok(s)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        self.metric.validate()?;
        let pre = &self.covariate;
        check_units("CUPED covariate (pre-period ratio)", pre.n)?;
        if pre.n != self.metric.n {
            return Err(StatsError::OutOfRange {
                what: "pre-period units",
                range: "equal to the metric's units",
                value: pre.n as f64,
            });
        }
        finite("pre-period Σnum", pre.sum_num)?;
        finite("pre-period Σnum²", pre.sum_num_sq)?;
        finite("pre-period Σden", pre.sum_den)?;
        finite("pre-period Σden²", pre.sum_den_sq)?;
        finite("pre-period Σnum·den", pre.sum_num_den)?;
        finite("Σnum·pre-period num", self.sum_num_pre_num)?;
        finite("Σnum·pre-period den", self.sum_num_pre_den)?;
        finite("Σden·pre-period num", self.sum_den_pre_num)?;
        finite("Σden·pre-period den", self.sum_den_pre_den)?;
        variance_from_sums("pre-period ratio numerator", pre.n, pre.sum_num, pre.sum_num_sq)?;
        variance_from_sums("pre-period ratio denominator", pre.n, pre.sum_den, pre.sum_den_sq)?;
        if pre.sum_den == 0.0 {
            return Err(StatsError::ZeroVariance {
                what: "the CUPED covariate (no pre-period denominator at all)",
            });
        }
        Ok(())
    }

    /// Per-unit delta-method linearisations of the two ratios,
    /// `l_y = (num − R·den) / mean(den)` and `l_x` likewise for the
    /// pre-period: their centered sums (Σl_y², Σl_x², Σl_x·l_y), which are
    /// what [`CupedStats::centered`] is for a per-unit metric. Each ratio's
    /// delta-method variance is Σl²/((n − 1)·n).
    pub(crate) fn centered(&self) -> Result<(f64, f64, f64)> {
        self.validate()?;
        let (m, p) = (&self.metric, &self.covariate);
        let df = m.n as f64 - 1.0;
        let nf = m.n as f64;
        let (r, rx) = (m.ratio(), p.ratio());
        let (mean_den, mean_pre_den) = (m.sum_den / nf, p.sum_den / nf);
        let cov = |sum_a: f64, sum_b: f64, sum_ab: f64| covariance_from_sums(m.n, sum_a, sum_b, sum_ab);
        let var_num = variance_from_sums("ratio numerator", m.n, m.sum_num, m.sum_num_sq)?;
        let var_den = variance_from_sums("ratio denominator", m.n, m.sum_den, m.sum_den_sq)?;
        let var_pre_num = variance_from_sums("pre-period ratio numerator", p.n, p.sum_num, p.sum_num_sq)?;
        let var_pre_den = variance_from_sums("pre-period ratio denominator", p.n, p.sum_den, p.sum_den_sq)?;
        let syy =
            (var_num - 2.0 * r * cov(m.sum_num, m.sum_den, m.sum_num_den) + r * r * var_den) / (mean_den * mean_den);
        let sxx = (var_pre_num - 2.0 * rx * cov(p.sum_num, p.sum_den, p.sum_num_den) + rx * rx * var_pre_den)
            / (mean_pre_den * mean_pre_den);
        let sxy = (cov(m.sum_num, p.sum_num, self.sum_num_pre_num)
            - rx * cov(m.sum_num, p.sum_den, self.sum_num_pre_den)
            - r * cov(m.sum_den, p.sum_num, self.sum_den_pre_num)
            + r * rx * cov(m.sum_den, p.sum_den, self.sum_den_pre_den))
            / (mean_den * mean_pre_den);
        // A numerator proportional to its denominator gives zero up to rounding.
        Ok((syy.max(0.0) * df, sxx.max(0.0) * df, sxy * df))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_variance_follow_from_sums() {
        // Data 1, 2, 3, 4.
        let s = SufficientStats::new(4, 10.0, 30.0).unwrap();
        assert_eq!(s.mean(), 2.5);
        assert!((s.variance().unwrap() - 5.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn a_single_unit_is_rejected_with_its_count() {
        assert_eq!(
            SufficientStats::new(1, 1.0, 1.0),
            Err(StatsError::TooFewUnits {
                what: "metric",
                min: 2,
                got: 1
            })
        );
    }

    #[test]
    fn impossible_sums_are_a_negative_variance_error() {
        let err = SufficientStats::new(10, 100.0, 10.0).unwrap_err();
        assert!(matches!(err, StatsError::NegativeVariance { .. }), "{err}");
    }

    #[test]
    fn nan_sums_are_rejected() {
        let err = SufficientStats::new(10, f64::NAN, 10.0).unwrap_err();
        assert!(matches!(err, StatsError::NotFinite { what: "Σx", .. }));
    }

    #[test]
    fn more_conversions_than_units_is_an_error() {
        assert!(matches!(
            ProportionStats::new(10, 11),
            Err(StatsError::ConversionsExceedUnits { .. })
        ));
    }

    #[test]
    fn constant_data_has_zero_variance_not_an_error() {
        let s = SufficientStats::new(3, 0.3, 0.03).unwrap();
        assert!(s.variance().unwrap().abs() < 1e-15);
    }
}
