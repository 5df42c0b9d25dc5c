//! The two per-channel reductions of batch norm, each as a pair of f64 sums:
//!
//! - [`ShiftedSquares`] (forward): Σ(x − k) and Σ(x − k)², k a value of the channel;
//! - [`GradSums`] (backward): Σdy and Σdy·(x − mean).
//!
//! Every f32 value is widened to f64 before it is used, so the sums are as exact as f64
//! allows whatever the data's offset. On x86-64 with AVX2 and FMA (norma builds with
//! `target-cpu=native`), contiguous runs use explicit 4-wide f64 vector code: the compiler does
//! not vectorize two interleaved floating-point reductions on its own. Elsewhere a portable
//! loop computes the same sums, in a different (but equally fixed) order.

/// A reduction to two f64 sums per channel.
pub trait ChannelSum: Sync {
    /// Which pair of sums: `false` for Σ(x − k), Σ(x − k)²; `true` for Σy, Σy·(x − k).
    const GRAD: bool;

    /// Both sums over one contiguous run `x[i]`, `y[i]` of a single channel with constant `k`.
    fn run(&self, x: &[f32], y: &[f32], k: f32) -> [f64; 2] {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        {
            avx2::sums(x, y, k, Self::GRAD)
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        )))]
        {
            portable_run(x, y, k, Self::term)
        }
    }

    /// The two terms of one value of channel-wise data.
    fn term(x: f32, y: f32, k: f32) -> [f64; 2];

    /// Adds a run of (N, C) rows: row r holds its values at `x[r·stride ..]`, `y[r·stride ..]`,
    /// one per channel of `k`. For each channel c, the terms of every row's `x[c]`, `y[c]`
    /// with `k[c]` go into `a[c]` and `b[c]`.
    ///
    /// Four rows are combined before touching the accumulators, which keeps the loop
    /// arithmetic-bound instead of load/store-bound; the loop over channels vectorizes.
    fn rows(&self, x: &[f32], y: &[f32], stride: usize, k: &[f32], a: &mut [f64], b: &mut [f64]) {
        fn row(data: &[f32], r: usize, stride: usize, c: usize) -> &[f32] {
            &data[r * stride..r * stride + c]
        }
        let c = k.len();
        let rows = if c == 0 {
            0
        } else {
            (x.len() + stride - c) / stride
        };
        let (a, b) = (&mut a[..c], &mut b[..c]);
        let quads = rows / 4 * 4;
        for r in (0..quads).step_by(4) {
            let (x0, x1, x2, x3) = (
                row(x, r, stride, c),
                row(x, r + 1, stride, c),
                row(x, r + 2, stride, c),
                row(x, r + 3, stride, c),
            );
            let (y0, y1, y2, y3) = (
                row(y, r, stride, c),
                row(y, r + 1, stride, c),
                row(y, r + 2, stride, c),
                row(y, r + 3, stride, c),
            );
            for i in 0..c {
                let t0 = Self::term(x0[i], y0[i], k[i]);
                let t1 = Self::term(x1[i], y1[i], k[i]);
                let t2 = Self::term(x2[i], y2[i], k[i]);
                let t3 = Self::term(x3[i], y3[i], k[i]);
                a[i] += (t0[0] + t1[0]) + (t2[0] + t3[0]);
                b[i] += (t0[1] + t1[1]) + (t2[1] + t3[1]);
            }
        }
        for r in quads..rows {
            let (xr, yr) = (row(x, r, stride, c), row(y, r, stride, c));
            for i in 0..c {
                let t = Self::term(xr[i], yr[i], k[i]);
                a[i] += t[0];
                b[i] += t[1];
            }
        }
    }
}

/// Forward statistics around a shift: Σ(x − k), Σ(x − k)².
pub struct ShiftedSquares;

impl ChannelSum for ShiftedSquares {
    const GRAD: bool = false;

    #[inline(always)]
    fn term(x: f32, _y: f32, k: f32) -> [f64; 2] {
        let d = x as f64 - k as f64;
        [d, d * d]
    }
}

/// Backward sums: Σdy and Σdy·(x − c) (x in `x`, dy in `y`, c the mean).
pub struct GradSums;

impl ChannelSum for GradSums {
    const GRAD: bool = true;

    #[inline(always)]
    fn term(x: f32, dy: f32, c: f32) -> [f64; 2] {
        let dy = dy as f64;
        [dy, dy * (x as f64 - c as f64)]
    }
}

