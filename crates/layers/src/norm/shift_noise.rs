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

/// `y = a_c · x + b_c` in training, with a fresh (a_c, b_c) for every channel c at every forward
/// pass, drawn from [`ShiftNoiseConfig`]; the identity in eval mode.
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
/// assert_eq!(noise.forward(&x)?.value().as_slice(), &[0.0; 8]);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct ShiftNoise {
    channels: usize,
    config: ShiftNoiseConfig,
    rng: Rng,
    mode: Mode,
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
        })
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
        if self.mode == Mode::Eval {
            return Ok(x.clone());
        }
        let c = self.channels;
        let ShiftNoiseConfig {
            min_scale,
            max_scale,
            max_shift,
        } = self.config;
        let scale: Vec<f32> = (0..c)
            .map(|_| self.rng.uniform(min_scale, max_scale))
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|_| self.rng.uniform(-max_shift, max_shift))
            .collect();
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
