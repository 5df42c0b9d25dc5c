//! BatchNorm1d/2d as layers: gradients against finite differences, invariances, modes,
//! running statistics, errors. (Kernel-level properties live in norma-kernels' tests.)

use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{no_grad, Param, Var};
use norma_layers::checkpoint::StateValue;
use norma_layers::{BatchNorm1d, BatchNorm2d, BatchNormConfig, LayerError, Module, Sequential};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn bn_for(shape: &[usize], config: BatchNormConfig) -> Box<dyn Module> {
    if shape.len() == 4 {
        Box::new(BatchNorm2d::with_config(shape[1], config).unwrap())
    } else {
        Box::new(BatchNorm1d::with_config(shape[1], config).unwrap())
    }
}

fn shapes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (2usize..6, 1usize..4).prop_map(|(n, c)| vec![n, c]),
        (1usize..4, 1usize..3, 1usize..4, 2usize..4).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
    ]
}

fn buffer(m: &dyn Module, name: &str) -> StateValue {
    norma_layers::checkpoint::state_dict(m)
        .remove(name)
        .unwrap_or_else(|| panic!("no buffer {name}"))
}

fn running(m: &dyn Module, name: &str) -> Vec<f32> {
    match buffer(m, name) {
        StateValue::F32(t) => t.to_vec(),
        other => panic!("{name} is {other:?}"),
    }
}

