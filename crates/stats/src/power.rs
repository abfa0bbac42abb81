//! Power and sample size for two-sided tests at level α, with the normal
//! approximation used by the tests themselves.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError, finite, open_unit, positive};
use crate::special::{normal_cdf, normal_sf, normal_upper_quantile};

/// The minimum detectable effect, absolute or relative to the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mde {
    /// In the metric's units (a rate difference of 0.01 is one point).
    Absolute(f64),
    /// A fraction of the baseline (0.05 is a 5% lift).
    Relative(f64),
}

impl Mde {
    fn absolute(self, baseline: f64) -> Result<f64> {
        let delta = match self {
            Mde::Absolute(d) => finite("MDE", d)?,
            Mde::Relative(r) => finite("MDE", r)? * finite("baseline", baseline)?,
        };
        if delta == 0.0 {
            return Err(StatsError::OutOfRange {
                what: "MDE",
                range: "non-zero (and a relative MDE needs a non-zero baseline)",
                value: delta,
            });
        }
        Ok(delta)
    }
}

/// Units needed per arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleSize {
    /// Control units, rounded up.
    pub control: u64,
    /// Treatment units, rounded up.
    pub treatment: u64,
    /// control + treatment.
    pub total: u64,
    /// Unrounded control units.
    pub control_exact: f64,
    /// Unrounded treatment units.
    pub treatment_exact: f64,
}

fn z_sum(alpha: f64, power: f64) -> Result<(f64, f64)> {
    open_unit("alpha", alpha)?;
    open_unit("power", power)?;
    Ok((normal_upper_quantile(alpha / 2.0), normal_upper_quantile(1.0 - power)))
}

fn rounded(control_exact: f64, ratio: f64) -> Result<SampleSize> {
    let treatment_exact = control_exact * ratio;
    // Beyond 2⁵³ units the question is meaningless; report it, don't wrap.
    if !(treatment_exact < 9.0e15 && control_exact < 9.0e15) {
        return Err(StatsError::NoSolution {
            what: "the sample size exceeds 9e15 units",
        });
    }
    let control = control_exact.ceil() as u64;
    let treatment = treatment_exact.ceil() as u64;
    Ok(SampleSize {
        control,
        treatment,
        total: control + treatment,
        control_exact,
        treatment_exact,
    })
}

/// Units per arm to detect `mde` on a mean with per-unit `variance`, at
/// level α and the given power, with `treatment_ratio` = n_t / n_c
/// (1 for an even split): n_c = (z_{1−α/2} + z_{power})² σ² (1 + 1/k) / δ².
pub fn sample_size_means(
    baseline_mean: f64,
    variance: f64,
    mde: Mde,
    alpha: f64,
    power: f64,
    treatment_ratio: f64,
) -> Result<SampleSize> {
    let (za, zb) = z_sum(alpha, power)?;
    positive("variance", variance)?;
    positive("treatment ratio", treatment_ratio)?;
    let delta = mde.absolute(baseline_mean)?;
    let n = (za + zb).powi(2) * variance * (1.0 + 1.0 / treatment_ratio) / (delta * delta);
    rounded(n, treatment_ratio)
}

/// z_{1−α/2}·√(p̄q̄(1 + 1/k)) + z_{power}·√(p₁q₁ + p₂q₂/k): the pooled
/// variance under the null, unpooled under the alternative (Fleiss, no
/// continuity correction). Required control units are its square over δ².
fn proportions_root_n_delta(p1: f64, delta: f64, za: f64, zb: f64, k: f64) -> f64 {
    let p2 = p1 + delta;
    let pbar = (p1 + k * p2) / (1.0 + k);
    let null = za * (pbar * (1.0 - pbar) * (1.0 + 1.0 / k)).sqrt();
    let alt = zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2) / k).sqrt();
    null + alt
}

fn check_rate(what: &'static str, p: f64) -> Result<f64> {
    open_unit(what, p)
}

/// Units per arm to detect `mde` on a conversion rate `baseline_rate`.
pub fn sample_size_proportions(
    baseline_rate: f64,
    mde: Mde,
    alpha: f64,
    power: f64,
    treatment_ratio: f64,
) -> Result<SampleSize> {
    let (za, zb) = z_sum(alpha, power)?;
    check_rate("baseline rate", baseline_rate)?;
    positive("treatment ratio", treatment_ratio)?;
    let delta = mde.absolute(baseline_rate)?;
    check_rate("treatment rate (baseline + MDE)", baseline_rate + delta)?;
    let root = proportions_root_n_delta(baseline_rate, delta, za, zb, treatment_ratio);
    rounded(root * root / (delta * delta), treatment_ratio)
}

