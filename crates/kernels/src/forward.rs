//! Forward kernels: training (batch statistics) and evaluation (running statistics).

use ndarray::{ArrayD, ArrayViewD};

use crate::layout::{channel_map, fill_output, reduce_then_map};
use crate::sums::ShiftedSquares;
use crate::{check_channels, contiguous, KernelError};

/// 1 / sqrt(var + eps) in f64; 0 (not infinity) when var + eps is 0, as in PyTorch, so that a
/// constant channel with eps = 0 still maps to β instead of NaN.
pub fn inv_std(var: f64, eps: f32) -> f64 {
    let v = var + eps as f64;
    if v == 0.0 {
        0.0
    } else {
        1.0 / v.sqrt()
    }
}

/// Per-channel statistics of one training batch: what backward and the running update need.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Batch mean per channel, rounded to f32.
    pub mean: Vec<f32>,
    /// What rounding the mean to f32 lost: `mean + mean_residual` is the mean to ~2^-48
    /// relative. With a large offset (x ≈ 1e4) the f32 mean alone is off by up to 5e-4, a
    /// visible shift of the normalized output; the kernels subtract both parts.
    pub mean_residual: Vec<f32>,
    /// Biased batch variance per channel (divided by M).
    pub var: Vec<f32>,
    /// 1 / sqrt(var + eps) per channel.
    pub inv_std: Vec<f32>,
    /// M: values per channel the statistics were taken over (N·H·W, or N for (N, C)).
    pub count: usize,
}

/// Output and statistics of [`forward_train`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainForward {
    pub output: ArrayD<f32>,
    pub stats: BatchStats,
}

/// Training-mode batch norm: per channel c,
/// `y = γ_c · (x − mean_c) / sqrt(var_c + eps) + β_c`, with the mean and the biased variance
/// taken over the batch (and spatial positions). `gamma`/`beta` of `None` mean 1 and 0.
///
/// Statistics are accumulated in f64 around a per-channel shift (the channel's first value),
/// one pass over the data; a second pass writes the output. A constant channel gives exactly β.
///
/// Errors: an unsupported or non-contiguous input, a per-channel vector of the wrong length,
/// or only one value per channel (its variance is undefined).
pub fn forward_train(
    x: ArrayViewD<'_, f32>,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<TrainForward, KernelError> {
    let (shape, xs) = contiguous(&x)?;
    if shape.per_channel() < 2 {
        return Err(KernelError::SingleValuePerChannel {
            shape: x.shape().to_vec(),
        });
    }
    check_channels(shape, "gamma", gamma)?;
    check_channels(shape, "beta", beta)?;
    let (c, s) = (shape.channels, shape.spatial);
    // Shifting by a value of the channel keeps Σd² − (Σd)²/M free of cancellation even when the
    // mean is large compared to the spread (x = 1e4 + N(0, 1)).
    let shift: Vec<f32> = (0..c).map(|ch| xs[ch * s]).collect();
    let m = shape.per_channel() as f64;
    let mut stats = BatchStats {
        mean: Vec::with_capacity(c),
        mean_residual: Vec::with_capacity(c),
        var: Vec::with_capacity(c),
        inv_std: Vec::with_capacity(c),
        count: shape.per_channel(),
    };
    let output = fill_output(x.raw_dim(), |ys| {
        let constants = |ch: usize, [sum, sum_sq]: [f64; 2]| {
            let d_mean = sum / m;
            let var = (sum_sq / m - d_mean * d_mean).max(0.0);
            let inv_std = inv_std(var, eps);
            let mean64 = shift[ch] as f64 + d_mean;
            let mean = mean64 as f32;
            let residual = (mean64 - mean as f64) as f32;
            let g = gamma.map_or(1.0, |g| g[ch] as f64);
            let b = beta.map_or(0.0, |b| b[ch]);
            stats.mean.push(mean);
            stats.mean_residual.push(residual);
            stats.var.push(var as f32);
            stats.inv_std.push(inv_std as f32);
            [mean, residual, (g * inv_std) as f32, b]
        };
        // x − mean is exact in f32 for x near the mean (Sterbenz); the residual then corrects
        // for the mean's own rounding. A constant channel gives 0·scale + β = β exactly.
        reduce_then_map(
            shape,
            xs,
            xs,
            &shift,
            &ShiftedSquares,
            ys,
            constants,
            |x, _, k| ((x - k[0]) - k[1]) * k[2] + k[3],
        )
    });
    Ok(TrainForward { output, stats })
}

