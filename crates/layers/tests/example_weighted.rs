//! Example-weighted inference statistics: α = 0 is eval mode bit for bit, the mixture against
//! the moment form of the equations in f64 and on a hand-computed case, α = 1 is instance
//! norm, each example is independent of the batch, gradients against finite differences,
//! determinism, the model-wide setter, errors.

mod norm_checks;

use norm_checks::{
    check_parameter_gradients, close, ncs, randomize_affine, same_bits_everywhere, trace,
};
use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{no_grad, Var};
use norma_layers::checkpoint::{load_bytes, state_dict, to_bytes};
use norma_layers::models::{self, Activation};
use norma_layers::{
    set_example_weight, BatchNorm, BatchNorm1d, BatchNorm2d, GroupNorm, GroupNormConfig, Module,
};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn shapes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (1usize..5, 1usize..4).prop_map(|(n, c)| vec![n, c]),
        (1usize..4, 1usize..4, 1usize..5).prop_map(|(n, c, l)| vec![n, c, l]),
        (1usize..4, 1usize..3, 1usize..4, 1usize..4).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
    ]
}

/// A batch norm of `shape`'s kind in eval mode with random affine and running statistics.
fn trained(shape: &[usize], rng: &mut Rng) -> Box<dyn Module> {
    let c = shape[1];
    let mut bn: Box<dyn Module> = if shape.len() == 4 {
        Box::new(BatchNorm2d::new(c).unwrap())
    } else {
        Box::new(BatchNorm1d::new(c).unwrap())
    };
    randomize_affine(bn.as_ref(), rng);
    let mut warm = shape.to_vec();
    warm[0] = 4;
    for _ in 0..2 {
        let x = Tensor::rand_normal(&warm, 1.5, 2.0, rng);
        no_grad(|| bn.forward(&Var::constant(x))).unwrap();
    }
    bn.eval();
    bn
}

fn set_alpha(bn: &mut dyn Module, alpha: f64) {
    set_example_weight(bn, alpha).unwrap();
}

/// The layer's running statistics and affine, in f64.
fn state(bn: &dyn Module) -> [Vec<f64>; 4] {
    let b = norm_checks::buffer;
    let p = bn.parameters();
    let f = |v: Vec<f32>| v.iter().map(|&x| x as f64).collect();
    [
        f(b(bn, "running_mean")),
        f(b(bn, "running_var")),
        f(p[0].value().to_vec()),
        f(p[1].value().to_vec()),
    ]
}

