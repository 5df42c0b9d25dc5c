//! LeNet and LeNet-BN: PyTorch names and shapes, training end to end, eval determinism, BN
//! folding.

use norma_autograd::{no_grad, Var};
use norma_layers::models::{self, Activation, ModelKind};
use norma_layers::{fold_batch_norm, Module};
use norma_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

#[test]
fn lenet_bn_state_dict_names_and_shapes_match_pytorch() {
    let net = models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(0)).unwrap();
    let got = models::state_shapes(&net);
    // PyTorch's `LeNetBN().state_dict()` (tests/data/make_lenet_bn_fixture.py), parameters
    // first here, then buffers; compared as sets of (name, shape).
    let mut want: Vec<(String, Vec<usize>)> = vec![];
    let mut add = |n: &str, s: &[usize]| want.push((n.to_string(), s.to_vec()));
    add("conv1.weight", &[6, 1, 5, 5]);
    add("conv1.bias", &[6]);
    add("conv2.weight", &[16, 6, 5, 5]);
    add("conv2.bias", &[16]);
    add("fc1.weight", &[120, 256]);
    add("fc1.bias", &[120]);
    add("fc2.weight", &[84, 120]);
    add("fc2.bias", &[84]);
    add("fc3.weight", &[10, 84]);
    add("fc3.bias", &[10]);
    for (bn, c) in [("bn1", 6), ("bn2", 16), ("bn3", 120), ("bn4", 84)] {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            add(&format!("{bn}.{p}"), &[c]);
        }
        add(&format!("{bn}.num_batches_tracked"), &[]);
    }
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
    // Parameters are visited in construction order (stable for optimizers and checkpoints).
    let order: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        &order[..4],
        ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"]
    );
    assert_eq!(net.num_parameters(), 44_878);
    let plain = models::lenet(Activation::Sigmoid, &mut Rng::seed_from_u64(0)).unwrap();
    assert_eq!(plain.num_parameters(), 61_706);
}

fn small_batch(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = Tensor::rand_uniform(&[n, 1, 28, 28], 0.0, 1.0, &mut rng);
    let labels = (0..n).map(|i| i % 10).collect();
    (x, labels)
}

fn fit(
    net: &mut dyn Module,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[usize],
    steps: usize,
) -> f32 {
    net.train();
    let mut loss = f32::NAN;
    for _ in 0..steps {
        opt.zero_grad();
        let l = net
            .forward(&Var::constant(x.clone()))
            .unwrap()
            .cross_entropy(labels)
            .unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
        loss = l.value().item().unwrap();
    }
    loss
}

#[test]
fn both_models_overfit_one_small_batch() {
    let (x, labels) = small_batch(20, 1);
    for kind in ModelKind::BRIEF {
        for act in [Activation::Sigmoid, Activation::Relu] {
            let mut net = kind.build(act, &mut Rng::seed_from_u64(2)).unwrap();
            let mut opt = Adam::new(
                net.parameters(),
                AdamConfig {
                    lr: 3e-3,
                    ..AdamConfig::default()
                },
            )
            .unwrap();
            let loss = fit(&mut net, &mut opt, &x, &labels, 300);
            assert!(loss < 0.05, "{kind} {act}: loss {loss}");
        }
    }
    // LeNet-BN also with plain SGD at the experiment's learning rate of 1.0.
    let mut net = models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(3)).unwrap();
    let mut opt = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 1.0,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let loss = fit(&mut net, &mut opt, &x, &labels, 300);
    assert!(loss < 0.05, "lenet-bn with SGD lr 1.0: loss {loss}");
}

