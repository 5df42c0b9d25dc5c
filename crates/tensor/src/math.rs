//! Scalar math written so that the compiler vectorizes loops over it.
//!
//! `f32::exp` is a call into libm that blocks vectorization; sigmoid over LeNet's activations
//! would cost milliseconds per step with it. [`exp`] is branch-free and accurate to about 1 ulp.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two (Cody–Waite): `n * LN2_HI` is exact for |n| < 2^9, so the reduction
// x - n·ln2 loses nothing to cancellation.
// Written as bits: 0.693145751953125 (exact, trailing zero bits) and ≈ 1.4286068e-6.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
// Adding and subtracting 1.5·2^23 rounds to the nearest integer (ties to even) for |v| < 2^22.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x in f32, within 2 ulp of the exact value over the whole range; `inf` above ≈ 88.72,
/// gradual underflow to 0 below ≈ -87.3, NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // The clamp keeps the exponent arithmetic in range; the final multiplications still
    // overflow to inf or underflow to 0 exactly where the true result does.
    let xc = x.clamp(-104.0, 89.0);
    let shifted = xc * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO; // |r| <= ln2/2
                                            // Taylor series of e^r to degree 7: truncation error r^8/8! < 6e-9, below half an ulp.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n as two factors so that each stays a normal float for n in [-150, 129]. The integer n
    // sits in the low mantissa bits of `shifted` (its unit is 1 there): reading it from the bits
    // vectorizes, where the saturating `n as i32` would be converted one lane at a time.
    let n = shifted.to_bits() as i32 - ROUND_MAGIC.to_bits() as i32;
    let n1 = n >> 1;
    let n2 = n - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let y = p * s1 * s2;
    // NaN must stay NaN; the clamp above already propagates it, this keeps it explicit.
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// The logistic function 1 / (1 + e^-x), vectorizable.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        ((a as f64) - b).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_normal_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.7 {
            let e = ulps(exp(x), (x as f64).exp());
            worst = worst.max(e);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_edge_cases() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        // Subnormal results are still close to the truth.
        let sub = exp(-100.0) as f64;
        assert!((sub - (-100.0f64).exp()).abs() < 1e-45);
    }

    #[test]
    fn sigmoid_matches_f64() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - want).abs() < 2e-7, "x = {x}");
        }
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
    }
}
