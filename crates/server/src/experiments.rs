//! Experiment analysis: per arm and metric, from the SQL sufficient
//! statistics of `Store::metric_breakdown`, through `sextant-stats`.
//!
//! Membership is decided by exposures: a unit belongs to the arm of its
//! first exposure to the flag, and only its events from that hour on count
//! (see `metric_breakdown`). Every comparison is treatment − control, the
//! control being the first arm. For each treatment arm and metric:
//!
//! - the difference and the relative lift with (1 − α) intervals and a
//!   p-value: fixed horizon uses Welch's t-test (count, sum, mean), the
//!   two-proportion z-test (conversion) or the delta method (ratio), with
//!   the relative lift by the delta method; sequential uses the asymptotic
//!   confidence sequence on both, whose p-value is always valid;
//! - the chance to win: the posterior probability that treatment is better
//!   in the metric's good direction (normal posterior with a flat prior
//!   for means and ratios, Beta(1, 1) posteriors for conversions);
//! - `significant`: p < α — for a fixed horizon only once the planned
//!   sample size is reached, since earlier looks would inflate errors.
//!
//! The sample ratio mismatch check compares the units per arm with the
//! configured weights (chi-square, flagged at p < 0.001).
//!
//! CUPED (variance reduction with a pre-period covariate): when the
//! experiment has `pre_period_days`, the store pairs each unit's value of
//! every metric (primary and guardrails) after its first exposure with the
//! same metric over the pre-period before it (`Store::metric_breakdown_cuped`:
//! per arm Σy, Σy², Σx, Σx², Σxy, and for a ratio metric both periods'
//! numerator and denominator with their cross products).
//! `sextant_stats::frequentist::cuped` adjusts a per-unit metric's
//! difference, `cuped_ratio` a ratio's, with the pre-period ratio as
//! covariate by the delta method. Each metric reports its adjusted
//! comparisons with θ and the variance removed beside the unadjusted ones;
//! the primary metric's adjusted comparison decides significance (same α,
//! smaller variance; sequential looks use the same confidence sequence).

use serde::Serialize;
use sextant_stats::bayes::{BetaPrior, bayes_means, bayes_proportions};
use sextant_stats::frequentist::{
    CupedTest, cuped, cuped_ratio, ratio_test, relative_lift, two_proportion_z_test, welch_t_test, z_test,
};
use sextant_stats::sequential::{SequentialConfig, confidence_sequence};
use sextant_stats::srm::sample_ratio_mismatch;
use sextant_stats::{CupedStats, Interval, ProportionStats, RatioCupedStats, RatioStats, StatsError, SufficientStats};
use sextant_store::{Aggregation, AnalysisMethod, CupedSums, Direction, ExperimentDef, UnitSums};

/// One metric's observations: its definition's parts and sums per variation.
#[derive(Debug, Clone)]
pub struct MetricInput {
    /// Metric key.
    pub metric: String,
    /// How units' events become a value.
    pub aggregation: Aggregation,
    /// Which way is good.
    pub good_direction: Direction,
    /// Sums per variation (variations without exposures may be missing).
    pub sums: Vec<(String, UnitSums)>,
    /// CUPED sums per variation, or why there are none.
    pub cuped: CupedInput,
}

/// The full analysis of an experiment at one look.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// `fixed_horizon` or `sequential`.
    pub method: AnalysisMethod,
    /// Significance level.
    pub alpha: f64,
    /// Exposed units over all arms.
    pub units: u64,
    /// The planned sample size.
    pub planned_sample_size: u64,
    /// Whether the planned sample size is reached.
    pub horizon_reached: bool,
    /// Sample ratio mismatch against the configured weights.
    pub srm: Srm,
    /// The primary metric.
    pub primary: MetricResult,
    /// Guardrail metrics, in definition order.
    pub guardrails: Vec<MetricResult>,
    /// The primary metric's CUPED (the same as `primary.cuped`; each
    /// guardrail carries its own).
    pub cuped: Cuped,
}

/// CUPED status of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Cuped {
    /// Whether variance reduction was applied.
    pub applied: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Pre-period length in days.
    pub pre_period_days: u32,
    /// The metric's CUPED-adjusted comparisons, one per treatment arm.
    pub comparisons: Vec<CupedComparison>,
}

