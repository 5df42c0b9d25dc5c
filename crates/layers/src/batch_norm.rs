//! What BatchNorm1d and BatchNorm2d share: the configuration, the state, and the autograd
//! operation whose forward and backward are the fused kernels of `norma-kernels`.
//!
//! Per channel c, with M values per channel in the batch:
//!
//! ```text
//! training:  y = γ_c · (x − μ_B) / sqrt(σ²_B + eps) + β_c      μ_B, σ²_B: batch mean, biased variance
//!            running_mean ← (1 − m)·running_mean + m·μ_B
//!            running_var  ← (1 − m)·running_var  + m·σ²_B·M/(M − 1)
//! eval:      y = γ_c · (x − running_mean) / sqrt(running_var + eps) + β_c
//! ```
//!
//! m is the momentum (0.1), or 1/num_batches_tracked when momentum is `None` (cumulative
//! average). This is PyTorch's convention, including the unbiased running variance.

use norma_autograd::{Backward, BackwardContext, Param, Var};
use norma_kernels::{BatchStats, Gradients};
use norma_tensor::Tensor;

use crate::module::{join_name, Buffer, BufferValue, Mode};
use crate::{LayerError, Result};

/// Options of a batch-norm layer; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f32,
    /// Weight of the new batch in the running statistics (0.1); `None` for a cumulative
    /// average over all batches seen.
    pub momentum: Option<f64>,
    /// Learnable γ (init 1) and β (init 0) (true).
    pub affine: bool,
    /// Keep running statistics and use them in eval mode (true). Without them, batch
    /// statistics are used in both modes.
    pub track_running_stats: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }
}

/// Running statistics and their batch counter.
pub(crate) struct Running {
    pub mean: Buffer,
    pub var: Buffer,
    pub batches: Buffer,
}

/// The state of one batch-norm layer, shared by the 1-D and 2-D front ends.
pub(crate) struct BatchNorm {
    pub num_features: usize,
    pub config: BatchNormConfig,
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub running: Option<Running>,
    pub mode: Mode,
}

