//! conv2d, matmul and pooling against naive direct loops (f64 accumulation) on random shapes,
//! strides and paddings, at every SIMD level this CPU has (`SimdLevel::capped`).
//!
//! Tolerance: the kernels sum in f32, the reference in f64. A float32 sum of n terms t_i is off
//! by at most n·2⁻²⁴·Σ|t_i| and in practice by about √n·2⁻²⁴·Σ|t_i| (roundings of random sign).
//! We allow 1e-4·(1 + |value|) + 1e-6·Σ|t_i|: 1e-6 ≈ 17·2⁻²⁴, and the kernels' partial sums (per
//! lane, per tile, per task) are at most a few hundred terms long, so √n stays below 17.

use norma_tensor::SimdLevel;
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

const TOL: f32 = 1e-4;

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..4,
        1usize..5,
        1usize..5,
        1usize..4,
        0usize..3,
        0usize..7,
        0usize..7,
        any::<u64>(),
    )
        .prop_map(|(n, c, o, k, stride, pad, dh, dw, seed)| {
            // Any size from "the kernel just fits the padded input" upwards.
            let base = k.saturating_sub(2 * pad).max(1);
            Case {
                n,
                c,
                o,
                h: base + dh,
                w: base + dw,
                k,
                stride,
                pad,
                seed,
            }
        })
}

fn out_size(i: usize, k: usize, s: usize, p: usize) -> usize {
    (i + 2 * p - k) / s + 1
}

