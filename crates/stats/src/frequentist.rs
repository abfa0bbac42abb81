//! Fixed-horizon frequentist tests: read these once, at the planned sample
//! size. For looks at any time use [`crate::sequential`].
//!
//! Every difference is treatment − control.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError, open_unit};
use crate::special::{normal_sf, normal_upper_quantile, t_two_sided, t_upper_quantile};
use crate::summary::{CupedStats, ProportionStats, RatioCupedStats, RatioStats, SufficientStats};

/// A closed interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

impl Interval {
    /// `center ± half_width`.
    pub fn around(center: f64, half_width: f64) -> Self {
        Self {
            lower: center - half_width,
            upper: center + half_width,
        }
    }

    /// Whether `x` lies in the interval (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// A normal-theory comparison: estimate, standard error, z, two-sided p
/// and a (1 − α) confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZTest {
    /// The estimate (a difference or a relative lift).
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// estimate / std_error.
    pub z: f64,
    /// Two-sided p-value against 0.
    pub p_value: f64,
    /// (1 − α) confidence interval, estimate ± z_{1−α/2}·std_error.
    pub ci: Interval,
}

/// Builds a [`ZTest`] from an estimate and its standard error.
pub fn z_test(estimate: f64, std_error: f64, alpha: f64) -> Result<ZTest> {
    open_unit("alpha", alpha)?;
    crate::error::finite("estimate", estimate)?;
    if !(std_error > 0.0 && std_error.is_finite()) {
        return Err(StatsError::ZeroVariance { what: "the estimate" });
    }
    let z = estimate / std_error;
    Ok(ZTest {
        estimate,
        std_error,
        z,
        p_value: 2.0 * normal_sf(z.abs()),
        ci: Interval::around(estimate, normal_upper_quantile(alpha / 2.0) * std_error),
    })
}

/// Welch's unequal-variance t-test for a difference of means (Welch 1947).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchTest {
    /// Control mean.
    pub control_mean: f64,
    /// Treatment mean.
    pub treatment_mean: f64,
    /// treatment_mean − control_mean.
    pub difference: f64,
    /// √(s²_c/n_c + s²_t/n_t).
    pub std_error: f64,
    /// difference / std_error.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// (1 − α) confidence interval for the difference, from the t quantile.
    pub ci: Interval,
}

/// Welch's t-test of treatment − control with a (1 − α) interval.
pub fn welch_t_test(control: &SufficientStats, treatment: &SufficientStats, alpha: f64) -> Result<WelchTest> {
    open_unit("alpha", alpha)?;
    let vc = control.variance_of_mean()?;
    let vt = treatment.variance_of_mean()?;
    let var = vc + vt;
    if var <= 0.0 {
        return Err(StatsError::ZeroVariance {
            what: "the difference of means",
        });
    }
    let std_error = var.sqrt();
    let difference = treatment.mean() - control.mean();
    let t = difference / std_error;
    let df = var * var / (vc * vc / (control.n as f64 - 1.0) + vt * vt / (treatment.n as f64 - 1.0));
    let (p_value, _) = t_two_sided(t, df)?;
    let q = t_upper_quantile(alpha / 2.0, df)?;
    Ok(WelchTest {
        control_mean: control.mean(),
        treatment_mean: treatment.mean(),
        difference,
        std_error,
        t,
        df,
        p_value,
        ci: Interval::around(difference, q * std_error),
    })
}

/// Two-proportion z-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProportionTest {
    /// Control conversion rate.
    pub control_rate: f64,
    /// Treatment conversion rate.
    pub treatment_rate: f64,
    /// treatment_rate − control_rate.
    pub difference: f64,
    /// z with the pooled standard error (the null says both rates are equal).
    pub z: f64,
    /// Two-sided p-value of that z.
    pub p_value: f64,
    /// Unpooled standard error, used for the interval.
    pub std_error: f64,
    /// (1 − α) Wald interval for the difference (unpooled).
    pub ci: Interval,
}

/// Two-proportion z-test of treatment − control: pooled z for the test,
/// unpooled Wald interval (the interval should not assume the null).
pub fn two_proportion_z_test(
    control: &ProportionStats,
    treatment: &ProportionStats,
    alpha: f64,
) -> Result<ProportionTest> {
    open_unit("alpha", alpha)?;
    control.validate()?;
    treatment.validate()?;
    let (nc, nt) = (control.n as f64, treatment.n as f64);
    let pooled = (control.conversions + treatment.conversions) as f64 / (nc + nt);
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    if pooled_se <= 0.0 {
        return Err(StatsError::ZeroVariance {
            what: "the pooled proportion (all or no units converted)",
        });
    }
    let difference = treatment.rate() - control.rate();
    let z = difference / pooled_se;
    let std_error = (control.variance_of_rate() + treatment.variance_of_rate()).sqrt();
    Ok(ProportionTest {
        control_rate: control.rate(),
        treatment_rate: treatment.rate(),
        difference,
        z,
        p_value: 2.0 * normal_sf(z.abs()),
        std_error,
        ci: Interval::around(difference, normal_upper_quantile(alpha / 2.0) * std_error),
    })
}

