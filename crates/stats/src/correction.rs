//! Multiple-comparison corrections for several arms or metrics.
//!
//! Both return adjusted p-values in the input order, so a caller compares
//! each with the unadjusted α.

use crate::error::{Result, StatsError};

fn check(p_values: &[f64]) -> Result<()> {
    if p_values.is_empty() {
        return Err(StatsError::TooFewEntries {
            what: "p-values",
            min: 1,
            got: 0,
        });
    }
    for &p in p_values {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::OutOfRange {
                what: "p-value",
                range: "between 0 and 1",
                value: p,
            });
        }
    }
    Ok(())
}

/// Indices that sort `p` ascending (stable, so ties keep input order).
fn ascending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    order
}

/// Holm's step-down adjustment (controls the family-wise error rate):
/// p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎).
pub fn holm(p_values: &[f64]) -> Result<Vec<f64>> {
    check(p_values)?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in ascending(p_values).iter().enumerate() {
        let scaled = ((m - rank) as f64 * p_values[i]).min(1.0);
        running = running.max(scaled);
        adjusted[i] = running;
    }
    Ok(adjusted)
}

/// Benjamini–Hochberg step-up adjustment (controls the false discovery
/// rate under independence or positive dependence):
/// p̃₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎/j).
pub fn benjamini_hochberg(p_values: &[f64]) -> Result<Vec<f64>> {
    check(p_values)?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in ascending(p_values).iter().enumerate().rev() {
        let scaled = m as f64 * p_values[i] / (rank + 1) as f64;
        running = running.min(scaled);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_multiplies_the_smallest_by_m_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03]).unwrap();
        assert_eq!(adj, vec![0.03, 0.06, 0.06]);
    }

    #[test]
    fn bh_is_never_above_holm() {
        let p = [0.001, 0.02, 0.03, 0.5, 0.04];
        let h = holm(&p).unwrap();
        let b = benjamini_hochberg(&p).unwrap();
        assert!(h.iter().zip(&b).all(|(h, b)| b <= h));
    }

    #[test]
    fn invalid_p_values_are_rejected() {
        assert!(holm(&[]).is_err());
        assert!(benjamini_hochberg(&[0.5, f64::NAN]).is_err());
        assert!(holm(&[1.5]).is_err());
    }
}
