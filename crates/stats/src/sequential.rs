//! Always-valid inference: results that may be read at any time, as often
//! as wanted, without inflating the false-positive rate.
//!
//! The boundary is the Gaussian-mixture asymptotic confidence sequence of
//! Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2021), built on the
//! normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021).
//! At `n` units in total, with estimate `d` and standard error `se`,
//!
//! ```text
//! d ± se · √( 2 (nρ² + 1) / (nρ²) · ln( √(nρ² + 1) / α ) )
//! ```
//!
//! covers the true difference at every `n` simultaneously with probability
//! at least 1 − α (asymptotically). The always-valid p-value is the mixture
//! likelihood ratio's reciprocal — the mixture SPRT of Johari, Pekelis &
//! Walsh (2017) with mixing variance τ² = nρ²·se² — so `p ≤ α` exactly when
//! 0 leaves the sequence. ρ is tuned so the boundary is tightest at a
//! planned sample size.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError, open_unit, positive};
use crate::frequentist::Interval;
use crate::summary::{ProportionStats, RatioStats, SufficientStats};

/// Settings of a confidence sequence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
    /// Error rate over the whole, open-ended monitoring period.
    pub alpha: f64,
    /// Total units (both arms) at which the boundary should be tightest;
    /// usually the planned sample size. Any positive value keeps validity.
    pub tuning_n: f64,
}

impl SequentialConfig {
    /// Checks 0 < α < 1 and tuning_n > 0.
    pub fn new(alpha: f64, tuning_n: f64) -> Result<Self> {
        let c = Self { alpha, tuning_n };
        c.validate()?;
        Ok(c)
    }

    /// Re-checks a value built directly (e.g. deserialized).
    pub fn validate(&self) -> Result<()> {
        open_unit("alpha", self.alpha)?;
        positive("tuning_n", self.tuning_n)?;
        Ok(())
    }

    /// The mixing parameter ρ² that minimises the boundary width at
    /// `tuning_n` (Waudby-Smith et al. 2021, eq. for the Gaussian mixture):
    /// ρ² = (−2 ln α + ln(−2 ln α + 1)) / tuning_n.
    pub fn rho_squared(&self) -> f64 {
        let l = -2.0 * self.alpha.ln();
        (l + (l + 1.0).ln()) / self.tuning_n
    }
}

/// One look at a confidence sequence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialResult {
    /// The estimate (e.g. treatment − control).
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// Units so far (both arms).
    pub n: f64,
    /// Half-width of the sequence at this look.
    pub half_width: f64,
    /// The (1 − α) confidence sequence at this look.
    pub ci: Interval,
    /// Always-valid p-value at this look (against an estimate of 0).
    pub p_value: f64,
}

/// The confidence sequence at one look, given an estimate, its standard
/// error and the number of units behind it.
pub fn confidence_sequence(
    estimate: f64,
    std_error: f64,
    n: f64,
    config: &SequentialConfig,
) -> Result<SequentialResult> {
    config.validate()?;
    crate::error::finite("estimate", estimate)?;
    positive("n", n)?;
    if !(std_error > 0.0 && std_error.is_finite()) {
        return Err(StatsError::ZeroVariance {
            what: "the sequential estimate",
        });
    }
    let v = n * config.rho_squared();
    let half_width = std_error * (2.0 * (v + 1.0) / v * ((v + 1.0).sqrt() / config.alpha).ln()).sqrt();
    let z = estimate / std_error;
    // 1 / (mixture likelihood ratio), capped at 1.
    let ln_p = 0.5 * (v + 1.0).ln() - 0.5 * z * z * v / (v + 1.0);
    Ok(SequentialResult {
        estimate,
        std_error,
        n,
        half_width,
        ci: Interval::around(estimate, half_width),
        p_value: ln_p.exp().min(1.0),
    })
}

/// Confidence sequence for the difference of means, treatment − control.
pub fn confidence_sequence_means(
    control: &SufficientStats,
    treatment: &SufficientStats,
    config: &SequentialConfig,
) -> Result<SequentialResult> {
    let se = (control.variance_of_mean()? + treatment.variance_of_mean()?).sqrt();
    confidence_sequence(
        treatment.mean() - control.mean(),
        se,
        (control.n + treatment.n) as f64,
        config,
    )
}

/// Confidence sequence for the difference of conversion rates.
pub fn confidence_sequence_proportions(
    control: &ProportionStats,
    treatment: &ProportionStats,
    config: &SequentialConfig,
) -> Result<SequentialResult> {
    control.validate()?;
    treatment.validate()?;
    let se = (control.variance_of_rate() + treatment.variance_of_rate()).sqrt();
    confidence_sequence(
        treatment.rate() - control.rate(),
        se,
        (control.n + treatment.n) as f64,
        config,
    )
}

/// Confidence sequence for the difference of ratio metrics (Σnum / Σden
/// per arm), with delta-method standard errors.
pub fn confidence_sequence_ratios(
    control: &RatioStats,
    treatment: &RatioStats,
    config: &SequentialConfig,
) -> Result<SequentialResult> {
    let se = (control.variance_of_ratio()? + treatment.variance_of_ratio()?).sqrt();
    confidence_sequence(
        treatment.ratio() - control.ratio(),
        se,
        (control.n + treatment.n) as f64,
        config,
    )
}

/// Which way a metric should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger is better (conversion, revenue).
    HigherIsBetter,
    /// Smaller is better (latency, errors).
    LowerIsBetter,
}