/// Relative lift (treatment / control − 1) of two independent estimates
/// with the delta-method variance
/// `v_t/m_c² + m_t²·v_c/m_c⁴`, returned as a z-test against 0 (no lift).
pub fn relative_lift(
    control_mean: f64,
    control_variance_of_mean: f64,
    treatment_mean: f64,
    treatment_variance_of_mean: f64,
    alpha: f64,
) -> Result<ZTest> {
    crate::error::finite("control mean", control_mean)?;
    crate::error::finite("treatment mean", treatment_mean)?;
    for (what, v) in [
        ("control variance of mean", control_variance_of_mean),
        ("treatment variance of mean", treatment_variance_of_mean),
    ] {
        crate::error::finite(what, v)?;
        if v < 0.0 {
            return Err(StatsError::NegativeVariance { what, value: v });
        }
    }
    if control_mean == 0.0 {
        return Err(StatsError::ZeroBaseline {
            what: "the control mean",
        });
    }
    let ratio = treatment_mean / control_mean;
    let mc2 = control_mean * control_mean;
    let var = treatment_variance_of_mean / mc2 + ratio * ratio * control_variance_of_mean / mc2;
    z_test(ratio - 1.0, var.sqrt(), alpha)
}

/// Relative lift of means, delta method.
pub fn relative_lift_means(control: &SufficientStats, treatment: &SufficientStats, alpha: f64) -> Result<ZTest> {
    relative_lift(
        control.mean(),
        control.variance_of_mean()?,
        treatment.mean(),
        treatment.variance_of_mean()?,
        alpha,
    )
}

/// Relative lift of conversion rates, delta method.
pub fn relative_lift_proportions(control: &ProportionStats, treatment: &ProportionStats, alpha: f64) -> Result<ZTest> {
    control.validate()?;
    treatment.validate()?;
    relative_lift(
        control.rate(),
        control.variance_of_rate(),
        treatment.rate(),
        treatment.variance_of_rate(),
        alpha,
    )
}

/// Comparison of a ratio metric (Σnum/Σden per arm) with the delta method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioTest {
    /// Control ratio.
    pub control_ratio: f64,
    /// Treatment ratio.
    pub treatment_ratio: f64,
    /// Delta-method variance of the control ratio.
    pub control_variance: f64,
    /// Delta-method variance of the treatment ratio.
    pub treatment_variance: f64,
    /// Absolute difference, treatment − control.
    pub difference: ZTest,
    /// Relative lift, treatment / control − 1.
    pub relative: ZTest,
}

/// Delta-method test of a ratio metric. Units (not events) are the
/// independent draws, which is why the ratio needs its own variance.
pub fn ratio_test(control: &RatioStats, treatment: &RatioStats, alpha: f64) -> Result<RatioTest> {
    let vc = control.variance_of_ratio()?;
    let vt = treatment.variance_of_ratio()?;
    let (rc, rt) = (control.ratio(), treatment.ratio());
    Ok(RatioTest {
        control_ratio: rc,
        treatment_ratio: rt,
        control_variance: vc,
        treatment_variance: vt,
        difference: z_test(rt - rc, (vc + vt).sqrt(), alpha)?,
        relative: relative_lift(rc, vc, rt, vt, alpha)?,
    })
}

/// CUPED: the difference of means (or of ratios) adjusted by a pre-period
/// covariate (Deng, Xu, Kohavi & Walker 2013).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CupedTest {
    /// θ = pooled within-arm cov(x, y) / var(x).
    pub theta: f64,
    /// Control mean (ratio, for [`cuped_ratio`]) adjusted to the pooled
    /// covariate mean.
    pub control_adjusted_mean: f64,
    /// Treatment mean (ratio) adjusted to the pooled covariate mean.
    pub treatment_adjusted_mean: f64,
    /// Adjusted difference with its z-test (normal, large-sample).
    pub difference: ZTest,
    /// Standard error of the unadjusted difference, for comparison.
    pub unadjusted_std_error: f64,
    /// 1 − Var(adjusted difference)/Var(unadjusted difference): the share of
    /// variance the covariate removed (≈ ρ², can be slightly negative when
    /// the covariate is useless).
    pub variance_reduction: f64,
}

