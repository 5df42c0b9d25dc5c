//! Noise that moves each channel's distribution at every training step ("noisy BatchNorm",
//! Santurkar, Tsipras, Ilyas & Mądry, *How Does Batch Normalization Help Optimization?*, 2018,
//! Section 2.1).
//!
//! Placed right after a batch norm, it undoes on purpose what batch norm is said to achieve:
//! the next layer's input no longer has a stable distribution. Santurkar et al. show that a
//! network trained this way still trains about as well as with plain batch norm, which argues
//! against "internal covariate shift" as the reason batch norm works.

use norma_autograd::Var;
use norma_tensor::{Rng, Tensor};

use crate::module::{Mode, Module};
use crate::{LayerError, Result};

/// The distribution of [`ShiftNoise`]: a scale drawn from U(`min_scale`, `max_scale`) and a
/// shift from U(−`max_shift`, `max_shift`), per channel and per training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftNoiseConfig {
    pub min_scale: f32,
    pub max_scale: f32,
    pub max_shift: f32,
}

impl Default for ShiftNoiseConfig {
    /// Scales in [1, 3] and shifts in [−1, 1]: after a batch norm (unit variance per channel),
    /// every step moves each channel's mean by up to 1 and its standard deviation by up to 3×.
    fn default() -> Self {
        ShiftNoiseConfig {
            min_scale: 1.0,
            max_scale: 3.0,
            max_shift: 1.0,
        }
    }
}

/// What [`ShiftNoise`] does in eval mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoiseAtEval {
    /// `y = E[a] · x + E[b]`: the noise replaced by its expectation, as dropout scales by its
    /// keep probability. The next layer then sees at test time the input it saw on average in
    /// training (with the default scales in [1, 3], twice the batch norm's output).
    #[default]
    Expectation,
    /// `y = x`: the noise left out. The next layer sees inputs half as large as in training
    /// on average, so a test accuracy measured this way mixes the noise's effect with that
    /// mismatch.
    Identity,
}

/// `y = a_c · x + b_c` in training, with a fresh (a_c, b_c) for every channel c at every forward
/// pass, drawn from [`ShiftNoiseConfig`]; in eval mode its expectation (or, with
/// [`NoiseAtEval::Identity`], nothing: see [`ShiftNoise::set_at_eval`]).
///
/// - input: (N, C, ...) with C = `channels`; output: the same shape
/// - no parameters or buffers (a model keeps its `state_dict` names with or without it)
/// - its own seeded generator: the same seed gives the same noise sequence
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{Module, ShiftNoise, ShiftNoiseConfig};
/// use norma_tensor::{Rng, Tensor};
/// let mut noise = ShiftNoise::new(2, ShiftNoiseConfig::default(), Rng::seed_from_u64(0))?;
/// let x = Var::constant(Tensor::zeros(&[4, 2]));
/// let y = noise.forward(&x)?; // each channel moved by its own shift
/// assert!(y.value().as_slice().iter().all(|v| v.abs() <= 1.0));
/// noise.eval();
/// let ones = Var::constant(Tensor::ones(&[4, 2]));
/// // The expectation: E[a] = 2 for scales in [1, 3], E[b] = 0.
/// assert_eq!(noise.forward(&ones)?.value().as_slice(), &[2.0; 8]);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct ShiftNoise {
    channels: usize,
    config: ShiftNoiseConfig,
    rng: Rng,
    mode: Mode,
    at_eval: NoiseAtEval,
}

impl ShiftNoise {
    /// Noise over `channels` channels drawn from `config` with `rng`.
    ///
    /// Errors: no channels, or a distribution that is not a finite range
    /// (0 < `min_scale` ≤ `max_scale`, `max_shift` ≥ 0).
    pub fn new(channels: usize, config: ShiftNoiseConfig, rng: Rng) -> Result<ShiftNoise> {
        let ShiftNoiseConfig {
            min_scale,
            max_scale,
            max_shift,
        } = config;
        let finite = [min_scale, max_scale, max_shift]
            .iter()
            .all(|v| v.is_finite());
        if channels == 0
            || !finite
            || !(0.0 < min_scale && min_scale <= max_scale && max_shift >= 0.0)
        {
            return Err(LayerError::Config {
                layer: format!("ShiftNoise({channels})"),
                reason: format!(
                    "needs channels > 0, 0 < min_scale <= max_scale and max_shift >= 0, all finite; got {config:?}"
                ),
            });
        }
        Ok(ShiftNoise {
            channels,
            config,
            rng,
            mode: Mode::Train,
            at_eval: NoiseAtEval::default(),
        })
    }

