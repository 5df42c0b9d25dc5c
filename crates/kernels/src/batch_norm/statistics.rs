//! Batch statistics: the shifted per-channel sums of a (shard of a) batch, and the mean and
//! variance finished from them.
//!
//! Training-mode batch norm needs, per channel, the mean and the biased variance over all
//! N·S values. They are accumulated in one pass as f64 sums of d = x − k and d², where k is a
//! value of the channel (the shift), and finished as
//!
//! ```text
//! mean = k + Σd / M        var = Σd² / M − (Σd / M)²
//! ```
//!
//! The shift keeps Σd² − (Σd)²/M free of cancellation even when the mean is large compared to
//! the spread (x = 1e4 + N(0, 1)). Sums taken around the same shift can simply be added, so
//! the statistics of a batch split over several processes are [`partial_sums`] on each shard,
//! an all-reduce (sum) of [`PartialSums::to_flat`], and [`PartialSums::finish`]: exactly what
//! one process computes for the whole batch, up to the order of the additions.

use ndarray::ArrayViewD;

use norma_simd::SimdLevel;

use crate::layout::{channel_sums, BnShape};
use crate::precision::inv_std;
use crate::{check, sums, KernelError};

/// Per-channel statistics of one training batch: what the normalization, the backward pass and
/// the running update need.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    count: usize,
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f32,
}

impl BatchStats {
    /// Statistics from known moments: `count` values per channel, their `mean` and biased
    /// variance `var` per channel, and the `eps` the normalization adds to the variance.
    ///
    /// Errors: `mean` and `var` of different lengths, fewer than 2 values per channel, a
    /// negative or non-finite variance or mean, a negative or non-finite eps.
    pub fn new(count: usize, mean: Vec<f64>, var: Vec<f64>, eps: f32) -> Result<Self, KernelError> {
        check::moments(count, &mean, &var, eps)?;
        Ok(BatchStats {
            count,
            mean,
            var,
            eps,
        })
    }

    /// M: values per channel the statistics were taken over (N·H·W, or N for (N, C)).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// The batch mean per channel, in f64 (exact to about 2⁻⁵² relative).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The biased batch variance per channel (divided by M), in f64.
    pub fn var(&self) -> &[f64] {
        &self.var
    }

    /// The eps added to the variance by the normalization.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// 1 / sqrt(var + eps) of `channel`, in f64.
    pub fn inv_std(&self, channel: usize) -> f64 {
        inv_std(self.var[channel], self.eps)
    }

    /// The unbiased variance var·M/(M − 1) per channel (what running statistics track).
    pub fn unbiased_var(&self) -> Vec<f64> {
        let bessel = self.count as f64 / (self.count - 1) as f64;
        self.var.iter().map(|v| v * bessel).collect()
    }
}

/// Per-channel sums of one batch (or one shard of it) around a per-channel shift: the number
/// of values per channel, Σ(x − shift) and Σ(x − shift)², in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialSums {
    count: usize,
    shift: Vec<f32>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

/// The shifted sums of `x` ((N, C), (N, C, L) or contiguous (N, C, H, W)) around `shift` (one
/// value per channel), or around each channel's first value when `shift` is `None`.
///
/// Shards of one batch on several processes must use the same shift so that their sums can be
/// added: give every process the same values (for example broadcast from one of them).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use norma_kernels::{partial_sums, PartialSums};
/// // One batch of 4 values, split into two shards of 2.
/// let a = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.0f32, 2.0]).unwrap();
/// let b = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![3.0f32, 4.0]).unwrap();
/// let shift = [1.0f32];
/// let (pa, pb) = (partial_sums(a.view(), Some(&shift))?, partial_sums(b.view(), Some(&shift))?);
/// // What an all-reduce (sum) of the flat buffers gives every process:
/// let total: Vec<f64> = pa.to_flat().iter().zip(pb.to_flat()).map(|(u, v)| u + v).collect();
/// let stats = PartialSums::from_flat(&shift, &total)?.finish(0.0)?;
/// assert_eq!(stats.mean(), &[2.5]);
/// assert_eq!(stats.var(), &[1.25]);
/// # Ok::<(), norma_kernels::KernelError>(())
/// ```
pub fn partial_sums(
    x: ArrayViewD<'_, f32>,
    shift: Option<&[f32]>,
) -> Result<PartialSums, KernelError> {
    let (shape, xs) = check::bn_input(&x)?;
    if let Some(shift) = shift {
        check::shift(shape.channels, shift)?;
    }
    Ok(shifted_sums(shape, xs, shift))
}

/// [`partial_sums`] of checked inputs.
pub(crate) fn shifted_sums(shape: BnShape, xs: &[f32], shift: Option<&[f32]>) -> PartialSums {
    let (c, s) = (shape.channels, shape.spatial);
    let shift: Vec<f32> = match shift {
        Some(k) => k.to_vec(),
        // With no values every shift is as good as another.
        None if shape.len() == 0 => vec![0.0; c],
        None => (0..c).map(|ch| xs[ch * s]).collect(),
    };
    let k: Vec<f64> = shift.iter().map(|&v| v as f64).collect();
    let totals = channel_sums(
        SimdLevel::current(),
        shape,
        xs,
        xs,
        &k,
        sums::ShiftedSquares,
    );
    PartialSums {
        count: shape.per_channel(),
        shift,
        sum: totals.iter().map(|t| t[0]).collect(),
        sum_sq: totals.iter().map(|t| t[1]).collect(),
    }
}

