//! GroupNorm and LayerNorm as layers: gradients through autograd against finite differences,
//! PyTorch's names and shapes, batches of one, clear errors, and the LeNet variants built on
//! them.
//!
//! Finite differences in f32 with step 1e-3 on outputs of size ~1 are good to ~1e-3; the
//! tolerances (2e-2 absolute and relative, as for batch norm) leave room for the curvature of
//! the normalization, and are far below any formula mistake (which is O(1)).

mod norm_checks;

use norm_checks::check_parameter_gradients;
use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{no_grad, Var};
use norma_layers::models::{self, Activation, ModelKind, Placement};
use norma_layers::{checkpoint, GroupNorm, LayerError, LayerNorm, LayerNormConfig, Module};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn op_error(e: LayerError) -> norma_autograd::AutogradError {
    norma_autograd::AutogradError::Op {
        op: "norm layer",
        source: norma_autograd::OpError::new(e),
    }
}

fn gn_case() -> impl Strategy<Value = (Vec<usize>, usize)> {
    (
        1usize..4,
        1usize..4,
        1usize..3,
        prop_oneof![
            Just(vec![]),
            (1usize..4, 1usize..4).prop_map(|(h, w)| vec![h, w])
        ],
    )
        .prop_map(|(n, g, per, spatial)| {
            let mut shape = vec![n, g * per];
            shape.extend(spatial);
            (shape, g)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn group_norm_gradients_match_finite_differences((shape, groups) in gn_case(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = Tensor::rand_normal(&shape, 0.5, 2.0, &mut rng);
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let c = shape[1];
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut rng);
        let f = |v: &[Var]| {
            let mut gn = GroupNorm::new(groups, c).unwrap();
            gn.weight().unwrap().set_value(gamma.clone()).unwrap();
            gn.forward(&v[0]).map_err(op_error)
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut gn = GroupNorm::new(groups, c).unwrap();
        gn.weight().unwrap().set_value(gamma).unwrap();
        check_parameter_gradients(&mut gn, &x, &r, &|_| ())?;
    }

    #[test]
    fn layer_norm_gradients_match_finite_differences(lead in 1usize..4, trail in prop::collection::vec(1usize..4, 1..4), bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let shape: Vec<usize> = std::iter::once(lead).chain(trail.iter().copied()).collect();
        let x = Tensor::rand_normal(&shape, -1.0, 2.0, &mut rng);
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let gamma = Tensor::rand_normal(&trail, 1.0, 0.5, &mut rng);
        let config = LayerNormConfig { bias, ..LayerNormConfig::default() };
        let f = |v: &[Var]| {
            let mut ln = LayerNorm::with_config(&trail, config).unwrap();
            ln.weight().unwrap().set_value(gamma.clone()).unwrap();
            ln.forward(&v[0]).map_err(op_error)
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut ln = LayerNorm::with_config(&trail, config).unwrap();
        ln.weight().unwrap().set_value(gamma).unwrap();
        prop_assert_eq!(ln.parameters().len(), if bias { 2 } else { 1 });
        check_parameter_gradients(&mut ln, &x, &r, &|_| ())?;
    }
}

#[test]
fn pytorch_names_shapes_and_errors() {
    let gn = GroupNorm::new(2, 6).unwrap();
    let names: Vec<(String, Vec<usize>)> = gn
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    assert_eq!(
        names,
        [("weight".into(), vec![6]), ("bias".into(), vec![6])]
    );
    let ln = LayerNorm::new(&[6, 24, 24]).unwrap();
    assert_eq!(ln.parameters()[0].shape(), vec![6, 24, 24]);
    assert!(
        gn.named_buffers().is_empty() && ln.named_buffers().is_empty(),
        "no running statistics"
    );

    let err = GroupNorm::new(4, 6).err().unwrap().to_string();
    assert!(
        err.contains("must be a positive multiple of num_groups (4)"),
        "{err}"
    );
    assert!(GroupNorm::new(0, 6).is_err());
    assert!(LayerNorm::new(&[]).is_err() && LayerNorm::new(&[3, 0]).is_err());
    let mut gn = GroupNorm::new(2, 6).unwrap();
    let err = gn
        .forward(&Var::constant(Tensor::ones(&[2, 5, 3])))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected input (N, 6, ...)") && err.contains("[2, 5, 3]"),
        "{err}"
    );
    let mut ln = LayerNorm::new(&[4, 3]).unwrap();
    let err = ln
        .forward(&Var::constant(Tensor::ones(&[2, 3, 4])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected input (..., 4, 3)"), "{err}");
}

#[test]
fn lenet_variants_train_on_batches_of_one_and_round_trip() {
    for kind in [ModelKind::LenetGn, ModelKind::LenetLn] {
        let mut net = kind
            .build_placed(
                Activation::Sigmoid,
                Placement::BeforeActivation,
                &mut Rng::seed_from_u64(1),
            )
            .unwrap();
        let names: Vec<String> = net.children().map(|(n, _)| n.to_string()).collect();
        let layers: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with("act") && !n.starts_with("pool") && *n != "flatten")
            .collect();
        assert_eq!(
            layers,
            ["conv1", "norm1", "conv2", "norm2", "fc1", "norm3", "fc2", "norm4", "fc3"],
            "{kind}"
        );
        // A batch of one image trains: no batch statistics are needed.
        let mut rng = Rng::seed_from_u64(2);
        let x = Tensor::rand_uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut rng);
        let mut sgd = Sgd::new(
            net.parameters(),
            SgdConfig {
                lr: 0.1,
                ..SgdConfig::default()
            },
        )
        .unwrap();
        let mut losses = vec![];
        for _ in 0..20 {
            sgd.zero_grad();
            let loss = net
                .forward(&Var::constant(x.clone()))
                .unwrap()
                .cross_entropy(&[3])
                .unwrap();
            losses.push(loss.value().item().unwrap());
            loss.backward().unwrap();
            sgd.step().unwrap();
        }
        assert!(losses[19] < 0.5 * losses[0], "{kind}: {losses:?}");
        // Save and load into a fresh model: same outputs.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        checkpoint::save(&net, &path).unwrap();
        let mut copy = kind
            .build_placed(
                Activation::Sigmoid,
                Placement::BeforeActivation,
                &mut Rng::seed_from_u64(7),
            )
            .unwrap();
        checkpoint::load(&copy, &path).unwrap();
        let a = no_grad(|| net.forward(&Var::constant(x.clone()))).unwrap();
        let b = no_grad(|| copy.forward(&Var::constant(x.clone()))).unwrap();
        assert_eq!(a.value(), b.value(), "{kind}");
    }
    // One seed gives every variant the same convolution and linear weights.
    let bn = checkpoint::state_dict(
        &models::lenet_bn(Activation::Relu, &mut Rng::seed_from_u64(5)).unwrap(),
    );
    let gn = checkpoint::state_dict(
        &ModelKind::LenetGn
            .build_placed(
                Activation::Relu,
                Placement::BeforeActivation,
                &mut Rng::seed_from_u64(5),
            )
            .unwrap(),
    );
    for name in ["conv1.weight", "conv2.weight", "fc1.weight", "fc3.bias"] {
        assert_eq!(bn[name], gn[name], "{name}");
    }
}