/// Smallest absolute effect on a mean detectable with the traffic at hand:
/// (z_{1−α/2} + z_{power}) · σ · √(1/n_c + 1/n_t).
pub fn mde_means(variance: f64, n_control: u64, n_treatment: u64, alpha: f64, power: f64) -> Result<f64> {
    let (za, zb) = z_sum(alpha, power)?;
    positive("variance", variance)?;
    let (nc, nt) = arm_sizes(n_control, n_treatment)?;
    Ok((za + zb) * (variance * (1.0 / nc + 1.0 / nt)).sqrt())
}

fn arm_sizes(n_control: u64, n_treatment: u64) -> Result<(f64, f64)> {
    for (what, n) in [("control", n_control), ("treatment", n_treatment)] {
        if n == 0 {
            return Err(StatsError::TooFewUnits { what, min: 1, got: n });
        }
    }
    Ok((n_control as f64, n_treatment as f64))
}

/// Smallest absolute increase of a conversion rate detectable with the
/// traffic at hand (the inverse of [`sample_size_proportions`], solved by
/// bisection to full precision).
pub fn mde_proportions(baseline_rate: f64, n_control: u64, n_treatment: u64, alpha: f64, power: f64) -> Result<f64> {
    let (za, zb) = z_sum(alpha, power)?;
    check_rate("baseline rate", baseline_rate)?;
    let (nc, nt) = arm_sizes(n_control, n_treatment)?;
    let k = nt / nc;
    // g(δ) < 0 while δ is too small to be detected with n_c units.
    let root_nc = nc.sqrt();
    let g = |d: f64| d * root_nc - proportions_root_n_delta(baseline_rate, d, za, zb, k);
    let mut lo = 0.0_f64;
    let mut hi = 1.0 - baseline_rate;
    if g(hi) < 0.0 {
        return Err(StatsError::NoSolution {
            what: "no rate increase is detectable with this traffic",
        });
    }
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if g(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}

/// Power of the two-sided test of means for an absolute `effect`:
/// Φ(δ/se − z_{1−α/2}) + Φ(−δ/se − z_{1−α/2}).
pub fn power_means(variance: f64, n_control: u64, n_treatment: u64, effect: f64, alpha: f64) -> Result<f64> {
    open_unit("alpha", alpha)?;
    positive("variance", variance)?;
    finite("effect", effect)?;
    let (nc, nt) = arm_sizes(n_control, n_treatment)?;
    let za = normal_upper_quantile(alpha / 2.0);
    let shift = effect / (variance * (1.0 / nc + 1.0 / nt)).sqrt();
    Ok(normal_sf(za - shift) + normal_cdf(-za - shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textbook_case_needs_about_sixteen_over_effect_squared() {
        // σ = 1, δ = 0.1, α = 0.05, power 0.8: 2·(1.96 + 0.8416)²/0.01 ≈ 1570.
        let s = sample_size_means(0.0, 1.0, Mde::Absolute(0.1), 0.05, 0.8, 1.0).unwrap();
        assert_eq!(s.control, 1570);
        assert_eq!(s.total, 3140);
    }

    #[test]
    fn mde_inverts_sample_size() {
        let s = sample_size_means(0.0, 4.0, Mde::Absolute(0.2), 0.05, 0.9, 1.0).unwrap();
        let m = mde_means(4.0, 1, 1, 0.05, 0.9).unwrap() / s.control_exact.sqrt();
        assert!((m - 0.2).abs() < 1e-12);
        let p = sample_size_proportions(0.1, Mde::Relative(0.05), 0.05, 0.8, 1.0).unwrap();
        let d = mde_proportions(0.1, p.control, p.treatment, 0.05, 0.8).unwrap();
        assert!(d <= 0.005 + 1e-12 && d > 0.0049);
    }

    #[test]
    fn a_zero_mde_is_rejected() {
        assert!(matches!(
            sample_size_means(1.0, 1.0, Mde::Relative(0.0), 0.05, 0.8, 1.0),
            Err(StatsError::OutOfRange { what: "MDE", .. })
        ));
        assert!(matches!(
            sample_size_proportions(0.9, Mde::Absolute(0.2), 0.05, 0.8, 1.0),
            Err(StatsError::OutOfRange { .. })
        ));
    }

    #[test]
    fn power_at_the_planned_size_is_the_planned_power() {
        let s = sample_size_means(0.0, 1.0, Mde::Absolute(0.1), 0.05, 0.8, 1.0).unwrap();
        let nc = s.control_exact;
        // Power at the unrounded size, ignoring the far tail, is 0.8.
        let shift = 0.1 / (2.0 / nc).sqrt();
        let za = normal_upper_quantile(0.025);
        assert!((normal_sf(za - shift) - 0.8).abs() < 1e-12);
        assert!(power_means(1.0, s.control, s.treatment, 0.1, 0.05).unwrap() >= 0.8);
    }
}
