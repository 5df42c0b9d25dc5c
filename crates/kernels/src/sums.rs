//! The reductions every kernel is built from: per-element terms widened to f64 and summed in
//! sixteen lanes, in an order that depends only on the length of the data.
//!
//! - [`run`]: the sums of one contiguous run of values that share a constant (a plane of one
//!   channel, a group of one sample, a row of layer norm), on explicit vector registers.
//! - [`rows`]: per-channel sums over (N, C) rows, accumulating across channels (a loop the
//!   compiler vectorizes by itself).
//!
//! Every f32 is widened before use, so sums are as exact as f64 allows whatever the data's
//! offset. A [`Term`] is written once, generic over [`Arith`], and runs on plain `f64`s (tails,
//! rows) or on sixteen lanes at a time (a token's [`Simd::F64s`], no fused multiply-add); each
//! lane performs the same IEEE operations in the same order at every SIMD level, so all levels
//! give the same bits.
//!
//! The compiler does not vectorize two interleaved floating-point reductions on its own (it
//! pairs the two sums of one element instead of one sum of many elements), hence the explicit
//! lanes.

use norma_simd::{Simd, WIDE as LANES};

/// The arithmetic a [`Term`] needs, on one f64 or on [`LANES`] of them.
pub(crate) trait Arith: Copy {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
}

impl Arith for f64 {
    #[inline(always)]
    fn add(self, o: f64) -> f64 {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: f64) -> f64 {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: f64) -> f64 {
        self * o
    }
}

/// N values per element, summed per channel: `eval(x, y, w, k)` with x, y and w the widened
/// inputs (w a per-element weight, such as layer norm's γ) and k the run's constant.
pub(crate) trait Term<const N: usize>: Copy + Send + Sync {
    /// Whether `eval` reads `y` (when not, y is not loaded).
    const USES_Y: bool = true;
    /// Whether `eval` reads `w` (when not, w is not loaded).
    const USES_W: bool = false;

    fn eval<T: Arith>(self, x: T, y: T, w: T, k: T) -> [T; N];

    /// The terms of one element.
    #[inline(always)]
    fn one(self, x: f32, y: f32, w: f32, k: f64) -> [f64; N] {
        self.eval(x as f64, y as f64, w as f64, k)
    }
}

/// Forward statistics around a shift k: x − k and (x − k)² (y unused).
#[derive(Clone, Copy)]
pub(crate) struct ShiftedSquares;

impl Term<2> for ShiftedSquares {
    const USES_Y: bool = false;

    #[inline(always)]
    fn eval<T: Arith>(self, x: T, _: T, _: T, k: T) -> [T; 2] {
        let d = x.sub(k);
        [d, d.mul(d)]
    }
}

/// Backward sums around a centre c (x in `x`, dy in `y`): dy, dy·(x − c) and dy².
#[derive(Clone, Copy)]
pub(crate) struct GradTerms;

impl Term<3> for GradTerms {
    #[inline(always)]
    fn eval<T: Arith>(self, x: T, dy: T, _: T, c: T) -> [T; 3] {
        [dy, dy.mul(x.sub(c)), dy.mul(dy)]
    }
}

/// [`GradTerms`] of the weighted gradient g = w·dy (layer norm's γ·dy): g, g·(x − c) and g².
#[derive(Clone, Copy)]
pub(crate) struct WeightedGradTerms;

impl Term<3> for WeightedGradTerms {
    const USES_W: bool = true;

    #[inline(always)]
    fn eval<T: Arith>(self, x: T, dy: T, w: T, c: T) -> [T; 3] {
        GradTerms.eval(x, dy.mul(w), w, c)
    }
}

/// A token's sixteen f64 lanes behind the [`Arith`] face a [`Term`] sees.
#[derive(Clone, Copy)]
struct Wide<S: Simd>(S, S::F64s);

impl<S: Simd> Arith for Wide<S> {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Wide(self.0, self.0.f64_add(self.1, o.1))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Wide(self.0, self.0.f64_sub(self.1, o.1))
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Wide(self.0, self.0.f64_mul(self.1, o.1))
    }
}