/// A treatment arm against control on one metric, CUPED-adjusted.
#[derive(Debug, Clone, Serialize)]
pub struct CupedComparison {
    /// The treatment variation.
    pub variation: String,
    /// Adjusted treatment − control (`None`: see `error`).
    pub difference: Option<f64>,
    /// Its interval (always-valid when sequential).
    pub difference_ci: Option<Interval>,
    /// Fixed-horizon p-value, or always-valid p-value when sequential.
    pub p_value: Option<f64>,
    /// θ, the pooled within-arm regression of the metric on the covariate
    /// (for a ratio, of the delta-method linearisations of the two ratios).
    pub theta: Option<f64>,
    /// Standard error of the adjusted difference.
    pub std_error: Option<f64>,
    /// Standard error of the unadjusted difference (normal, same sums).
    pub unadjusted_std_error: Option<f64>,
    /// Share of the difference's variance the covariate removed.
    pub variance_reduction: Option<f64>,
    /// p < α (and, for a fixed horizon, the planned size reached).
    pub significant: bool,
    /// Why the adjustment could not be computed.
    pub error: Option<String>,
}

/// Sample ratio mismatch result.
#[derive(Debug, Clone, Serialize)]
pub struct Srm {
    /// Units per arm, in arm order.
    pub observed: Vec<u64>,
    /// Expected units per arm from the configured weights.
    pub expected: Vec<f64>,
    /// Chi-square p-value (`None` when not computable, see `error`).
    pub p_value: Option<f64>,
    /// Whether p < 0.001: assignment or logging is broken; do not trust the results.
    pub mismatch: bool,
    /// Why the check could not run.
    pub error: Option<String>,
}

/// One metric's results.
#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    /// Metric key.
    pub metric: String,
    /// Its aggregation.
    pub aggregation: Aggregation,
    /// Which way is good.
    pub good_direction: Direction,
    /// Each arm's units and value (per-unit mean, rate or ratio).
    pub arms: Vec<ArmValue>,
    /// Each treatment arm against control.
    pub comparisons: Vec<Comparison>,
    /// The comparisons adjusted by the pre-period (CUPED), or why not.
    pub cuped: Cuped,
}

/// One arm's value of a metric.
#[derive(Debug, Clone, Serialize)]
pub struct ArmValue {
    /// Variation key.
    pub variation: String,
    /// Exposed units.
    pub units: u64,
    /// Per-unit mean (count, sum, mean), rate (conversion) or Σnum/Σden (ratio).
    pub value: f64,
}

/// A treatment arm against control on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The treatment variation.
    pub variation: String,
    /// Treatment − control, with its interval (`None`: see `error`).
    pub difference: Option<f64>,
    /// Interval of the difference.
    pub difference_ci: Option<Interval>,
    /// Treatment / control − 1.
    pub lift: Option<f64>,
    /// Interval of the lift.
    pub lift_ci: Option<Interval>,
    /// Fixed-horizon p-value, or always-valid p-value when sequential.
    pub p_value: Option<f64>,
    /// Posterior probability that treatment is better in the good direction.
    pub chance_to_win: Option<f64>,
    /// p < α (and, for a fixed horizon, the planned size reached).
    pub significant: bool,
    /// Why the statistics could not be computed (too few units, no variance…).
    pub error: Option<String>,
}

/// Per-arm statistics of a metric in a comparable form.
enum ArmStats {
    Means(SufficientStats),
    Rates(ProportionStats),
    Ratios(RatioStats),
}

impl ArmStats {
    fn new(aggregation: Aggregation, s: &UnitSums) -> Result<Self, StatsError> {
        Ok(match aggregation {
            Aggregation::Conversion => ArmStats::Rates(ProportionStats::new(s.n, s.sum.round().max(0.0) as u64)?),
            Aggregation::Ratio => ArmStats::Ratios(RatioStats::new(
                s.n,
                s.sum,
                s.sum_sq,
                s.sum_den,
                s.sum_den_sq,
                s.sum_cross,
            )?),
            Aggregation::Count | Aggregation::Sum | Aggregation::Mean => {
                ArmStats::Means(SufficientStats::new(s.n, s.sum, s.sum_sq)?)
            }
        })
    }