impl BatchNorm {
    pub fn new(layer: &str, num_features: usize, config: BatchNormConfig) -> Result<BatchNorm> {
        let bad = |reason: String| LayerError::Config {
            layer: format!("{layer}({num_features})"),
            reason,
        };
        if num_features == 0 {
            return Err(bad("num_features must be positive".into()));
        }
        if !(config.eps >= 0.0 && config.eps.is_finite()) {
            return Err(bad(format!(
                "eps must be finite and non-negative, got {}",
                config.eps
            )));
        }
        if let Some(m) = config.momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(bad(format!("momentum must be in [0, 1], got {m}")));
            }
        }
        let c = num_features;
        let running = config.track_running_stats.then(|| Running {
            mean: Buffer::new(BufferValue::F32(Tensor::zeros(&[c]))),
            var: Buffer::new(BufferValue::F32(Tensor::ones(&[c]))),
            batches: Buffer::new(BufferValue::I64(0)),
        });
        Ok(BatchNorm {
            num_features,
            config,
            weight: config.affine.then(|| Param::new(Tensor::ones(&[c]))),
            bias: config.affine.then(|| Param::new(Tensor::zeros(&[c]))),
            running,
            mode: Mode::Train,
        })
    }

    /// The forward pass for an input already checked to be (N, C, ...) with C = num_features.
    pub fn forward(&mut self, x: &Var) -> Result<Var> {
        let weight = self.weight.as_ref().map(Param::var);
        let bias = self.bias.as_ref().map(Param::var);
        let gamma = weight.as_ref().map(|w| w.value().as_slice());
        let beta = bias.as_ref().map(|b| b.value().as_slice());
        let mut inputs = vec![x];
        inputs.extend(weight.as_ref());
        inputs.extend(bias.as_ref());
        let eps = self.config.eps;

        let running = match (&self.running, self.mode) {
            (Some(running), Mode::Eval) => running,
            _ => {
                // Batch statistics: training, or no running statistics to use.
                let out = norma_kernels::forward_train(x.value().view(), gamma, beta, eps)?;
                if let (Some(running), Mode::Train) = (&self.running, self.mode) {
                    self.update_running(running, &out.stats)?;
                }
                let output = Tensor::from_array(out.output);
                let backward = TrainBackward {
                    stats: out.stats,
                    affine: weight.is_some(),
                };
                return Ok(Var::from_op(&inputs, output, backward));
            }
        };
        let (mean, var) = (running_tensor(&running.mean), running_tensor(&running.var));
        let output = norma_kernels::forward_eval(
            x.value().view(),
            mean.as_slice(),
            var.as_slice(),
            gamma,
            beta,
            eps,
        )?;
        let backward = EvalBackward {
            mean,
            var,
            eps,
            affine: weight.is_some(),
        };
        Ok(Var::from_op(&inputs, Tensor::from_array(output), backward))
    }

    fn update_running(&self, running: &Running, stats: &BatchStats) -> Result<()> {
        let batches = {
            let mut counter = running.batches.get_mut();
            match &mut *counter {
                BufferValue::I64(n) => {
                    *n += 1;
                    *n
                }
                BufferValue::F32(_) => 1,
            }
        };
        let factor = self.config.momentum.unwrap_or(1.0 / batches as f64);
        let (mut mean, mut var) = (running.mean.get_mut(), running.var.get_mut());
        if let (BufferValue::F32(mean), BufferValue::F32(var)) = (&mut *mean, &mut *var) {
            norma_kernels::update_running_stats(
                mean.as_slice_mut(),
                var.as_slice_mut(),
                stats,
                factor,
            )?;
        }
        Ok(())
    }

    pub fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            out.push((join_name(prefix, "weight"), w.clone()));
            out.push((join_name(prefix, "bias"), b.clone()));
        }
    }

    pub fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, Buffer)>) {
        if let Some(r) = &self.running {
            out.push((join_name(prefix, "running_mean"), r.mean.clone()));
            out.push((join_name(prefix, "running_var"), r.var.clone()));
            out.push((join_name(prefix, "num_batches_tracked"), r.batches.clone()));
        }
    }

    pub fn describe(&self, layer: &str) -> String {
        let c = &self.config;
        let momentum = c.momentum.map_or("None".to_string(), |m| m.to_string());
        format!(
            "{layer}({}, eps={}, momentum={momentum}, affine={}, track_running_stats={})",
            self.num_features, c.eps, c.affine, c.track_running_stats
        )
    }

    /// The per-channel (scale, shift) of eval mode, for folding into a preceding layer.
    pub fn eval_scale_shift(&self) -> Option<Vec<(f32, f32)>> {
        let running = self.running.as_ref()?;
        let (mean, var) = (running_tensor(&running.mean), running_tensor(&running.var));
        let gamma = self.weight.as_ref().map(|w| w.value().clone());
        let beta = self.bias.as_ref().map(|b| b.value().clone());
        Some(norma_kernels::eval_scale_shift(
            mean.as_slice(),
            var.as_slice(),
            gamma.as_ref().map(Tensor::as_slice),
            beta.as_ref().map(Tensor::as_slice),
            self.config.eps,
        ))
    }
}

/// A copy of a running-statistics buffer (always F32 when built by [`BatchNorm::new`]).
fn running_tensor(buffer: &Buffer) -> Tensor {
    buffer
        .tensor()
        .map(|t| t.clone())
        .unwrap_or_else(|| Tensor::zeros(&[0]))
}

/// Splits kernel gradients into the autograd order [x, γ?, β?].
fn gradients(
    g: Gradients,
    ctx: &BackwardContext<'_>,
    affine: bool,
) -> norma_autograd::Result<Vec<Option<Tensor>>> {
    let c = g.dgamma.len();
    let mut out = vec![ctx.needs_grad(0).then(|| Tensor::from_array(g.dx))];
    if affine {
        out.push(
            ctx.needs_grad(1)
                .then(|| Tensor::from_vec(&[c], g.dgamma))
                .transpose()?,
        );
        out.push(
            ctx.needs_grad(2)
                .then(|| Tensor::from_vec(&[c], g.dbeta))
                .transpose()?,
        );
    }
    Ok(out)
}

