//! The residual block, global pooling and the CIFAR ResNet / plain networks: PyTorch names,
//! shapes, gradients against finite differences, determinism across thread counts, checkpoints
//! and the batch-norm walkers reaching the blocks' inner batch norms.

use std::cell::RefCell;

use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{no_grad, AutogradError, OpError, Var};
use norma_layers::models::{plain, resnet, DeepNet};
use norma_layers::{
    checkpoint, recompute_batch_norm_stats, BasicBlock, BasicBlockConfig, BatchNorm2d, Conv2d,
    Conv2dConfig, Module, NormKind, Sequential,
};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

fn op_error(e: norma_layers::LayerError) -> AutogradError {
    AutogradError::Op {
        op: "block",
        source: OpError::new(e),
    }
}

fn images(n: usize, seed: u64) -> Tensor {
    Tensor::rand_uniform(&[n, 1, 28, 28], 0.0, 1.0, &mut Rng::seed_from_u64(seed))
}

fn eval_logits(net: &mut dyn Module, x: &Tensor) -> Tensor {
    net.eval();
    let y = no_grad(|| net.forward(&Var::constant(x.clone()))).unwrap();
    y.value().clone()
}

#[test]
fn resnet8_bn_state_dict_names_match_pytorch() {
    let net = resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(0)).unwrap();
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    // scripts/norma_models.py's `build_deep("resnet8-batch")` names its parameters in this order.
    let mut want = vec!["conv1.weight", "bn1.weight", "bn1.bias"];
    want.extend([
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.conv2.weight",
        "layer1.0.bn2.weight",
        "layer1.0.bn2.bias",
    ]);
    for layer in ["layer2", "layer3"] {
        for p in [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "conv2.weight",
            "bn2.weight",
            "bn2.bias",
            "shortcut.0.weight",
            "shortcut.1.weight",
            "shortcut.1.bias",
        ] {
            want.push(Box::leak(format!("{layer}.0.{p}").into_boxed_str()));
        }
    }
    want.extend(["fc.weight", "fc.bias"]);
    assert_eq!(names, want);
    let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert!(buffers.contains(&"layer2.0.shortcut.1.running_mean".to_string()));
    assert!(buffers.contains(&"layer3.0.bn2.num_batches_tracked".to_string()));
    // 1 + 2·3 + 2 batch norms, five buffers... three (mean, var, count) each.
    assert_eq!(buffers.len(), 9 * 3);
    let shapes = norma_layers::models::state_shapes(&net);
    let shape = |name: &str| shapes.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(shape("conv1.weight"), [16, 1, 3, 3]);
    assert_eq!(shape("layer2.0.conv1.weight"), [32, 16, 3, 3]);
    assert_eq!(shape("layer3.0.shortcut.0.weight"), [64, 32, 1, 1]);
    assert_eq!(shape("fc.weight"), [10, 64]);

    // The plain net: the same names without the projections; no norm: biases instead.
    let p = plain(8, NormKind::Batch, &mut Rng::seed_from_u64(0)).unwrap();
    let pn: Vec<String> = p.named_parameters().into_iter().map(|(n, _)| n).collect();
    let without: Vec<&str> = want
        .iter()
        .copied()
        .filter(|n| !n.contains("shortcut"))
        .collect();
    assert_eq!(pn, without);
    let bare = resnet(8, NormKind::None, &mut Rng::seed_from_u64(0)).unwrap();
    assert!(bare
        .named_parameters()
        .iter()
        .any(|(n, _)| n == "layer2.0.shortcut.0.bias"));
    assert!(bare.named_buffers().is_empty());
}

#[test]
fn every_network_maps_images_to_logits() {
    for residual in [true, false] {
        for norm in NormKind::ALL {
            for depth in [8, 14] {
                let spec = DeepNet {
                    residual,
                    depth,
                    norm,
                };
                let mut net = spec.build(&mut Rng::seed_from_u64(1)).unwrap();
                net.train();
                let y = net.forward(&Var::constant(images(3, 2))).unwrap();
                assert_eq!(y.shape(), &[3, 10], "{spec}");
                assert!(y.value().all_finite(), "{spec}");
                let convs = count_convs(&mut net);
                let projections = if residual { 2 } else { 0 };
                // depth = the convolutions on the main path + fc.
                assert_eq!(convs - projections + 1, depth, "{spec}");
            }
        }
    }
}

