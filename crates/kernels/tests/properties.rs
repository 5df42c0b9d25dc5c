//! Property tests of the batch-norm kernels against the math.
//!
//! Tolerances: the kernels compute in f32 with f64 statistics; outputs of magnitude ~1 match the
//! f64 reference to ~1e-6 relative. We allow 1e-4 absolute + 1e-4 relative (inputs up to a few
//! hundred values per channel, γ up to 2), far below any formula mistake.

mod common;

use common::{
    assert_bitwise_everywhere, at, ncs, on, reference_stats, reference_train, shape_strategy,
    TestRng,
};
use ndarray::{ArrayD, IxDyn};
use norma_kernels::{
    backward_eval, backward_train, forward_eval, forward_train, update_running_stats, BatchStats,
    SimdLevel,
};
use proptest::prelude::*;

fn close(got: f32, want: f64, what: &str) -> Result<(), TestCaseError> {
    let tol = 1e-4 + 1e-4 * want.abs();
    prop_assert!(
        ((got as f64) - want).abs() <= tol,
        "{}: {} vs {}",
        what,
        got,
        want
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The parallel kernels equal the plain serial formulas, forward and backward.
    #[test]
    fn parallel_kernels_equal_a_serial_reference(shape in shape_strategy(), seed in any::<u64>(), offset in -3.0f64..3.0) {
        let mut rng = TestRng::new(seed);
        let c = shape[1];
        let x = rng.array(&shape, offset, 1.5);
        let dy = rng.array(&shape, 0.0, 1.0);
        let gamma = rng.vec(c, 1.0, 0.5);
        let beta = rng.vec(c, 0.0, 0.5);
        let out = forward_train(x.view(), Some(&gamma), Some(&beta), 1e-5).unwrap();
        let (y, dx, dgamma, dbeta) = reference_train(&x, &dy, &gamma, &beta, 1e-5);
        let (means, vars) = reference_stats(&x);
        for ch in 0..c {
            close(out.stats.mean()[ch] as f32, means[ch], "mean")?;
            close(out.stats.var()[ch] as f32, vars[ch], "var")?;
        }
        for (g, w) in out.output.iter().zip(&y) {
            close(*g, *w, "y")?;
        }
        let grads = backward_train(x.view(), dy.view(), &out.stats, Some(&gamma)).unwrap();
        for (g, w) in grads.dx.iter().zip(&dx) {
            close(*g, *w, "dx")?;
        }
        for ch in 0..c {
            close(grads.dgamma[ch], dgamma[ch], "dgamma")?;
            close(grads.dbeta[ch], dbeta[ch], "dbeta")?;
        }
    }

    /// Per channel, the training output has mean β and variance γ²·var/(var + eps); and with
    /// eps = 0 the gradient satisfies Σdx = 0 and Σdx·x̂ = 0 (the output is then invariant to
    /// shifting and scaling the input; eps > 0 breaks the scaling invariance by eps/(var + eps)).
    #[test]
    fn output_moments_and_gradient_orthogonality(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let c = shape[1];
        let (n, _, s) = ncs(&shape);
        let x = rng.array(&shape, 2.0, 3.0);
        let dy = rng.array(&shape, 0.5, 1.0);
        let gamma = rng.vec(c, 1.0, 0.5);
        let beta = rng.vec(c, 0.0, 1.0);
        let eps = 1e-3;
        let out = forward_train(x.view(), Some(&gamma), Some(&beta), eps).unwrap();
        let exact = forward_train(x.view(), Some(&gamma), Some(&beta), 0.0).unwrap();
        let grads = backward_train(x.view(), dy.view(), &exact.stats, Some(&gamma)).unwrap();
        let (ys, xs, dxs) = (out.output.as_slice().unwrap(), x.as_slice().unwrap(), grads.dx.as_slice().unwrap());
        let m = (n * s) as f64;
        for ch in 0..c {
            let idx: Vec<usize> = (0..n).flat_map(|i| (0..s).map(move |j| at(c, s, i, ch, j))).collect();
            let mean = idx.iter().map(|&i| ys[i] as f64).sum::<f64>() / m;
            let var = idx.iter().map(|&i| (ys[i] as f64 - mean).powi(2)).sum::<f64>() / m;
            let bv = out.stats.var()[ch];
            close(mean as f32, beta[ch] as f64, "output mean")?;
            close(var as f32, (gamma[ch] as f64).powi(2) * bv / (bv + eps as f64), "output variance")?;
            let inv = exact.stats.inv_std(ch);
            // dx is γ·inv_std·(dy − ...): its rounding noise scales with γ·inv_std·Σ|dy|, which
            // is large when a channel's values are close together (N = 2).
            let scale = 1.0 + (gamma[ch] as f64 * inv).abs() * idx.iter().map(|&i| dy.as_slice().unwrap()[i].abs() as f64).sum::<f64>();
            let sum_dx: f64 = idx.iter().map(|&i| dxs[i] as f64).sum();
            let sum_dx_xhat: f64 = idx.iter().map(|&i| dxs[i] as f64 * (xs[i] as f64 - exact.stats.mean()[ch]) * inv).sum();
            prop_assert!(sum_dx.abs() < 1e-5 * scale, "Σdx = {}", sum_dx);
            prop_assert!(sum_dx_xhat.abs() < 1e-5 * scale, "Σdx·x̂ = {}", sum_dx_xhat);
        }
    }

    /// Channels are independent: changing one channel's values leaves every other channel's
    /// output and statistics bitwise unchanged.
    #[test]
    fn channels_are_independent(shape in shape_strategy(), seed in any::<u64>(), pick in any::<usize>()) {
        let mut rng = TestRng::new(seed);
        let (n, c, s) = ncs(&shape);
        let x = rng.array(&shape, 0.0, 1.0);
        let mut x2 = x.clone();
        let changed = pick % c;
        for i in 0..n {
            for j in 0..s {
                x2.as_slice_mut().unwrap()[at(c, s, i, changed, j)] *= 3.0;
            }
        }
        let a = forward_train(x.view(), None, None, 1e-5).unwrap();
        let b = forward_train(x2.view(), None, None, 1e-5).unwrap();
        for ch in (0..c).filter(|&ch| ch != changed) {
            prop_assert_eq!(a.stats.mean()[ch], b.stats.mean()[ch]);
            for i in 0..n {
                for j in 0..s {
                    let k = at(c, s, i, ch, j);
                    prop_assert_eq!(a.output.as_slice().unwrap()[k], b.output.as_slice().unwrap()[k]);
                }
            }
        }
    }

    /// Evaluation mode is the affine map of the running statistics, sample by sample: the
    /// output for one sample does not depend on the rest of the batch (batch of 1 included).
    #[test]
    fn eval_is_a_per_sample_affine_map(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let (n, c, s) = ncs(&shape);
        let x = rng.array(&shape, 1.0, 2.0);
        let rm = rng.vec(c, 0.5, 1.0);
        let rv: Vec<f32> = rng.vec(c, 0.0, 1.0).iter().map(|v| v.abs() + 0.1).collect();
        let gamma = rng.vec(c, 1.0, 0.5);
        let beta = rng.vec(c, 0.0, 0.5);
        let y = forward_eval(x.view(), &rm, &rv, Some(&gamma), Some(&beta), 1e-5).unwrap();
        let mut one_shape = shape.clone();
        one_shape[0] = 1;
        let per = c * s;
        for i in 0..n {
            let xi = ArrayD::from_shape_vec(IxDyn(&one_shape), x.as_slice().unwrap()[i * per..(i + 1) * per].to_vec()).unwrap();
            let yi = forward_eval(xi.view(), &rm, &rv, Some(&gamma), Some(&beta), 1e-5).unwrap();
            prop_assert_eq!(yi.as_slice().unwrap(), &y.as_slice().unwrap()[i * per..(i + 1) * per]);
            for ch in 0..c {
                for j in 0..s {
                    let v = x.as_slice().unwrap()[at(c, s, i, ch, j)] as f64;
                    let want = gamma[ch] as f64 * (v - rm[ch] as f64) / (rv[ch] as f64 + 1e-5).sqrt() + beta[ch] as f64;
                    close(yi.as_slice().unwrap()[ch * s + j], want, "eval y")?;
                }
            }
        }
        // With fixed statistics the gradient is dy·γ/sqrt(rv + eps).
        let dy = rng.array(&shape, 0.0, 1.0);
        let g = backward_eval(x.view(), dy.view(), &rm, &rv, Some(&gamma), 1e-5).unwrap();
        for (k, (dx, d)) in g.dx.iter().zip(dy.iter()).enumerate() {
            let ch = (k / s) % c;
            close(*dx, *d as f64 * gamma[ch] as f64 / (rv[ch] as f64 + 1e-5).sqrt(), "eval dx")?;
        }
    }

    /// Permuting the samples of a batch permutes the output the same way.
    #[test]
    fn permuting_the_batch_permutes_the_output(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let (n, c, s) = ncs(&shape);
        let x = rng.array(&shape, 0.0, 1.0);
        let per = c * s;
        // Reverse the batch order.
        let rev: Vec<f32> = (0..n).rev().flat_map(|i| x.as_slice().unwrap()[i * per..(i + 1) * per].to_vec()).collect();
        let xr = ArrayD::from_shape_vec(IxDyn(&shape), rev).unwrap();
        let y = forward_train(x.view(), None, None, 1e-5).unwrap().output;
        let yr = forward_train(xr.view(), None, None, 1e-5).unwrap().output;
        for i in 0..n {
            let a = &y.as_slice().unwrap()[i * per..(i + 1) * per];
            let b = &yr.as_slice().unwrap()[(n - 1 - i) * per..(n - i) * per];
            for (u, v) in a.iter().zip(b) {
                // Summation order changes with the permutation: equal up to rounding.
                prop_assert!((u - v).abs() < 1e-5, "{} vs {}", u, v);
            }
        }
    }

    /// The running update is exactly PyTorch's formula, in f64 rounded once.
    #[test]
    fn running_update_follows_the_formula(c in 1usize..8, count in 2usize..500, factor in 0.0f64..1.0, seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let mean: Vec<f64> = rng.vec(c, 0.0, 2.0).iter().map(|&v| v as f64).collect();
        let var: Vec<f64> = rng.vec(c, 2.0, 1.0).iter().map(|v| v.abs() as f64).collect();
        let stats = BatchStats::new(count, mean, var, 1e-5).unwrap();
        let (mut rm, mut rv) = (rng.vec(c, 0.0, 1.0), rng.vec(c, 1.0, 0.1));
        let (rm0, rv0) = (rm.clone(), rv.clone());
        update_running_stats(&mut rm, &mut rv, &stats, factor).unwrap();
        for ch in 0..c {
            let want_m = (factor * stats.mean()[ch] + (1.0 - factor) * rm0[ch] as f64) as f32;
            let unbiased = stats.var()[ch] * count as f64 / (count - 1) as f64;
            let want_v = (factor * unbiased + (1.0 - factor) * rv0[ch] as f64) as f32;
            prop_assert_eq!(rm[ch], want_m);
            prop_assert_eq!(rv[ch], want_v);
        }
    }
}

/// Results are bitwise identical on 1, 2 and 7 threads and with every SIMD level the CPU
/// supports, for shapes that split into many pieces on both work paths.
#[test]
fn bitwise_identical_across_thread_counts_and_simd_levels() {
    let mut rng = TestRng::new(42);
    for shape in [
        vec![256, 6, 24, 24],
        vec![300, 16, 8, 8],
        vec![4096, 70],
        vec![700, 5, 3, 2],
    ] {
        let c = shape[1];
        let x = rng.array(&shape, 3.0, 2.0);
        let dy = rng.array(&shape, 0.0, 1.0);
        let gamma = rng.vec(c, 1.0, 0.3);
        let beta = rng.vec(c, 0.0, 0.3);
        let run = |threads: usize, level: SimdLevel| {
            on(threads, level, || {
                let f = forward_train(x.view(), Some(&gamma), Some(&beta), 1e-5).unwrap();
                let g = backward_train(x.view(), dy.view(), &f.stats, Some(&gamma)).unwrap();
                let (mean, var): (Vec<f32>, Vec<f32>) = f
                    .stats
                    .mean()
                    .iter()
                    .zip(f.stats.var())
                    .map(|(&m, &v)| (m as f32, v as f32))
                    .unzip();
                let e =
                    forward_eval(x.view(), &mean, &var, Some(&gamma), Some(&beta), 1e-5).unwrap();
                let b =
                    backward_eval(x.view(), dy.view(), &mean, &var, Some(&gamma), 1e-5).unwrap();
                (f, g, e, b)
            })
        };
        assert_bitwise_everywhere(&format!("shape {shape:?}"), run);
    }
}

/// A large mean does not cost precision: x = 1e4 + N(0, 1) still normalizes to mean 0 and
/// variance 1 (the naive E[x²] − E[x]² in f32 would return garbage or NaN here).
#[test]
fn large_mean_inputs_keep_unit_variance() {
    let mut rng = TestRng::new(7);
    for shape in [vec![64, 3, 16, 16], vec![4096, 3]] {
        let x = rng.array(&shape, 1e4, 1.0);
        let out = forward_train(x.view(), None, None, 1e-5).unwrap();
        let (n, c, s) = ncs(&shape);
        let ys = out.output.as_slice().unwrap();
        for ch in 0..c {
            let idx: Vec<usize> = (0..n)
                .flat_map(|i| (0..s).map(move |j| at(c, s, i, ch, j)))
                .collect();
            let m = idx.len() as f64;
            let mean = idx.iter().map(|&i| ys[i] as f64).sum::<f64>() / m;
            let var = idx
                .iter()
                .map(|&i| (ys[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            // f32 inputs near 1e4 are quantized to 2^-10 ≈ 1e-3, so the data's own variance
            // deviates from 1 by ~1e-3 plus sampling noise; the output must be unit variance
            // relative to the data actually given, which the reference computes exactly.
            let (_, ref_var) = reference_stats(&x);
            assert!(mean.abs() < 1e-6, "channel {ch}: mean {mean}");
            assert!(
                (var - ref_var[ch] / (ref_var[ch] + 1e-5)).abs() < 1e-5,
                "channel {ch}: var {var}"
            );
            assert!(
                (ref_var[ch] - 1.0).abs() < 0.1,
                "sample variance {}",
                ref_var[ch]
            );
        }
    }
}

/// A constant channel normalizes to exactly β (no rounding residue), for any offset and eps.
#[test]
fn constant_channel_gives_exactly_beta() {
    for (value, eps) in [
        (0.0f32, 1e-5f32),
        (1e4, 1e-5),
        (-3.7, 0.0),
        (123456.78, 1e-3),
    ] {
        for shape in [vec![5, 2, 3, 3], vec![9, 2], vec![40, 2, 8, 8]] {
            let n: usize = shape.iter().product();
            let x = ArrayD::from_shape_vec(IxDyn(&shape), vec![value; n]).unwrap();
            let out =
                forward_train(x.view(), Some(&[2.0, -1.0]), Some(&[0.25, -0.75]), eps).unwrap();
            let (_, c, s) = ncs(&shape);
            for (k, y) in out.output.iter().enumerate() {
                let ch = (k / s) % c;
                assert_eq!(
                    *y,
                    [0.25, -0.75][ch],
                    "value {value} eps {eps} shape {shape:?}"
                );
            }
            assert!(out.stats.var().iter().all(|&v| v == 0.0));
        }
    }
}

/// After many batches from a fixed distribution, the running statistics converge to its mean
/// and variance (the unbiased correction makes the variance estimate centred on the truth).
#[test]
fn running_statistics_converge_to_the_true_distribution() {
    let mut rng = TestRng::new(11);
    let (true_mean, true_std) = (2.5f64, 1.5f64);
    let c = 3;
    let (mut rm, mut rv) = (vec![0.0f32; c], vec![1.0f32; c]);
    let (mut cm, mut cv) = (vec![0.0f32; c], vec![1.0f32; c]);
    for batch in 1..=2000 {
        // Small batches (4 values per channel) make the Bessel correction matter: the biased
        // variance would settle at 3/4 of the truth.
        let x = rng.array(&[4, c], true_mean, true_std);
        let stats = forward_train(x.view(), None, None, 1e-5).unwrap().stats;
        update_running_stats(&mut rm, &mut rv, &stats, 0.01).unwrap();
        update_running_stats(&mut cm, &mut cv, &stats, 1.0 / batch as f64).unwrap();
    }
    for ch in 0..c {
        for (m, v, what) in [(rm[ch], rv[ch], "momentum"), (cm[ch], cv[ch], "cumulative")] {
            assert!((m as f64 - true_mean).abs() < 0.15, "{what} mean {m}");
            assert!(
                (v as f64 - true_std * true_std).abs() < 0.25,
                "{what} var {v}"
            );
        }
    }
}