/// Portable version of a run: eight lanes of f64 accumulators, lanes summed in order.
#[allow(dead_code)] // used when the AVX2 path is not compiled in
fn portable_run(
    x: &[f32],
    y: &[f32],
    k: f32,
    term: impl Fn(f32, f32, f32) -> [f64; 2],
) -> [f64; 2] {
    const LANES: usize = 8;
    let mut a = [0.0f64; LANES];
    let mut b = [0.0f64; LANES];
    for (i, (&x, &y)) in x.iter().zip(y).enumerate() {
        let [u, v] = term(x, y, k);
        a[i % LANES] += u;
        b[i % LANES] += v;
    }
    [a.iter().sum(), b.iter().sum()]
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;

    /// Σu and Σv over a run, 8 values per step in two 4-wide f64 halves with separate
    /// accumulators; the tail is added lane by lane into the first accumulators.
    ///
    /// `grad = false`: u = x − k, v = u² (y unused).
    /// `grad = true`: u = y, v = y·(x − k).
    #[inline]
    pub fn sums(x: &[f32], y: &[f32], k: f32, grad: bool) -> [f64; 2] {
        assert!(y.len() >= x.len());
        let n8 = x.len() / 8 * 8;
        // SAFETY: the `target_feature` cfg guarantees AVX2 and FMA are available; every load
        // reads 8 floats at an offset i < n8 <= len, so it stays inside both slices.
        let (mut a, mut b) = unsafe {
            let kk = _mm256_set1_pd(k as f64);
            let (mut a0, mut a1, mut b0, mut b1) = (
                _mm256_setzero_pd(),
                _mm256_setzero_pd(),
                _mm256_setzero_pd(),
                _mm256_setzero_pd(),
            );
            let mut i = 0;
            while i < n8 {
                let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                let x_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
                let x_hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(xv));
                let d_lo = _mm256_sub_pd(x_lo, kk);
                let d_hi = _mm256_sub_pd(x_hi, kk);
                if grad {
                    let yv = _mm256_loadu_ps(y.as_ptr().add(i));
                    let y_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(yv));
                    let y_hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(yv));
                    a0 = _mm256_add_pd(a0, y_lo);
                    a1 = _mm256_add_pd(a1, y_hi);
                    b0 = _mm256_fmadd_pd(y_lo, d_lo, b0);
                    b1 = _mm256_fmadd_pd(y_hi, d_hi, b1);
                } else {
                    a0 = _mm256_add_pd(a0, d_lo);
                    a1 = _mm256_add_pd(a1, d_hi);
                    b0 = _mm256_fmadd_pd(d_lo, d_lo, b0);
                    b1 = _mm256_fmadd_pd(d_hi, d_hi, b1);
                }
                i += 8;
            }
            let mut a = [0.0f64; 8];
            let mut b = [0.0f64; 8];
            _mm256_storeu_pd(a.as_mut_ptr(), a0);
            _mm256_storeu_pd(a.as_mut_ptr().add(4), a1);
            _mm256_storeu_pd(b.as_mut_ptr(), b0);
            _mm256_storeu_pd(b.as_mut_ptr().add(4), b1);
            (a, b)
        };
        for (l, i) in (n8..x.len()).enumerate() {
            let d = x[i] as f64 - k as f64;
            if grad {
                let g = y[i] as f64;
                a[l] += g;
                b[l] = g.mul_add(d, b[l]);
            } else {
                a[l] += d;
                b[l] = d.mul_add(d, b[l]);
            }
        }
        [a.iter().sum(), b.iter().sum()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], y: &[f32], k: f32, grad: bool) -> [f64; 2] {
        let mut s = [0.0f64; 2];
        for (&x, &y) in x.iter().zip(y) {
            let d = x as f64 - k as f64;
            if grad {
                s[0] += y as f64;
                s[1] += y as f64 * d;
            } else {
                s[0] += d;
                s[1] += d * d;
            }
        }
        s
    }

    #[test]
    fn runs_match_a_plain_f64_loop_for_every_tail_length() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| 1e4 + (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            for (grad, got) in [
                (false, ShiftedSquares.run(&x, &y, 1e4)),
                (true, GradSums.run(&x, &y, 1e4)),
            ] {
                let want = reference(&x, &y, 1e4, grad);
                for j in 0..2 {
                    assert!(
                        (got[j] - want[j]).abs() <= 1e-12 * (1.0 + want[j].abs()),
                        "n {n} grad {grad}"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_add_per_channel_for_every_row_count() {
        let k = [1.0f32, 0.0, 4.0];
        for n in 0..10 {
            let x: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 0.7).sin()).collect();
            let y: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 0.3).cos()).collect();
            for grad in [false, true] {
                let (mut a, mut b) = (vec![0.0; 3], vec![0.0; 3]);
                if grad {
                    GradSums.rows(&x, &y, 3, &k, &mut a, &mut b);
                } else {
                    ShiftedSquares.rows(&x, &y, 3, &k, &mut a, &mut b);
                }
                for ch in 0..3 {
                    let xs: Vec<f32> = x.iter().skip(ch).step_by(3).copied().collect();
                    let ys: Vec<f32> = y.iter().skip(ch).step_by(3).copied().collect();
                    let want = reference(&xs, &ys, k[ch], grad);
                    assert!((a[ch] - want[0]).abs() < 1e-12 && (b[ch] - want[1]).abs() < 1e-12);
                }
            }
        }
    }
}