fn count_convs(net: &mut dyn Module) -> usize {
    let mut n = 0;
    norma_layers::for_each_module_mut(net, &mut |_, m| n += usize::from(m.is::<Conv2d>()));
    n
}

#[test]
fn convolutions_without_bias_and_with_stride_two_padding_one() {
    let config = Conv2dConfig {
        stride: 2,
        padding: 1,
        bias: false,
    };
    let mut conv = Conv2d::new(16, 32, 3, config, &mut Rng::seed_from_u64(0)).unwrap();
    assert!(conv.bias().is_none());
    assert_eq!(conv.named_parameters().len(), 1);
    let y = conv
        .forward(&Var::constant(Tensor::zeros(&[2, 16, 28, 28])))
        .unwrap();
    assert_eq!(y.shape(), &[2, 32, 14, 14]);
    let y = conv
        .forward(&Var::constant(Tensor::zeros(&[1, 16, 7, 7])))
        .unwrap();
    assert_eq!(y.shape(), &[1, 32, 4, 4]);
}

/// Σ y·r of the block in its current mode, for the finite differences of its parameters.
fn projected(block: &mut BasicBlock, x: &Tensor, r: &Tensor) -> f64 {
    let y = no_grad(|| block.forward(&Var::constant(x.clone()))).unwrap();
    y.value()
        .as_slice()
        .iter()
        .zip(r.as_slice())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// The block's input and parameter gradients against central differences, with a projection
/// (stride 2, 2 → 4 channels) and with the identity, for batch norm (training mode) and no norm.
///
/// Tolerance 2e-2 absolute + 2e-2 relative; the step depends on the norm. Without norm, step
/// 1e-4: ReLU makes the function piecewise linear, and a step that carries a pre-activation
/// across zero spoils that one difference by up to the slope it switches off (with h = 1e-3 one
/// of the 150 input elements of the identity block did: 0.82 against 0.59); at h = 1e-4 a
/// crossing is ten times rarer, and the f32 rounding of Σ y·r over ~150 outputs,
/// ≈ √150·6e-8 / 2h ≈ 4e-3, stays under the tolerance. With batch norm, step 1e-3: normalizing
/// 50 values per channel amplifies the forward's f32 rounding, which at h = 1e-4 moved single
/// differences by up to 1e-2 (NORMA_SIMD=portable: 0.1246 against an analytic 0.1154 that
/// h = 1e-2 and 1e-3 both reproduce to 3e-4), and at 1e-3 no element of these inputs crosses a
/// kink at any SIMD level. A wrong derivative (a missing shortcut term, a dropped γ) is off by
/// O(1).
#[test]
fn block_gradients_match_finite_differences() {
    for norm in [NormKind::Batch, NormKind::None] {
        let cfg = GradCheck {
            step: if norm == NormKind::Batch { 1e-3 } else { 1e-4 },
            abs_tol: 2e-2,
            rel_tol: 2e-2,
            ..GradCheck::default()
        };
        for (cin, cout, stride) in [(2, 4, 2), (3, 3, 1)] {
            let config = BasicBlockConfig {
                in_channels: cin,
                out_channels: cout,
                stride,
                norm,
                input_side: 5,
                shortcut: true,
            };
            let mut rng = Rng::seed_from_u64(10);
            let mut block = RefCell::new(BasicBlock::new(config, &mut rng).unwrap());
            assert_eq!(block.borrow().has_projection(), stride != 1 || cin != cout);
            let x = Tensor::rand_normal(&[2, cin, 5, 5], 0.0, 1.0, &mut rng);
            let f = |v: &[Var]| block.borrow_mut().forward(&v[0]).map_err(op_error);
            check(f, std::slice::from_ref(&x), &cfg)
                .unwrap_or_else(|e| panic!("{norm}, {cin}->{cout}, stride {stride}: {e}"));

            let block = block.get_mut();
            // The input check back-propagated into the parameters too: start from zero.
            block.parameters().iter().for_each(|p| p.zero_grad());
            block.train();
            let y = block.forward(&Var::constant(x.clone())).unwrap();
            let r = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut rng);
            y.mul(&Var::constant(r.clone()))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            // Parameters: a weight of conv1 moves a whole channel of pre-activations, so a step
            // can carry one of them across a ReLU kink; a kink spoils one difference, a wrong
            // derivative all of them, so at most 1% of the elements may miss (each is named).
            // (Seed 7 had a relu1 input of channel 1 within h of zero: 5 of the 168 elements of
            // that channel's weights and bias missed by 5-20%, every other one matched; seeds
            // 8, 9 and 10 miss none.)
            let (mut total, mut missed) = (0usize, Vec::new());
            for (name, p) in block.named_parameters() {
                let analytic = p.grad().unwrap();
                for j in 0..p.len() {
                    let v0 = p.value().as_slice()[j];
                    let h = cfg.step;
                    let set = |v: f32| {
                        let mut t = (*p.value()).clone();
                        t.as_slice_mut()[j] = v;
                        p.set_value(t).unwrap();
                    };
                    set(v0 + h);
                    let up = projected(block, &x, &r);
                    set(v0 - h);
                    let down = projected(block, &x, &r);
                    set(v0);
                    let numeric = (up - down) / (2.0 * h as f64);
                    let a = analytic.as_slice()[j] as f64;
                    let tol = cfg.abs_tol + cfg.rel_tol * a.abs().max(numeric.abs());
                    total += 1;
                    if (a - numeric).abs() > tol {
                        missed.push(format!("{name}[{j}]: analytic {a}, numeric {numeric}"));
                    }
                }
            }
            assert!(
                missed.len() * 100 <= total,
                "{norm}, {cin}->{cout}: {} of {total} parameter gradients off: {missed:?}",
                missed.len()
            );
        }
    }
}

