//! GhostBatchNorm1d/2d: a hand-computed case, a float64 implementation of the ghost batches and
//! of the pooled running update, batch norm bit for bit with one ghost batch and on each ghost
//! batch alone, remainders, gradients against finite differences, bitwise determinism,
//! checkpoints, errors.

mod norm_checks;

use norm_checks::{
    bn_for, buffer, close, moments, normalize_into, randomize_affine, same_bits_everywhere, shapes,
    trace,
};
use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{Param, Var};
use norma_kernels::KernelError;
use norma_layers::checkpoint::state_dict;
use norma_layers::{
    BatchNorm2d, BatchNormConfig, GhostBatchNorm1d, GhostBatchNorm2d, LayerError, Module,
    Sequential,
};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn ghost_for(shape: &[usize], v: usize, config: BatchNormConfig) -> Box<dyn Module> {
    if shape.len() == 4 {
        Box::new(GhostBatchNorm2d::with_config(shape[1], v, config).unwrap())
    } else {
        Box::new(GhostBatchNorm1d::with_config(shape[1], v, config).unwrap())
    }
}

/// Samples `lo..hi` of `x` as a tensor of their own.
fn samples(x: &Tensor, lo: usize, hi: usize) -> Tensor {
    let per: usize = x.shape()[1..].iter().product();
    let mut shape = x.shape().to_vec();
    shape[0] = hi - lo;
    Tensor::from_vec(&shape, x.as_slice()[lo * per..hi * per].to_vec()).unwrap()
}

/// The ghost batches of N samples: runs of v, the last shorter.
fn ghost_ranges(n: usize, v: usize) -> Vec<(usize, usize)> {
    (0..n.div_ceil(v))
        .map(|g| (g * v, n.min((g + 1) * v)))
        .collect()
}

#[test]
fn hand_computed_case() {
    // Ghost batches [0, 2] and [10, 14]: means 1 and 12, unbiased variances 2 and 8.
    let mut gbn = GhostBatchNorm1d::new(1, 2).unwrap();
    let x = Var::constant(Tensor::from_vec(&[4, 1], vec![0., 2., 10., 14.]).unwrap());
    let y = gbn.forward(&x).unwrap().value().to_vec();
    let s = |var: f32| (var + 1e-5).sqrt();
    let want = [-1.0 / s(1.0), 1.0 / s(1.0), -2.0 / s(4.0), 2.0 / s(4.0)];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // One running update from the pool: mean (1 + 12)/2, unbiased variance (2 + 8)/2.
    assert!((gbn.batch_norm().running_mean().unwrap().as_slice()[0] - 0.65).abs() < 1e-6);
    assert!((gbn.batch_norm().running_var().unwrap().as_slice()[0] - (0.9 + 0.5)).abs() < 1e-6);
    assert_eq!(buffer(&gbn, "running_mean").len(), 1);
}

