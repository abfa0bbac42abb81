//! Seeded simulations, sized to run in about a second on two cores in a
//! debug build. Each prints its measured rate (`--nocapture` shows it).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Bernoulli, Binomial, Distribution, Normal};
use sextant_stats::frequentist::{self, z_test};
use sextant_stats::sequential::{self, SequentialConfig, SequentialMonitor};
use sextant_stats::srm::sample_ratio_mismatch;
use sextant_stats::{CupedStats, ProportionStats, RatioCupedStats, RatioStats, SufficientStats};

/// Running sums of one arm.
#[derive(Default, Clone, Copy)]
struct Arm {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl Arm {
    fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    fn stats(&self) -> SufficientStats {
        SufficientStats::new(self.n, self.sum, self.sum_sq).expect("valid running sums")
    }
}

/// Three binomial standard errors: the slack for a rate estimated from
/// `trials` runs whose true value is `p`.
fn three_se(p: f64, trials: usize) -> f64 {
    3.0 * (p * (1.0 - p) / trials as f64).sqrt()
}

const ALPHA: f64 = 0.05;

#[test]
fn sequential_a_a_with_continuous_peeking_keeps_false_positives_below_alpha() {
    // 1000 A/A experiments of 2000 units per arm, looked at every 20 units
    // per arm (100 looks). Fixed-horizon tests peeked at this often reject
    // far more than α — shown below, so this test could see a violation —
    // while the confidence sequence must stay at or below α.
    let experiments = 1000;
    let per_arm = 2000;
    let every = 20;
    let config = SequentialConfig::new(ALPHA, (2 * per_arm) as f64).expect("config");
    let noise = Normal::new(0.0, 1.0).expect("normal");
    let mut rng = StdRng::seed_from_u64(7);
    let (mut sequential_rejections, mut naive_rejections) = (0, 0);
    for _ in 0..experiments {
        let (mut c, mut t) = (Arm::default(), Arm::default());
        let mut monitor = SequentialMonitor::new();
        let mut naive = false;
        for look in 1..=per_arm / every {
            for _ in 0..every {
                c.push(noise.sample(&mut rng));
                t.push(noise.sample(&mut rng));
            }
            if look == 1 {
                continue; // 20 units per arm: too few for any variance estimate
            }
            let r = sequential::confidence_sequence_means(&c.stats(), &t.stats(), &config).expect("sequence");
            monitor.observe(&r);
            let z = z_test(r.estimate, r.std_error, ALPHA).expect("z");
            naive |= z.p_value < ALPHA;
        }
        sequential_rejections += usize::from(monitor.p_value <= ALPHA);
        naive_rejections += usize::from(naive);
    }
    let rate = sequential_rejections as f64 / experiments as f64;
    let naive_rate = naive_rejections as f64 / experiments as f64;
    println!("A/A means: sequential false-positive rate {rate:.4}, naive peeking {naive_rate:.4}");
    assert!(
        naive_rate > 2.0 * ALPHA,
        "the simulation should expose peeking: {naive_rate}"
    );
    assert!(
        rate <= ALPHA,
        "sequential false-positive rate {rate} exceeds α = {ALPHA}"
    );
}

#[test]
fn sequential_a_a_on_conversions_keeps_false_positives_below_alpha() {
    let experiments = 1000;
    let per_arm: u64 = 5000;
    let every: u64 = 50;
    let config = SequentialConfig::new(ALPHA, (2 * per_arm) as f64).expect("config");
    let batch = Binomial::new(every, 0.1).expect("binomial");
    let mut rng = StdRng::seed_from_u64(11);
    let mut rejections = 0;
    for _ in 0..experiments {
        let (mut kc, mut kt) = (0, 0);
        let mut monitor = SequentialMonitor::new();
        for look in 1..=per_arm / every {
            kc += batch.sample(&mut rng);
            kt += batch.sample(&mut rng);
            let n = look * every;
            let (c, t) = (ProportionStats::new(n, kc), ProportionStats::new(n, kt));
            if let Ok(r) = sequential::confidence_sequence_proportions(&c.expect("c"), &t.expect("t"), &config) {
                monitor.observe(&r);
            }
        }
        rejections += usize::from(monitor.p_value <= ALPHA);
    }
    let rate = rejections as f64 / experiments as f64;
    println!("A/A conversions: sequential false-positive rate {rate:.4}");
    assert!(
        rate <= ALPHA,
        "sequential false-positive rate {rate} exceeds α = {ALPHA}"
    );
}

#[test]
fn welch_interval_covers_the_true_difference_at_the_nominal_rate() {
    // Small, unbalanced arms with unequal variances: where Welch's df matter.
    let runs = 4000;
    let (c_dist, t_dist) = (
        Normal::new(10.0, 1.0).expect("normal"),
        Normal::new(10.5, 3.0).expect("normal"),
    );
    let mut rng = StdRng::seed_from_u64(3);
    let mut covered = 0;
    for _ in 0..runs {
        let (mut c, mut t) = (Arm::default(), Arm::default());
        (0..12).for_each(|_| c.push(c_dist.sample(&mut rng)));
        (0..7).for_each(|_| t.push(t_dist.sample(&mut rng)));
        let w = frequentist::welch_t_test(&c.stats(), &t.stats(), ALPHA).expect("welch");
        covered += usize::from(w.ci.contains(0.5));
    }
    let coverage = covered as f64 / runs as f64;
    println!("Welch 95% CI coverage {coverage:.4}");
    assert!((coverage - 0.95).abs() <= three_se(0.95, runs), "coverage {coverage}");
}

#[test]
fn proportion_interval_covers_the_true_difference_at_the_nominal_rate() {
    let runs = 4000;
    let (nc, nt) = (2000, 2500);
    let (c_dist, t_dist) = (
        Binomial::new(nc, 0.10).expect("binomial"),
        Binomial::new(nt, 0.12).expect("binomial"),
    );
    let mut rng = StdRng::seed_from_u64(5);
    let mut covered = 0;
    for _ in 0..runs {
        let c = ProportionStats::new(nc, c_dist.sample(&mut rng)).expect("c");
        let t = ProportionStats::new(nt, t_dist.sample(&mut rng)).expect("t");
        let r = frequentist::two_proportion_z_test(&c, &t, ALPHA).expect("z-test");
        covered += usize::from(r.ci.contains(0.02));
    }
    let coverage = covered as f64 / runs as f64;
    println!("two-proportion 95% CI coverage {coverage:.4}");
    assert!((coverage - 0.95).abs() <= three_se(0.95, runs), "coverage {coverage}");
}

#[test]
fn cuped_interval_covers_and_reduces_variance() {
    let runs = 2000;
    let n = 300;
    let (rho, effect) = (0.7_f64, 0.25);
    let unit = Normal::new(0.0, 1.0).expect("normal");
    let mut rng = StdRng::seed_from_u64(9);
    let (mut covered, mut reduction) = (0, 0.0);
    for _ in 0..runs {
        let mut arm = |shift: f64| {
            let mut s = [0.0_f64; 5];
            for _ in 0..n {
                let x = unit.sample(&mut rng);
                let y = shift + rho * x + (1.0 - rho * rho).sqrt() * unit.sample(&mut rng);
                s[0] += y;
                s[1] += y * y;
                s[2] += x;
                s[3] += x * x;
                s[4] += x * y;
            }
            CupedStats::new(n, s[0], s[1], s[2], s[3], s[4]).expect("sums")
        };
        let (c, t) = (arm(0.0), arm(effect));
        let r = frequentist::cuped(&c, &t, ALPHA).expect("cuped");
        covered += usize::from(r.difference.ci.contains(effect));
        reduction += r.variance_reduction;
    }
    let coverage = covered as f64 / runs as f64;
    let reduction = reduction / runs as f64;
    println!("CUPED 95% CI coverage {coverage:.4}, mean variance reduction {reduction:.4}");
    assert!((coverage - 0.95).abs() <= three_se(0.95, runs), "coverage {coverage}");
    // ρ = 0.7 removes ρ² = 49% of the variance.
    assert!((reduction - rho * rho).abs() < 0.02, "reduction {reduction}");
}

#[test]
fn ratio_cuped_interval_covers_the_difference_of_ratios_and_reduces_variance() {
    // Revenue per session: each unit has 1 or 2 sessions (the same count
    // before and during the experiment), a spending level ~ N(10, 3²) per
    // session, and per-session noise ~ N(0, 2²). Treatment adds `effect` per
    // session, so the difference of ratios is `effect`.
    let runs = 1000;
    let n = 300;
    let effect = 0.5;
    let (level, noise) = (
        Normal::new(10.0, 3.0).expect("normal"),
        Normal::new(0.0, 2.0).expect("normal"),
    );
    let two = Bernoulli::new(0.5).expect("bernoulli");
    let mut rng = StdRng::seed_from_u64(21);
    let (mut covered, mut reduction) = (0, 0.0);
    for _ in 0..runs {
        let mut arm = |shift: f64| {
            let mut s = [0.0_f64; 14];
            for _ in 0..n {
                let den: f64 = if two.sample(&mut rng) { 2.0 } else { 1.0 };
                let l = level.sample(&mut rng);
                let pre = den * l + den.sqrt() * noise.sample(&mut rng);
                let num = den * (l + shift) + den.sqrt() * noise.sample(&mut rng);
                for (slot, v) in s.iter_mut().zip([
                    num,
                    num * num,
                    den,
                    den * den,
                    num * den,
                    pre,
                    pre * pre,
                    den,
                    den * den,
                    pre * den,
                    num * pre,
                    num * den,
                    den * pre,
                    den * den,
                ]) {
                    *slot += v;
                }
            }
            RatioCupedStats::new(
                RatioStats::new(n, s[0], s[1], s[2], s[3], s[4]).expect("sums"),
                RatioStats::new(n, s[5], s[6], s[7], s[8], s[9]).expect("sums"),
                s[10],
                s[11],
                s[12],
                s[13],
            )
            .expect("sums")
        };
        let (c, t) = (arm(0.0), arm(effect));
        let r = frequentist::cuped_ratio(&c, &t, ALPHA).expect("cuped_ratio");
        covered += usize::from(r.difference.ci.contains(effect));
        reduction += r.variance_reduction;
    }
    let coverage = covered as f64 / runs as f64;
    let reduction = reduction / runs as f64;
    println!("ratio CUPED 95% CI coverage {coverage:.4}, mean variance reduction {reduction:.4}");
    assert!((coverage - 0.95).abs() <= three_se(0.95, runs), "coverage {coverage}");
    // Linearised, l = (den·(level − R) + Σnoise)/E[den]: ρ = E[den²]·9 /
    // (E[den²]·9 + 4·E[den]) = 22.5/28.5, so ρ² ≈ 0.623 is removed.
    let rho = 22.5 / 28.5_f64;
    assert!((reduction - rho * rho).abs() < 0.03, "reduction {reduction}");
}

#[test]
fn srm_detects_a_50_to_50_5_split_at_one_million_units() {
    let n: u64 = 1_000_000;
    let weights = [1.0, 1.0];
    // Expected counts of a 50 : 50.5 split are flagged outright.
    let treatment = (n as f64 * 50.5 / 100.5).round() as u64;
    let r = sample_ratio_mismatch(&[n - treatment, treatment], &weights).expect("srm");
    println!(
        "SRM 50/50.5 at expected counts: χ² {:.3}, p {:.3e}",
        r.chi_square, r.p_value
    );
    assert!(r.mismatch);

    // And with sampling noise: how often is the broken split caught, and
    // how often is a correct 50/50 split flagged by mistake?
    let draws = 2000;
    let mut rng = StdRng::seed_from_u64(13);
    let skewed = Binomial::new(n, 50.5 / 100.5).expect("binomial");
    let fair = Binomial::new(n, 0.5).expect("binomial");
    let (mut caught, mut false_alarms) = (0, 0);
    for _ in 0..draws {
        let t = skewed.sample(&mut rng);
        caught += usize::from(sample_ratio_mismatch(&[n - t, t], &weights).expect("srm").mismatch);
        let t = fair.sample(&mut rng);
        false_alarms += usize::from(sample_ratio_mismatch(&[n - t, t], &weights).expect("srm").mismatch);
    }
    let power = caught as f64 / draws as f64;
    println!("SRM 50/50.5 at n = 1M: detected {power:.4}; 50/50 false alarms {false_alarms}/{draws}");
    // Theory: χ²₁ with non-centrality 24.8 exceeds 10.83 with probability 0.95.
    assert!(power >= 0.95 - three_se(0.95, draws), "power {power}");
    // At p < 0.001 a fair split is flagged about twice in 2000 draws.
    let alarm_rate = false_alarms as f64 / draws as f64;
    assert!(
        alarm_rate <= 0.001 + three_se(0.001, draws),
        "false alarms {false_alarms}"
    );
}
