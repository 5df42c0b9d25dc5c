//! conv2d and pooling against naive direct loops (f64 accumulation) on random shapes,
//! strides and paddings.
//!
//! Tolerance: the GEMM path sums in f32, the reference in f64; with O(1) values and at most
//! a few hundred terms per output the f32 error stays below 1e-4 absolute.

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

fn assert_close(got: &Tensor, want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.as_slice().iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() < TOL as f64 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv2d_and_its_gradients_match_direct_loops(case in conv_case()) {
        let mut rng = Rng::seed_from_u64(case.seed);
        let x = Tensor::rand_normal(&[case.n, case.c, case.h, case.w], 0.0, 1.0, &mut rng);
        let w = Tensor::rand_normal(&[case.o, case.c, case.k, case.k], 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[case.o], 0.0, 1.0, &mut rng);
        let y = x.conv2d(&w, Some(&b), case.stride, case.pad).unwrap();
        let oh = out_size(case.h, case.k, case.stride, case.pad);
        let ow = out_size(case.w, case.k, case.stride, case.pad);
        prop_assert_eq!(y.shape(), &[case.n, case.o, oh, ow]);
        let dy = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut rng);

        let mut want_y: Vec<f64> = (0..y.len()).map(|i| b.as_slice()[(i / (oh * ow)) % case.o] as f64).collect();
        let mut want_dx = vec![0.0f64; x.len()];
        let mut want_dw = vec![0.0f64; w.len()];
        let mut want_db = vec![0.0f64; case.o];
        for_each_term(&case, |yi, wi, xi| {
            let (xv, wv, g) = (x.as_slice()[xi] as f64, w.as_slice()[wi] as f64, dy.as_slice()[yi] as f64);
            want_y[yi] += wv * xv;
            want_dx[xi] += wv * g;
            want_dw[wi] += xv * g;
        });
        for (i, g) in dy.as_slice().iter().enumerate() {
            want_db[(i / (oh * ow)) % case.o] += *g as f64;
        }
        assert_close(&y, &want_y, "y");
        let dx = dy.conv2d_backward_input(&w, x.shape(), case.stride, case.pad).unwrap();
        assert_close(&dx, &want_dx, "dx");
        let (dw, db) = dy.conv2d_backward_params(&x, w.shape(), case.stride, case.pad).unwrap();
        assert_close(&dw, &want_dw, "dw");
        assert_close(&db, &want_db, "db");
        // Without bias the output is the same sum minus the bias.
        let y0 = x.conv2d(&w, None, case.stride, case.pad).unwrap();
        let bias_only = y.sub(&y0).unwrap();
        for (i, v) in bias_only.as_slice().iter().enumerate() {
            prop_assert!((v - b.as_slice()[(i / (oh * ow)) % case.o]).abs() < TOL * 10.0);
        }
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
        let max = x.max_pool2d(k, stride).unwrap();
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
        assert_close(&avg, &want_avg, "avg");
        assert_close(&max.output, &want_max, "max");
        assert_close(&dy.avg_pool2d_backward(x.shape(), k, stride).unwrap(), &want_davg, "davg");
        assert_close(&dy.max_pool2d_backward(&max.argmax, x.shape(), k, stride).unwrap(), &want_dmax, "dmax");
    }
}

#[test]
fn conv2d_is_bitwise_identical_across_thread_counts() {
    let mut rng = Rng::seed_from_u64(11);
    let x = Tensor::rand_normal(&[37, 3, 12, 12], 0.0, 1.0, &mut rng);
    let w = Tensor::rand_normal(&[5, 3, 5, 5], 0.0, 1.0, &mut rng);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let y = x.conv2d(&w, None, 1, 2).unwrap();
            let dx = y.conv2d_backward_input(&w, x.shape(), 1, 2).unwrap();
            let (dw, db) = y.conv2d_backward_params(&x, w.shape(), 1, 2).unwrap();
            (y, dx, dw, db)
        })
    };
    let one = run(1);
    for threads in [2, 7] {
        assert!(one == run(threads), "results differ with {threads} threads");
    }
}
