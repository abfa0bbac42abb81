//! Bayesian summaries: posterior of the effect, chance to beat control and
//! expected loss.
//!
//! Means use a normal approximation (the posterior of the difference is
//! normal for large samples, optionally shrunk by a normal prior).
//! Proportions use the exact Beta–Binomial posterior; the chance to beat
//! and the expected loss are one-dimensional integrals computed by
//! adaptive Gauss–Kronrod quadrature to about 1e-13 relative.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError, finite, open_unit, positive};
use crate::frequentist::{Interval, ZTest, relative_lift};
use crate::special::{beta_pdf, beta_quantile, ibeta, normal_cdf, normal_pdf, normal_upper_quantile};
use crate::summary::{ProportionStats, SufficientStats};

/// A normal prior on the absolute difference treatment − control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalPrior {
    /// Prior mean of the difference (usually 0).
    pub mean: f64,
    /// Prior variance of the difference (> 0).
    pub variance: f64,
}

/// Posterior summary for a difference of means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesMeans {
    /// Posterior mean of treatment − control.
    pub posterior_mean: f64,
    /// Posterior standard deviation of the difference.
    pub posterior_sd: f64,
    /// Central (1 − α) credible interval of the difference.
    pub credible_interval: Interval,
    /// Relative lift, normal approximation by the delta method (flat prior).
    pub relative_lift: ZTest,
    /// P(treatment > control).
    pub chance_to_beat: f64,
    /// E[max(control − treatment, 0)]: what shipping treatment costs if wrong.
    pub expected_loss_treatment: f64,
    /// E[max(treatment − control, 0)]: what keeping control costs if wrong.
    pub expected_loss_control: f64,
}

/// E[max(−D, 0)] for D ~ N(m, s²).
fn normal_expected_shortfall(m: f64, s: f64) -> f64 {
    s * normal_pdf(m / s) - m * normal_cdf(-m / s)
}

/// Normal-approximation posterior of treatment − control for means.
/// With `prior = None` the prior is flat and the posterior is N(d, se²).
pub fn bayes_means(
    control: &SufficientStats,
    treatment: &SufficientStats,
    prior: Option<NormalPrior>,
    alpha: f64,
) -> Result<BayesMeans> {
    open_unit("alpha", alpha)?;
    let vc = control.variance_of_mean()?;
    let vt = treatment.variance_of_mean()?;
    let v = vc + vt;
    if v <= 0.0 {
        return Err(StatsError::ZeroVariance {
            what: "the difference of means",
        });
    }
    let d = treatment.mean() - control.mean();
    let (mean, var) = match prior {
        None => (d, v),
        Some(p) => {
            finite("prior mean", p.mean)?;
            positive("prior variance", p.variance)?;
            let post_var = 1.0 / (1.0 / p.variance + 1.0 / v);
            (post_var * (p.mean / p.variance + d / v), post_var)
        }
    };
    let sd = var.sqrt();
    Ok(BayesMeans {
        posterior_mean: mean,
        posterior_sd: sd,
        credible_interval: Interval::around(mean, normal_upper_quantile(alpha / 2.0) * sd),
        relative_lift: relative_lift(control.mean(), vc, treatment.mean(), vt, alpha)?,
        chance_to_beat: normal_cdf(mean / sd),
        expected_loss_treatment: normal_expected_shortfall(mean, sd),
        expected_loss_control: normal_expected_shortfall(-mean, sd),
    })
}

/// A Beta(α, β) prior on a conversion rate; Beta(1, 1) is uniform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaPrior {
    /// Prior successes + … (> 0).
    pub alpha: f64,
    /// Prior failures + … (> 0).
    pub beta: f64,
}

impl Default for BetaPrior {
    fn default() -> Self {
        Self { alpha: 1.0, beta: 1.0 }
    }
}

/// A Beta posterior of one arm's rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaPosterior {
    /// Posterior α = prior α + conversions.
    pub alpha: f64,
    /// Posterior β = prior β + non-conversions.
    pub beta: f64,
    /// Posterior mean α/(α+β).
    pub mean: f64,
    /// Central (1 − level) credible interval.
    pub credible_interval: Interval,
}

/// Posterior summary for two conversion rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesProportions {
    /// Control posterior.
    pub control: BetaPosterior,
    /// Treatment posterior.
    pub treatment: BetaPosterior,
    /// P(p_treatment > p_control).
    pub chance_to_beat: f64,
    /// E[max(p_c − p_t, 0)]: cost of shipping treatment if it is worse.
    pub expected_loss_treatment: f64,
    /// E[max(p_t − p_c, 0)]: cost of keeping control if treatment is better.
    pub expected_loss_control: f64,
    /// Posterior mean of the relative lift E[p_t/p_c] − 1 (exact; needs
    /// control α > 1, else `None`).
    pub expected_relative_lift: Option<f64>,
}

