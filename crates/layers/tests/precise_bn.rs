//! Recomputed ("precise") batch-norm statistics: on a model whose moving averages are stale,
//! `recompute_batch_norm_stats` gives exactly the average batch statistics of the batches it is
//! handed, counts them as PyTorch's `update_bn` does, and leaves momentum and mode as they were.
//!
//! Tolerance: the reference below computes each layer's input in f64 from the same f32 weights;
//! the layer computes it in f32 (GEMM), so the statistics agree to f32 rounding of activations
//! of size ~1 accumulated over 16 rows: 1e-5 relative.

use norma_autograd::{no_grad, Var};
use norma_layers::checkpoint::{state_dict, StateValue};
use norma_layers::{
    recompute_batch_norm_stats, BatchNorm1d, LayerError, Linear, Mode, Module, Sequential, Sigmoid,
};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

const K: usize = 5;
const ROWS: usize = 16;

fn model(rng: &mut Rng) -> Sequential {
    Sequential::new()
        .with("fc1", Linear::new(5, 4, rng).unwrap())
        .with("bn1", BatchNorm1d::new(4).unwrap())
        .with("act", Sigmoid)
        .with("fc2", Linear::new(4, 3, rng).unwrap())
        .with("bn2", BatchNorm1d::new(3).unwrap())
}

fn f32s(state: &std::collections::BTreeMap<String, StateValue>, name: &str) -> Vec<f64> {
    match &state[name] {
        StateValue::F32(t) => t.as_slice().iter().map(|&v| v as f64).collect(),
        other => panic!("{name}: {other:?}"),
    }
}

/// y = x·Wᵀ + b in f64, rows of `x` (ROWS × in).
fn linear(x: &[Vec<f64>], w: &[f64], b: &[f64]) -> Vec<Vec<f64>> {
    let out = b.len();
    let inp = w.len() / out;
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| b[o] + (0..inp).map(|i| row[i] * w[o * inp + i]).sum::<f64>())
                .collect()
        })
        .collect()
}

/// Per-column mean and unbiased variance.
fn moments(a: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = a.len() as f64;
    let c = a[0].len();
    let mean: Vec<f64> = (0..c)
        .map(|j| a.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let var = (0..c)
        .map(|j| a.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0))
        .collect();
    (mean, var)
}

/// Training-mode batch norm of the columns of `a` with γ and β, in f64.
fn batch_norm(a: &[Vec<f64>], gamma: &[f64], beta: &[f64]) -> Vec<Vec<f64>> {
    let (mean, var) = moments(a);
    let n = a.len() as f64;
    a.iter()
        .map(|r| {
            (0..r.len())
                .map(|j| {
                    let biased = var[j] * (n - 1.0) / n;
                    gamma[j] * (r[j] - mean[j]) / (biased + 1e-5).sqrt() + beta[j]
                })
                .collect()
        })
        .collect()
}

fn close(got: &[f64], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn stale_moving_averages_are_replaced_by_the_exact_batch_averages() {
    let mut rng = Rng::seed_from_u64(0);
    let mut net = model(&mut rng);
    // A few training steps build moving averages...
    let mut sgd = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    for _ in 0..20 {
        let x = Tensor::rand_normal(&[ROWS, 5], 1.0, 2.0, &mut rng);
        let labels: Vec<usize> = (0..ROWS).map(|i| i % 3).collect();
        sgd.zero_grad();
        net.forward(&Var::constant(x))
            .unwrap()
            .cross_entropy(&labels)
            .unwrap()
            .backward()
            .unwrap();
        sgd.step().unwrap();
    }
    // ...which a change of the weights makes stale.
    let w = &net.parameters()[0];
    w.update(|t| t.scale_in_place(3.0)).unwrap();
    let stale = state_dict(&net);
    net.eval();

    let batches: Vec<Tensor> = (0..K + 3)
        .map(|_| Tensor::rand_normal(&[ROWS, 5], -0.5, 1.5, &mut rng))
        .collect();
    let report = recompute_batch_norm_stats(&mut net, batches.clone(), K).unwrap();
    assert_eq!(report.layers, ["bn1", "bn2"]);
    assert_eq!(report.batches, K, "only the first K batches are used");

    // The reference: each batch through the network in training mode, in f64.
    let s = state_dict(&net);
    let (mut m1, mut v1, mut m2, mut v2) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 3], vec![0.0; 3]);
    for x in &batches[..K] {
        let rows: Vec<Vec<f64>> = x
            .as_slice()
            .chunks(5)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        let a1 = linear(&rows, &f32s(&s, "fc1.weight"), &f32s(&s, "fc1.bias"));
        let (mean, var) = moments(&a1);
        m1.iter_mut()
            .zip(&mean)
            .for_each(|(m, v)| *m += v / K as f64);
        v1.iter_mut()
            .zip(&var)
            .for_each(|(m, v)| *m += v / K as f64);
        let h = batch_norm(&a1, &f32s(&s, "bn1.weight"), &f32s(&s, "bn1.bias"));
        let h: Vec<Vec<f64>> = h
            .iter()
            .map(|r| r.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect())
            .collect();
        let a2 = linear(&h, &f32s(&s, "fc2.weight"), &f32s(&s, "fc2.bias"));
        let (mean, var) = moments(&a2);
        m2.iter_mut()
            .zip(&mean)
            .for_each(|(m, v)| *m += v / K as f64);
        v2.iter_mut()
            .zip(&var)
            .for_each(|(m, v)| *m += v / K as f64);
    }
    close(&f32s(&s, "bn1.running_mean"), &m1, "bn1 mean");
    close(&f32s(&s, "bn1.running_var"), &v1, "bn1 var");
    close(&f32s(&s, "bn2.running_mean"), &m2, "bn2 mean");
    close(&f32s(&s, "bn2.running_var"), &v2, "bn2 var");
    assert!(
        f32s(&stale, "bn1.running_mean")
            .iter()
            .zip(&m1)
            .any(|(a, b)| (a - b).abs() > 0.1),
        "the test needs stale statistics to begin with"
    );
    // As PyTorch's update_bn: the counter holds the number of batches averaged.
    assert_eq!(s["bn1.num_batches_tracked"], StateValue::I64(K as i64));
    assert_eq!(s["bn2.num_batches_tracked"], StateValue::I64(K as i64));
    // Weights are untouched; momentum and mode are back.
    for name in ["fc1.weight", "fc2.bias", "bn1.weight"] {
        assert_eq!(s[name], stale[name], "{name}");
    }
    for (name, child) in net.children() {
        if let Some(bn) = child.downcast_ref::<BatchNorm1d>() {
            assert_eq!(bn.config().momentum, Some(0.1), "{name}");
            assert_eq!(bn.mode(), Mode::Eval, "{name}");
        }
    }
    // In eval mode the model now normalizes with the recomputed statistics.
    let y = no_grad(|| net.forward(&Var::constant(batches[0].clone()))).unwrap();
    assert!(y.value().all_finite());
}