#[test]
fn lenet_bn_eval_is_deterministic_and_batch_independent() {
    let mut net = models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(4)).unwrap();
    let (x, labels) = small_batch(16, 5);
    let mut opt = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    fit(&mut net, &mut opt, &x, &labels, 5);
    net.eval();
    let all = no_grad(|| net.forward(&Var::constant(x.clone()))).unwrap();
    let again = no_grad(|| net.forward(&Var::constant(x.clone()))).unwrap();
    assert_eq!(all.value(), again.value());
    for i in 0..16 {
        let xi = Tensor::from_vec(
            &[1, 1, 28, 28],
            x.as_slice()[i * 784..(i + 1) * 784].to_vec(),
        )
        .unwrap();
        let yi = no_grad(|| net.forward(&Var::constant(xi))).unwrap();
        assert_eq!(
            yi.value().as_slice(),
            &all.value().as_slice()[i * 10..(i + 1) * 10]
        );
    }
}

#[test]
fn folding_batch_norm_preserves_eval_outputs() {
    for act in [Activation::Sigmoid, Activation::Relu] {
        let mut net = models::lenet_bn(act, &mut Rng::seed_from_u64(6)).unwrap();
        let (x, labels) = small_batch(32, 7);
        let mut opt = Sgd::new(
            net.parameters(),
            SgdConfig {
                lr: 0.5,
                ..SgdConfig::default()
            },
        )
        .unwrap();
        // A few steps give non-trivial γ, β and running statistics.
        fit(&mut net, &mut opt, &x, &labels, 10);
        net.eval();
        let want = no_grad(|| net.forward(&Var::constant(x.clone())))
            .unwrap()
            .value()
            .clone();
        let mut folded = fold_batch_norm(net).unwrap();
        assert!(folded.children().all(|(name, _)| !name.starts_with("bn")));
        folded.eval();
        let got = no_grad(|| folded.forward(&Var::constant(x.clone())))
            .unwrap()
            .value()
            .clone();
        // Float32 rounding of the folded weights, through five layers: logits of size ~5
        // agree to ~1e-5.
        let diff = got.max_abs_diff(&want).unwrap();
        assert!(diff < 2e-5, "{act}: folded model differs by {diff}");
    }
}

#[test]
fn folding_rejects_a_batch_norm_that_follows_no_linear_layer() {
    use norma_layers::{BatchNorm1d, Sequential, Sigmoid};
    let net = Sequential::new()
        .with("act", Sigmoid)
        .with("bn", BatchNorm1d::new(3).unwrap());
    let err = fold_batch_norm(net).err().unwrap();
    assert!(err.to_string().contains("not a Conv2d or Linear"), "{err}");
}

#[test]
fn inputs_of_the_wrong_shape_are_errors_naming_the_layer() {
    let mut net = models::lenet(Activation::Sigmoid, &mut Rng::seed_from_u64(0)).unwrap();
    let err = net
        .forward(&Var::constant(Tensor::zeros(&[2, 3, 28, 28])))
        .unwrap_err();
    assert!(err.to_string().contains("Conv2d(1, 6"), "{err}");
    let err = net
        .forward(&Var::constant(Tensor::zeros(&[2, 1, 32, 32])))
        .unwrap_err();
    assert!(err.to_string().contains("Linear(in=400"), "{err}");
}

#[test]
fn batch_norm_after_the_activation_keeps_names_and_weights() {
    use models::Placement;
    let before = models::lenet_bn_placed(
        Activation::Sigmoid,
        Placement::BeforeActivation,
        &mut Rng::seed_from_u64(3),
    )
    .unwrap();
    let after = models::lenet_bn_placed(
        Activation::Relu,
        Placement::AfterActivation,
        &mut Rng::seed_from_u64(3),
    )
    .unwrap();
    let order =
        |m: &norma_layers::Sequential| m.children().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        order(&before)[..4],
        ["conv1", "bn1", "act1", "pool1"],
        "the default: normalize, then activate"
    );
    assert_eq!(order(&after)[..4], ["conv1", "act1", "bn1", "pool1"]);
    assert_eq!(order(&after)[8..12], ["flatten", "fc1", "act3", "bn3"]);
    // Same parameters from the same seed, so the two placements start from the same weights.
    let (a, b) = (
        norma_layers::checkpoint::state_dict(&before),
        norma_layers::checkpoint::state_dict(&after),
    );
    assert_eq!(a, b);
    assert_eq!("after".parse::<Placement>(), Ok(Placement::AfterActivation));
    assert!("middle"
        .parse::<Placement>()
        .unwrap_err()
        .contains("before or after"));
    // It trains: the loss on one small batch falls.
    let mut net = after;
    let (x, labels) = small_batch(32, 4);
    let mut sgd = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let mut losses = vec![];
    for _ in 0..30 {
        sgd.zero_grad();
        let loss = net
            .forward(&Var::constant(x.clone()))
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        losses.push(loss.value().item().unwrap());
        loss.backward().unwrap();
        sgd.step().unwrap();
    }
    assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
}