/// The layer (with the given γ and β) as a function of its input x, in training mode or in
/// eval mode after one warm-up batch.
fn layer_fn(
    shape: Vec<usize>,
    train: bool,
    gamma: Tensor,
    beta: Tensor,
) -> impl Fn(&[Var]) -> norma_autograd::Result<Var> {
    move |v: &[Var]| {
        let mut bn = bn_for(&shape, BatchNormConfig::default());
        let params = bn.parameters();
        params[0].set_value(gamma.clone()).unwrap();
        params[1].set_value(beta.clone()).unwrap();
        if !train {
            let warm = Tensor::rand_normal(&shape, 0.5, 2.0, &mut Rng::seed_from_u64(5));
            no_grad(|| bn.forward(&Var::constant(warm))).unwrap();
            bn.eval();
        }
        bn.forward(&v[0])
            .map_err(|e| norma_autograd::AutogradError::Op {
                op: "batch_norm",
                source: norma_autograd::OpError::new(e),
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// d/dx of the layer in training and eval mode equals finite differences.
    #[test]
    fn input_gradient_matches_finite_differences(shape in shapes(), seed in any::<u64>(), train in any::<bool>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let c = shape[1];
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut rng);
        let beta = Tensor::rand_normal(&[c], 0.0, 0.5, &mut rng);
        let f = layer_fn(shape.clone(), train, gamma, beta);
        // With few values per channel the normalized output is very sensitive to x: a smaller
        // step keeps the finite difference in its linear range.
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, &[x], &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    /// d/dγ and d/dβ equal finite differences (through the layer's own parameters).
    #[test]
    fn parameter_gradients_match_finite_differences(shape in shapes(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let mut bn = bn_for(&shape, BatchNormConfig::default());
        let params = bn.parameters();
        params[0].set_value(Tensor::rand_normal(&[shape[1]], 1.0, 0.5, &mut rng)).unwrap();
        let loss = |bn: &mut Box<dyn Module>| -> f64 {
            let y = no_grad(|| bn.forward(&Var::constant(x.clone()))).unwrap();
            y.value().as_slice().iter().zip(r.as_slice()).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        let y = bn.forward(&Var::constant(x.clone())).unwrap();
        y.mul(&Var::constant(r.clone())).unwrap().sum_all().unwrap().backward().unwrap();
        for p in &params {
            let analytic = p.grad().unwrap();
            for j in 0..p.len() {
                let v0 = p.value().as_slice()[j];
                let h = 1e-2f32;
                p.update(|v| v.as_slice_mut()[j] = v0 + h).unwrap();
                let plus = loss(&mut bn);
                p.update(|v| v.as_slice_mut()[j] = v0 - h).unwrap();
                let minus = loss(&mut bn);
                p.update(|v| v.as_slice_mut()[j] = v0).unwrap();
                let numeric = (plus - minus) / (2.0 * h as f64);
                let a = analytic.as_slice()[j] as f64;
                // y is linear in γ and β: the difference quotient is exact up to rounding.
                prop_assert!((a - numeric).abs() < 1e-3 * (1.0 + a.abs()), "{} vs {}", a, numeric);
            }
        }
    }

    /// BN(a·x + b) = BN(x) per channel for a > 0 (train mode; exact up to the eps term), and the
    /// γ/β gradients are unchanged.
    #[test]
    fn invariant_to_positive_affine_maps_of_the_input(shape in shapes(), seed in any::<u64>(), a in 0.5f32..4.0, b in -10.0f32..10.0) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let dy = Var::constant(Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng));
        // eps = 0 makes the invariance exact; with eps > 0 it holds to O(eps/var).
        let config = BatchNormConfig { eps: 0.0, ..BatchNormConfig::default() };
        let run = |x: Tensor| {
            let mut bn = bn_for(&shape, config);
            let y = bn.forward(&Var::constant(x)).unwrap();
            y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
            let grads: Vec<Tensor> = bn.parameters().iter().map(|p| Tensor::clone(&p.grad().unwrap())).collect();
            (y.value().clone(), grads)
        };
        let (y1, g1) = run(x.clone());
        let (y2, g2) = run(x.map(|v| a * v + b));
        prop_assert!(y1.max_abs_diff(&y2).unwrap() < 2e-3, "outputs differ by {}", y1.max_abs_diff(&y2).unwrap());
        for (p, q) in g1.iter().zip(&g2) {
            prop_assert!(p.max_abs_diff(q).unwrap() < 5e-3 * (1.0 + p.as_slice().iter().map(|v| v.abs()).fold(0.0, f32::max)));
        }
    }

    /// Eval mode is deterministic and batch-independent: each sample alone gives the same output
    /// as inside any batch, and running statistics do not change.
    #[test]
    fn eval_mode_is_batch_independent(shape in shapes(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut bn = bn_for(&shape, BatchNormConfig::default());
        bn.forward(&Var::constant(Tensor::rand_normal(&shape, 2.0, 3.0, &mut rng))).unwrap();
        bn.eval();
        let before = (running(bn.as_ref(), "running_mean"), buffer(bn.as_ref(), "num_batches_tracked"));
        let x = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let y = bn.forward(&Var::constant(x.clone())).unwrap().value().clone();
        let per = x.len() / shape[0];
        for i in 0..shape[0] {
            let mut one = shape.clone();
            one[0] = 1;
            let xi = Tensor::from_vec(&one, x.as_slice()[i * per..(i + 1) * per].to_vec()).unwrap();
            let yi = bn.forward(&Var::constant(xi)).unwrap();
            prop_assert_eq!(yi.value().as_slice(), &y.as_slice()[i * per..(i + 1) * per]);
        }
        prop_assert_eq!(before, (running(bn.as_ref(), "running_mean"), buffer(bn.as_ref(), "num_batches_tracked")));
    }
}

#[test]
fn running_statistics_follow_pytorch_momentum_and_cumulative_rules() {
    let x = Tensor::from_vec(&[4, 2], vec![1., 10., 2., 20., 3., 30., 4., 40.]).unwrap();
    // Momentum 0.1: mean = 0.1·batch mean; var = 0.9 + 0.1·unbiased var.
    let mut bn = BatchNorm1d::new(2).unwrap();
    bn.forward(&Var::constant(x.clone())).unwrap();
    let (m, v) = (running(&bn, "running_mean"), running(&bn, "running_var"));
    assert!(
        (m[0] - 0.25).abs() < 1e-6 && (m[1] - 2.5).abs() < 1e-6,
        "{m:?}"
    );
    // Unbiased variance of [1, 2, 3, 4] is 5/3.
    assert!((v[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "{v:?}");
    assert_eq!(buffer(&bn, "num_batches_tracked"), StateValue::I64(1));

    // momentum None: cumulative average, so after batches with means 2.5 and 4.5 the running
    // mean is their average 3.5.
    let config = BatchNormConfig {
        momentum: None,
        ..BatchNormConfig::default()
    };
    let mut bn = BatchNorm1d::with_config(2, config).unwrap();
    bn.forward(&Var::constant(x.clone())).unwrap();
    bn.forward(&Var::constant(x.add_scalar(2.0))).unwrap();
    let m = running(&bn, "running_mean");
    assert!((m[0] - 3.5).abs() < 1e-6, "{m:?}");
    assert_eq!(buffer(&bn, "num_batches_tracked"), StateValue::I64(2));
}

#[test]
fn without_running_statistics_batch_statistics_are_used_in_both_modes() {
    let config = BatchNormConfig {
        track_running_stats: false,
        ..BatchNormConfig::default()
    };
    let mut bn = BatchNorm2d::with_config(3, config).unwrap();
    assert!(bn.named_buffers().is_empty());
    let x = Var::constant(Tensor::rand_normal(
        &[4, 3, 2, 2],
        5.0,
        2.0,
        &mut Rng::seed_from_u64(1),
    ));
    let train = bn.forward(&x).unwrap().value().clone();
    bn.eval();
    assert_eq!(bn.forward(&x).unwrap().value(), &train);
}

#[test]
fn without_affine_there_are_no_parameters() {
    let config = BatchNormConfig {
        affine: false,
        ..BatchNormConfig::default()
    };
    let mut bn = BatchNorm1d::with_config(3, config).unwrap();
    assert_eq!(bn.num_parameters(), 0);
    let p = Param::new(Tensor::rand_normal(
        &[5, 3],
        0.0,
        1.0,
        &mut Rng::seed_from_u64(2),
    ));
    let y = bn.forward(&p.var()).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    // Σ of a normalized channel does not depend on x: the gradient is zero.
    assert!(p.grad().unwrap().as_slice().iter().all(|g| g.abs() < 1e-5));
}

#[test]
fn one_value_per_channel_in_training_is_a_clear_error() {
    let mut bn1 = BatchNorm1d::new(84).unwrap();
    let err = bn1
        .forward(&Var::constant(Tensor::ones(&[1, 84])))
        .unwrap_err();
    assert!(matches!(err, LayerError::Kernel(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("more than 1 value per channel") && msg.contains("[1, 84]"),
        "{msg}"
    );
    let mut bn2 = BatchNorm2d::new(16).unwrap();
    let err = bn2
        .forward(&Var::constant(Tensor::ones(&[1, 16, 1, 1])))
        .unwrap_err();
    assert!(err.to_string().contains("[1, 16, 1, 1]"), "{err}");
    // Nothing was counted for the rejected batches.
    assert_eq!(buffer(&bn1, "num_batches_tracked"), StateValue::I64(0));
    // In eval mode a single value per channel is fine.
    bn1.eval();
    assert!(bn1.forward(&Var::constant(Tensor::ones(&[1, 84]))).is_ok());
}

#[test]
fn wrong_input_shapes_and_settings_are_errors() {
    let mut bn = BatchNorm2d::new(6).unwrap();
    let err = bn
        .forward(&Var::constant(Tensor::ones(&[2, 5, 3, 3])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm2d(6, eps=0.00001, momentum=0.1, affine=true, track_running_stats=true): expected input (N, 6, H, W), got shape [2, 5, 3, 3]"
    );
    let mut bn = BatchNorm1d::new(4).unwrap();
    assert!(bn
        .forward(&Var::constant(Tensor::ones(&[2, 4, 1, 1])))
        .is_err());
    assert!(BatchNorm1d::new(0).is_err());
    let bad_momentum = BatchNormConfig {
        momentum: Some(1.5),
        ..BatchNormConfig::default()
    };
    assert!(BatchNorm1d::with_config(3, bad_momentum).is_err());
    let bad_eps = BatchNormConfig {
        eps: -1.0,
        ..BatchNormConfig::default()
    };
    assert!(BatchNorm2d::with_config(3, bad_eps).is_err());
}

#[test]
fn train_and_eval_reach_every_child() {
    let mut net = Sequential::new()
        .with("bn1", BatchNorm1d::new(2).unwrap())
        .with(
            "inner",
            Sequential::new().with("bn2", BatchNorm1d::new(2).unwrap()),
        );
    net.eval();
    // In eval mode a batch of one passes both layers; in train mode it is rejected.
    assert!(net.forward(&Var::constant(Tensor::ones(&[1, 2]))).is_ok());
    net.train();
    assert!(net.forward(&Var::constant(Tensor::ones(&[1, 2]))).is_err());
    let names: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "inner.bn2.running_mean",
            "inner.bn2.running_var",
            "inner.bn2.num_batches_tracked"
        ]
    );
}