/// CUPED-adjusted comparison of treatment − control.
///
/// θ pools the within-arm centered sums, so a treatment effect on `y`
/// cannot leak into θ through the difference of arm means.
pub fn cuped(control: &CupedStats, treatment: &CupedStats, alpha: f64) -> Result<CupedTest> {
    open_unit("alpha", alpha)?;
    let (nc, nt) = (control.n as f64, treatment.n as f64);
    let arm = |s: &CupedStats, n: f64| -> Result<Arm> {
        Ok(Arm {
            n,
            y: s.sum_y / n,
            x: s.sum_x / n,
            centered: s.centered()?,
        })
    };
    let x_all = (control.sum_x + treatment.sum_x) / (nc + nt);
    adjust(
        &arm(control, nc)?,
        &arm(treatment, nt)?,
        x_all,
        "the CUPED metric",
        alpha,
    )
}

/// CUPED for a ratio metric, with the pre-period ratio as covariate
/// (Deng, Knoblich & Lu 2018, regression adjustment by the delta method).
///
/// Each unit's ratio contribution is linearised, `l_y = (num − R·den) /
/// mean(den)` and `l_x` likewise over the pre-period; θ pools the arms'
/// within-arm Σl_x·l_y / Σl_x² (for a denominator of 1 everywhere this is
/// exactly [`cuped`]), the estimate is `(R_t − R_c) − θ·(Rx_t − Rx_c)` and
/// its variance per arm is Var(l_y − θ·l_x) / n. The adjusted "means" are
/// each arm's ratio moved to the pooled pre-period ratio.
pub fn cuped_ratio(control: &RatioCupedStats, treatment: &RatioCupedStats, alpha: f64) -> Result<CupedTest> {
    open_unit("alpha", alpha)?;
    let arm = |s: &RatioCupedStats| -> Result<Arm> {
        Ok(Arm {
            n: s.metric.n as f64,
            y: s.metric.ratio(),
            x: s.covariate.ratio(),
            centered: s.centered()?,
        })
    };
    let x_all = (control.covariate.sum_num + treatment.covariate.sum_num)
        / (control.covariate.sum_den + treatment.covariate.sum_den);
    adjust(&arm(control)?, &arm(treatment)?, x_all, "the CUPED ratio metric", alpha)
}

/// One arm's CUPED inputs: units, metric and covariate estimates, and the
/// centered sums (Σ(y−ȳ)², Σ(x−x̄)², Σ(x−x̄)(y−ȳ)) of the per-unit values
/// (or, for a ratio, of their linearisations).
struct Arm {
    n: f64,
    y: f64,
    x: f64,
    centered: (f64, f64, f64),
}