/// P(X > Y) for independent X ~ Beta(ax, bx), Y ~ Beta(ay, by):
/// ∫ f_Y(y)·P(X > y) dy over the region holding Y's mass.
pub fn beta_chance_to_beat(ax: f64, bx: f64, ay: f64, by: f64) -> Result<f64> {
    for (what, v) in [("α of X", ax), ("β of X", bx), ("α of Y", ay), ("β of Y", by)] {
        positive(what, v)?;
    }
    let moments = |a: f64, b: f64| {
        let m = a / (a + b);
        (m, (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt())
    };
    let (my, sy) = moments(ay, by);
    let (mx, sx) = moments(ax, bx);
    // Outside 40 sd the mass of Y is below 1e-20 even for skewed Betas.
    let lo = (my - 40.0 * sy).max(0.0);
    let hi = (my + 40.0 * sy).min(1.0);
    // Break points where the integrand has structure: Y's bulk and X's step.
    let mut breaks = vec![lo, hi];
    for k in [-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0] {
        breaks.push(my + k * sy);
        breaks.push(mx + k * sx);
    }
    breaks.retain(|b| *b >= lo && *b <= hi);
    breaks.sort_by(f64::total_cmp);
    breaks.dedup();
    crate::special::integrate(
        |y| {
            let (_, above) = ibeta(ax, bx, y, 1.0 - y)?;
            Ok(beta_pdf(ay, by, y) * above)
        },
        &breaks,
        1e-300,
        1e-14,
    )
}

fn posterior(stats: &ProportionStats, prior: &BetaPrior, level_alpha: f64) -> Result<BetaPosterior> {
    let a = prior.alpha + stats.conversions as f64;
    let b = prior.beta + (stats.n - stats.conversions) as f64;
    Ok(BetaPosterior {
        alpha: a,
        beta: b,
        mean: a / (a + b),
        credible_interval: Interval {
            lower: beta_quantile(a, b, level_alpha / 2.0, false)?,
            upper: beta_quantile(a, b, level_alpha / 2.0, true)?,
        },
    })
}

/// Beta–Binomial posterior comparison of two conversion rates with a
/// shared prior; `alpha` sets the (1 − α) credible intervals.
pub fn bayes_proportions(
    control: &ProportionStats,
    treatment: &ProportionStats,
    prior: &BetaPrior,
    alpha: f64,
) -> Result<BayesProportions> {
    open_unit("alpha", alpha)?;
    control.validate()?;
    treatment.validate()?;
    positive("prior α", prior.alpha)?;
    positive("prior β", prior.beta)?;
    let c = posterior(control, prior, alpha)?;
    let t = posterior(treatment, prior, alpha)?;
    let chance_to_beat = beta_chance_to_beat(t.alpha, t.beta, c.alpha, c.beta)?;
    // E[X·1{X>Y}] = E[X]·P(X⁺ > Y) with X⁺ ~ Beta(a+1, b): size-biasing a
    // Beta shifts α by one. So each loss is a difference of two chances.
    let loss = |x: &BetaPosterior, y: &BetaPosterior| -> Result<f64> {
        let x_part = x.mean * beta_chance_to_beat(x.alpha + 1.0, x.beta, y.alpha, y.beta)?;
        let y_part = y.mean * beta_chance_to_beat(x.alpha, x.beta, y.alpha + 1.0, y.beta)?;
        Ok((x_part - y_part).max(0.0))
    };
    let expected_relative_lift = if c.alpha > 1.0 {
        // E[1/p_c] = (α+β−1)/(α−1) for Beta(α, β).
        Some(t.mean * (c.alpha + c.beta - 1.0) / (c.alpha - 1.0) - 1.0)
    } else {
        None
    };
    Ok(BayesProportions {
        chance_to_beat,
        expected_loss_treatment: loss(&c, &t)?,
        expected_loss_control: loss(&t, &c)?,
        expected_relative_lift,
        control: c,
        treatment: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_beta_posteriors_are_a_coin_flip() {
        let p = beta_chance_to_beat(120.0, 880.0, 120.0, 880.0).unwrap();
        assert!((p - 0.5).abs() < 1e-12, "{p}");
    }

    #[test]
    fn chance_to_beat_with_uniform_against_point_mass_like_beta() {
        // X ~ U(0,1), Y ~ Beta(1,1): P(X > Y) = ½; X ~ Beta(2,1) (density 2x): P = 2/3.
        let p = beta_chance_to_beat(2.0, 1.0, 1.0, 1.0).unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-13, "{p}");
    }

    #[test]
    fn flat_prior_posterior_is_the_estimate() {
        let c = SufficientStats::new(100, 100.0, 300.0).unwrap();
        let t = SufficientStats::new(100, 120.0, 350.0).unwrap();
        let b = bayes_means(&c, &t, None, 0.05).unwrap();
        assert!((b.posterior_mean - 0.2).abs() < 1e-15);
        assert!(b.chance_to_beat > 0.5);
        assert!(b.expected_loss_control > b.expected_loss_treatment);
    }

    #[test]
    fn zero_prior_variance_is_rejected() {
        let c = SufficientStats::new(100, 100.0, 300.0).unwrap();
        let prior = NormalPrior {
            mean: 0.0,
            variance: 0.0,
        };
        assert!(matches!(
            bayes_means(&c, &c, Some(prior), 0.05),
            Err(StatsError::OutOfRange { .. })
        ));
    }
}
