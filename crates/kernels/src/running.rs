//! The running-statistics update, PyTorch's convention:
//!
//! ```text
//! running_mean ← (1 − f)·running_mean + f·mean
//! running_var  ← (1 − f)·running_var  + f·var·M/(M − 1)     (unbiased batch variance)
//! ```
//!
//! where the factor f is the momentum (0.1 by default), or 1/(batches seen) for a cumulative
//! average. Computed in f64 and rounded once, as PyTorch's CPU kernel does.

use crate::{BatchStats, KernelError};

/// Updates `running_mean` and `running_var` in place from one batch's statistics.
pub fn update_running_stats(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    stats: &BatchStats,
    factor: f64,
) -> Result<(), KernelError> {
    let c = stats.mean.len();
    for (name, len) in [
        ("running_mean", running_mean.len()),
        ("running_var", running_var.len()),
    ] {
        if len != c {
            return Err(KernelError::ChannelLength {
                name,
                expected: c,
                got: len,
            });
        }
    }
    if stats.count < 2 {
        return Err(KernelError::SingleValuePerChannel {
            shape: vec![stats.count, c],
        });
    }
    let bessel = stats.count as f64 / (stats.count - 1) as f64;
    for ch in 0..c {
        let rm = &mut running_mean[ch];
        *rm = (factor * stats.mean[ch] as f64 + (1.0 - factor) * *rm as f64) as f32;
        let rv = &mut running_var[ch];
        *rv = (factor * stats.var[ch] as f64 * bessel + (1.0 - factor) * *rv as f64) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_update_uses_the_unbiased_variance() {
        let stats = BatchStats {
            mean: vec![2.0],
            mean_residual: vec![0.0],
            var: vec![3.0],
            inv_std: vec![0.0],
            count: 4,
        };
        let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
        update_running_stats(&mut rm, &mut rv, &stats, 0.1).unwrap();
        assert_eq!(rm, vec![0.2]);
        // 0.9·1 + 0.1·3·4/3 = 1.3
        assert!((rv[0] - 1.3).abs() < 1e-7);
        assert!(update_running_stats(&mut rm, &mut [0.0, 0.0], &stats, 0.1).is_err());
    }
}
