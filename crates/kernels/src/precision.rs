//! The numerical devices that keep the kernels exact in f32: the inverse standard deviation,
//! a mean split into an f32 and its residual, and the test for a gradient whose terms cancel.

/// Σg² / Σdx'² above which dx is computed in f64 (dx' is dx before the γ·inv_std factor): the
/// f32 path's rounding, a few ulps of |g|, is then more than sqrt(256)·6e-8 ≈ 1e-6 of the
/// result's size.
const CANCELLATION: f64 = 256.0;

/// 1 / sqrt(var + eps) in f64; 0 (not infinity) when var + eps is 0, as in PyTorch, so that a
/// constant channel with eps = 0 still maps to β instead of NaN.
pub(crate) fn inv_std(var: f64, eps: f32) -> f64 {
    let v = var + eps as f64;
    if v == 0.0 {
        0.0
    } else {
        1.0 / v.sqrt()
    }
}

/// A value as an f32 and the part of it the f32 lost: `(x − hi) − lo` is `x − value` to f32
/// precision for x near the value (x − hi is exact there, by Sterbenz's lemma).
pub(crate) fn split(value: f64) -> (f32, f32) {
    let hi = value as f32;
    (hi, (value - hi as f64) as f32)
}

/// Whether a channel's (or group's) dx cancels so much that f32 evaluation would lose its
/// precision. The f32 path's rounding is a few ulps of the terms it subtracts, which are of the
/// size of the output gradient g; f64 is used when Σg² > [`CANCELLATION`] · Σdx'², both known in
/// closed form from the sums over the M values (Σd = 0, Σd² = M·var, with d = x − mean and g
/// the output gradient, γ-weighted for group norm):
///
/// ```text
/// Σdx'² = Σ(g − mean(g))² − (Σg·d)² / (M·(var + eps)) · (2 − var / (var + eps))
/// ```
///
/// This catches both ways dx can be small next to g: g nearly constant (g − mean(g) cancels,
/// or one value per group) and g nearly linear in x̂ (two values per channel, the gradient of
/// Σy²/2).
pub(crate) fn cancels(m: f64, var: f64, eps: f32, sum: f64, dot: f64, sum_sq: f64) -> bool {
    let ve = var + eps as f64;
    if !(sum_sq > 0.0 && ve > 0.0) {
        return false;
    }
    let centred = sum_sq - sum * sum / m;
    let result = centred - dot * dot / (m * ve) * (2.0 - var / ve);
    sum_sq > CANCELLATION * result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_recovers_the_f64_value() {
        for v in [1e4 + 1.0 / 3.0, -2.5, 0.1, 0.0] {
            let (hi, lo) = split(v);
            assert_eq!(hi, v as f32);
            assert!((hi as f64 + lo as f64 - v).abs() <= 1e-12 * v.abs());
        }
        assert_eq!(inv_std(0.0, 0.0), 0.0);
        assert_eq!(inv_std(3.0, 1.0), 0.5);
    }
}