/// The module docs' left-hand form: mixed first and second moments, in f64.
fn reference(x: &Tensor, bn: &dyn Module, alpha: f64, eps: f64) -> Vec<f64> {
    let [mu, var, gamma, beta] = state(bn);
    let (_, c, s) = ncs(x.shape());
    x.as_slice()
        .chunks(s)
        .enumerate()
        .flat_map(|(i, plane)| {
            let ch = i % c;
            let k = s as f64;
            let m1 = plane.iter().map(|&v| v as f64).sum::<f64>() / k;
            let m2 = plane.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k;
            let mean = alpha * m1 + (1.0 - alpha) * mu[ch];
            let second = alpha * m2 + (1.0 - alpha) * (var[ch] + mu[ch] * mu[ch]);
            let v = second - mean * mean;
            let (g, b) = (gamma[ch], beta[ch]);
            plane
                .iter()
                .map(move |&x| g * (x as f64 - mean) / (v + eps).sqrt() + b)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn hand_computed_case() {
    // One feature x = 3, running mean 1, variance 4, α = 1/2: μ = 2,
    // σ² = 0 + 2 + (1/4)·(3 − 1)² = 3, so y = (3 − 2)/sqrt(3 + eps).
    let mut bn = BatchNorm1d::new(1).unwrap();
    for (name, b) in bn.named_buffers() {
        if let norma_layers::Buffer::F32(t) = b {
            let v = if name == "running_mean" { 1.0 } else { 4.0 };
            t.set(Tensor::from_vec(&[1], vec![v]).unwrap()).unwrap();
        }
    }
    bn.eval();
    bn.set_example_weight(0.5).unwrap();
    assert_eq!(bn.example_weight(), 0.5);
    let y = bn
        .forward(&Var::constant(
            Tensor::from_vec(&[1, 1], vec![3.0]).unwrap(),
        ))
        .unwrap();
    let want = 1.0 / (3.0f64 + 1e-5).sqrt();
    assert!((y.value().as_slice()[0] as f64 - want).abs() < 1e-6);
}

#[test]
fn errors_and_the_model_wide_setter() {
    let mut bn = BatchNorm2d::new(2).unwrap();
    assert_eq!(bn.example_weight(), 0.0, "off by default");
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(bn.set_example_weight(bad).is_err());
    }
    let mut net = models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(0)).unwrap();
    assert!(set_example_weight(&mut net, 2.0).is_err());
    let names = set_example_weight(&mut net, 0.25).unwrap();
    assert_eq!(names, ["bn1", "bn2", "bn3", "bn4"]);
    // Training is unaffected by α.
    let mut a: BatchNorm<_> = BatchNorm2d::new(2).unwrap();
    a.set_example_weight(0.5).unwrap();
    let mut b = BatchNorm2d::new(2).unwrap();
    let (ta, tb) = (
        trace(&mut a, &[3, 2, 2, 2], 1, 2),
        trace(&mut b, &[3, 2, 2, 2], 1, 2),
    );
    assert!(ta == tb);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// α = 0 is eval mode bit for bit; any α matches the moment form in f64.
    #[test]
    fn matches_eval_mode_and_the_float64_equations(shape in shapes(), seed in any::<u64>(), alpha in 0.0f64..=1.0) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut bn = trained(&shape, &mut rng);
        let x = Var::constant(Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng));
        let plain = bn.forward(&x).unwrap().value().to_vec();
        set_alpha(bn.as_mut(), 0.0);
        prop_assert_eq!(bn.forward(&x).unwrap().value().to_vec(), plain);
        set_alpha(bn.as_mut(), alpha);
        let y = bn.forward(&x).unwrap();
        // The moment form cancels when a plane's values are close: 1e-4 relative to the output.
        close(y.value().as_slice(), &reference(x.value(), bn.as_ref(), alpha, 1e-5), 1e-4)?;
    }

    /// α = 1 is instance norm: group norm with one channel per group, then the affine.
    #[test]
    fn full_weight_is_instance_norm(seed in any::<u64>(), n in 1usize..4, c in 1usize..4, hw in 2usize..5) {
        let shape = [n, c, hw, hw];
        let mut rng = Rng::seed_from_u64(seed);
        let mut bn = trained(&shape, &mut rng);
        set_alpha(bn.as_mut(), 1.0);
        let mut gn = GroupNorm::with_config(c, c, GroupNormConfig::default()).unwrap();
        for (p, q) in gn.parameters().iter().zip(bn.parameters()) {
            p.set_value(Tensor::clone(&q.value())).unwrap();
        }
        let x = Var::constant(Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng));
        let (a, b) = (bn.forward(&x).unwrap(), gn.forward(&x).unwrap());
        prop_assert!(a.value().max_abs_diff(b.value()).unwrap() < 1e-5);
    }

    /// Each example's output is the same alone as inside the batch, bit for bit.
    #[test]
    fn examples_are_independent_of_the_batch(shape in shapes(), seed in any::<u64>(), alpha in 0.0f64..=1.0) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut bn = trained(&shape, &mut rng);
        set_alpha(bn.as_mut(), alpha);
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let y = bn.forward(&Var::constant(x.clone())).unwrap().value().to_vec();
        let per = x.len() / shape[0];
        for n in 0..shape[0] {
            let mut one = shape.clone();
            one[0] = 1;
            let xn = Tensor::from_vec(&one, x.as_slice()[n * per..(n + 1) * per].to_vec()).unwrap();
            let yn = bn.forward(&Var::constant(xn)).unwrap().value().to_vec();
            prop_assert_eq!(&yn[..], &y[n * per..(n + 1) * per]);
        }
    }

    /// dx, dγ, dβ against finite differences (f32 differences with step 1e-3 on dx: 2e-2
    /// absolute and relative, batch norm's tolerances; y is linear in γ and β, 1e-3).
    #[test]
    fn gradients_match_finite_differences(shape in shapes(), seed in any::<u64>(), alpha in 0.0f64..=1.0) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut bn = trained(&shape, &mut rng);
        let bytes = to_bytes(&state_dict(bn.as_ref())).unwrap();
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let f = |v: &[Var]| {
            let mut bn = trained(&shape, &mut Rng::seed_from_u64(0));
            load_bytes(bn.as_ref(), &bytes, std::path::Path::new("memory")).unwrap();
            set_alpha(bn.as_mut(), alpha);
            bn.forward(&v[0]).map_err(|e| norma_autograd::AutogradError::Op {
                op: "batch_norm",
                source: norma_autograd::OpError::new(e),
            })
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        set_alpha(bn.as_mut(), alpha);
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        check_parameter_gradients(bn.as_mut(), &x, &r, &|_| ())?;
    }
}

#[test]
fn bitwise_identical_across_threads_and_simd_levels() {
    let shape = [8, 6, 10, 10];
    let mut bn = trained(&shape, &mut Rng::seed_from_u64(3));
    set_alpha(bn.as_mut(), 0.3);
    let bytes = to_bytes(&state_dict(bn.as_ref())).unwrap();
    same_bits_everywhere(|| {
        let mut bn = BatchNorm2d::new(6).unwrap();
        load_bytes(&bn, &bytes, std::path::Path::new("m")).unwrap();
        bn.eval();
        bn.set_example_weight(0.3).unwrap();
        let x = Var::constant(Tensor::rand_normal(
            &shape,
            1.0,
            2.0,
            &mut Rng::seed_from_u64(4),
        ));
        let y = bn.forward(&x).unwrap();
        vec![y.value().as_slice().iter().map(|v| v.to_bits()).collect()]
    });
}