/// The N sums of `term` over several runs that share the constant `k` (the planes of one
/// channel), each run given as `(x, y, w)` slices of one length (pass `x` again for an input
/// the term does not read), on the widest lanes `level` allows.
///
/// Within each run, value i goes to lane `i % LANES`: whole groups of LANES values into vector
/// accumulators, the last `len % LANES` into scalar ones; both sets of lanes are added lane by
/// lane at the end, then summed as a balanced tree ([`Simd::f64_sum_tree`]). The order depends
/// only on the runs' lengths. Call it inside a [`norma_simd::Kernel`] so that it is compiled
/// with the token's instructions.
#[inline(always)]
pub(crate) fn run<'a, S: Simd, const N: usize, T: Term<N>>(
    s: S,
    runs: impl Iterator<Item = Run<'a>>,
    k: f64,
    term: T,
) -> [f64; N] {
    let kv = Wide(s, s.f64_splat(k));
    let mut acc = [Wide(s, s.f64_splat(0.0)); N];
    let mut tails = [[0.0f64; LANES]; N];
    let mut tailed = false;
    let load = |v: &[f32]| Wide(s, s.f64_widen(v.try_into().expect("chunks are LANES long")));
    for (x, y, w) in runs {
        let (y, w) = (&y[..x.len()], &w[..x.len()]);
        let (xc, yc, wc) = (
            x.chunks_exact(LANES),
            y.chunks_exact(LANES),
            w.chunks_exact(LANES),
        );
        let tail = xc
            .remainder()
            .iter()
            .zip(yc.remainder())
            .zip(wc.remainder());
        for ((xs, ys), ws) in xc.zip(yc).zip(wc) {
            let xv = load(xs);
            let yv = if T::USES_Y { load(ys) } else { xv };
            let wv = if T::USES_W { load(ws) } else { xv };
            let t = term.eval(xv, yv, wv, kv);
            for j in 0..N {
                acc[j] = acc[j].add(t[j]);
            }
        }
        for (l, ((&xv, &yv), &wv)) in tail.enumerate() {
            tailed = true;
            let t = term.one(xv, yv, wv, k);
            for j in 0..N {
                tails[j][l] += t[j];
            }
        }
    }
    // Loops, not `std::array::from_fn`: its closure is not always inlined, and out of line it
    // runs without the token's instructions (and calls the vector stores as functions).
    let mut sums = [0.0f64; N];
    for j in 0..N {
        // Without a tail, adding the scalar lanes' zeros would change nothing (a lane that
        // starts at +0 is never −0).
        let lanes = if tailed {
            acc[j].add(Wide(s, s.f64_load(&tails[j])))
        } else {
            acc[j]
        };
        sums[j] = s.f64_sum_tree(lanes.1);
    }
    sums
}

/// One run of [`run`]: x, y and w slices of one length.
pub(crate) type Run<'a> = (&'a [f32], &'a [f32], &'a [f32]);

