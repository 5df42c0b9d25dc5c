//! Adam and AdamW.

use norma_autograd::Param;
use norma_tensor::Tensor;

use crate::{check, Optimizer, OptimizerKind, OptimizerState, ParamState, Result};

/// Settings of [`Adam`] (PyTorch's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: decay the weights directly (`p ← p·(1 − lr·wd)`) instead of adding `wd·p` to
    /// the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's `AdamW` defaults (weight decay 0.01, decoupled).
    pub fn adamw() -> AdamConfig {
        AdamConfig {
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..AdamConfig::default()
        }
    }
}

/// Adam (Kingma & Ba), as PyTorch computes it, at step t:
///
/// ```text
/// g ← ∇ (+ wd·p for Adam with weight decay)      p ← p·(1 − lr·wd) first for AdamW
/// m ← β1·m + (1 − β1)·g        v ← β2·v + (1 − β2)·g²
/// p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// ```
pub struct Adam {
    params: Vec<Param>,
    config: AdamConfig,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    steps: Vec<u64>,
}

impl Adam {
    /// An optimizer over `params`.
    pub fn new(params: Vec<Param>, config: AdamConfig) -> Result<Adam> {
        let name = if config.decoupled_weight_decay {
            "AdamW"
        } else {
            "Adam"
        };
        check(name, "lr", config.lr, 0.0, f64::INFINITY, false)?;
        check(name, "beta1", config.beta1, 0.0, 1.0, false)?;
        check(name, "beta2", config.beta2, 0.0, 1.0, false)?;
        check(name, "eps", config.eps, 0.0, f64::INFINITY, false)?;
        check(
            name,
            "weight_decay",
            config.weight_decay,
            0.0,
            f64::INFINITY,
            false,
        )?;
        let n = params.len();
        Ok(Adam {
            params,
            config,
            m: vec![None; n],
            v: vec![None; n],
            steps: vec![0; n],
        })
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        let slots = self.m.iter_mut().zip(&mut self.v);
        for ((p, (m, v)), t) in self.params.iter().zip(slots).zip(&mut self.steps) {
            let Some(grad) = p.grad() else {
                continue;
            };
            let mut g = Tensor::clone(&grad);
            *t += 1;
            p.update(|value| -> Result<()> {
                if c.weight_decay != 0.0 {
                    if c.decoupled_weight_decay {
                        value.scale_in_place((1.0 - c.lr * c.weight_decay) as f32);
                    } else {
                        g.axpy(c.weight_decay as f32, value)?;
                    }
                }
                let m = m.get_or_insert_with(|| Tensor::zeros(g.shape()));
                let v = v.get_or_insert_with(|| Tensor::zeros(g.shape()));
                // 1 − β is computed in f64 and rounded once, as PyTorch passes its scalars.
                let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
                let (one_b1, one_b2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
                let step_size = (c.lr / (1.0 - c.beta1.powi(*t as i32))) as f32;
                let bias2_sqrt = (1.0 - c.beta2.powi(*t as i32)).sqrt() as f32;
                let eps = c.eps as f32;
                let iter = value
                    .as_slice_mut()
                    .iter_mut()
                    .zip(m.as_slice_mut())
                    .zip(v.as_slice_mut())
                    .zip(g.as_slice());
                for (((p, m), v), &g) in iter {
                    *m = b1 * *m + one_b1 * g;
                    *v = b2 * *v + one_b2 * g * g;
                    *p -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
                }
                Ok(())
            })??;
        }
        Ok(())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn kind(&self) -> OptimizerKind {
        if self.config.decoupled_weight_decay {
            OptimizerKind::AdamW
        } else {
            OptimizerKind::Adam
        }
    }

    /// The moment estimates and step count of every parameter that has taken a step.
    fn state(&self) -> OptimizerState {
        let slots = self.m.iter().zip(&self.v).zip(&self.steps);
        let params = slots.map(|((m, v), &step)| match (m, v) {
            (Some(m), Some(v)) => ParamState::Moments {
                m: m.clone(),
                v: v.clone(),
                step,
            },
            _ => ParamState::Empty,
        });
        OptimizerState {
            kind: self.kind(),
            params: params.collect(),
        }
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        state.check(self.kind(), &self.params)?;
        let slots = self.m.iter_mut().zip(&mut self.v).zip(&mut self.steps);
        for (((m, v), t), saved) in slots.zip(&state.params) {
            (*m, *v, *t) = match saved {
                ParamState::Moments { m, v, step } => (Some(m.clone()), Some(v.clone()), *step),
                _ => (None, None, 0),
            };
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check("Adam", "lr", lr, 0.0, f64::INFINITY, false)?;
        self.config.lr = lr;
        Ok(())
    }
}
