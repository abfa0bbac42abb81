//! Sextant's statistics engine: pure, IO-free, no clock, no randomness.
//!
//! Decisions in Sextant are only as good as this crate, so every statistic
//! is checked against reference values from SciPy and statsmodels
//! (`scripts/stats/generate_reference.py` → `tests/reference.json`, 1e-9
//! relative) and by seeded simulations (`tests/simulation.rs`).
//!
//! # Inputs
//!
//! Sufficient statistics per arm, never raw rows ([`summary`]): n, Σx, Σx²
//! for means; n and conversions for rates; Σnum, Σden, their squares and
//! Σnum·den for ratio metrics; Σy, Σx, Σxy with squares for CUPED; for
//! CUPED on a ratio, both ratios' sums and the four cross products of
//! numerator and denominator with the pre-period's.
//! Every difference is **treatment − control**.
//!
//! # Methods
//!
//! - [`frequentist`]: Welch's t-test and interval (Welch 1947); the
//!   two-proportion z-test; relative lift with a delta-method interval;
//!   ratio metrics with the delta method (Deng, Knoblich & Lu 2018);
//!   CUPED with its variance reduction (Deng, Xu, Kohavi & Walker 2013,
//!   "Improving the sensitivity of online controlled experiments by
//!   utilizing pre-experiment data"), for ratio metrics too, with the
//!   pre-period ratio as covariate through the delta method (Deng,
//!   Knoblich & Lu 2018).
//! - [`sequential`]: always-valid inference for looks at any time — the
//!   Gaussian-mixture asymptotic confidence sequence (Waudby-Smith et al.
//!   2021, "Time-uniform central limit theory and asymptotic confidence
//!   sequences"), on the boundary of Howard, Ramdas, McAuliffe & Sekhon
//!   (2021, "Time-uniform, nonparametric, nonasymptotic confidence
//!   sequences"); its p-value is the normal-mixture SPRT of Johari,
//!   Pekelis & Walsh (2017, "Always valid inference"). Guardrails of
//!   rollouts use [`sequential::SequentialMonitor`].
//! - [`bayes`]: posterior of the difference and lift, chance to beat
//!   control and expected loss — normal approximation for means, exact
//!   Beta posteriors (numerical integration) for rates.
//! - [`correction`]: Holm (1979) and Benjamini–Hochberg (1995) adjusted
//!   p-values for several arms or metrics.
//! - [`srm`]: sample ratio mismatch, chi-square goodness of fit against the
//!   configured weights, flagged at p < 0.001.
//! - [`power`]: units needed for a given MDE, and the MDE reachable with
//!   given traffic.
//!
//! # Errors
//!
//! Invalid input (n < 2, negative variances, α outside (0, 1), mismatched
//! lengths…) returns a [`StatsError`] naming the problem; nothing panics on
//! input.

pub mod bayes;
pub mod correction;
mod error;
pub mod frequentist;
pub mod power;
pub mod sequential;
mod special;
pub mod srm;
pub mod summary;

pub use error::{Result, StatsError};
pub use frequentist::Interval;
pub use summary::{CupedStats, ProportionStats, RatioCupedStats, RatioStats, SufficientStats};