/// Adds the terms of a run of (N, C) rows into per-channel accumulators: row r holds its C
/// values at `x[r·C ..]`, `y[r·C ..]`; channel c's terms, with constant `k[c]`, go into
/// `acc[j][c]`.
///
/// Four rows are combined before touching the accumulators, which keeps the loop
/// arithmetic-bound instead of load/store-bound; the loop over channels vectorizes.
#[inline(always)]
pub(crate) fn rows<const N: usize>(
    x: &[f32],
    y: &[f32],
    k: &[f64],
    acc: &mut [Vec<f64>; N],
    term: impl Term<N>,
) {
    let c = k.len();
    if c == 0 {
        return;
    }
    let n_rows = x.len() / c;
    let acc: [&mut [f64]; N] = acc.each_mut().map(|a| &mut a[..c]);
    let quads = n_rows / 4 * 4;
    for r in (0..quads).step_by(4) {
        let xr: [&[f32]; 4] = std::array::from_fn(|i| &x[(r + i) * c..(r + i + 1) * c]);
        let yr: [&[f32]; 4] = std::array::from_fn(|i| &y[(r + i) * c..(r + i + 1) * c]);
        for i in 0..c {
            let t: [[f64; N]; 4] = std::array::from_fn(|q| term.one(xr[q][i], yr[q][i], 1.0, k[i]));
            for j in 0..N {
                acc[j][i] += (t[0][j] + t[1][j]) + (t[2][j] + t[3][j]);
            }
        }
    }
    for r in quads..n_rows {
        let (xr, yr) = (&x[r * c..(r + 1) * c], &y[r * c..(r + 1) * c]);
        for i in 0..c {
            let t = term.one(xr[i], yr[i], 1.0, k[i]);
            for j in 0..N {
                acc[j][i] += t[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use norma_simd::{dispatch, Kernel, SimdLevel, Width};

    /// [`GradTerms`] of one run around `k`.
    struct OneRun<'a> {
        x: &'a [f32],
        y: &'a [f32],
        k: f64,
    }

    impl Kernel for OneRun<'_> {
        type Output = [f64; 3];
        fn run<S: Simd>(self, s: S) -> [f64; 3] {
            run(s, [(self.x, self.y, self.y)].into_iter(), self.k, GradTerms)
        }
    }

    /// Rows, runs at many offsets and planes of one input: every path of this module.
    struct EveryPath<'a> {
        x: &'a [f32],
        y: &'a [f32],
        k: &'a [f64],
    }

    impl Kernel for EveryPath<'_> {
        type Output = (Vec<[f64; 3]>, [f64; 2], [Vec<f64>; 3]);
        fn run<S: Simd>(self, s: S) -> Self::Output {
            let EveryPath { x, y, k } = self;
            let mut acc: [Vec<f64>; 3] = std::array::from_fn(|_| vec![0.0; 5]);
            rows(x, y, k, &mut acc, GradTerms);
            let runs =
                (3..40).map(|i| run(s, [(&x[i..], &y[i..], &x[i..])].into_iter(), 7.0, GradTerms));
            let plane = |p: usize| &x[p * 37..p * 37 + 30];
            let planes = (0..9).map(|p| (plane(p), plane(p), plane(p)));
            let squares = run(s, planes, 6.0, ShiftedSquares);
            (runs.collect(), squares, acc)
        }
    }

    fn reference(x: &[f32], y: &[f32], k: f64) -> [f64; 3] {
        let mut s = [0.0f64; 3];
        for (&x, &y) in x.iter().zip(y) {
            let t = GradTerms.one(x, y, 1.0, k);
            for j in 0..3 {
                s[j] += t[j];
            }
        }
        s
    }

    #[test]
    fn runs_match_a_plain_f64_loop_for_every_tail_length() {
        for n in 0..70 {
            let x: Vec<f32> = (0..n).map(|i| 1e4 + (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            for level in SimdLevel::supported() {
                let got = dispatch(
                    level,
                    Width::Widest,
                    OneRun {
                        x: &x,
                        y: &y,
                        k: 1e4,
                    },
                );
                let want = reference(&x, &y, 1e4);
                for j in 0..3 {
                    assert!(
                        (got[j] - want[j]).abs() <= 1e-12 * (1.0 + want[j].abs()),
                        "n {n} {level}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_simd_level_gives_the_same_bits() {
        let x: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 7.0)
            .collect();
        let y: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos()).collect();
        let k: Vec<f64> = vec![7.0, 6.5, -1.0, 0.0, 2.0];
        let at = |level| {
            dispatch(
                level,
                Width::Widest,
                EveryPath {
                    x: &x,
                    y: &y,
                    k: &k,
                },
            )
        };
        let want = at(SimdLevel::Portable);
        for level in SimdLevel::supported() {
            assert!(at(level) == want, "{level} differs from portable");
        }
    }

    #[test]
    fn rows_add_per_channel_for_every_row_count() {
        let k = [1.0f64, 0.0, 4.0];
        for n in 0..10 {
            let x: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 0.7).sin()).collect();
            let y: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 0.3).cos()).collect();
            let mut acc: [Vec<f64>; 3] = std::array::from_fn(|_| vec![0.0; 3]);
            rows(&x, &y, &k, &mut acc, GradTerms);
            for ch in 0..3 {
                let xs: Vec<f32> = x.iter().skip(ch).step_by(3).copied().collect();
                let ys: Vec<f32> = y.iter().skip(ch).step_by(3).copied().collect();
                let want = reference(&xs, &ys, k[ch]);
                for j in 0..3 {
                    assert!((acc[j][ch] - want[j]).abs() < 1e-12, "n {n} ch {ch}");
                }
            }
        }
    }
}
