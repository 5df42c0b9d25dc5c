//! Forward kernels: training (batch statistics) and evaluation (running statistics).

use ndarray::{ArrayD, ArrayViewD};

use ndarray::IxDyn;
use norma_simd::SimdLevel;

use super::statistics::{shifted_sums, BatchStats};
use crate::layout::{map_channels, BnShape};
use crate::precision::{inv_std, split};
use crate::{check, KernelError};

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
/// One pass accumulates the statistics ([`partial_sums`](crate::partial_sums) around each channel's first value,
/// in f64), a second writes the output ([`normalize`]). A constant channel gives exactly β.
///
/// Errors: an unsupported or non-contiguous input, a per-channel vector of the wrong length,
/// a bad eps, or only one value per channel (its variance is undefined).
pub fn forward_train(
    x: ArrayViewD<'_, f32>,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<TrainForward, KernelError> {
    let (shape, xs) = check::bn_input(&x)?;
    if shape.per_channel() < 2 {
        return Err(KernelError::SingleValuePerChannel {
            shape: x.shape().to_vec(),
        });
    }
    check::length(shape.channels, "gamma", gamma)?;
    check::length(shape.channels, "beta", beta)?;
    check::eps(eps)?;
    let stats = shifted_sums(shape, xs, None).finish(eps)?;
    let output = normalized(shape, x.raw_dim(), xs, &stats, gamma, beta);
    Ok(TrainForward { output, stats })
}

/// The normalization pass of training mode with given statistics:
/// `y = γ_c · (x − mean_c) · inv_std_c + β_c`.
///
/// The mean is used as an f32 value plus the f32 residual of its rounding: with x near the
/// mean, x − mean is exact in f32 (Sterbenz), and subtracting the residual then corrects for the
/// mean's own rounding, so inputs with a large offset (1e4 + N(0, 1)) lose no precision. A
/// constant channel gives 0·scale + β = β exactly.
pub fn normalize(
    x: ArrayViewD<'_, f32>,
    stats: &BatchStats,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> Result<ArrayD<f32>, KernelError> {
    let (shape, xs) = check::bn_input(&x)?;
    check::length(shape.channels, "mean", Some(stats.mean()))?;
    check::length(shape.channels, "gamma", gamma)?;
    check::length(shape.channels, "beta", beta)?;
    Ok(normalized(shape, x.raw_dim(), xs, stats, gamma, beta))
}

/// [`normalize`] of checked inputs.
fn normalized(
    shape: BnShape,
    dims: IxDyn,
    xs: &[f32],
    stats: &BatchStats,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> ArrayD<f32> {
    let c = shape.channels;
    let (mut mean, mut residual, mut scale, mut shift) = (
        Vec::with_capacity(c),
        Vec::with_capacity(c),
        Vec::with_capacity(c),
        Vec::with_capacity(c),
    );
    for ch in 0..c {
        let (hi, lo) = split(stats.mean()[ch]);
        let g = gamma.map_or(1.0, |g| g[ch] as f64);
        mean.push(hi);
        residual.push(lo);
        scale.push((g * stats.inv_std(ch)) as f32);
        shift.push(beta.map_or(0.0, |b| b[ch]));
    }
    map_channels(
        SimdLevel::current(),
        shape,
        dims,
        xs,
        xs,
        [&mean, &residual, &scale, &shift],
        |x, _, [m, r, a, b]| ((x - m) - r) * a + b,
    )
}

/// The per-channel `(scale, shift)` of evaluation mode, for folding batch norm into a
/// preceding layer: `scale = γ / sqrt(running_var + eps)`, `shift = β − running_mean · scale`,
/// computed in f64.
///
/// Errors: vectors of different lengths, a negative or non-finite running variance, a
/// non-finite running mean, a bad eps.
pub fn eval_scale_shift(
    running_mean: &[f32],
    running_var: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<Vec<(f32, f32)>, KernelError> {
    let c = running_mean.len();
    check::running(c, running_mean, running_var, eps)?;
    check::length(c, "gamma", gamma)?;
    check::length(c, "beta", beta)?;
    Ok((0..c)
        .map(|ch| {
            let scale = gamma.map_or(1.0, |g| g[ch] as f64) * inv_std(running_var[ch] as f64, eps);
            let shift = beta.map_or(0.0, |b| b[ch] as f64) - running_mean[ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect())
}

/// Evaluation-mode batch norm with running statistics:
/// `y = (x − running_mean_c) · scale_c + β_c` with `scale = γ / sqrt(running_var + eps)`.
/// Works for any batch size, including 1.
///
/// Subtracting the mean before scaling (rather than the folded `x·scale + shift`) keeps inputs
/// with a large offset exact: x − running_mean is exact in f32 for x near the mean.
pub fn forward_eval(
    x: ArrayViewD<'_, f32>,
    running_mean: &[f32],
    running_var: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<ArrayD<f32>, KernelError> {
    let (shape, xs) = check::bn_input(&x)?;
    check::running(shape.channels, running_mean, running_var, eps)?;
    check::length(shape.channels, "gamma", gamma)?;
    check::length(shape.channels, "beta", beta)?;
    let scale: Vec<f32> = (0..shape.channels)
        .map(|ch| {
            (gamma.map_or(1.0, |g| g[ch] as f64) * inv_std(running_var[ch] as f64, eps)) as f32
        })
        .collect();
    let shift: Vec<f32> = beta.map_or_else(|| vec![0.0; shape.channels], <[f32]>::to_vec);
    Ok(map_channels(
        SimdLevel::current(),
        shape,
        x.raw_dim(),
        xs,
        xs,
        [running_mean, &scale, &shift],
        |x, _, [m, a, b]| (x - m) * a + b,
    ))
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
        assert_eq!(out.stats.mean(), &[2.0, 2.0]);
        assert_eq!(out.stats.var(), &[1.0, 0.0]);
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
    fn wrong_lengths_layouts_and_statistics_are_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[4, 3]));
        let err = forward_train(x.view(), Some(&[1.0; 2]), None, 1e-5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gamma has 2 values but 3 are needed (one per channel)"
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
        // Running statistics are checked, not indexed blindly.
        assert!(eval_scale_shift(&[0.0; 3], &[1.0; 2], None, None, 1e-5).is_err());
        assert!(eval_scale_shift(&[0.0; 2], &[1.0; 2], Some(&[1.0]), None, 1e-5).is_err());
        let neg = forward_eval(x.view(), &[0.0; 3], &[1.0, -0.5, 1.0], None, None, 1e-5);
        assert!(matches!(
            neg,
            Err(KernelError::InvalidStatistic {
                name: "running_var",
                channel: 1,
                ..
            })
        ));
        assert!(forward_train(x.view(), None, None, f32::NAN).is_err());
    }

    #[test]
    fn eval_is_exact_for_inputs_with_a_large_offset() {
        // x = 1e4 + small, running mean 1e4, scale 3: the folded x·scale + shift would lose
        // about 1e4·3·6e-8 ≈ 2e-3 to rounding.
        let x = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![10000.0f32, 10000.25, 9999.5]).unwrap();
        let y = forward_eval(x.view(), &[1e4], &[1.0 / 9.0], None, None, 0.0).unwrap();
        let want = [0.0f32, 0.75, -1.5];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