#[test]
fn remainders_and_errors() {
    // 5 images in ghost batches of 2: 2, 2 and a last one of 1 image (4 values per channel).
    let mut gbn = GhostBatchNorm2d::new(2, 2).unwrap();
    let x = Tensor::rand_normal(&[5, 2, 2, 2], 0.0, 1.0, &mut Rng::seed_from_u64(1));
    let y = gbn.forward(&Var::constant(x.clone())).unwrap();
    let mut bn = BatchNorm2d::new(2).unwrap();
    let alone = bn.forward(&Var::constant(samples(&x, 4, 5))).unwrap();
    assert_eq!(&y.value().as_slice()[32..], alone.value().as_slice());
    // 5 feature vectors in ghost batches of 2: the last one has one value per channel.
    let mut gbn = GhostBatchNorm1d::new(3, 2).unwrap();
    assert_eq!(
        gbn.forward(&Var::constant(Tensor::ones(&[5, 3])))
            .unwrap_err(),
        LayerError::Kernel(KernelError::SingleValuePerChannel { shape: vec![1, 3] })
    );
    assert!(gbn.forward(&Var::constant(Tensor::ones(&[0, 3]))).is_err());
    let err = gbn
        .forward(&Var::constant(Tensor::ones(&[4, 2])))
        .unwrap_err();
    assert!(
        matches!(&err, LayerError::Input { layer, .. } if layer.starts_with("GhostBatchNorm1d(3")),
        "{err}"
    );
    assert!(matches!(
        GhostBatchNorm2d::new(3, 0),
        Err(LayerError::Config { .. })
    ));
    gbn.eval();
    assert!(gbn.forward(&Var::constant(Tensor::ones(&[1, 3]))).is_ok());
    assert!(gbn.describe().starts_with("GhostBatchNorm1d(3, eps="));
    assert!(gbn.describe().ends_with("virtual_batch_size=2)"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Outputs and the running update against the module docs' equations in f64.
    #[test]
    fn matches_the_float64_equations(shape in shapes(), seed in any::<u64>(), v in 1usize..5) {
        let (n, c) = (shape[0], shape[1]);
        let per_channel = |len: usize| len * shape[2..].iter().product::<usize>();
        // Every ghost batch needs two values per channel.
        prop_assume!(ghost_ranges(n, v).iter().all(|(lo, hi)| per_channel(hi - lo) >= 2));
        let mut rng = Rng::seed_from_u64(seed);
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let mut gbn = ghost_for(&shape, v, BatchNormConfig::default());
        randomize_affine(gbn.as_ref(), &mut rng);
        let p = gbn.parameters();
        let affine: Vec<(f64, f64)> = p[0].value().as_slice().iter().zip(p[1].value().as_slice())
            .map(|(g, b)| (*g as f64, *b as f64)).collect();
        let y = gbn.forward(&Var::constant(x.clone())).unwrap();
        let mut want = vec![0.0; x.len()];
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        for (lo, hi) in ghost_ranges(n, v) {
            let stats = moments(&x, lo, hi);
            normalize_into(&x, (lo, hi), &stats, &affine, 1e-5, &mut want);
            let (m, w) = (per_channel(hi - lo) as f64, (hi - lo) as f64 / n as f64);
            for ch in 0..c {
                mean[ch] += w * stats[ch].0;
                var[ch] += w * stats[ch].1 * m / (m - 1.0);
            }
        }
        close(y.value().as_slice(), &want, 2e-5)?;
        let mean: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
        let var: Vec<f64> = var.iter().map(|v| 0.9 + 0.1 * v).collect();
        close(&buffer(gbn.as_ref(), "running_mean"), &mean, 1e-6)?;
        close(&buffer(gbn.as_ref(), "running_var"), &var, 1e-6)?;
    }

    /// A virtual batch at least the batch is batch norm bit for bit (outputs, dx, dγ, dβ,
    /// buffers, several steps).
    #[test]
    fn one_ghost_batch_is_batch_norm_bit_for_bit(shape in shapes(), seed in any::<u64>(), extra in 0usize..3, affine in any::<bool>()) {
        let config = BatchNormConfig { affine, ..BatchNormConfig::default() };
        let mut gbn = ghost_for(&shape, shape[0] + extra, config);
        let mut bn = bn_for(&shape, config);
        prop_assert!(trace(gbn.as_mut(), &shape, seed, 3) == trace(bn.as_mut(), &shape, seed, 3));
    }

    /// Each ghost batch's output and dx are batch norm's on that ghost batch alone, bit for
    /// bit; dγ and dβ are their sums (to f32 rounding of the sum).
    #[test]
    fn each_ghost_batch_is_batch_norm_alone(seed in any::<u64>(), n in 2usize..9, v in 1usize..4) {
        let shape = [n, 3, 2, 3];
        let mut rng = Rng::seed_from_u64(seed);
        let x = Param::new(Tensor::rand_normal(&shape, 2.0, 1.5, &mut rng));
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let mut gbn = GhostBatchNorm2d::new(3, v).unwrap();
        randomize_affine(&gbn, &mut rng);
        let y = gbn.forward(&x.var()).unwrap();
        y.mul(&Var::constant(r.clone())).unwrap().sum_all().unwrap().backward().unwrap();
        let (dx, gp) = (x.grad().unwrap(), gbn.parameters());
        let mut sums = [vec![0.0f64; 3], vec![0.0f64; 3]];
        for (lo, hi) in ghost_ranges(n, v) {
            let mut bn = BatchNorm2d::new(3).unwrap();
            for (p, q) in bn.parameters().iter().zip(&gp) {
                p.set_value(Tensor::clone(&q.value())).unwrap();
            }
            let xg = Param::new(samples(x.value().as_ref(), lo, hi));
            let yg = bn.forward(&xg.var()).unwrap();
            yg.mul(&Var::constant(samples(&r, lo, hi))).unwrap().sum_all().unwrap().backward().unwrap();
            prop_assert_eq!(yg.value().to_vec(), samples(y.value(), lo, hi).to_vec());
            prop_assert_eq!(xg.grad().unwrap().to_vec(), samples(&dx, lo, hi).to_vec());
            for (sum, p) in sums.iter_mut().zip(bn.parameters()) {
                for (s, g) in sum.iter_mut().zip(p.grad().unwrap().as_slice()) {
                    *s += *g as f64;
                }
            }
        }
        for (sum, p) in sums.iter().zip(&gp) {
            close(p.grad().unwrap().as_slice(), sum, 1e-6)?;
        }
    }

    /// dx against finite differences (tolerances as batch norm's: f32 differences with step
    /// 1e-3, 2e-2 absolute and relative).
    #[test]
    fn input_gradient_matches_finite_differences(seed in any::<u64>(), n in 2usize..7, v in 1usize..4) {
        let shape = [n, 2, 2, 2];
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut Rng::seed_from_u64(seed));
        let f = |vars: &[Var]| {
            GhostBatchNorm2d::new(2, v).unwrap().forward(&vars[0]).map_err(|e| {
                norma_autograd::AutogradError::Op { op: "ghost_batch_norm", source: norma_autograd::OpError::new(e) }
            })
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn bitwise_identical_across_threads_and_simd_levels() {
    let shape = [20, 6, 12, 12];
    same_bits_everywhere(|| {
        let mut gbn = GhostBatchNorm2d::new(6, 8).unwrap();
        trace(&mut gbn, &shape, 9, 3)
    });
}

#[test]
fn state_dict_names_are_batch_norms() {
    let model = Sequential::new().with("gbn", GhostBatchNorm2d::new(4, 16).unwrap());
    let reference = Sequential::new().with("gbn", BatchNorm2d::new(4).unwrap());
    let keys = |m: &Sequential| state_dict(m).into_keys().collect::<Vec<_>>();
    assert_eq!(keys(&model), keys(&reference));
}

/// A LeNet-BN converted keeps its weights and names; with virtual batches as large as the
/// batch it trains exactly as LeNet-BN, with smaller ones it does not.
#[test]
fn converted_lenet_bn() {
    use norma_layers::convert_ghost_batch_norm;
    use norma_layers::models::{self, Activation};
    let build = || models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(8)).unwrap();
    let mut bn = build();
    let mut whole = convert_ghost_batch_norm(build(), 4).unwrap();
    let mut halves = convert_ghost_batch_norm(build(), 2).unwrap();
    let keys = |m: &dyn Module| state_dict(m).into_keys().collect::<Vec<_>>();
    assert_eq!(keys(&whole), keys(&bn));
    let want = trace(&mut bn, &[4, 1, 28, 28], 2, 2);
    assert!(trace(&mut whole, &[4, 1, 28, 28], 2, 2) == want);
    assert!(trace(&mut halves, &[4, 1, 28, 28], 2, 2) != want);
    assert!(convert_ghost_batch_norm(build(), 0).is_err());
}