    /// Value and variance of the value.
    fn value(&self) -> Result<(f64, f64), StatsError> {
        Ok(match self {
            ArmStats::Means(s) => (s.mean(), s.variance_of_mean()?),
            ArmStats::Rates(s) => (s.rate(), s.variance_of_rate()),
            ArmStats::Ratios(s) => (s.ratio(), s.variance_of_ratio()?),
        })
    }
}

fn value_of(aggregation: Aggregation, s: &UnitSums) -> f64 {
    let n = s.n as f64;
    match aggregation {
        Aggregation::Ratio if s.sum_den != 0.0 => s.sum / s.sum_den,
        Aggregation::Ratio => f64::NAN,
        _ if s.n == 0 => 0.0,
        _ => s.sum / n,
    }
}

/// P(Z < z) from a two-sided z-test p-value.
fn normal_cdf(estimate: f64, se: f64, alpha: f64) -> Result<f64, StatsError> {
    let p = z_test(estimate, se, alpha)?.p_value;
    Ok(if estimate >= 0.0 { 1.0 - p / 2.0 } else { p / 2.0 })
}

/// A metric's CUPED input: per variation, its sums after exposure with
/// those of its pre-period (see `metric_breakdown_cuped`), or why there is
/// none.
pub type CupedInput = Result<Vec<(String, CupedSums)>, String>;

/// Analyses `def` on `primary` and `guardrails` (same order as the
/// definition), each with CUPED from its own `cuped` input.
pub fn analyze(def: &ExperimentDef, primary: &MetricInput, guardrails: &[MetricInput]) -> Analysis {
    let sums = |m: &MetricInput, v: &str| m.sums.iter().find(|(k, _)| k == v).map(|(_, s)| *s).unwrap_or_default();
    let observed: Vec<u64> = def.arms.iter().map(|a| sums(primary, &a.variation).n).collect();
    let units: u64 = observed.iter().sum();
    let horizon_reached = units >= def.planned_sample_size;
    let weights: Vec<f64> = def.arms.iter().map(|a| a.weight).collect();
    let srm = match sample_ratio_mismatch(&observed, &weights) {
        Ok(r) => Srm {
            observed: observed.clone(),
            expected: r.expected,
            p_value: Some(r.p_value),
            mismatch: r.mismatch,
            error: None,
        },
        Err(e) => Srm {
            observed: observed.clone(),
            expected: Vec::new(),
            p_value: None,
            mismatch: false,
            error: Some(e.to_string()),
        },
    };
    let metric = |m: &MetricInput| metric_result(def, m, horizon_reached, &sums);
    let primary = metric(primary);
    Analysis {
        method: def.analysis,
        alpha: def.alpha,
        units,
        planned_sample_size: def.planned_sample_size,
        horizon_reached,
        srm,
        cuped: primary.cuped.clone(),
        primary,
        guardrails: guardrails.iter().map(metric).collect(),
    }
}

fn cuped_result(def: &ExperimentDef, m: &MetricInput, horizon_reached: bool) -> Cuped {
    let sums = match &m.cuped {
        Ok(sums) => sums,
        Err(reason) => {
            return Cuped {
                applied: false,
                reason: Some(reason.clone()),
                pre_period_days: def.pre_period_days,
                comparisons: Vec::new(),
            };
        }
    };
    let arm = |v: &str| sums.iter().find(|(k, _)| k == v).map(|(_, s)| *s).unwrap_or_default();
    let control = arm(&def.arms[0].variation);
    let comparisons: Vec<CupedComparison> = def.arms[1..]
        .iter()
        .map(|a| {
            let treatment = arm(&a.variation);
            let compared = cuped_compare(def, m.aggregation, &control, &treatment, horizon_reached);
            let mut c = compared.unwrap_or_else(|e| CupedComparison {
                variation: String::new(),
                difference: None,
                difference_ci: None,
                p_value: None,
                theta: None,
                std_error: None,
                unadjusted_std_error: None,
                variance_reduction: None,
                significant: false,
                error: Some(e.to_string()),
            });
            c.variation.clone_from(&a.variation);
            c
        })
        .collect();
    let applied = comparisons.iter().any(|c| c.error.is_none());
    let first_error = comparisons
        .iter()
        .find_map(|c| c.error.as_deref())
        .unwrap_or("no treatment arm");
    Cuped {
        applied,
        reason: (!applied).then(|| format!("no treatment arm could be adjusted: {first_error}")),
        pre_period_days: def.pre_period_days,
        comparisons,
    }
}

