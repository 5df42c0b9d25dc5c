//! Santurkar et al.'s three measures of how well the gradient at a point describes the loss
//! nearby, as plain functions of a loss-and-gradient oracle, so that they can be checked on a
//! loss whose answers are known in closed form (the tests: a quadratic).
//!
//! At a point x with loss L(x) and gradient g = ∇L(x), for every step size η of a set:
//!
//! - **loss variation**: L(x − η·g); the experiment plots its range (min–max over η);
//! - **gradient predictiveness**: ‖∇L(x) − ∇L(x − η·g)‖₂ (small: the gradient one step on is
//!   the one predicted; also plotted as a min–max range);
//! - **effective β-smoothness**: max over η of ‖∇L(x) − ∇L(x − η·g)‖₂ / ‖η·g‖₂, a lower bound
//!   of the gradient's Lipschitz constant β along the path (for L twice differentiable, the
//!   ratio is at most the largest eigenvalue of the Hessian's absolute value on the segment).
//!
//! For L(x) = ½ xᵀAx with A symmetric: g = Ax, L(x − ηg) = L(x) − η‖g‖² + ½η² gᵀAg,
//! ∇L(x) − ∇L(x − ηg) = ηAg, so the predictiveness is η‖Ag‖ and every ratio is ‖Ag‖/‖g‖,
//! which is β = λ_max(A) when g is a top eigenvector and never above β.

use serde::Serialize;

/// The measures at one point (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradientProbe {
    /// L(x).
    pub loss: f64,
    /// ‖g‖₂ with g = ∇L(x).
    pub grad_norm: f64,
    /// The step sizes η, in the order given.
    pub etas: Vec<f64>,
    /// L(x − η·g) for each η.
    pub losses: Vec<f64>,
    /// ‖∇L(x) − ∇L(x − η·g)‖₂ for each η.
    pub grad_changes: Vec<f64>,
}

impl GradientProbe {
    /// (min, max) of L(x − η·g) over η (NaN if a loss is NaN).
    pub fn loss_range(&self) -> (f64, f64) {
        min_max(&self.losses)
    }

    /// (min, max) of ‖∇L(x) − ∇L(x − η·g)‖₂ over η.
    pub fn predictiveness_range(&self) -> (f64, f64) {
        min_max(&self.grad_changes)
    }

    /// Effective β-smoothness: max over η of ‖∇L(x) − ∇L(x − η·g)‖₂ / (η‖g‖₂); 0 for a zero
    /// gradient (nothing moved).
    pub fn beta(&self) -> f64 {
        if self.grad_norm == 0.0 {
            return 0.0;
        }
        self.etas
            .iter()
            .zip(&self.grad_changes)
            .map(|(eta, change)| change / (eta * self.grad_norm))
            .fold(f64::NEG_INFINITY, nan_max)
    }
}

/// The largest of `a` and `b`, NaN if either is NaN (a probe that blew up must show).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    let lo = values
        .iter()
        .fold(f64::INFINITY, |a, &b| if b.is_nan() { b } else { a.min(b) });
    (
        lo,
        values.iter().fold(f64::NEG_INFINITY, |a, &b| nan_max(a, b)),
    )
}