#[test]
fn noisy_lenet_bn_and_the_mlp_of_ioffe_and_szegedy() {
    use norma_layers::ShiftNoiseConfig;
    let clean = models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(8)).unwrap();
    let mut noisy = models::lenet_bn_noisy(
        Activation::Sigmoid,
        ShiftNoiseConfig::default(),
        &mut Rng::seed_from_u64(8),
    )
    .unwrap();
    assert_eq!(
        norma_layers::checkpoint::state_dict(&clean),
        norma_layers::checkpoint::state_dict(&noisy),
        "same weights, same state_dict names"
    );
    let names: Vec<String> = noisy.children().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names[..4], ["conv1", "bn1", "noise1", "act1"]);
    // The noise changes at every training step; in eval mode it is its expectation, the same
    // for every pass.
    let (x, _) = small_batch(4, 1);
    let a = noisy.forward(&Var::constant(x.clone())).unwrap();
    let b = noisy.forward(&Var::constant(x.clone())).unwrap();
    assert!(a.value().max_abs_diff(b.value()).unwrap() > 1e-3);
    noisy.eval();
    let c = no_grad(|| noisy.forward(&Var::constant(x.clone()))).unwrap();
    let d = no_grad(|| noisy.forward(&Var::constant(x.clone()))).unwrap();
    assert_eq!(c.value(), d.value(), "no random noise in eval mode");

    let mut net = models::mlp(&[100, 100, 100], true, 0.01, &mut Rng::seed_from_u64(0)).unwrap();
    assert_eq!(net.named_parameters().len(), 2 * 4 + 2 * 3);
    let y = net.forward(&Var::constant(x)).unwrap();
    assert_eq!(y.shape(), &[4, 10]);
    assert!(models::mlp(&[], false, 0.01, &mut Rng::seed_from_u64(0)).is_err());
    assert!(models::mlp(&[10], false, -1.0, &mut Rng::seed_from_u64(0)).is_err());
}

/// Builds `kind` and LeNet-BN from the same seed, checks that `kind` has LeNet-BN's state
/// shapes and initial parameters under the same names, and returns the descriptions of its
/// four `bn*` layers.
fn converted_lenet_bn(kind: ModelKind, activation: Activation) -> Vec<String> {
    let bn = ModelKind::LenetBn
        .build(activation, &mut Rng::seed_from_u64(3))
        .unwrap();
    let converted = kind.build(activation, &mut Rng::seed_from_u64(3)).unwrap();
    assert_eq!(models::state_shapes(&converted), models::state_shapes(&bn));
    for ((name, a), (_, b)) in bn
        .named_parameters()
        .into_iter()
        .zip(converted.named_parameters())
    {
        assert_eq!(a.value().to_vec(), b.value().to_vec(), "{name}");
    }
    let types: Vec<String> = converted
        .children()
        .filter(|(n, _)| n.starts_with("bn"))
        .map(|(_, m)| m.describe())
        .collect();
    assert_eq!(types.len(), 4, "{types:?}");
    types
}

