//! What the tests of the normalization layers share (the small-batch layers, instance and RMS
//! norm, group and layer norm):
//! float64 references of batch norm's pieces, bitwise traces, and runs on given thread counts
//! and SIMD levels.

#![allow(dead_code)] // each test file uses its own subset

use norma_autograd::{no_grad, Param, Var};
use norma_kernels::SimdLevel;
use norma_layers::checkpoint::{state_dict, StateValue};
use norma_layers::{BatchNorm1d, BatchNorm2d, BatchNormConfig, Module};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

/// (N, C, S) of an (N, C), (N, C, L) or (N, C, H, W) shape.
pub fn ncs(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

/// Per channel, the f64 mean and biased variance over samples `lo..hi` of `x`.
pub fn moments(x: &Tensor, lo: usize, hi: usize) -> Vec<(f64, f64)> {
    let (_, c, s) = ncs(x.shape());
    let v = x.as_slice();
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = (lo..hi)
                .flat_map(|n| (0..s).map(move |i| (n * c + ch) * s + i))
                .map(|i| v[i] as f64)
                .collect();
            let m = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / m;
            let var = vals.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / m;
            (mean, var)
        })
        .collect()
}

/// Writes `scale_c·(x − mean_c)/sqrt(var_c + eps) + shift_c` for samples `lo..hi` into `out`, in
/// f64.
pub fn normalize_into(
    x: &Tensor,
    (lo, hi): (usize, usize),
    stats: &[(f64, f64)],
    affine: &[(f64, f64)],
    eps: f64,
    out: &mut [f64],
) {
    let (_, c, s) = ncs(x.shape());
    for n in lo..hi {
        for ch in 0..c {
            let (mean, var) = stats[ch];
            let (a, b) = affine[ch];
            for i in 0..s {
                let j = (n * c + ch) * s + i;
                out[j] = a * (x.as_slice()[j] as f64 - mean) / (var + eps).sqrt() + b;
            }
        }
    }
}

/// `|got − want| ≤ tol·(1 + |want|)` everywhere.
pub fn close(got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "value {}: {} vs f64 {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

/// The f32 values of buffer `name` of `m`.
pub fn buffer(m: &dyn Module, name: &str) -> Vec<f32> {
    match state_dict(m).remove(name) {
        Some(StateValue::F32(t)) => t.to_vec(),
        other => panic!("{name}: {other:?}"),
    }
}

/// Sets γ and β of a layer (its two parameters) to random values.
pub fn randomize_affine(m: &dyn Module, rng: &mut Rng) {
    for (p, mean) in m.parameters().iter().zip([1.0, 0.0]) {
        let shape = p.value().shape().to_vec();
        p.set_value(Tensor::rand_normal(&shape, mean, 0.5, rng))
            .unwrap();
    }
}

/// Output, dx, every parameter gradient and every buffer after `steps` training passes of
/// `m` (a layer or a model) on inputs drawn from `seed` (each back-propagating Σ y·r), as bits.
pub fn trace(m: &mut dyn Module, shape: &[usize], seed: u64, steps: usize) -> Vec<Vec<u32>> {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let mut rng = Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for _ in 0..steps {
        let x = Param::new(Tensor::rand_normal(shape, 3.0, 2.0, &mut rng));
        for p in m.parameters() {
            p.zero_grad();
        }
        let y = m.forward(&x.var()).unwrap();
        let r = Var::constant(Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut rng));
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        out.push(bits(y.value().as_slice()));
        out.push(bits(x.grad().unwrap().as_slice()));
        for p in m.parameters() {
            out.push(bits(p.grad().unwrap().as_slice()));
        }
        for (_, b) in m.named_buffers() {
            if let norma_layers::Buffer::F32(t) = b {
                out.push(bits(t.get().as_slice()));
            }
        }
    }
    out
}

/// `run()` gives the same bits on 1, 2 and 3 threads and at every SIMD level the CPU has.
pub fn same_bits_everywhere(run: impl Fn() -> Vec<Vec<u32>> + Sync) {
    let on = |threads: usize, level: SimdLevel| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| level.capped(&run))
    };
    let one = on(1, SimdLevel::current());
    for threads in [2, 3] {
        assert!(
            on(threads, SimdLevel::current()) == one,
            "{threads} threads differ from 1"
        );
    }
    for level in SimdLevel::supported() {
        assert!(on(2, level) == one, "SIMD level {level} differs");
    }
}

/// Shapes of batch-norm inputs: (N, C) with N ≥ 2 and (N, C, H, W) with H·W ≥ 2.
pub fn shapes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (2usize..7, 1usize..4).prop_map(|(n, c)| vec![n, c]),
        (1usize..5, 1usize..3, 1usize..4, 2usize..4).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
    ]
}

/// Every parameter's gradient of Σ y·r against central differences with step 1e-2; `reset`
/// restores whatever state a forward pass changes (running statistics) before each one. y is
/// linear in γ and β, so the quotient is exact up to rounding: 1e-3 relative.
pub fn check_parameter_gradients(
    m: &mut dyn Module,
    x: &Tensor,
    r: &Tensor,
    reset: &dyn Fn(&dyn Module),
) -> Result<(), TestCaseError> {
    let loss = |m: &mut dyn Module| -> f64 {
        reset(m);
        let y = no_grad(|| m.forward(&Var::constant(x.clone()))).unwrap();
        y.value()
            .as_slice()
            .iter()
            .zip(r.as_slice())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    reset(m);
    let y = m.forward(&Var::constant(x.clone())).unwrap();
    y.mul(&Var::constant(r.clone()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for p in m.parameters() {
        let analytic = p.grad().unwrap();
        for j in 0..p.len() {
            let v0 = p.value().as_slice()[j];
            let h = 1e-2f32;
            p.update(|v| v.as_slice_mut()[j] = v0 + h).unwrap();
            let plus = loss(m);
            p.update(|v| v.as_slice_mut()[j] = v0 - h).unwrap();
            let minus = loss(m);
            p.update(|v| v.as_slice_mut()[j] = v0).unwrap();
            let numeric = (plus - minus) / (2.0 * h as f64);
            let a = analytic.as_slice()[j] as f64;
            prop_assert!(
                (a - numeric).abs() < 1e-3 * (1.0 + a.abs()),
                "{} vs {}",
                a,
                numeric
            );
        }
    }
    Ok(())
}

/// A batch norm of `shape`'s kind: BatchNorm2d for (N, C, H, W), BatchNorm1d otherwise.
pub fn bn_for(shape: &[usize], config: BatchNormConfig) -> Box<dyn Module> {
    if shape.len() == 4 {
        Box::new(BatchNorm2d::with_config(shape[1], config).unwrap())
    } else {
        Box::new(BatchNorm1d::with_config(shape[1], config).unwrap())
    }
}