/// The per-channel `(scale, shift)` of evaluation mode:
/// `scale = γ / sqrt(running_var + eps)`, `shift = β − running_mean · scale`, computed in f64.
pub fn eval_scale_shift(
    running_mean: &[f32],
    running_var: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Vec<(f32, f32)> {
    (0..running_mean.len())
        .map(|ch| {
            let inv_std = inv_std(running_var[ch] as f64, eps);
            let scale = gamma.map_or(1.0, |g| g[ch] as f64) * inv_std;
            let shift = beta.map_or(0.0, |b| b[ch] as f64) - running_mean[ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect()
}

/// Evaluation-mode batch norm with running statistics, folded into one multiply-add per value:
/// `y = x · scale_c + shift_c` (see [`eval_scale_shift`]). Works for any batch size, including 1.
pub fn forward_eval(
    x: ArrayViewD<'_, f32>,
    running_mean: &[f32],
    running_var: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<ArrayD<f32>, KernelError> {
    let (shape, xs) = contiguous(&x)?;
    check_channels(shape, "running_mean", Some(running_mean))?;
    check_channels(shape, "running_var", Some(running_var))?;
    check_channels(shape, "gamma", gamma)?;
    check_channels(shape, "beta", beta)?;
    let consts: Vec<[f32; 2]> = eval_scale_shift(running_mean, running_var, gamma, beta, eps)
        .into_iter()
        .map(|(scale, shift)| [scale, shift])
        .collect();
    Ok(fill_output(x.raw_dim(), |ys| {
        channel_map(shape, xs, xs, ys, &consts, |x, _, k| x * k[0] + k[1])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn small_example_by_hand() {
        // Channel 0: [1, 3] → mean 2, var 1; channel 1: [2, 2] → constant.
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1., 2., 3., 2.]).unwrap();
        let out = forward_train(x.view(), Some(&[2.0, 1.0]), Some(&[0.5, -1.0]), 0.0).unwrap();
        assert_eq!(out.stats.mean, vec![2.0, 2.0]);
        assert_eq!(out.stats.var, vec![1.0, 0.0]);
        assert_eq!(out.output.as_slice().unwrap(), &[-1.5, -1.0, 2.5, -1.0]);
    }

    #[test]
    fn one_value_per_channel_is_an_error() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 6]));
        let err = forward_train(x.view(), None, None, 1e-5).unwrap_err();
        assert_eq!(
            err,
            KernelError::SingleValuePerChannel { shape: vec![1, 6] }
        );
        assert!(err.to_string().contains("more than 1 value per channel"));
        assert!(err.to_string().contains("[1, 6]"));
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 1, 1]));
        assert!(forward_train(x.view(), None, None, 1e-5).is_err());
        // One image is fine in training when it has several pixels.
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 2, 1]));
        assert!(forward_train(x.view(), None, None, 1e-5).is_ok());
    }

    #[test]
    fn wrong_lengths_and_layouts_are_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[4, 3]));
        let err = forward_train(x.view(), Some(&[1.0; 2]), None, 1e-5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch norm: gamma has 2 values but the input has 3 channels"
        );
        let t = x.t();
        assert!(matches!(
            forward_train(t, None, None, 1e-5),
            Err(KernelError::NotContiguous { .. })
        ));
        let x5 = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 2, 2, 2]));
        assert!(matches!(
            forward_eval(x5.view(), &[0.0; 2], &[1.0; 2], None, None, 1e-5),
            Err(KernelError::UnsupportedShape { .. })
        ));
    }
}