fn adjust(control: &Arm, treatment: &Arm, x_all: f64, metric: &'static str, alpha: f64) -> Result<CupedTest> {
    let (syy_c, sxx_c, sxy_c) = control.centered;
    let (syy_t, sxx_t, sxy_t) = treatment.centered;
    let sxx = sxx_c + sxx_t;
    if sxx <= 0.0 {
        return Err(StatsError::ZeroVariance {
            what: "the CUPED covariate",
        });
    }
    let theta = (sxy_c + sxy_t) / sxx;
    let (nc, nt) = (control.n, treatment.n);
    let (yc, yt) = (control.y, treatment.y);
    let (xc, xt) = (control.x, treatment.x);
    // Variance of y − θx per arm, from the same centered sums.
    let adjusted_var =
        |syy: f64, sxx: f64, sxy: f64, n: f64| ((syy - 2.0 * theta * sxy + theta * theta * sxx) / (n - 1.0)).max(0.0);
    let var_adj = adjusted_var(syy_c, sxx_c, sxy_c, nc) / nc + adjusted_var(syy_t, sxx_t, sxy_t, nt) / nt;
    let var_raw = syy_c / (nc - 1.0) / nc + syy_t / (nt - 1.0) / nt;
    if var_raw <= 0.0 {
        return Err(StatsError::ZeroVariance { what: metric });
    }
    let estimate = (yt - yc) - theta * (xt - xc);
    Ok(CupedTest {
        theta,
        control_adjusted_mean: yc - theta * (xc - x_all),
        treatment_adjusted_mean: yt - theta * (xt - x_all),
        difference: z_test(estimate, var_adj.sqrt(), alpha)?,
        unadjusted_std_error: var_raw.sqrt(),
        variance_reduction: 1.0 - var_adj / var_raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One unit: (num, den, pre-period num, pre-period den).
    type Row = (f64, f64, f64, f64);

    /// Ratio CUPED sums from rows.
    fn ratio_cuped_sums(rows: &[Row]) -> RatioCupedStats {
        let sum = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>();
        let n = rows.len() as u64;
        RatioCupedStats::new(
            RatioStats::new(
                n,
                sum(&|r| r.0),
                sum(&|r| r.0 * r.0),
                sum(&|r| r.1),
                sum(&|r| r.1 * r.1),
                sum(&|r| r.0 * r.1),
            )
            .unwrap(),
            RatioStats::new(
                n,
                sum(&|r| r.2),
                sum(&|r| r.2 * r.2),
                sum(&|r| r.3),
                sum(&|r| r.3 * r.3),
                sum(&|r| r.2 * r.3),
            )
            .unwrap(),
            sum(&|r| r.0 * r.2),
            sum(&|r| r.0 * r.3),
            sum(&|r| r.1 * r.2),
            sum(&|r| r.1 * r.3),
        )
        .unwrap()
    }

    #[test]
    fn ratio_cuped_with_every_denominator_one_is_plain_cuped() {
        let control = [(3.0, 2.0), (5.0, 4.0), (4.0, 5.0), (9.0, 7.0), (1.0, 2.0)];
        let treatment = [(6.0, 3.0), (4.0, 2.0), (8.0, 6.0), (7.0, 5.0)];
        let plain = |rows: &[(f64, f64)]| {
            let s = |f: &dyn Fn(&(f64, f64)) -> f64| rows.iter().map(f).sum::<f64>();
            CupedStats::new(
                rows.len() as u64,
                s(&|r| r.0),
                s(&|r| r.0 * r.0),
                s(&|r| r.1),
                s(&|r| r.1 * r.1),
                s(&|r| r.0 * r.1),
            )
            .unwrap()
        };
        let ratio =
            |rows: &[(f64, f64)]| ratio_cuped_sums(&rows.iter().map(|&(y, x)| (y, 1.0, x, 1.0)).collect::<Vec<_>>());
        let a = cuped(&plain(&control), &plain(&treatment), 0.05).unwrap();
        let b = cuped_ratio(&ratio(&control), &ratio(&treatment), 0.05).unwrap();
        for (x, y) in [
            (a.theta, b.theta),
            (a.difference.estimate, b.difference.estimate),
            (a.difference.std_error, b.difference.std_error),
            (a.variance_reduction, b.variance_reduction),
            (a.control_adjusted_mean, b.control_adjusted_mean),
        ] {
            assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn ratio_cuped_without_any_pre_period_denominator_names_the_covariate() {
        let rows = [(3.0, 2.0, 0.0, 0.0), (5.0, 4.0, 0.0, 0.0), (4.0, 1.0, 0.0, 0.0)];
        let n = rows.len() as u64;
        let metric = RatioStats::new(n, 12.0, 50.0, 7.0, 21.0, 30.0).unwrap();
        let empty = RatioStats {
            n,
            sum_num: 0.0,
            sum_num_sq: 0.0,
            sum_den: 0.0,
            sum_den_sq: 0.0,
            sum_num_den: 0.0,
        };
        let err = RatioCupedStats::new(metric, empty, 0.0, 0.0, 0.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("CUPED covariate"), "{err}");
    }

    #[test]
    fn welch_rejects_alpha_outside_the_unit_interval() {
        let s = SufficientStats::new(10, 10.0, 20.0).unwrap();
        assert!(matches!(
            welch_t_test(&s, &s, 1.5),
            Err(StatsError::OutOfRange { what: "alpha", .. })
        ));
    }

    #[test]
    fn identical_arms_have_p_value_one() {
        let s = SufficientStats::new(10, 10.0, 20.0).unwrap();
        let w = welch_t_test(&s, &s, 0.05).unwrap();
        assert_eq!(w.difference, 0.0);
        assert_eq!(w.p_value, 1.0);
        assert!(w.ci.contains(0.0));
    }

    #[test]
    fn constant_arms_are_a_zero_variance_error() {
        let s = SufficientStats::new(10, 10.0, 10.0).unwrap();
        assert!(matches!(
            welch_t_test(&s, &s, 0.05),
            Err(StatsError::ZeroVariance { .. })
        ));
    }

    #[test]
    fn relative_lift_needs_a_nonzero_baseline() {
        assert!(matches!(
            relative_lift(0.0, 1.0, 1.0, 1.0, 0.05),
            Err(StatsError::ZeroBaseline { .. })
        ));
    }

    #[test]
    fn all_converted_is_a_zero_variance_error() {
        let a = ProportionStats::new(10, 10).unwrap();
        assert!(matches!(
            two_proportion_z_test(&a, &a, 0.05),
            Err(StatsError::ZeroVariance { .. })
        ));
    }
}