/// What a guardrail concludes at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailStatus {
    /// The whole sequence is worse than the tolerance: pause or roll back.
    Breached,
    /// The whole sequence is better than the tolerance: harm beyond it is ruled out.
    Clear,
    /// Neither yet.
    Inconclusive,
}

/// Running state of a monitored comparison: the intersection of all
/// sequences seen and the running minimum p-value (both stay valid, and
/// only ever tighten).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialMonitor {
    /// Looks taken.
    pub looks: u64,
    /// Intersection of the sequences so far (may be empty if the model is
    /// badly wrong: then `lower > upper`).
    pub ci: Interval,
    /// Smallest always-valid p-value so far.
    pub p_value: f64,
}

impl Default for SequentialMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl SequentialMonitor {
    /// A monitor before its first look.
    pub fn new() -> Self {
        Self {
            looks: 0,
            ci: Interval {
                lower: f64::NEG_INFINITY,
                upper: f64::INFINITY,
            },
            p_value: 1.0,
        }
    }

    /// Folds in one look.
    pub fn observe(&mut self, look: &SequentialResult) {
        self.looks += 1;
        self.ci.lower = self.ci.lower.max(look.ci.lower);
        self.ci.upper = self.ci.upper.min(look.ci.upper);
        self.p_value = self.p_value.min(look.p_value);
    }

    /// Guardrail verdict: the metric's difference must not be worse than
    /// `tolerance` (≥ 0, in the metric's units) in the bad direction.
    pub fn guardrail(&self, direction: Direction, tolerance: f64) -> Result<GuardrailStatus> {
        guardrail_status(&self.ci, direction, tolerance)
    }
}

/// Guardrail verdict for a confidence sequence on treatment − control.
pub fn guardrail_status(ci: &Interval, direction: Direction, tolerance: f64) -> Result<GuardrailStatus> {
    crate::error::finite("tolerance", tolerance)?;
    if tolerance < 0.0 {
        return Err(StatsError::OutOfRange {
            what: "tolerance",
            range: "at least 0",
            value: tolerance,
        });
    }
    // Map to "higher is better": harm is a difference below −tolerance.
    let (lower, upper) = match direction {
        Direction::HigherIsBetter => (ci.lower, ci.upper),
        Direction::LowerIsBetter => (-ci.upper, -ci.lower),
    };
    Ok(if upper < -tolerance {
        GuardrailStatus::Breached
    } else if lower > -tolerance {
        GuardrailStatus::Clear
    } else {
        GuardrailStatus::Inconclusive
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_equals_alpha_on_the_boundary() {
        let c = SequentialConfig::new(0.05, 10_000.0).unwrap();
        let r = confidence_sequence(1.0, 0.1, 5_000.0, &c).unwrap();
        let on_edge = confidence_sequence(r.half_width, 0.1, 5_000.0, &c).unwrap();
        assert!((on_edge.p_value - 0.05).abs() < 1e-12);
    }

    #[test]
    fn ratio_sequences_center_on_the_difference_of_ratios_with_delta_method_errors() {
        let c = SequentialConfig::new(0.05, 10_000.0).unwrap();
        // Control: 2 per session; treatment: 2.5 per session.
        let control = RatioStats::new(100, 420.0, 2_000.0, 210.0, 500.0, 1_000.0).unwrap();
        let treatment = RatioStats::new(100, 525.0, 3_100.0, 210.0, 500.0, 1_240.0).unwrap();
        let r = confidence_sequence_ratios(&control, &treatment, &c).unwrap();
        assert!((r.estimate - 0.5).abs() < 1e-12);
        let se = (control.variance_of_ratio().unwrap() + treatment.variance_of_ratio().unwrap()).sqrt();
        assert!((r.std_error - se).abs() < 1e-15);
        assert_eq!(r.n, 200.0);
    }

    #[test]
    fn sequence_is_wider_than_the_fixed_horizon_interval() {
        let c = SequentialConfig::new(0.05, 10_000.0).unwrap();
        let r = confidence_sequence(0.0, 1.0, 10_000.0, &c).unwrap();
        assert!(r.half_width > 1.96);
    }

    #[test]
    fn guardrail_breaches_only_when_the_whole_sequence_is_harmful() {
        let ci = Interval {
            lower: -3.0,
            upper: -2.0,
        };
        assert_eq!(
            guardrail_status(&ci, Direction::HigherIsBetter, 1.0),
            Ok(GuardrailStatus::Breached)
        );
        assert_eq!(
            guardrail_status(&ci, Direction::LowerIsBetter, 1.0),
            Ok(GuardrailStatus::Clear)
        );
        assert_eq!(
            guardrail_status(&ci, Direction::HigherIsBetter, 2.5),
            Ok(GuardrailStatus::Inconclusive)
        );
    }

    #[test]
    fn monitor_keeps_the_tightest_interval_and_smallest_p() {
        let c = SequentialConfig::new(0.05, 1_000.0).unwrap();
        let mut m = SequentialMonitor::new();
        m.observe(&confidence_sequence(0.5, 0.2, 500.0, &c).unwrap());
        m.observe(&confidence_sequence(0.1, 0.1, 1000.0, &c).unwrap());
        assert_eq!(m.looks, 2);
        assert!(m.ci.upper < 0.5 + 1.0 && m.ci.lower > -1.0);
        assert!(m.p_value <= 1.0);
    }
}