/// CUPED test of one treatment arm: `cuped` on per-unit values, or
/// `cuped_ratio` with the pre-period ratio as covariate.
fn cuped_test(
    aggregation: Aggregation,
    control: &CupedSums,
    treatment: &CupedSums,
    alpha: f64,
) -> Result<CupedTest, StatsError> {
    if aggregation == Aggregation::Ratio {
        let ratio = |u: &UnitSums| RatioStats::new(u.n, u.sum, u.sum_sq, u.sum_den, u.sum_den_sq, u.sum_cross);
        let stats = |s: &CupedSums| -> Result<RatioCupedStats, StatsError> {
            RatioCupedStats::new(
                ratio(&s.post)?,
                RatioStats {
                    n: s.pre.n,
                    sum_num: s.pre.sum,
                    sum_num_sq: s.pre.sum_sq,
                    sum_den: s.pre.sum_den,
                    sum_den_sq: s.pre.sum_den_sq,
                    sum_num_den: s.pre.sum_cross,
                },
                s.sum_num_pre_num,
                s.sum_num_pre_den,
                s.sum_den_pre_num,
                s.sum_den_pre_den,
            )
        };
        cuped_ratio(&stats(control)?, &stats(treatment)?, alpha)
    } else {
        let stats = |s: &CupedSums| {
            CupedStats::new(
                s.post.n,
                s.post.sum,
                s.post.sum_sq,
                s.pre.sum,
                s.pre.sum_sq,
                s.sum_num_pre_num,
            )
        };
        cuped(&stats(control)?, &stats(treatment)?, alpha)
    }
}

fn cuped_compare(
    def: &ExperimentDef,
    aggregation: Aggregation,
    control: &CupedSums,
    treatment: &CupedSums,
    horizon_reached: bool,
) -> Result<CupedComparison, StatsError> {
    let r = cuped_test(aggregation, control, treatment, def.alpha)?;
    let (ci, p_value, significant) = match def.analysis {
        AnalysisMethod::FixedHorizon => (
            r.difference.ci,
            r.difference.p_value,
            horizon_reached && r.difference.p_value < def.alpha,
        ),
        AnalysisMethod::Sequential => {
            let config = SequentialConfig::new(def.alpha, def.planned_sample_size.max(2) as f64)?;
            let n = (control.post.n + treatment.post.n) as f64;
            let d = confidence_sequence(r.difference.estimate, r.difference.std_error, n, &config)?;
            (d.ci, d.p_value, d.p_value < def.alpha)
        }
    };
    Ok(CupedComparison {
        variation: String::new(),
        difference: Some(r.difference.estimate),
        difference_ci: Some(ci),
        p_value: Some(p_value),
        theta: Some(r.theta),
        std_error: Some(r.difference.std_error),
        unadjusted_std_error: Some(r.unadjusted_std_error),
        variance_reduction: Some(r.variance_reduction),
        significant,
        error: None,
    })
}

