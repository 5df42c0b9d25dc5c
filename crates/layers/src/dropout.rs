//! Dropout.

use norma_autograd::Var;
use norma_tensor::{Rng, Tensor};

use crate::module::{Mode, Module};
use crate::{LayerError, Result};

/// Training: `y = x · m / (1 − p)` with m ~ Bernoulli(1 − p) drawn per element from the layer's
/// own seeded generator; evaluation: `y = x`. Any shape.
pub struct Dropout {
    p: f32,
    rng: Rng,
    mode: Mode,
}

impl Dropout {
    /// Drops each value with probability `p` in [0, 1).
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(LayerError::Config {
                layer: format!("Dropout(p={p})"),
                reason: "p must be in [0, 1)".into(),
            });
        }
        Ok(Dropout {
            p,
            rng: Rng::seed_from_u64(seed),
            mode: Mode::Train,
        })
    }
}

impl Module for Dropout {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        if self.mode == Mode::Eval || self.p == 0.0 {
            return Ok(input.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let n = input.value().len();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.next_f32() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(input.shape(), mask)?;
        Ok(input.mul(&Var::constant(mask))?)
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_rescales_in_training_only() {
        let mut d = Dropout::new(0.25, 1).unwrap();
        let x = Var::constant(Tensor::ones(&[10_000]));
        let y = d.forward(&x).unwrap();
        let zeros = y.value().as_slice().iter().filter(|&&v| v == 0.0).count();
        assert!((2200..2800).contains(&zeros), "{zeros}");
        assert!((y.value().mean_all() - 1.0).abs() < 0.03);
        d.eval();
        assert_eq!(d.forward(&x).unwrap().value(), x.value());
        assert!(Dropout::new(1.0, 0).is_err());
    }
}
