//! Weight initialisation.

use norma_tensor::{Rng, Tensor};

/// Xavier (Glorot) uniform: U(−a, a) with a = sqrt(6 / (fan_in + fan_out)), as PyTorch's
/// `xavier_uniform_` (gain 1). Keeps activation variance roughly constant across layers.
pub fn xavier_uniform(shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor {
    let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
    Tensor::rand_uniform(shape, -a, a, rng)
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
}