/// ‖a − b‖₂.
pub fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// ‖a‖₂.
pub fn norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The measures at `x` for the step sizes `etas`: `oracle(p)` returns L(p) and ∇L(p). The
/// oracle is called at x first, then at x − η·g for each η in order.
pub fn probe<E>(
    x: &[f64],
    etas: &[f64],
    mut oracle: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), E>,
) -> Result<GradientProbe, E> {
    let (loss, g) = oracle(x)?;
    let mut losses = Vec::with_capacity(etas.len());
    let mut grad_changes = Vec::with_capacity(etas.len());
    for &eta in etas {
        let moved: Vec<f64> = x.iter().zip(&g).map(|(xi, gi)| xi - eta * gi).collect();
        let (l, g2) = oracle(&moved)?;
        losses.push(l);
        grad_changes.push(distance(&g, &g2));
    }
    Ok(GradientProbe {
        loss,
        grad_norm: norm(&g),
        etas: etas.to_vec(),
        losses,
        grad_changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L(x) = ½ xᵀAx and its gradient Ax.
    fn quadratic(a: &[Vec<f64>]) -> impl Fn(&[f64]) -> Result<(f64, Vec<f64>), ()> + '_ {
        move |x: &[f64]| {
            let ax: Vec<f64> = a
                .iter()
                .map(|row| row.iter().zip(x).map(|(r, v)| r * v).sum())
                .collect();
            let loss = 0.5 * x.iter().zip(&ax).map(|(v, w)| v * w).sum::<f64>();
            Ok((loss, ax))
        }
    }

    /// A symmetric matrix with eigenvalues 4, 1 and 0.25 and eigenvectors
    /// (1, 1, 0)/√2, (1, −1, 0)/√2, (0, 0, 1).
    fn matrix() -> Vec<Vec<f64>> {
        vec![
            vec![2.5, 1.5, 0.0],
            vec![1.5, 2.5, 0.0],
            vec![0.0, 0.0, 0.25],
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn on_a_quadratic_the_measures_are_the_closed_forms() {
        let a = matrix();
        let x = [0.3, -1.2, 2.0];
        let etas = [0.05, 0.1, 0.2, 0.4];
        let p = probe(&x, &etas, quadratic(&a)).unwrap();
        let (l0, g) = quadratic(&a)(&x).unwrap();
        let (_, ag) = quadratic(&a)(&g).unwrap();
        let g2: f64 = g.iter().map(|v| v * v).sum();
        let gag: f64 = g.iter().zip(&ag).map(|(u, v)| u * v).sum();
        assert!(close(p.loss, l0));
        assert!(close(p.grad_norm, g2.sqrt()));
        for (i, &eta) in etas.iter().enumerate() {
            // L(x − ηg) = L(x) − η‖g‖² + ½η² gᵀAg.
            assert!(close(p.losses[i], l0 - eta * g2 + 0.5 * eta * eta * gag));
            // ∇L(x) − ∇L(x − ηg) = ηAg.
            assert!(close(p.grad_changes[i], eta * norm(&ag)), "{p:?}");
        }
        // The ratio is ‖Ag‖/‖g‖ for every η: between the smallest and largest eigenvalue.
        let ratio = norm(&ag) / g2.sqrt();
        assert!(close(p.beta(), ratio));
        assert!(p.beta() > 0.25 && p.beta() < 4.0, "{}", p.beta());
        // The loss is convex along g with its minimum at η = ‖g‖²/gᵀAg (inside the range).
        let (lo, hi) = p.loss_range();
        let best = g2 / gag;
        assert!(best > 0.05 && best < 0.4, "{best}");
        assert!(lo > l0 - 0.5 * g2 * g2 / gag - 1e-12);
        assert!(close(hi, p.losses.iter().copied().fold(f64::MIN, f64::max)));
        let (plo, phi) = p.predictiveness_range();
        assert!(close(plo, 0.05 * norm(&ag)) && close(phi, 0.4 * norm(&ag)));
    }

    #[test]
    fn along_the_top_eigenvector_beta_is_the_largest_eigenvalue() {
        let a = matrix();
        let top = [1.0, 1.0, 0.0];
        let p = probe(&top, &[0.01, 1.0], quadratic(&a)).unwrap();
        assert!(close(p.beta(), 4.0), "{}", p.beta());
        let bottom = [0.0, 0.0, 3.0];
        let p = probe(&bottom, &[0.5], quadratic(&a)).unwrap();
        assert!(close(p.beta(), 0.25), "{}", p.beta());
        // At the minimum nothing moves: no gradient, no change, β reported as 0.
        let p = probe(&[0.0; 3], &[0.5], quadratic(&a)).unwrap();
        assert_eq!((p.grad_norm, p.beta(), p.grad_changes[0]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn a_probe_that_blew_up_shows_as_nan() {
        let p = GradientProbe {
            loss: 1.0,
            grad_norm: 1.0,
            etas: vec![1.0, 2.0],
            losses: vec![0.5, f64::NAN],
            grad_changes: vec![1.0, f64::NAN],
        };
        assert!(p.loss_range().0.is_nan() && p.loss_range().1.is_nan());
        assert!(p.beta().is_nan());
    }
}