/// The plain block is the residual block minus `x`: with the same weights, their outputs
/// differ by exactly the shortcut before the final ReLU, so where both are positive
/// y_res − y_plain = x.
#[test]
fn the_shortcut_adds_the_input() {
    let config = BasicBlockConfig {
        in_channels: 3,
        out_channels: 3,
        stride: 1,
        norm: NormKind::None,
        input_side: 6,
        shortcut: true,
    };
    let mut res = BasicBlock::new(config, &mut Rng::seed_from_u64(3)).unwrap();
    let plain_config = BasicBlockConfig {
        shortcut: false,
        ..config
    };
    let mut bare = BasicBlock::new(plain_config, &mut Rng::seed_from_u64(3)).unwrap();
    let x = Tensor::rand_uniform(&[1, 3, 6, 6], 0.0, 1.0, &mut Rng::seed_from_u64(4));
    let a = res.forward(&Var::constant(x.clone())).unwrap();
    let b = bare.forward(&Var::constant(x.clone())).unwrap();
    let mut checked = 0;
    for ((&ya, &yb), &xi) in a
        .value()
        .as_slice()
        .iter()
        .zip(b.value().as_slice())
        .zip(x.as_slice())
    {
        if yb > 0.0 {
            assert!((ya - yb - xi).abs() < 1e-5, "{ya} - {yb} != {xi}");
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} positive outputs");
}

/// Loss and every gradient of one training step of ResNet-8-BN in a 1-thread and a 2-thread
/// pool, bit for bit.
#[test]
fn a_training_step_is_bitwise_identical_across_thread_counts() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(5)).unwrap();
            net.train();
            let labels: Vec<usize> = (0..8).map(|i| i % 10).collect();
            let loss = net
                .forward(&Var::constant(images(8, 6)))
                .unwrap()
                .cross_entropy(&labels)
                .unwrap();
            loss.backward().unwrap();
            let grads: Vec<Vec<f32>> = net
                .parameters()
                .iter()
                .map(|p| p.grad().unwrap().to_vec())
                .collect();
            (loss.value().item().unwrap().to_bits(), grads)
        })
    };
    let (loss1, grads1) = run(1);
    let (loss2, grads2) = run(2);
    assert_eq!(loss1, loss2);
    assert!(grads1 == grads2, "gradients differ between 1 and 2 threads");
}

