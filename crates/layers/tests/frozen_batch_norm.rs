//! FrozenBatchNorm1d/2d and freeze_batch_norm: eval-mode batch norm bit for bit (outputs and
//! dx, in both modes), no parameters, torchvision's buffer names, conversion of a trained
//! LeNet-BN (nested too), fine-tuning leaves the frozen state alone, gradients, determinism,
//! errors.

mod norm_checks;

use norm_checks::{randomize_affine, same_bits_everywhere, shapes, trace};
use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{no_grad, Param, Var};
use norma_layers::checkpoint::{load_bytes, state_dict, to_bytes};
use norma_layers::models::{self, Activation};
use norma_layers::{
    freeze_batch_norm, BatchNorm1d, BatchNorm2d, BatchNormConfig, FrozenBatchNorm1d,
    FrozenBatchNorm2d, LayerError, Linear, Module, Sequential,
};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

/// A batch norm of `shape`'s kind after a few training batches, and its frozen copy.
fn trained_pair(
    shape: &[usize],
    affine: bool,
    rng: &mut Rng,
) -> (Box<dyn Module>, Box<dyn Module>) {
    let config = BatchNormConfig {
        affine,
        ..BatchNormConfig::default()
    };
    let c = shape[1];
    let mut bn: Box<dyn Module> = if shape.len() == 4 {
        Box::new(BatchNorm2d::with_config(c, config).unwrap())
    } else {
        Box::new(BatchNorm1d::with_config(c, config).unwrap())
    };
    if affine {
        randomize_affine(bn.as_ref(), rng);
    }
    for _ in 0..3 {
        let x = Tensor::rand_normal(shape, 2.0, 3.0, rng);
        no_grad(|| bn.forward(&Var::constant(x))).unwrap();
    }
    bn.eval();
    let frozen: Box<dyn Module> = if let Some(b) = bn.downcast_ref::<BatchNorm2d>() {
        Box::new(FrozenBatchNorm2d::from_batch_norm(b).unwrap())
    } else {
        Box::new(
            FrozenBatchNorm1d::from_batch_norm(bn.downcast_ref::<BatchNorm1d>().unwrap()).unwrap(),
        )
    };
    (bn, frozen)
}

