//! Group and layer normalization against the math: a serial f64 reference for the forward and
//! backward passes, and the invariants that define them.
//!
//! Tolerances as for batch norm (`properties.rs`): outputs of size ~1 computed in f32 from f64
//! statistics match the f64 reference to ~1e-6; we allow 1e-4 absolute + 1e-4 relative. The
//! exactness cases ask for 1e-5 of the largest gradient, like `exactness.rs`.

mod common;

use common::{assert_bitwise_everywhere, on, TestRng};
use ndarray::{ArrayD, IxDyn};
use norma_kernels::{
    group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward, SimdLevel,
};
use proptest::prelude::*;

/// Normalization of `rows` groups of `m` contiguous values each, with per-element weights and
/// biases (`w[i]`, `b[i]` for position i within the group, repeated for every group), in f64:
/// returns y, dx, and the per-position Σdy·x̂ and Σdy over all groups.
#[allow(clippy::type_complexity)]
fn reference(
    x: &[f32],
    dy: &[f32],
    m: usize,
    w: &[f64],
    b: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dw, mut db) = (vec![0.0; m], vec![0.0; m]);
    for (gi, (xs, dys)) in x.chunks(m).zip(dy.chunks(m)).enumerate() {
        let mf = m as f64;
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / mf;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / mf;
        let inv = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = xs.iter().map(|&v| (v as f64 - mean) * inv).collect();
        let g: Vec<f64> = dys.iter().zip(w).map(|(&d, w)| d as f64 * w).collect();
        let mean_g = g.iter().sum::<f64>() / mf;
        let mean_gx = g.iter().zip(&xhat).map(|(g, h)| g * h).sum::<f64>() / mf;
        for i in 0..m {
            y[gi * m + i] = w[i] * xhat[i] + b[i];
            dx[gi * m + i] = inv * (g[i] - mean_g - xhat[i] * mean_gx);
            dw[i] += dys[i] as f64 * xhat[i];
            db[i] += dys[i] as f64;
        }
    }
    (y, dx, dw, db)
}

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