impl PartialSums {
    /// Values per channel summed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The shift the sums were taken around.
    pub fn shift(&self) -> &[f32] {
        &self.shift
    }

    /// Σ(x − shift) per channel.
    pub fn sum(&self) -> &[f64] {
        &self.sum
    }

    /// Σ(x − shift)² per channel.
    pub fn sum_sq(&self) -> &[f64] {
        &self.sum_sq
    }

    /// The sums as one buffer, `[count, Σd (C values), Σd² (C values)]`, ready for an
    /// all-reduce that adds buffers element by element. The count is exact in f64 up to 2⁵³.
    pub fn to_flat(&self) -> Vec<f64> {
        let mut flat = Vec::with_capacity(1 + 2 * self.sum.len());
        flat.push(self.count as f64);
        flat.extend_from_slice(&self.sum);
        flat.extend_from_slice(&self.sum_sq);
        flat
    }

    /// Sums around `shift` from a buffer laid out as [`PartialSums::to_flat`] writes it
    /// (typically the all-reduced sum of every process's buffer).
    pub fn from_flat(shift: &[f32], flat: &[f64]) -> Result<Self, KernelError> {
        let c = shift.len();
        if flat.len() != 1 + 2 * c {
            return Err(KernelError::ChannelLength {
                name: "flat partial sums",
                expected: 1 + 2 * c,
                got: flat.len(),
            });
        }
        let count = flat[0];
        if !(count.is_finite() && count >= 0.0 && count.fract() == 0.0 && count < 2f64.powi(53)) {
            return Err(KernelError::Argument {
                name: "flat partial sums",
                reason: format!("the count {count} is not a whole number of values"),
            });
        }
        Ok(PartialSums {
            count: count as usize,
            shift: shift.to_vec(),
            sum: flat[1..1 + c].to_vec(),
            sum_sq: flat[1 + c..].to_vec(),
        })
    }

    /// The mean and biased variance per channel (see the module docs), with the `eps` the
    /// normalization will use.
    ///
    /// Errors: fewer than 2 values per channel (a variance needs two), non-finite sums (the
    /// input held infinities or NaN), or a bad eps.
    pub fn finish(&self, eps: f32) -> Result<BatchStats, KernelError> {
        if self.count < 2 {
            return Err(KernelError::TooFewValues { count: self.count });
        }
        check::eps(eps)?;
        let m = self.count as f64;
        let mut mean = Vec::with_capacity(self.sum.len());
        let mut var = Vec::with_capacity(self.sum.len());
        for ch in 0..self.sum.len() {
            let d_mean = self.sum[ch] / m;
            mean.push(self.shift[ch] as f64 + d_mean);
            var.push((self.sum_sq[ch] / m - d_mean * d_mean).max(0.0));
        }
        BatchStats::new(self.count, mean, var, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn shards_add_up_to_the_whole_batch() {
        let data: Vec<f32> = (0..24).map(|i| 1e4 + (i as f32 * 0.7).sin()).collect();
        let whole = ArrayD::from_shape_vec(IxDyn(&[6, 2, 2]), data.clone()).unwrap();
        let shift = [1e4f32, 1e4 + 0.5];
        let full = partial_sums(whole.view(), Some(&shift)).unwrap();
        let (a, b) = data.split_at(8);
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2, 2]), a.to_vec()).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[4, 2, 2]), b.to_vec()).unwrap();
        let (pa, pb) = (
            partial_sums(a.view(), Some(&shift)).unwrap(),
            partial_sums(b.view(), Some(&shift)).unwrap(),
        );
        let added: Vec<f64> = pa
            .to_flat()
            .iter()
            .zip(pb.to_flat())
            .map(|(u, v)| u + v)
            .collect();
        let merged = PartialSums::from_flat(&shift, &added).unwrap();
        assert_eq!(merged.count(), 12);
        let (s1, s2) = (merged.finish(1e-5).unwrap(), full.finish(1e-5).unwrap());
        for ch in 0..2 {
            assert!((s1.mean()[ch] - s2.mean()[ch]).abs() < 1e-12);
            assert!((s1.var()[ch] - s2.var()[ch]).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
        let p = partial_sums(x.view(), None).unwrap();
        assert_eq!(p.finish(1e-5), Err(KernelError::TooFewValues { count: 1 }));
        assert!(partial_sums(x.view(), Some(&[0.0; 2])).is_err());
        assert!(partial_sums(x.view(), Some(&[0.0, f32::NAN, 0.0])).is_err());
        assert!(PartialSums::from_flat(&[0.0], &[2.0, 1.0]).is_err());
        assert!(PartialSums::from_flat(&[0.0], &[2.5, 1.0, 1.0]).is_err());
        assert!(PartialSums::from_flat(&[0.0], &[-1.0, 1.0, 1.0]).is_err());
        assert!(BatchStats::new(4, vec![0.0], vec![-1.0], 1e-5).is_err());
        assert!(BatchStats::new(4, vec![0.0], vec![1.0, 2.0], 1e-5).is_err());
        assert!(BatchStats::new(4, vec![0.0], vec![1.0], -1.0).is_err());
        assert!(BatchStats::new(1, vec![0.0], vec![1.0], 1e-5).is_err());
    }
}