/// Output and dx of Σ y·r, as bits.
fn output_and_dx(m: &mut dyn Module, x: &Tensor, r: &Tensor) -> (Vec<u32>, Vec<u32>) {
    let p = Param::new(x.clone());
    let y = m.forward(&p.var()).unwrap();
    y.mul(&Var::constant(r.clone()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let bits = |t: &Tensor| t.as_slice().iter().map(|v| v.to_bits()).collect();
    (bits(y.value()), bits(&p.grad().unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The frozen copy is the eval-mode batch norm bit for bit, in either of its own modes.
    #[test]
    fn frozen_is_eval_mode_batch_norm(shape in shapes(), seed in any::<u64>(), affine in any::<bool>(), train in any::<bool>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let (mut bn, mut frozen) = trained_pair(&shape, affine, &mut rng);
        if train {
            frozen.train();
        }
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        prop_assert_eq!(output_and_dx(bn.as_mut(), &x, &r), output_and_dx(frozen.as_mut(), &x, &r));
        // Any batch size, one sample included.
        let one = Tensor::rand_normal(&[1, shape[1]], 0.0, 1.0, &mut rng);
        prop_assert!(frozen.forward(&Var::constant(one)).is_ok() || shape.len() == 4);
    }

    /// dx against finite differences (an affine map: the quotient is exact up to f32
    /// rounding; tolerances as batch norm's eval check).
    #[test]
    fn input_gradient_matches_finite_differences(shape in shapes(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let (_, frozen) = trained_pair(&shape, true, &mut rng);
        let bytes = to_bytes(&state_dict(frozen.as_ref())).unwrap();
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let f = |v: &[Var]| {
            let mut m: Box<dyn Module> = if shape.len() == 4 {
                Box::new(FrozenBatchNorm2d::new(shape[1]).unwrap())
            } else {
                Box::new(FrozenBatchNorm1d::new(shape[1]).unwrap())
            };
            load_bytes(m.as_ref(), &bytes, std::path::Path::new("memory")).unwrap();
            m.forward(&v[0]).map_err(|e| norma_autograd::AutogradError::Op {
                op: "frozen_batch_norm",
                source: norma_autograd::OpError::new(e),
            })
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn buffers_not_parameters_with_torchvisions_names() {
    let model = Sequential::new().with("bn", FrozenBatchNorm2d::new(3).unwrap());
    assert!(model.parameters().is_empty());
    let names: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
    );
    assert_eq!(
        model
            .describe()
            .matches("FrozenBatchNorm2d(3, eps=0.00001)")
            .count(),
        1
    );
}

#[test]
fn freezing_a_trained_lenet_bn() {
    let mut rng = Rng::seed_from_u64(4);
    let mut net = models::lenet_bn(Activation::Sigmoid, &mut rng).unwrap();
    for _ in 0..2 {
        let x = Tensor::rand_normal(&[8, 1, 28, 28], 0.0, 1.0, &mut rng);
        net.forward(&Var::constant(x)).unwrap();
    }
    net.eval();
    let x = Tensor::rand_normal(&[2, 1, 28, 28], 0.0, 1.0, &mut rng);
    let want = net
        .forward(&Var::constant(x.clone()))
        .unwrap()
        .value()
        .to_vec();
    let before = state_dict(&net);
    let mut frozen = freeze_batch_norm(net).unwrap();
    // Same function, in training mode too; the state keeps its keys but num_batches_tracked.
    frozen.train();
    assert_eq!(
        frozen
            .forward(&Var::constant(x.clone()))
            .unwrap()
            .value()
            .to_vec(),
        want
    );
    let after = state_dict(&frozen);
    let kept: Vec<&String> = before
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(after.keys().collect::<Vec<_>>(), kept);
    for (k, v) in &after {
        assert_eq!(v, &before[k], "{k}");
    }
    // Fine-tuning at batch 2 trains the rest and leaves the frozen statistics and affine alone.
    let params = frozen.parameters();
    assert_eq!(
        params.len(),
        10,
        "weights and biases of 2 convolutions and 3 linear layers"
    );
    let mut sgd = Sgd::new(
        params,
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let loss = frozen
        .forward(&Var::constant(x.clone()))
        .unwrap()
        .cross_entropy(&[1, 2])
        .unwrap();
    loss.backward().unwrap();
    sgd.step().unwrap();
    let tuned = state_dict(&frozen);
    for (k, v) in &tuned {
        let bn = k.contains("running") || k.split('.').next().is_some_and(|l| l.starts_with("bn"));
        assert_eq!(bn, v == &after[k], "{k}: frozen iff unchanged");
    }
}

#[test]
fn nested_models_and_errors() {
    let inner = Sequential::new()
        .with("fc", Linear::new(3, 3, &mut Rng::seed_from_u64(0)).unwrap())
        .with("bn", BatchNorm1d::new(3).unwrap());
    let model = Sequential::new().with("block", inner);
    let frozen = freeze_batch_norm(model).unwrap();
    assert!(state_dict(&frozen).contains_key("block.bn.running_var"));
    assert_eq!(frozen.parameters().len(), 2, "only the linear layer trains");
    let untracked = BatchNormConfig {
        track_running_stats: false,
        ..BatchNormConfig::default()
    };
    let model = Sequential::new().with("bn", BatchNorm2d::with_config(2, untracked).unwrap());
    assert!(matches!(
        freeze_batch_norm(model),
        Err(LayerError::Config { .. })
    ));
    // A residual block's batch norms cannot be rebuilt from outside: named, not skipped.
    let block = norma_layers::BasicBlock::new(
        norma_layers::BasicBlockConfig {
            in_channels: 2,
            out_channels: 2,
            stride: 1,
            norm: norma_layers::NormKind::Batch,
            input_side: 4,
            shortcut: true,
        },
        &mut Rng::seed_from_u64(0),
    )
    .unwrap();
    let Err(err) = freeze_batch_norm(Sequential::new().with("block", block)) else {
        panic!("a block's batch norms were skipped");
    };
    assert!(err.to_string().contains("block.bn1"), "{err}");
    assert!(FrozenBatchNorm2d::new(0).is_err());
    assert!(FrozenBatchNorm2d::with_eps(2, -1.0).is_err());
    let mut f = FrozenBatchNorm2d::new(2).unwrap();
    assert!(matches!(
        f.forward(&Var::constant(Tensor::ones(&[2, 2]))),
        Err(LayerError::Input { .. })
    ));
}

#[test]
fn bitwise_identical_across_threads_and_simd_levels() {
    let shape = [16, 6, 12, 12];
    let (_, frozen) = trained_pair(&shape, true, &mut Rng::seed_from_u64(2));
    let bytes = to_bytes(&state_dict(frozen.as_ref())).unwrap();
    same_bits_everywhere(|| {
        let mut m = FrozenBatchNorm2d::new(6).unwrap();
        load_bytes(&m, &bytes, std::path::Path::new("memory")).unwrap();
        trace(&mut m, &shape, 5, 2)
    });
}
