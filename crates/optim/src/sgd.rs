//! Stochastic gradient descent.

use norma_autograd::Param;
use norma_tensor::Tensor;

use crate::{check, Optimizer, OptimizerKind, OptimizerState, ParamState, Result};

/// Settings of [`Sgd`] (PyTorch's names and defaults; `lr` must be set).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// SGD, exactly as PyTorch's `torch.optim.SGD`: with `g = ∇ + weight_decay·p`,
///
/// ```text
/// momentum = 0:  p ← p − lr·g
/// momentum > 0:  b ← g on the first step, then b ← momentum·b + (1 − dampening)·g
///                p ← p − lr·(g + momentum·b)   (Nesterov)   or   p ← p − lr·b
/// ```
pub struct Sgd {
    params: Vec<Param>,
    config: SgdConfig,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    /// An optimizer over `params`.
    pub fn new(params: Vec<Param>, config: SgdConfig) -> Result<Sgd> {
        check("SGD", "lr", config.lr, 0.0, f64::INFINITY, false)?;
        check("SGD", "momentum", config.momentum, 0.0, 1.0, true)?;
        check("SGD", "dampening", config.dampening, 0.0, 1.0, true)?;
        check(
            "SGD",
            "weight_decay",
            config.weight_decay,
            0.0,
            f64::INFINITY,
            false,
        )?;
        if config.nesterov && (config.momentum == 0.0 || config.dampening != 0.0) {
            return Err(crate::OptimError::Config {
                optimizer: "SGD",
                name: "momentum",
                value: config.momentum,
                reason: "Nesterov momentum needs momentum > 0 and dampening 0",
            });
        }
        let velocity = vec![None; params.len()];
        Ok(Sgd {
            params,
            config,
            velocity,
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        let lr = c.lr as f32;
        for (p, velocity) in self.params.iter().zip(&mut self.velocity) {
            let Some(grad) = p.grad() else {
                continue;
            };
            if c.weight_decay == 0.0 && c.momentum == 0.0 {
                // Plain SGD reads the gradient where it is: no copy.
                p.update(|value| value.axpy(-lr, &grad))??;
                continue;
            }
            let mut g = Tensor::clone(&grad);
            if c.weight_decay != 0.0 {
                g.axpy(c.weight_decay as f32, &p.value())?;
            }
            if c.momentum != 0.0 {
                let b = match velocity {
                    None => velocity.insert(g.clone()),
                    Some(b) => {
                        b.scale_in_place(c.momentum as f32);
                        b.axpy((1.0 - c.dampening) as f32, &g)?;
                        b
                    }
                };
                if c.nesterov {
                    g.axpy(c.momentum as f32, b)?;
                } else {
                    g = b.clone();
                }
            }
            p.update(|value| value.axpy(-lr, &g))??;
        }
        Ok(())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn kind(&self) -> OptimizerKind {
        if self.config.momentum != 0.0 {
            OptimizerKind::SgdMomentum
        } else {
            OptimizerKind::Sgd
        }
    }

    /// The momentum buffers (none for plain SGD, which keeps nothing).
    fn state(&self) -> OptimizerState {
        let params = self.velocity.iter().map(|b| match b {
            Some(b) => ParamState::Velocity(b.clone()),
            None => ParamState::Empty,
        });
        OptimizerState {
            kind: self.kind(),
            params: params.collect(),
        }
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        state.check(self.kind(), &self.params)?;
        for (b, saved) in self.velocity.iter_mut().zip(&state.params) {
            *b = match saved {
                ParamState::Velocity(saved) => Some(saved.clone()),
                _ => None,
            };
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check("SGD", "lr", lr, 0.0, f64::INFINITY, false)?;
        self.config.lr = lr;
        Ok(())
    }
}