#[test]
fn checkpoints_round_trip_for_every_norm() {
    let dir = tempfile::tempdir().unwrap();
    let x = images(4, 8);
    for residual in [true, false] {
        for norm in NormKind::ALL {
            let spec = DeepNet {
                residual,
                depth: 8,
                norm,
            };
            let mut net = spec.build(&mut Rng::seed_from_u64(1)).unwrap();
            train_steps(&mut net, 2);
            let path = dir.path().join(format!("{spec}.safetensors"));
            checkpoint::save(&net, &path).unwrap();
            let mut fresh = spec.build(&mut Rng::seed_from_u64(2)).unwrap();
            assert_ne!(eval_logits(&mut fresh, &x), eval_logits(&mut net, &x));
            checkpoint::load(&fresh, &path).unwrap();
            assert_eq!(
                eval_logits(&mut fresh, &x),
                eval_logits(&mut net, &x),
                "{spec}"
            );
        }
    }
    // A ResNet file does not load into the plain net of the same depth (the projections).
    let net = resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(1)).unwrap();
    let path = dir.path().join("r.safetensors");
    checkpoint::save(&net, &path).unwrap();
    let p = plain(8, NormKind::Batch, &mut Rng::seed_from_u64(1)).unwrap();
    assert!(checkpoint::load(&p, &path).is_err());
}

/// `steps` SGD steps (lr 0.1, momentum 0.9) on one batch of 16; returns the losses.
fn train_steps(net: &mut Sequential, steps: usize) -> Vec<f32> {
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let mut sgd = Sgd::new(net.parameters(), config).unwrap();
    let x = images(16, 9);
    let labels: Vec<usize> = (0..16).map(|i| (i * 3) % 10).collect();
    net.train();
    let mut losses = Vec::new();
    for _ in 0..steps {
        sgd.zero_grad();
        let loss = net
            .forward(&Var::constant(x.clone()))
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        loss.backward().unwrap();
        sgd.step().unwrap();
        losses.push(loss.value().item().unwrap());
    }
    losses
}

#[test]
fn resnet8_bn_fits_one_batch() {
    let mut net = resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(3)).unwrap();
    let losses = train_steps(&mut net, 30);
    assert!(losses[0] > 1.5, "{losses:?}");
    assert!(losses[29] < 0.2 * losses[0], "{losses:?}");
}

/// `eval()` reaches the batch norms inside the blocks (a sample's eval output does not depend
/// on the rest of its batch), `train()` brings them back (it does), and precise BN finds every
/// one of them.
#[test]
fn batch_norm_walkers_reach_the_blocks() {
    let mut net = resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(4)).unwrap();
    train_steps(&mut net, 1);
    let batch = images(6, 10);
    let first = Tensor::from_vec(&[1, 1, 28, 28], batch.as_slice()[..784].to_vec()).unwrap();
    let alone = eval_logits(&mut net, &first);
    let together = eval_logits(&mut net, &batch);
    assert_eq!(alone.as_slice(), &together.as_slice()[..10]);

    net.train();
    let t_alone = net.forward(&Var::constant(images(2, 11))).unwrap();
    let mut two = images(2, 11).to_vec();
    two.extend(images(2, 12).to_vec());
    let t_more = net
        .forward(&Var::constant(
            Tensor::from_vec(&[4, 1, 28, 28], two).unwrap(),
        ))
        .unwrap();
    assert_ne!(t_alone.value().as_slice(), &t_more.value().as_slice()[..20]);

    let report =
        recompute_batch_norm_stats(&mut net, (0..3).map(|s| images(8, 20 + s)), 3).unwrap();
    assert_eq!(report.batches, 3);
    assert_eq!(report.layers.len(), 9);
    assert!(report.layers.contains(&"layer3.0.shortcut.1".to_string()));
    assert!(report.layers.contains(&"layer1.0.bn2".to_string()));
    let mut bns = 0;
    norma_layers::for_each_module_mut(&mut net, &mut |_, m| {
        bns += usize::from(m.is::<BatchNorm2d>())
    });
    assert_eq!(bns, 9);
}