/// Calls `f(output index, weight index, input index)` for every term of the convolution sum
/// whose input position lies inside the image.
fn for_each_term(case: &Case, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (
        out_size(case.h, case.k, case.stride, case.pad),
        out_size(case.w, case.k, case.stride, case.pad),
    );
    for n in 0..case.n {
        for o in 0..case.o {
            for oy in 0..oh {
                for ox in 0..ow {
                    for c in 0..case.c {
                        for p in 0..case.k {
                            for q in 0..case.k {
                                let iy = (oy * case.stride + p) as isize - case.pad as isize;
                                let ix = (ox * case.stride + q) as isize - case.pad as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= case.h as isize
                                    || ix >= case.w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * case.c + c) * case.h + iy as usize) * case.w
                                    + ix as usize;
                                let yi = ((n * case.o + o) * oh + oy) * ow + ox;
                                let wi = ((o * case.c + c) * case.k + p) * case.k + q;
                                f(yi, wi, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Sums computed in f64, with the sum of the terms' magnitudes (for the tolerance).
#[derive(Clone)]
struct Sums {
    value: Vec<f64>,
    magnitude: Vec<f64>,
}

impl Sums {
    fn zeros(len: usize) -> Sums {
        Sums {
            value: vec![0.0; len],
            magnitude: vec![0.0; len],
        }
    }

    /// Values whose terms are about as large as the values themselves.
    fn of(value: Vec<f64>) -> Sums {
        let magnitude = value.iter().map(|v| v.abs()).collect();
        Sums { value, magnitude }
    }

    fn add(&mut self, i: usize, term: f64) {
        self.value[i] += term;
        self.magnitude[i] += term.abs();
    }
}

fn assert_close(got: &Tensor, want: &Sums, what: &str) {
    assert_eq!(got.len(), want.value.len(), "{what}: length");
    for (i, g) in got.as_slice().iter().enumerate() {
        let (w, m) = (want.value[i], want.magnitude[i]);
        assert!(
            (*g as f64 - w).abs() < TOL as f64 * (1.0 + w.abs()) + 1e-6 * m,
            "{what}[{i}]: {g} vs {w} (terms of magnitude {m})"
        );
    }
}

/// The levels this CPU can run.
fn levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|&l| l <= SimdLevel::detected())
        .collect()
}

/// Checks conv2d, both gradients, and the bias against the direct loops at every level.
fn check_conv(case: &Case) {
    let mut rng = Rng::seed_from_u64(case.seed);
    let x = Tensor::rand_normal(&[case.n, case.c, case.h, case.w], 0.0, 1.0, &mut rng);
    let w = Tensor::rand_normal(&[case.o, case.c, case.k, case.k], 0.0, 1.0, &mut rng);
    let b = Tensor::rand_normal(&[case.o], 0.0, 1.0, &mut rng);
    let oh = out_size(case.h, case.k, case.stride, case.pad);
    let ow = out_size(case.w, case.k, case.stride, case.pad);
    let dy = Tensor::rand_normal(&[case.n, case.o, oh, ow], 0.0, 1.0, &mut rng);

    let mut want_y = Sums::zeros(dy.len());
    for i in 0..dy.len() {
        want_y.add(i, b.as_slice()[(i / (oh * ow)) % case.o] as f64);
    }
    let mut want_dx = Sums::zeros(x.len());
    let mut want_dw = Sums::zeros(w.len());
    let mut want_db = Sums::zeros(case.o);
    for_each_term(case, |yi, wi, xi| {
        let (xv, wv, g) = (
            x.as_slice()[xi] as f64,
            w.as_slice()[wi] as f64,
            dy.as_slice()[yi] as f64,
        );
        want_y.add(yi, wv * xv);
        want_dx.add(xi, wv * g);
        want_dw.add(wi, xv * g);
    });
    for (i, g) in dy.as_slice().iter().enumerate() {
        want_db.add((i / (oh * ow)) % case.o, *g as f64);
    }
    for level in levels() {
        level.capped(|| {
            let what = |t: &str| format!("{t} at {level} for {case:?}");
            let y = x.conv2d(&w, Some(&b), case.stride, case.pad).unwrap();
            assert_eq!(y.shape(), &[case.n, case.o, oh, ow]);
            assert_close(&y, &want_y, &what("y"));
            let dx = dy
                .conv2d_backward_input(&w, x.shape(), case.stride, case.pad)
                .unwrap();
            assert_close(&dx, &want_dx, &what("dx"));
            let (dw, db) = dy
                .conv2d_backward_params(&x, w.shape(), case.stride, case.pad)
                .unwrap();
            assert_close(&dw, &want_dw, &what("dw"));
            assert_close(&db, &want_db, &what("db"));
            // Without bias the output is the same sum minus the bias.
            let y0 = x.conv2d(&w, None, case.stride, case.pad).unwrap();
            let bias_only = y.sub(&y0).unwrap();
            for (i, v) in bias_only.as_slice().iter().enumerate() {
                assert!(
                    (v - b.as_slice()[(i / (oh * ow)) % case.o]).abs() < TOL * 10.0,
                    "{}",
                    what("bias")
                );
            }
        });
    }
}

/// Shapes that reach every layout and path of the direct kernels: LeNet's four convolutions (in place,
/// padded, flat, output-channel vectors), rows that are a multiple of 8 or 16 lanes or not,
/// channel and tap counts that leave partial tiles, and batches that leave partial tasks.
#[test]
fn conv2d_matches_direct_loops_at_lenet_and_edge_shapes() {
    let cases = [
        // (n, c, o, h, w, k, stride, pad)
        (37, 1, 6, 28, 28, 5, 1, 0),
        (33, 6, 16, 12, 12, 5, 1, 0),
        (9, 1, 6, 28, 28, 5, 1, 2),
        (9, 6, 16, 14, 14, 5, 1, 0),
        (3, 2, 7, 20, 19, 3, 1, 0),
        (2, 3, 5, 17, 33, 2, 1, 1),
        (2, 5, 9, 9, 40, 1, 1, 0),
        (4, 4, 3, 6, 6, 6, 1, 0),
        (2, 3, 17, 10, 10, 3, 1, 3),
        // Output-channel vectors: one (16 channels, LeNet's conv2 above), two (32), padded (17).
        (3, 4, 32, 9, 9, 3, 1, 0),
        (5, 2, 17, 9, 9, 3, 1, 1),
        (5, 2, 4, 13, 11, 4, 2, 1),
        // Same-size convolutions with 8+ input channels: the input gradient as a forward pass
        // (ResNet's 3×3 with padding 1, a 5×5 with padding 2, non-square, partial tiles).
        (3, 8, 5, 9, 9, 3, 1, 1),
        (2, 16, 32, 14, 14, 3, 1, 1),
        (2, 9, 6, 7, 7, 5, 1, 2),
        (2, 8, 17, 6, 11, 3, 1, 1),
    ];
    for (i, &(n, c, o, h, w, k, stride, pad)) in cases.iter().enumerate() {
        check_conv(&Case {
            n,
            c,
            o,
            h,
            w,
            k,
            stride,
            pad,
            seed: i as u64,
        });
    }
}

/// matmul and every transposition at every level against an f64 product.
#[test]
fn matmul_matches_direct_loops_at_every_level() {
    let mut rng = Rng::seed_from_u64(5);
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 2),
        (256, 256, 120),
        (256, 120, 84),
        (256, 84, 10),
        (200, 37, 19),
        (70, 3, 65),
        (9, 0, 4),
    ] {
        let a = Tensor::rand_normal(&[m, k], 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[k, n], 0.0, 1.0, &mut rng);
        let mut want = Sums::zeros(m * n);
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    want.add(
                        i * n + j,
                        a.as_slice()[i * k + p] as f64 * b.as_slice()[p * n + j] as f64,
                    );
                }
            }
        }
        let (at, bt) = (a.t().unwrap(), b.t().unwrap());
        for level in levels() {
            level.capped(|| {
                let what = |t: &str| format!("{t} ({m}, {k}, {n}) at {level}");
                assert_close(&a.matmul(&b).unwrap(), &want, &what("a·b"));
                assert_close(
                    &at.matmul_t(true, &b, false).unwrap(),
                    &want,
                    &what("(aᵀ)ᵀ·b"),
                );
                assert_close(
                    &a.matmul_t(false, &bt, true).unwrap(),
                    &want,
                    &what("a·(bᵀ)ᵀ"),
                );
                assert_close(&at.matmul_t(true, &bt, true).unwrap(), &want, &what("both"));
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv2d_and_its_gradients_match_direct_loops(case in conv_case()) {
        check_conv(&case);
    }

    #[test]
    fn pooling_matches_direct_loops(
        n in 1usize..3, c in 1usize..4, k in 1usize..4, stride in 1usize..4,
        dh in 0usize..6, dw in 0usize..6, seed in any::<u64>(),
    ) {
        let (h, w) = (k + dh, k + dw);
        let mut rng = Rng::seed_from_u64(seed);
        let x = Tensor::rand_normal(&[n, c, h, w], 0.0, 1.0, &mut rng);
        let (oh, ow) = (out_size(h, k, stride, 0), out_size(w, k, stride, 0));
        let avg = x.avg_pool2d(k, stride).unwrap();
        prop_assert_eq!(avg.shape(), &[n, c, oh, ow]);
        let dy = Tensor::rand_normal(avg.shape(), 0.0, 1.0, &mut rng);
        let mut want_avg = vec![0.0f64; avg.len()];
        let mut want_max = vec![f64::NEG_INFINITY; avg.len()];
        let mut want_davg = vec![0.0f64; x.len()];
        let mut want_dmax = vec![0.0f64; x.len()];
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = (plane * oh + oy) * ow + ox;
                    let mut best = None;
                    for p in 0..k {
                        for q in 0..k {
                            let xi = (plane * h + oy * stride + p) * w + ox * stride + q;
                            let v = x.as_slice()[xi] as f64;
                            want_avg[yi] += v / (k * k) as f64;
                            want_davg[xi] += dy.as_slice()[yi] as f64 / (k * k) as f64;
                            if v > want_max[yi] {
                                want_max[yi] = v;
                                best = Some(xi);
                            }
                        }
                    }
                    want_dmax[best.unwrap()] += dy.as_slice()[yi] as f64;
                }
            }
        }
        let (want_avg, want_max) = (Sums::of(want_avg), Sums::of(want_max));
        let (want_davg, want_dmax) = (Sums::of(want_davg), Sums::of(want_dmax));
        for level in levels() {
            level.capped(|| {
                let avg = x.avg_pool2d(k, stride).unwrap();
                let max = x.max_pool2d(k, stride).unwrap();
                assert_close(&avg, &want_avg, &format!("avg at {level}"));
                assert_close(&max.output, &want_max, &format!("max at {level}"));
                let davg = dy.avg_pool2d_backward(x.shape(), k, stride).unwrap();
                assert_close(&davg, &want_davg, &format!("davg at {level}"));
                let dmax = dy.max_pool2d_backward(&max.argmax, x.shape(), k, stride).unwrap();
                assert_close(&dmax, &want_dmax, &format!("dmax at {level}"));
            });
        }
    }
}

#[test]
fn conv2d_and_matmul_are_bitwise_identical_across_thread_counts() {
    let mut rng = Rng::seed_from_u64(11);
    let shapes = [
        ([37, 3, 12, 12], [5, 3, 5, 5], 2),
        ([70, 6, 12, 12], [16, 6, 5, 5], 0),
        ([20, 16, 14, 14], [32, 16, 3, 3], 1),
    ];
    let a = Tensor::rand_normal(&[300, 130], 0.0, 1.0, &mut rng);
    let b = Tensor::rand_normal(&[130, 70], 0.0, 1.0, &mut rng);
    for (xs, ws, pad) in shapes {
        let x = Tensor::rand_normal(&xs, 0.0, 1.0, &mut rng);
        let w = Tensor::rand_normal(&ws, 0.0, 1.0, &mut rng);
        for level in levels() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    level.capped(|| {
                        let y = x.conv2d(&w, None, 1, pad).unwrap();
                        let dx = y.conv2d_backward_input(&w, x.shape(), 1, pad).unwrap();
                        let (dw, db) = y.conv2d_backward_params(&x, w.shape(), 1, pad).unwrap();
                        (y, dx, dw, db, a.matmul(&b).unwrap())
                    })
                })
            };
            let one = run(1);
            for threads in [2, 7] {
                assert!(
                    one == run(threads),
                    "results differ with {threads} threads at {level}"
                );
            }
        }
    }
}