/// (shape, groups): N from 1 (and 40: inputs of several forward blocks of groups), C a
/// multiple of G, spatial sizes from none to images.
fn gn_case() -> impl Strategy<Value = (Vec<usize>, usize)> {
    (
        prop_oneof![4 => 1usize..6, 1 => Just(40usize)],
        1usize..5,
        1usize..4,
        prop_oneof![
            Just(vec![]),
            (1usize..5).prop_map(|l| vec![l]),
            (1usize..9, 1usize..9).prop_map(|(h, w)| vec![h, w])
        ],
    )
        .prop_map(|(n, g, per, spatial)| {
            let mut shape = vec![n, g * per];
            shape.extend(spatial);
            (shape, g)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Group norm equals the serial formulas, forward and backward, for any G (1 and C included).
    #[test]
    fn group_norm_equals_a_serial_reference((shape, groups) in gn_case(), seed in any::<u64>(), offset in -3.0f64..3.0) {
        let mut rng = TestRng::new(seed);
        let (c, s): (usize, usize) = (shape[1], shape[2..].iter().product());
        let x = rng.array(&shape, offset, 1.5);
        let dy = rng.array(&shape, 0.0, 1.0);
        let (gamma, beta) = (rng.vec(c, 1.0, 0.5), rng.vec(c, 0.0, 0.5));
        let out = group_norm_forward(x.view(), groups, Some(&gamma), Some(&beta), 1e-5).unwrap();
        let grads = group_norm_backward(x.view(), dy.view(), &out.stats, Some(&gamma)).unwrap();
        // Position i of a group belongs to channel (group start + i / S).
        let m = c / groups * s;
        let (xs, dys) = (x.as_slice().unwrap(), dy.as_slice().unwrap());
        for g in 0..groups {
            // The reference per group index g (same channels in every sample).
            let pick = |v: &[f32]| -> Vec<f32> { v.chunks(c * s).flat_map(|row| row[g * m..(g + 1) * m].to_vec()).collect() };
            let w: Vec<f64> = (0..m).map(|i| gamma[g * (c / groups) + i / s] as f64).collect();
            let bias: Vec<f64> = (0..m).map(|i| beta[g * (c / groups) + i / s] as f64).collect();
            let (y, dx, dw, db) = reference(&pick(xs), &pick(dys), m, &w, &bias, 1e-5);
            for (got, want) in pick(out.output.as_slice().unwrap()).iter().zip(&y) {
                close(*got, *want, "y")?;
            }
            for (got, want) in pick(grads.dx.as_slice().unwrap()).iter().zip(&dx) {
                close(*got, *want, "dx")?;
            }
            for ch in 0..c / groups {
                let cc = g * (c / groups) + ch;
                let (w_sum, b_sum): (f64, f64) = (dw[ch * s..(ch + 1) * s].iter().sum(), db[ch * s..(ch + 1) * s].iter().sum());
                close(grads.dgamma[cc], w_sum, "dgamma")?;
                close(grads.dbeta[cc], b_sum, "dbeta")?;
            }
        }
    }

    /// Before the affine, each (sample, group) has mean 0 and variance var/(var + eps).
    #[test]
    fn each_group_is_normalized((shape, groups) in gn_case(), seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let x = rng.array(&shape, 2.0, 3.0);
        let out = group_norm_forward(x.view(), groups, None, None, 1e-3).unwrap();
        let m = out.stats.count();
        for (i, ys) in out.output.as_slice().unwrap().chunks(m).enumerate() {
            let mean = ys.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
            let var = ys.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
            let v = out.stats.var()[i];
            prop_assert!(mean.abs() < 1e-5, "group {} mean {}", i, mean);
            prop_assert!((var - v / (v + 1e-3)).abs() < 1e-4, "group {} var {}", i, var);
        }
    }

    /// A sample's output does not depend on the other samples (batch norm's does), and adding a
    /// constant to a group leaves its output unchanged (up to rounding).
    #[test]
    fn samples_are_independent_and_shifts_are_invisible((shape, groups) in gn_case(), seed in any::<u64>(), shift in -50.0f32..50.0) {
        let mut rng = TestRng::new(seed);
        let c = shape[1];
        let x = rng.array(&shape, 0.5, 2.0);
        let (gamma, beta) = (rng.vec(c, 1.0, 0.5), rng.vec(c, 0.0, 0.5));
        let y = group_norm_forward(x.view(), groups, Some(&gamma), Some(&beta), 1e-5).unwrap().output;
        let per: usize = shape[1..].iter().product();
        let mut one = shape.clone();
        one[0] = 1;
        for n in 0..shape[0] {
            let xi = ArrayD::from_shape_vec(IxDyn(&one), x.as_slice().unwrap()[n * per..(n + 1) * per].to_vec()).unwrap();
            let yi = group_norm_forward(xi.view(), groups, Some(&gamma), Some(&beta), 1e-5).unwrap().output;
            prop_assert_eq!(yi.as_slice().unwrap(), &y.as_slice().unwrap()[n * per..(n + 1) * per]);
        }
        // Shift group 0 of sample 0 by a constant.
        let m = per / groups;
        let mut shifted = x.clone();
        shifted.as_slice_mut().unwrap()[..m].iter_mut().for_each(|v| *v += shift);
        let ys = group_norm_forward(shifted.view(), groups, Some(&gamma), Some(&beta), 1e-5).unwrap().output;
        for (a, b) in ys.iter().zip(y.iter()) {
            // x + shift is rounded to f32: the group's spread (~2) loses about |shift|·6e-8.
            prop_assert!((a - b).abs() < 1e-4 * (1.0 + shift.abs()), "{} vs {}", a, b);
        }
    }

    /// Layer norm over 1, 2 or 3 trailing dimensions equals the serial formulas with an
    /// element-wise affine.
    #[test]
    fn layer_norm_equals_a_serial_reference(lead in prop::collection::vec(1usize..4, 0..3), trail in prop::collection::vec(1usize..6, 1..4), seed in any::<u64>()) {
        let mut rng = TestRng::new(seed);
        let shape: Vec<usize> = lead.iter().chain(&trail).copied().collect();
        let d: usize = trail.iter().product();
        let x = rng.array(&shape, -1.0, 2.0);
        let dy = rng.array(&shape, 0.0, 1.0);
        let (gamma, beta) = (rng.vec(d, 1.0, 0.5), rng.vec(d, 0.0, 0.5));
        let out = layer_norm_forward(x.view(), &trail, Some(&gamma), Some(&beta), 1e-5).unwrap();
        let grads = layer_norm_backward(x.view(), dy.view(), &trail, &out.stats, Some(&gamma)).unwrap();
        let w: Vec<f64> = gamma.iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = beta.iter().map(|&v| v as f64).collect();
        let (y, dx, dw, db) = reference(x.as_slice().unwrap(), dy.as_slice().unwrap(), d, &w, &b, 1e-5);
        for (g, w) in out.output.iter().zip(&y) { close(*g, *w, "y")?; }
        for (g, w) in grads.dx.iter().zip(&dx) { close(*g, *w, "dx")?; }
        for i in 0..d {
            close(grads.dgamma[i], dw[i], "dgamma")?;
            close(grads.dbeta[i], db[i], "dbeta")?;
        }
    }
}

/// Bitwise identical on 1, 2 and 7 threads and at every SIMD level, on shapes that split into
/// many pieces.
#[test]
fn bitwise_identical_across_thread_counts_and_simd_levels() {
    let mut rng = TestRng::new(9);
    for (shape, groups) in [
        (vec![256, 6, 24, 24], 2),
        (vec![256, 16, 8, 8], 16),
        (vec![300, 120], 4),
        (vec![5, 12, 3], 1),
    ] {
        let c = shape[1];
        let x = rng.array(&shape, 1.0, 2.0);
        let dy = rng.array(&shape, 0.0, 1.0);
        let (gamma, beta) = (rng.vec(c, 1.0, 0.3), rng.vec(c, 0.0, 0.3));
        let run = |threads: usize, level: SimdLevel| {
            on(threads, level, || {
                let f =
                    group_norm_forward(x.view(), groups, Some(&gamma), Some(&beta), 1e-5).unwrap();
                let g = group_norm_backward(x.view(), dy.view(), &f.stats, Some(&gamma)).unwrap();
                let trail = &shape[1..];
                let d: usize = trail.iter().product();
                let w = vec![1.5f32; d];
                let l = layer_norm_forward(x.view(), trail, Some(&w), None, 1e-5).unwrap();
                let lg =
                    layer_norm_backward(x.view(), dy.view(), trail, &l.stats, Some(&w)).unwrap();
                (f, g, l, lg)
            })
        };
        assert_bitwise_everywhere(&format!("{shape:?}"), run);
    }
}

/// Inputs with a large mean keep their precision, and a constant group gives exactly β.
#[test]
fn large_means_and_constant_groups() {
    let mut rng = TestRng::new(4);
    let x = rng.array(&[8, 4, 6, 6], 1e4, 1.0);
    let out = group_norm_forward(x.view(), 2, None, None, 1e-5).unwrap();
    let m = out.stats.count();
    for (i, ys) in out.output.as_slice().unwrap().chunks(m).enumerate() {
        let mean = ys.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
        let var = ys.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
        let v = out.stats.var()[i];
        assert!(mean.abs() < 1e-6, "group {i}: mean {mean}");
        assert!((var - v / (v + 1e-5)).abs() < 1e-5, "group {i}: var {var}");
    }
    for value in [0.0f32, 1e4, -3.7, 123456.78] {
        let x = ArrayD::from_elem(IxDyn(&[3, 4, 5]), value);
        let out = group_norm_forward(
            x.view(),
            2,
            Some(&[2.0, -1.0, 0.5, 3.0]),
            Some(&[0.25, -0.75, 1.0, 2.0]),
            1e-5,
        )
        .unwrap();
        for (k, y) in out.output.iter().enumerate() {
            assert_eq!(*y, [0.25, -0.75, 1.0, 2.0][(k / 5) % 4], "value {value}");
        }
    }
}

/// dx where its terms cancel (dy a linear function of x̂; groups of two values) is exact to
/// 1e-5 of its largest value, as for batch norm.
#[test]
fn gradients_stay_exact_where_they_cancel() {
    let mut rng = TestRng::new(5);
    for (shape, groups) in [(vec![16, 4, 5, 5], 2), (vec![32, 2], 1), (vec![8, 6, 1], 3)] {
        let c = shape[1];
        let x = rng.array(&shape, 3.0, 2.0);
        let ones = vec![1.0f32; c];
        let y = group_norm_forward(x.view(), groups, Some(&ones), None, 1e-5).unwrap();
        // dy = y: the gradient of Σy²/2 (dx ≈ 0 up to eps/(var + eps)).
        let g = group_norm_backward(x.view(), y.output.view(), &y.stats, Some(&ones)).unwrap();
        let m = y.stats.count();
        let w = vec![1.0f64; m];
        let b = vec![0.0f64; m];
        // Groups are contiguous: the reference runs over them in order.
        let (_, dx, _, _) = reference(
            x.as_slice().unwrap(),
            y.output.as_slice().unwrap(),
            m,
            &w,
            &b,
            1e-5,
        );
        let largest = dx.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let worst =
            g.dx.iter()
                .zip(&dx)
                .fold(0.0f64, |a, (&g, &w)| a.max((g as f64 - w).abs()));
        assert!(
            worst <= 1e-5 * largest,
            "{shape:?}: dx off by {:.2e} of its largest value",
            worst / largest
        );
    }
}