#[test]
fn bad_batches_and_counts_are_errors_that_restore_the_layers() {
    let mut rng = Rng::seed_from_u64(1);
    let mut net = model(&mut rng);
    net.eval();
    let err = recompute_batch_norm_stats(&mut net, Vec::<Tensor>::new(), 10).unwrap_err();
    assert!(err.to_string().contains("no batch"), "{err}");
    let err = recompute_batch_norm_stats(&mut net, vec![Tensor::zeros(&[4, 5])], 0).unwrap_err();
    assert!(err.to_string().contains("max_batches is 0"), "{err}");
    // A batch of one row has one value per channel: the batch-norm error, and nothing left
    // in training mode or without momentum.
    let batches = vec![Tensor::zeros(&[4, 5]), Tensor::zeros(&[1, 5])];
    let err = recompute_batch_norm_stats(&mut net, batches, 10).unwrap_err();
    assert!(matches!(err, LayerError::Kernel(_)), "{err}");
    for (_, child) in net.children() {
        if let Some(bn) = child.downcast_ref::<BatchNorm1d>() {
            assert_eq!((bn.config().momentum, bn.mode()), (Some(0.1), Mode::Eval));
        }
    }
}

/// Batch Renormalization and ghost batch norm keep their statistics in the batch norm
/// underneath: recomputing gives what the same recompute gives a plain batch norm for a ghost
/// batch as large as the batch (the layer is then batch norm bit for bit) and for renorm in
/// its warm-up (plain batch norm), and a ghost batch norm with smaller ghosts pools their
/// statistics, which differ — so neither is left at the stale moving averages.
#[test]
fn renorm_and_ghost_batch_norm_are_recomputed_through_their_own_forward() {
    use norma_layers::{BatchRenorm1d, GhostBatchNorm1d, RenormConfig};
    let mut rng = Rng::seed_from_u64(4);
    let batches: Vec<Tensor> = (0..K)
        .map(|_| Tensor::rand_normal(&[ROWS, 3], 1.0, 2.0, &mut rng))
        .collect();
    let running = |m: &Sequential| {
        let s = state_dict(m);
        (f32s(&s, "bn.running_mean"), f32s(&s, "bn.running_var"))
    };
    let recomputed = |layer: Box<dyn Module>| {
        let mut net = Sequential::new().with_boxed("bn", layer);
        net.eval();
        let stale = running(&net);
        let report = recompute_batch_norm_stats(&mut net, batches.clone(), K).unwrap();
        assert_eq!(report.batches, K);
        assert_eq!(report.layers, vec!["bn".to_string()]);
        let fresh = running(&net);
        assert_ne!(fresh, stale, "still the stale statistics");
        fresh
    };
    let plain = recomputed(Box::new(BatchNorm1d::new(3).unwrap()));
    let whole_ghost = recomputed(Box::new(GhostBatchNorm1d::new(3, ROWS).unwrap()));
    assert_eq!(whole_ghost, plain);
    let warm_up = RenormConfig {
        warmup_steps: K as u64,
        d_max_at: K as u64,
        r_max_at: K as u64,
        ..RenormConfig::default()
    };
    let renorm = recomputed(Box::new(
        BatchRenorm1d::with_config(3, Default::default(), warm_up).unwrap(),
    ));
    assert_eq!(renorm, plain);
    let small_ghosts = recomputed(Box::new(GhostBatchNorm1d::new(3, 4).unwrap()));
    assert_eq!(small_ghosts.0.len(), 3);
    // Pooled ghost means average to the batch mean; the pooled variances are within-ghost ones.
    close(&small_ghosts.0, &plain.0, "ghost running mean");
    assert!(small_ghosts.1 != plain.1);
}
