//! Shared helpers of the kernel tests: random inputs and a plain serial reference.

#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use norma_kernels::SimdLevel;

/// A tiny deterministic generator for test data (the kernels crate depends on nothing of ours).
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_f64(&mut self) -> f64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.next_f64(), self.next_f64());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn array(&mut self, shape: &[usize], mean: f64, std: f64) -> ArrayD<f32> {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| (mean + std * self.normal()) as f32)
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
    }
    pub fn vec(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (mean + std * self.normal()) as f32)
            .collect()
    }
}

/// (N, C, S) of a batch-norm input shape.
pub fn ncs(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

/// Index of value (n, c, s) in a contiguous (N, C, S) array.
pub fn at(c_total: usize, s_total: usize, n: usize, c: usize, s: usize) -> usize {
    (n * c_total + c) * s_total + s
}

/// Per-channel mean and biased variance, by two plain f64 passes.
pub fn reference_stats(x: &ArrayD<f32>) -> (Vec<f64>, Vec<f64>) {
    let (n, c, s) = ncs(x.shape());
    let xs = x.as_slice().unwrap();
    let m = (n * s) as f64;
    let mut means = vec![0.0; c];
    let mut vars = vec![0.0; c];
    for ch in 0..c {
        let vals = (0..n).flat_map(|i| (0..s).map(move |j| at(c, s, i, ch, j)));
        let mean = vals.clone().map(|i| xs[i] as f64).sum::<f64>() / m;
        let var = vals.map(|i| (xs[i] as f64 - mean).powi(2)).sum::<f64>() / m;
        means[ch] = mean;
        vars[ch] = var;
    }
    (means, vars)
}

/// Training-mode forward and backward by the textbook formulas, in f64.
pub fn reference_train(
    x: &ArrayD<f32>,
    dy: &ArrayD<f32>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c, s) = ncs(x.shape());
    let (xs, dys) = (x.as_slice().unwrap(), dy.as_slice().unwrap());
    let (means, vars) = reference_stats(x);
    let m = (n * s) as f64;
    let mut y = vec![0.0; xs.len()];
    let mut dx = vec![0.0; xs.len()];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for ch in 0..c {
        let inv = 1.0 / (vars[ch] + eps).sqrt();
        let idx: Vec<usize> = (0..n)
            .flat_map(|i| (0..s).map(move |j| at(c, s, i, ch, j)))
            .collect();
        let xhat: Vec<f64> = idx
            .iter()
            .map(|&i| (xs[i] as f64 - means[ch]) * inv)
            .collect();
        let mean_dy = idx.iter().map(|&i| dys[i] as f64).sum::<f64>() / m;
        let mean_dy_xhat = idx
            .iter()
            .zip(&xhat)
            .map(|(&i, h)| dys[i] as f64 * h)
            .sum::<f64>()
            / m;
        for (&i, h) in idx.iter().zip(&xhat) {
            y[i] = gamma[ch] as f64 * h + beta[ch] as f64;
            dx[i] = gamma[ch] as f64 * inv * (dys[i] as f64 - mean_dy - h * mean_dy_xhat);
        }
        dgamma[ch] = mean_dy_xhat * m;
        dbeta[ch] = mean_dy * m;
    }
    (y, dx, dgamma, dbeta)
}

/// Shapes covering every work split: (N, C) rows, tiny spatial sizes (row path with S > 1),
/// and images with one or many planes per piece.
pub fn shape_strategy() -> impl proptest::strategy::Strategy<Value = Vec<usize>> {
    use proptest::prelude::*;
    prop_oneof![
        (2usize..70, 1usize..20).prop_map(|(n, c)| vec![n, c]),
        (1usize..9, 1usize..6, 1usize..4, 1usize..4).prop_map(|(n, c, h, w)| vec![
            n.max(2),
            c,
            h,
            w
        ]),
        (1usize..40, 1usize..5, 4usize..30).prop_map(|(n, c, h)| vec![n, c, h, h + 1]),
    ]
}

/// Asserts that `run(threads, level)`, which runs kernels on a pool of `threads` rayon threads
/// at `level` (see [`on`]), gives bitwise the same result on 1, 2 and 7 threads and at every
/// SIMD level this CPU supports; `what` names the case in a failure.
pub fn assert_bitwise_everywhere<R: PartialEq>(what: &str, run: impl Fn(usize, SimdLevel) -> R) {
    let one = run(1, SimdLevel::Avx512);
    for threads in [2, 7] {
        assert!(
            run(threads, SimdLevel::Avx512) == one,
            "{what}: {threads} threads differ from 1"
        );
    }
    for level in SimdLevel::supported() {
        assert!(run(2, level) == one, "{what}: SIMD level {level} differs");
    }
}

/// Runs `f` on a pool of `threads` rayon threads with the kernels at `level`.
pub fn on<R: Send>(threads: usize, level: SimdLevel, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| level.capped(f))
}