    /// Chooses what the noise does in eval mode (its expectation unless told otherwise).
    pub fn set_at_eval(&mut self, at_eval: NoiseAtEval) {
        self.at_eval = at_eval;
    }

    /// What the noise does in eval mode.
    pub fn at_eval(&self) -> NoiseAtEval {
        self.at_eval
    }

    /// The channels it draws noise for.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The distribution it draws from.
    pub fn config(&self) -> ShiftNoiseConfig {
        self.config
    }
}

impl Module for ShiftNoise {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        let shape = x.shape();
        if shape.len() < 2 || shape[1] != self.channels {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: format!("(N, {}, ...)", self.channels),
                got: shape.to_vec(),
            });
        }
        let c = self.channels;
        let ShiftNoiseConfig {
            min_scale,
            max_scale,
            max_shift,
        } = self.config;
        let (scale, shift): (Vec<f32>, Vec<f32>) = match (self.mode, self.at_eval) {
            (Mode::Eval, NoiseAtEval::Identity) => return Ok(x.clone()),
            // E[U(lo, hi)] = (lo + hi) / 2; the shifts are symmetric about 0.
            (Mode::Eval, NoiseAtEval::Expectation) => {
                (vec![0.5 * (min_scale + max_scale); c], vec![0.0; c])
            }
            (Mode::Train, _) => (
                (0..c)
                    .map(|_| self.rng.uniform(min_scale, max_scale))
                    .collect(),
                (0..c)
                    .map(|_| self.rng.uniform(-max_shift, max_shift))
                    .collect(),
            ),
        };
        // (1, C, 1, ...) broadcasts over the batch and the positions.
        let mut per_channel = vec![1; shape.len()];
        per_channel[1] = c;
        let scale = Var::constant(Tensor::from_vec(&per_channel, scale)?);
        let shift = Var::constant(Tensor::from_vec(&per_channel, shift)?);
        Ok(x.mul(&scale)?.add(&shift)?)
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn describe(&self) -> String {
        let c = self.config;
        format!(
            "ShiftNoise({}, scale=U({}, {}), shift=U(-{}, {}))",
            self.channels, c.min_scale, c.max_scale, c.max_shift, c.max_shift
        )
    }
}

/// Sets what every [`ShiftNoise`] inside `model` does in eval mode; returns how many it found.
pub fn set_noise_at_eval(model: &mut dyn Module, at_eval: NoiseAtEval) -> usize {
    let mut found = 0;
    crate::module::for_each_module_mut(model, &mut |_, m| {
        if let Some(noise) = m.downcast_mut::<ShiftNoise>() {
            noise.set_at_eval(at_eval);
            found += 1;
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_mode_applies_the_expectation_or_nothing() {
        let config = ShiftNoiseConfig {
            min_scale: 0.5,
            max_scale: 1.5,
            max_shift: 2.0,
        };
        let mut noise = ShiftNoise::new(3, config, Rng::seed_from_u64(1)).unwrap();
        let x =
            Var::constant(Tensor::from_vec(&[2, 3], vec![1.0, -2.0, 4.0, 0.5, 0.0, 8.0]).unwrap());
        noise.eval();
        // E[a] = 1 for scales in [0.5, 1.5]: the expectation is the identity here.
        assert_eq!(noise.forward(&x).unwrap().value(), x.value());
        let mut noise =
            ShiftNoise::new(3, ShiftNoiseConfig::default(), Rng::seed_from_u64(1)).unwrap();
        noise.eval();
        let doubled: Vec<f32> = x.value().as_slice().iter().map(|v| 2.0 * v).collect();
        assert_eq!(noise.forward(&x).unwrap().value().as_slice(), &doubled[..]);
        noise.set_at_eval(NoiseAtEval::Identity);
        assert_eq!(noise.at_eval(), NoiseAtEval::Identity);
        assert_eq!(noise.forward(&x).unwrap().value(), x.value());
        // Training mode is noisy whatever the eval choice.
        noise.train();
        assert_ne!(noise.forward(&x).unwrap().value(), x.value());
    }

    #[test]
    fn the_choice_reaches_every_noise_layer_of_a_model() {
        let mut model = crate::models::lenet_bn_noisy(
            crate::models::Activation::Sigmoid,
            ShiftNoiseConfig::default(),
            &mut Rng::seed_from_u64(0),
        )
        .unwrap();
        assert_eq!(set_noise_at_eval(&mut model, NoiseAtEval::Identity), 4);
        let mut plain = crate::models::lenet_bn(
            crate::models::Activation::Sigmoid,
            &mut Rng::seed_from_u64(0),
        )
        .unwrap();
        assert_eq!(set_noise_at_eval(&mut plain, NoiseAtEval::Identity), 0);
    }
}