#[test]
fn lenet_brn_is_lenet_bn_with_batch_renorm_under_the_same_names() {
    use norma_layers::models::LenetOptions;
    use norma_layers::RenormConfig;
    let types = converted_lenet_bn(ModelKind::LenetBrn, Activation::Sigmoid);
    assert!(
        types.iter().all(|t| t.starts_with("BatchRenorm")),
        "{types:?}"
    );
    assert_eq!(ModelKind::LenetBrn.norm_name(), "renorm");
    assert_eq!("lenet-brn".parse::<ModelKind>(), Ok(ModelKind::LenetBrn));
    assert!(ModelKind::LenetBrn.has_batch_norm());
    assert!(!ModelKind::STANDARD.contains(&ModelKind::LenetBrn));
    // A bad schedule is refused.
    let bad = RenormConfig {
        r_max: 0.5,
        ..RenormConfig::default()
    };
    assert!(ModelKind::LenetBrn
        .build_with(
            Activation::Sigmoid,
            &LenetOptions {
                renorm: bad,
                ..LenetOptions::default()
            },
            &mut Rng::seed_from_u64(3)
        )
        .is_err());
}

#[test]
fn without_affine_the_norms_only_normalize_and_the_rest_is_the_same() {
    use models::LenetOptions;
    use norma_layers::checkpoint::{self, StateValue};
    let no_affine = LenetOptions {
        affine: false,
        ..LenetOptions::default()
    };
    for kind in ModelKind::NORMALIZED
        .into_iter()
        .chain([ModelKind::LenetBrn])
    {
        let build = |options: &LenetOptions| {
            kind.build_with(Activation::Sigmoid, options, &mut Rng::seed_from_u64(5))
                .unwrap()
        };
        let (with, without) = (build(&LenetOptions::default()), build(&no_affine));
        // PyTorch's affine=False: no norm parameter at all, the other entries unchanged.
        let norm_param = |n: &str| n.starts_with("bn") || n.starts_with("norm");
        let (a, b) = (
            checkpoint::state_dict(&with),
            checkpoint::state_dict(&without),
        );
        let expected: Vec<(&String, &StateValue)> = a
            .iter()
            .filter(|(n, _)| !(norm_param(n) && (n.ends_with(".weight") || n.ends_with(".bias"))))
            .collect();
        assert_eq!(b.iter().collect::<Vec<_>>(), expected, "{kind}");
        assert!(
            without
                .named_parameters()
                .iter()
                .all(|(n, _)| !norm_param(n)),
            "{kind}"
        );
        assert!(without
            .children()
            .filter(|(n, _)| norm_param(n))
            .all(|(_, m)| m.describe().contains("affine=false")));
    }
    // At initialisation γ = 1 and β = 0, so both compute the same function.
    let build = |options: &LenetOptions| {
        ModelKind::LenetBn
            .build_with(Activation::Relu, options, &mut Rng::seed_from_u64(6))
            .unwrap()
    };
    let (mut with, mut without) = (build(&LenetOptions::default()), build(&no_affine));
    let (x, labels) = small_batch(16, 7);
    let y = |net: &mut norma_layers::Sequential| {
        net.forward(&Var::constant(x.clone()))
            .unwrap()
            .value()
            .to_vec()
    };
    for (p, q) in y(&mut with).iter().zip(y(&mut without)) {
        assert!((p - q).abs() < 1e-5, "{p} vs {q}");
    }
    // It trains (the backward has no γ/β gradients to give), saves and loads without them,
    // and refuses a checkpoint that has them.
    let mut sgd = Sgd::new(
        without.parameters(),
        SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let first = fit(&mut without, &mut sgd, &x, &labels, 1);
    let last = fit(&mut without, &mut sgd, &x, &labels, 30);
    assert!(last < first * 0.5, "{first} -> {last}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-affine.safetensors");
    checkpoint::save(&without, &file).unwrap();
    let copy = build(&no_affine);
    checkpoint::load(&copy, &file).unwrap();
    assert_eq!(
        checkpoint::state_dict(&copy),
        checkpoint::state_dict(&without)
    );
    let err = checkpoint::load(&with, &file).unwrap_err().to_string();
    assert!(err.contains("bn1.weight"), "{err}");
    let affine_file = dir.path().join("affine.safetensors");
    checkpoint::save(&with, &affine_file).unwrap();
    let err = checkpoint::load(&copy, &affine_file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bn1.weight"), "{err}");
}

#[test]
fn lenet_gbn_is_lenet_bn_with_ghost_batch_norm_under_the_same_names() {
    use norma_layers::models::{LenetOptions, DEFAULT_GHOST_BATCH};
    let types = converted_lenet_bn(ModelKind::LenetGbn, Activation::Relu);
    assert!(
        types.iter().all(
            |t| t.starts_with("GhostBatchNorm") && t.contains(&DEFAULT_GHOST_BATCH.to_string())
        ),
        "{types:?}"
    );
    assert_eq!(ModelKind::LenetGbn.norm_name(), "ghost");
    assert_eq!("lenet-gbn".parse::<ModelKind>(), Ok(ModelKind::LenetGbn));
    assert!(ModelKind::LenetGbn.has_batch_norm());
    assert!(!ModelKind::STANDARD.contains(&ModelKind::LenetGbn));
    let err = "lenet-xx".parse::<ModelKind>().unwrap_err();
    assert!(
        err.contains("lenet-gbn") && err.contains("lenet-xx"),
        "{err}"
    );
    let zero = LenetOptions {
        ghost_batch: 0,
        ..LenetOptions::default()
    };
    assert!(ModelKind::LenetGbn
        .build_with(Activation::Relu, &zero, &mut Rng::seed_from_u64(7))
        .is_err());
    // The other models ignore the ghost size.
    assert!(ModelKind::LenetBn
        .build_with(Activation::Relu, &zero, &mut Rng::seed_from_u64(7))
        .is_ok());
}

#[test]
fn folding_reaches_the_batch_norms_inside_resnet_blocks_and_stages() {
    // ResNet-8: the stem, three stages of one block each (two with projection shortcuts);
    // plain-8 the same chain without shortcuts.
    for net in ["resnet8-batch", "plain8-batch"] {
        let deep: models::DeepNet = net.parse().unwrap();
        let mut model = deep.build(&mut Rng::seed_from_u64(3)).unwrap();
        let (x, labels) = small_batch(16, 4);
        let mut opt = Sgd::new(
            model.parameters(),
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                ..SgdConfig::default()
            },
        )
        .unwrap();
        // Steps move γ, β and the running statistics away from their initial values.
        fit(&mut model, &mut opt, &x, &labels, 5);
        model.eval();
        let want = no_grad(|| model.forward(&Var::constant(x.clone())))
            .unwrap()
            .value()
            .clone();
        let mut folded = fold_batch_norm(model).unwrap();
        assert!(
            folded.named_buffers().is_empty(),
            "{net}: no batch norm left: {:?}",
            folded
                .named_buffers()
                .iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        );
        let names: Vec<String> = folded
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(
            names.contains(&"layer2.0.conv1.bias".to_string()),
            "{net}: {names:?}"
        );
        if net.starts_with("resnet") {
            assert!(
                names.contains(&"layer2.0.shortcut.0.bias".to_string()),
                "{names:?}"
            );
        }
        folded.eval();
        let got = no_grad(|| folded.forward(&Var::constant(x.clone())))
            .unwrap()
            .value()
            .clone();
        // Float32 rounding of the folded weights through 8 layers (and the shortcuts' sums):
        // relative to the logits' size.
        let scale = want.as_slice().iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = got.max_abs_diff(&want).unwrap();
        assert!(
            diff < 1e-4 * scale,
            "{net}: folded model differs by {diff} (scale {scale})"
        );
    }
}