fn metric_result(
    def: &ExperimentDef,
    m: &MetricInput,
    horizon_reached: bool,
    sums: &dyn Fn(&MetricInput, &str) -> UnitSums,
) -> MetricResult {
    let arms = def
        .arms
        .iter()
        .map(|a| {
            let s = sums(m, &a.variation);
            ArmValue {
                variation: a.variation.clone(),
                units: s.n,
                value: value_of(m.aggregation, &s),
            }
        })
        .collect();
    let control = sums(m, &def.arms[0].variation);
    let comparisons = def.arms[1..]
        .iter()
        .map(|a| {
            let treatment = sums(m, &a.variation);
            compare(def, m, &control, &treatment, horizon_reached)
                .unwrap_or_else(|e| Comparison {
                    variation: String::new(),
                    difference: None,
                    difference_ci: None,
                    lift: None,
                    lift_ci: None,
                    p_value: None,
                    chance_to_win: None,
                    significant: false,
                    error: Some(e.to_string()),
                })
                .with_variation(&a.variation)
        })
        .collect();
    MetricResult {
        metric: m.metric.clone(),
        aggregation: m.aggregation,
        good_direction: m.good_direction,
        arms,
        comparisons,
        cuped: cuped_result(def, m, horizon_reached),
    }
}

impl Comparison {
    fn with_variation(mut self, v: &str) -> Self {
        v.clone_into(&mut self.variation);
        self
    }
}

fn compare(
    def: &ExperimentDef,
    m: &MetricInput,
    control: &UnitSums,
    treatment: &UnitSums,
    horizon_reached: bool,
) -> Result<Comparison, StatsError> {
    let alpha = def.alpha;
    let c = ArmStats::new(m.aggregation, control)?;
    let t = ArmStats::new(m.aggregation, treatment)?;
    let ((vc, varc), (vt, vart)) = (c.value()?, t.value()?);
    let n = (control.n + treatment.n) as f64;
    // Fixed-horizon tests, each the standard one for its kind of metric.
    let (difference, fixed_ci, fixed_p) = match (&c, &t) {
        (ArmStats::Means(c), ArmStats::Means(t)) => {
            let w = welch_t_test(c, t, alpha)?;
            (w.difference, w.ci, w.p_value)
        }
        (ArmStats::Rates(c), ArmStats::Rates(t)) => {
            let z = two_proportion_z_test(c, t, alpha)?;
            (z.difference, z.ci, z.p_value)
        }
        (ArmStats::Ratios(c), ArmStats::Ratios(t)) => {
            let r = ratio_test(c, t, alpha)?;
            (r.difference.estimate, r.difference.ci, r.difference.p_value)
        }
        _ => unreachable!("both arms come from one aggregation"),
    };
    let lift = relative_lift(vc, varc, vt, vart, alpha)?;
    let se = (varc + vart).sqrt();
    let (difference_ci, lift_ci, p_value, significant) = match def.analysis {
        AnalysisMethod::FixedHorizon => (fixed_ci, lift.ci, fixed_p, horizon_reached && fixed_p < alpha),
        AnalysisMethod::Sequential => {
            // Tuned to be tightest at the planned size.
            let config = SequentialConfig::new(alpha, def.planned_sample_size.max(2) as f64)?;
            let d = confidence_sequence(difference, se, n, &config)?;
            let l = confidence_sequence(lift.estimate, lift.std_error, n, &config)?;
            (d.ci, l.ci, d.p_value, d.p_value < alpha)
        }
    };
    let beats = match (&c, &t) {
        (ArmStats::Means(c), ArmStats::Means(t)) => bayes_means(c, t, None, alpha)?.chance_to_beat,
        (ArmStats::Rates(c), ArmStats::Rates(t)) => {
            bayes_proportions(c, t, &BetaPrior::default(), alpha)?.chance_to_beat
        }
        _ => normal_cdf(difference, se, alpha)?,
    };
    let chance_to_win = match m.good_direction {
        Direction::Increase => beats,
        Direction::Decrease => 1.0 - beats,
    };
    Ok(Comparison {
        variation: String::new(),
        difference: Some(difference),
        difference_ci: Some(difference_ci),
        lift: Some(lift.estimate),
        lift_ci: Some(lift_ci),
        p_value: Some(p_value),
        chance_to_win: Some(chance_to_win),
        significant,
        error: None,
    })
}

impl Analysis {
    /// Whether some treatment arm is significant on the primary metric
    /// (CUPED-adjusted when CUPED applied).
    pub fn primary_significant(&self) -> bool {
        if self.cuped.applied {
            self.cuped.comparisons.iter().any(|c| c.significant)
        } else {
            self.primary.comparisons.iter().any(|c| c.significant)
        }
    }
}
