//! Weight initialisation, each drawn from a seeded [`Rng`] so that one seed gives one model.

use norma_tensor::{Rng, Tensor};

use crate::{LayerError, Result};

/// Xavier (Glorot) uniform: U(−a, a) with a = sqrt(6 / (fan_in + fan_out)), as PyTorch's
/// `xavier_uniform_` (gain 1). Keeps activation variance roughly constant across layers.
pub fn xavier_uniform(shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor {
    let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
    Tensor::rand_uniform(shape, -a, a, rng)
}

/// Which fan [`kaiming_normal`] divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FanMode {
    /// `fan_in = shape[1] · Π shape[2..]`: keeps the variance of the forward activations
    /// (PyTorch's default).
    #[default]
    FanIn,
    /// `fan_out = shape[0] · Π shape[2..]`: keeps the variance of the backward gradients
    /// (what He et al.'s and torchvision's ResNets use for their convolutions).
    FanOut,
}

/// `(fan_in, fan_out)` of a weight of `shape` (out, in, k…), as PyTorch's
/// `_calculate_fan_in_and_fan_out`: the receptive field `Π shape[2..]` times the input or the
/// output feature maps.
///
/// Errors: fewer than two axes (a bias or a scalar has no fan).
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(LayerError::Config {
            layer: "init".into(),
            reason: format!(
                "fan_in and fan_out need a weight of at least 2 axes, got shape {shape:?}"
            ),
        });
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// He (Kaiming) normal: N(0, std²) with std = √2 / √fan, as PyTorch's
/// `kaiming_normal_(w, mode=…, nonlinearity='relu')` (and its default `leaky_relu` with
/// `a = 0`, whose gain is the same √2). He et al. (2015) derive it so that a ReLU network keeps
/// the variance of its activations (fan_in) or of its gradients (fan_out) from layer to layer;
/// without it a 20-layer plain net starts with vanishing signals.
///
/// Errors: fewer than two axes (see [`fans`]).
///
/// ```
/// use norma_layers::init::{kaiming_normal, FanMode};
/// use norma_tensor::Rng;
/// let w = kaiming_normal(&[16, 3, 3, 3], FanMode::FanOut, &mut Rng::seed_from_u64(0))?;
/// assert_eq!(w.shape(), &[16, 3, 3, 3]); // std = √(2 / (16·9))
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub fn kaiming_normal(shape: &[usize], mode: FanMode, rng: &mut Rng) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let fan = match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    };
    let std = (2.0 / fan.max(1) as f64).sqrt() as f32;
    Ok(Tensor::rand_normal(shape, 0.0, std, rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xavier_bounds_and_spread() {
        let mut rng = Rng::seed_from_u64(0);
        let w = xavier_uniform(&[120, 400], 400, 120, &mut rng);
        let a = (6.0f32 / 520.0).sqrt();
        assert!(w.as_slice().iter().all(|v| v.abs() <= a));
        // Variance of U(−a, a) is a²/3.
        let var = w.as_slice().iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var - a * a / 3.0).abs() < 0.05 * a * a / 3.0, "{var}");
    }

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[64, 32, 3, 3]).unwrap(), (288, 576));
        assert_eq!(fans(&[10, 64]).unwrap(), (64, 10));
        assert!(fans(&[10]).is_err());
        assert!(kaiming_normal(&[], FanMode::FanIn, &mut Rng::seed_from_u64(0)).is_err());
    }

    /// Mean and standard deviation in f64.
    fn moments(t: &Tensor) -> (f64, f64) {
        let n = t.len() as f64;
        let mean = t.as_slice().iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = t
            .as_slice()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    /// On n = 73,728 draws the sample std has a relative standard error of 1/√(2n) ≈ 0.26%,
    /// the mean a standard error of std/√n ≈ 0.37% of std: 2% and 2%·std are more than 5 standard
    /// errors away, and a wrong fan (a factor 2 between fan_in and fan_out here) or a missing
    /// √2 misses them by far.
    #[test]
    fn kaiming_std_is_sqrt_two_over_fan() {
        let shape = [128, 64, 3, 3];
        for (mode, fan) in [(FanMode::FanIn, 64 * 9), (FanMode::FanOut, 128 * 9)] {
            let w = kaiming_normal(&shape, mode, &mut Rng::seed_from_u64(3)).unwrap();
            let (mean, std) = moments(&w);
            let want = (2.0 / fan as f64).sqrt();
            assert!(
                (std - want).abs() < 0.02 * want,
                "{mode:?}: std {std}, want {want}"
            );
            assert!(mean.abs() < 0.02 * want, "{mode:?}: mean {mean}");
        }
        // Seeded: the same seed draws the same tensor.
        let a = kaiming_normal(&shape, FanMode::FanIn, &mut Rng::seed_from_u64(3)).unwrap();
        let b = kaiming_normal(&shape, FanMode::FanIn, &mut Rng::seed_from_u64(3)).unwrap();
        assert_eq!(a, b);
    }
}