fn kernel_error(op: &'static str, e: norma_kernels::KernelError) -> norma_autograd::AutogradError {
    norma_autograd::AutogradError::Op {
        op,
        reason: e.to_string(),
    }
}

/// Backward with batch statistics: the kernels' closed form.
struct TrainBackward {
    stats: BatchStats,
    affine: bool,
}

impl Backward for TrainBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let gamma = self.affine.then(|| ctx.input(1).as_slice());
        let g = norma_kernels::backward_train(
            ctx.input(0).view(),
            ctx.grad_output().view(),
            &self.stats,
            gamma,
        )
        .map_err(|e| kernel_error("batch_norm", e))?;
        gradients(g, ctx, self.affine)
    }
}

/// Backward with fixed running statistics (eval mode).
struct EvalBackward {
    mean: Tensor,
    var: Tensor,
    eps: f32,
    affine: bool,
}

impl Backward for EvalBackward {
    fn name(&self) -> &'static str {
        "batch_norm_eval"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let gamma = self.affine.then(|| ctx.input(1).as_slice());
        let g = norma_kernels::backward_eval(
            ctx.input(0).view(),
            ctx.grad_output().view(),
            self.mean.as_slice(),
            self.var.as_slice(),
            gamma,
            self.eps,
        )
        .map_err(|e| kernel_error("batch_norm_eval", e))?;
        gradients(g, ctx, self.affine)
    }
}

/// The constructors, accessors and [`crate::Module`] impl shared by BatchNorm1d and BatchNorm2d.
/// Each type provides `fn check_input(&self, shape: &[usize]) -> Result<()>`.
macro_rules! batch_norm_layer {
    ($name:ident) => {
        impl $name {
            /// A layer for `num_features` channels with PyTorch's defaults (eps 1e-5,
            /// momentum 0.1, affine, tracking running statistics).
            pub fn new(num_features: usize) -> $crate::Result<$name> {
                Self::with_config(num_features, $crate::BatchNormConfig::default())
            }

            /// A layer with explicit options.
            pub fn with_config(
                num_features: usize,
                config: $crate::BatchNormConfig,
            ) -> $crate::Result<$name> {
                Ok($name {
                    inner: $crate::batch_norm::BatchNorm::new(
                        stringify!($name),
                        num_features,
                        config,
                    )?,
                })
            }

            /// γ (`weight`), if `affine`.
            pub fn weight(&self) -> Option<&norma_autograd::Param> {
                self.inner.weight.as_ref()
            }

            /// β (`bias`), if `affine`.
            pub fn bias(&self) -> Option<&norma_autograd::Param> {
                self.inner.bias.as_ref()
            }

            /// The per-channel `(scale, shift)` eval mode applies (`y = x·scale + shift`), if
            /// running statistics are tracked.
            pub fn eval_scale_shift(&self) -> Option<Vec<(f32, f32)>> {
                self.inner.eval_scale_shift()
            }

            fn input_error(&self, expected: String, shape: &[usize]) -> $crate::LayerError {
                $crate::LayerError::Input {
                    layer: $crate::Module::describe(self),
                    expected,
                    got: shape.to_vec(),
                }
            }
        }

        impl $crate::Module for $name {
            fn forward(
                &mut self,
                input: &norma_autograd::Var,
            ) -> $crate::Result<norma_autograd::Var> {
                self.check_input(input.shape())?;
                self.inner.forward(input)
            }

            fn collect_params(&self, prefix: &str, out: &mut Vec<(String, norma_autograd::Param)>) {
                self.inner.collect_params(prefix, out);
            }

            fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, $crate::Buffer)>) {
                self.inner.collect_buffers(prefix, out);
            }

            fn set_mode(&mut self, mode: $crate::Mode) {
                self.inner.mode = mode;
            }

            fn describe(&self) -> String {
                self.inner.describe(stringify!($name))
            }

            $crate::impl_any!();
        }
    };
}
pub(crate) use batch_norm_layer;
