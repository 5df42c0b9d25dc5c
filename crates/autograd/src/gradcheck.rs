//! Gradient checking against central finite differences.
//!
//! For a function `f` of several tensors, [`check`] reduces the output to a scalar
//! `L = Σ f(x) ⊙ R` with a fixed random `R` (so every output element matters, with a
//! different weight), back-propagates once, and compares each input element's gradient with
//! `(L(x + h) − L(x − h)) / 2h`, the forward evaluated in f32 and `L` summed in f64.
//!
//! Error budget in f32 with step `h` and O(1) values: truncation `h²/6·|f'''|` ≈ 2e-5 at
//! h = 1e-2, plus rounding of the outputs `≈ √n · 6e-8 · |y| / 2h`, under 1e-3 for a few
//! thousand outputs. The default tolerance (|a − n| ≤ 5e-3 + 1e-2·max(|a|, |n|)) sits well
//! above both and far below the size of a real mistake in a derivative.

use norma_tensor::{Rng, Tensor};
use thiserror::Error;

use crate::{no_grad, AutogradError, Param, Var};

/// Step and tolerances of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// Finite-difference step `h`.
    pub step: f32,
    /// Absolute tolerance.
    pub abs_tol: f64,
    /// Relative tolerance.
    pub rel_tol: f64,
    /// Seed of the random projection `R`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-2,
            abs_tol: 5e-3,
            rel_tol: 1e-2,
            seed: 0x6752_6164,
        }
    }
}

/// Why a gradient check failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GradCheckError {
    /// The function or its backward returned an error.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// An analytic gradient differs from the finite difference.
    #[error("input {input}, element {index}: analytic gradient {analytic} but finite difference {numeric} (tolerance {tolerance})")]
    Mismatch {
        input: usize,
        index: usize,
        analytic: f64,
        numeric: f64,
        tolerance: f64,
    },
    /// Backward did not reach an input that the function depends on.
    #[error("input {input} received no gradient")]
    Missing { input: usize },
}

fn projection(y: &Tensor, r: &Tensor) -> f64 {
    y.as_slice()
        .iter()
        .zip(r.as_slice())
        .map(|(&y, &r)| y as f64 * r as f64)
        .sum()
}

/// Checks the gradients of `f` at `inputs`; see the module documentation.
pub fn check(
    f: impl Fn(&[Var]) -> crate::Result<Var>,
    inputs: &[Tensor],
    cfg: &GradCheck,
) -> Result<(), GradCheckError> {
    let params: Vec<Param> = inputs.iter().cloned().map(Param::new).collect();
    let vars: Vec<Var> = params.iter().map(Param::var).collect();
    let y = f(&vars)?;
    let r = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut Rng::seed_from_u64(cfg.seed));
    y.mul(&Var::constant(r.clone()))?.sum_all()?.backward()?;

    let eval = |xs: &[Tensor]| -> Result<f64, GradCheckError> {
        let vars: Vec<Var> = xs.iter().cloned().map(Var::constant).collect();
        Ok(projection(no_grad(|| f(&vars))?.value(), &r))
    };
    let mut xs: Vec<Tensor> = inputs.to_vec();
    for (i, p) in params.iter().enumerate() {
        let analytic = p
            .grad()
            .map(|g| Tensor::clone(&g))
            .ok_or(GradCheckError::Missing { input: i })?;
        for j in 0..xs[i].len() {
            let x0 = xs[i].as_slice()[j];
            xs[i].as_slice_mut()[j] = x0 + cfg.step;
            let plus = eval(&xs)?;
            xs[i].as_slice_mut()[j] = x0 - cfg.step;
            let minus = eval(&xs)?;
            xs[i].as_slice_mut()[j] = x0;
            // The actual distance between the two f32 points, not 2h, in case h rounds.
            let h2 = ((x0 + cfg.step) - (x0 - cfg.step)) as f64;
            let numeric = (plus - minus) / h2;
            let a = analytic.as_slice()[j] as f64;
            let tolerance = cfg.abs_tol + cfg.rel_tol * a.abs().max(numeric.abs());
            if (a - numeric).abs() > tolerance || !a.is_finite() {
                return Err(GradCheckError::Mismatch {
                    input: i,
                    index: j,
                    analytic: a,
                    numeric,
                    tolerance,
                });
            }
        }
    }
    Ok(())
}
