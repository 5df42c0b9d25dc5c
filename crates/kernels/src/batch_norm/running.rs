//! The running-statistics update, PyTorch's convention:
//!
//! ```text
//! running_mean ← (1 − f)·running_mean + f·mean
//! running_var  ← (1 − f)·running_var  + f·var·M/(M − 1)     (unbiased batch variance)
//! ```
//!
//! where the factor f is the momentum (0.1 by default), or 1/(batches seen) for a cumulative
//! average. Computed in f64 from the f64 batch statistics and rounded once.

use crate::{check, BatchStats, KernelError};

/// Updates `running_mean` and `running_var` in place from one batch's statistics.
///
/// Errors: running vectors whose length is not the number of channels of `stats`, or a factor
/// outside [0, 1]. Nothing is changed on error.
pub fn update_running_stats(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    stats: &BatchStats,
    factor: f64,
) -> Result<(), KernelError> {
    let c = stats.channels();
    check::length(c, "running_mean", Some(&*running_mean))?;
    check::length(c, "running_var", Some(&*running_var))?;
    if !(0.0..=1.0).contains(&factor) {
        return Err(KernelError::Argument {
            name: "the running-statistics factor",
            reason: format!("must be in [0, 1], got {factor}"),
        });
    }
    let unbiased = stats.unbiased_var();
    for ch in 0..c {
        let rm = &mut running_mean[ch];
        *rm = (factor * stats.mean()[ch] + (1.0 - factor) * *rm as f64) as f32;
        let rv = &mut running_var[ch];
        *rv = (factor * unbiased[ch] + (1.0 - factor) * *rv as f64) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_update_uses_the_unbiased_variance() {
        let stats = BatchStats::new(4, vec![2.0], vec![3.0], 1e-5).unwrap();
        let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
        update_running_stats(&mut rm, &mut rv, &stats, 0.1).unwrap();
        assert_eq!(rm, vec![0.2]);
        // 0.9·1 + 0.1·3·4/3 = 1.3
        assert!((rv[0] - 1.3).abs() < 1e-7);
        assert!(update_running_stats(&mut rm, &mut [0.0, 0.0], &stats, 0.1).is_err());
        assert!(update_running_stats(&mut rm, &mut rv, &stats, 1.5).is_err());
        assert!(update_running_stats(&mut rm, &mut rv, &stats, f64::NAN).is_err());
        assert_eq!(rm, vec![0.2], "a refused update changes nothing");
    }
}
