//! BatchRenorm1d/2d: the paper's equations on a hand-computed case and against a float64
//! implementation, batch norm bit for bit while r_max = 1 and d_max = 0, gradients against
//! finite differences, bitwise determinism, checkpoints, synchronization, errors.

mod norm_checks;

use norm_checks::{
    bn_for, buffer, check_parameter_gradients, close, moments, normalize_into, randomize_affine,
    same_bits_everywhere, shapes, trace,
};
use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::Var;
use norma_distributed::testing::run_group;
use norma_kernels::KernelError;
use norma_layers::checkpoint::{load_bytes, state_dict, to_bytes};
use norma_layers::{
    BatchNormConfig, BatchRenorm1d, BatchRenorm2d, LayerError, Module, RenormConfig, Sequential,
};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

/// The final bounds from the first step on.
fn at_once(r_max: f64, d_max: f64) -> RenormConfig {
    RenormConfig {
        r_max,
        d_max,
        warmup_steps: 0,
        r_max_at: 0,
        d_max_at: 0,
    }
}

fn renorm_for(shape: &[usize], config: BatchNormConfig, renorm: RenormConfig) -> Box<dyn Module> {
    if shape.len() == 4 {
        Box::new(BatchRenorm2d::with_config(shape[1], config, renorm).unwrap())
    } else {
        Box::new(BatchRenorm1d::with_config(shape[1], config, renorm).unwrap())
    }
}

/// Sets the running statistics of a renorm layer (through its buffers, as a checkpoint would).
fn set_running(m: &dyn Module, mean: &[f32], var: &[f32]) {
    for (name, b) in m.named_buffers() {
        if let norma_layers::Buffer::F32(t) = b {
            let c = [mean.len()];
            let v = if name == "running_mean" { mean } else { var };
            t.set(Tensor::from_vec(&c, v.to_vec()).unwrap()).unwrap();
        }
    }
}

/// The paper's training output in f64, and the running statistics after it.
fn reference(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running: (&[f32], &[f32]),
    (r_max, d_max): (f64, f64),
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = x.shape()[0];
    let stats = moments(x, 0, n);
    let m = (x.len() / gamma.len()) as f64;
    let affine: Vec<(f64, f64)> = (0..gamma.len())
        .map(|c| {
            let sigma = (running.1[c] as f64 + eps).sqrt();
            let r = ((stats[c].1 + eps).sqrt() / sigma).clamp(1.0 / r_max, r_max);
            let d = ((stats[c].0 - running.0[c] as f64) / sigma).clamp(-d_max, d_max);
            let g = gamma[c] as f64;
            (g * r, g * d + beta[c] as f64)
        })
        .collect();
    let mut y = vec![0.0; x.len()];
    normalize_into(x, (0, n), &stats, &affine, eps, &mut y);
    let mean = (0..gamma.len())
        .map(|c| 0.9 * running.0[c] as f64 + 0.1 * stats[c].0)
        .collect();
    let var = (0..gamma.len())
        .map(|c| 0.9 * running.1[c] as f64 + 0.1 * stats[c].1 * m / (m - 1.0))
        .collect();
    (y, mean, var)
}

#[test]
fn hand_computed_case() {
    // x = [1, 2, 3, 6]: μ_B = 3, σ²_B = 3.5; running mean 0, variance 1 (σ = 1), eps 0.
    let config = BatchNormConfig {
        eps: 0.0,
        ..BatchNormConfig::default()
    };
    let x = Var::constant(Tensor::from_vec(&[4, 1], vec![1., 2., 3., 6.]).unwrap());
    let run = |renorm| {
        let mut brn = BatchRenorm1d::with_config(1, config, renorm).unwrap();
        let y = brn.forward(&x).unwrap().value().to_vec();
        (y, brn)
    };
    // Unclipped, r = sqrt(3.5), d = 3: y = (x − 3) + 3 = x, what the running statistics give.
    let (y, brn) = run(at_once(3.0, 5.0));
    for (g, w) in y.iter().zip([1.0, 2.0, 3.0, 6.0]) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // Running statistics after the batch: 0.1·3 and 0.9 + 0.1·3.5·4/3.
    assert!((brn.batch_norm().running_mean().unwrap().as_slice()[0] - 0.3).abs() < 1e-7);
    assert!(
        (brn.batch_norm().running_var().unwrap().as_slice()[0] - (0.9 + 0.35 * 4.0 / 3.0)).abs()
            < 1e-6
    );
    assert_eq!(brn.batch_norm().num_batches_tracked(), Some(1));
    // d clipped to 1: y = x − 3 + 1.
    let (y, _) = run(at_once(3.0, 1.0));
    for (g, w) in y.iter().zip([-1.0, 0.0, 1.0, 4.0]) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // r clipped to 1.5, d to 0: y = 1.5·(x − 3)/sqrt(3.5).
    let (y, _) = run(at_once(1.5, 0.0));
    for (g, v) in y.iter().zip([1.0f64, 2.0, 3.0, 6.0]) {
        let w = 1.5 * (v - 3.0) / 3.5f64.sqrt();
        assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn the_schedule_is_the_papers() {
    let s = RenormConfig::default();
    assert_eq!(s.bounds_at(0), (1.0, 0.0));
    assert_eq!(s.bounds_at(5000), (1.0, 0.0));
    // Halfway from 5000 to 40 000 for r (r_max 2), 7/8 of the way to 25 000 for d.
    assert_eq!(s.bounds_at(22_500), (2.0, 4.375));
    assert_eq!(s.bounds_at(25_000).1, 5.0);
    assert_eq!(s.bounds_at(40_000), (3.0, 5.0));
    assert_eq!(s.bounds_at(u64::MAX), (3.0, 5.0));
    // The layer follows its own step count: plain batch norm for two batches, then renorm.
    let schedule = RenormConfig {
        warmup_steps: 2,
        r_max_at: 2,
        d_max_at: 2,
        ..RenormConfig::default()
    };
    let mut brn = BatchRenorm1d::with_config(1, BatchNormConfig::default(), schedule).unwrap();
    let x = Var::constant(Tensor::from_vec(&[2, 1], vec![9.0, 11.0]).unwrap());
    let mut means = Vec::new();
    for _ in 0..3 {
        means.push(brn.forward(&x).unwrap().value().mean_all());
    }
    assert!(means[0].abs() < 1e-6 && means[1].abs() < 1e-6, "{means:?}");
    assert!(means[2] > 1.0, "{means:?}");
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let no_running = BatchNormConfig {
        track_running_stats: false,
        ..BatchNormConfig::default()
    };
    let default = RenormConfig::default();
    assert!(matches!(
        BatchRenorm2d::with_config(3, no_running, default),
        Err(LayerError::Config { .. })
    ));
    for bad in [
        at_once(0.5, 1.0),
        at_once(f64::NAN, 1.0),
        at_once(2.0, -1.0),
        RenormConfig {
            r_max_at: 10,
            ..default
        },
    ] {
        let Err(err) = BatchRenorm2d::with_config(3, BatchNormConfig::default(), bad) else {
            panic!("{bad:?} accepted");
        };
        assert!(err.to_string().starts_with("BatchRenorm2d(3)"), "{err}");
    }
    let mut brn = BatchRenorm1d::new(3).unwrap();
    let one = Var::constant(Tensor::ones(&[1, 3]));
    assert_eq!(
        brn.forward(&one).unwrap_err(),
        LayerError::Kernel(KernelError::SingleValuePerChannel { shape: vec![1, 3] })
    );
    let err = brn
        .forward(&Var::constant(Tensor::ones(&[4, 2])))
        .unwrap_err();
    assert!(
        matches!(&err, LayerError::Input { layer, .. } if layer.starts_with("BatchRenorm1d(3")),
        "{err}"
    );
    brn.eval();
    assert!(brn.forward(&one).is_ok(), "eval takes one sample");
    // Unusable running statistics (loaded from somewhere) are named.
    let mut brn = BatchRenorm1d::new(2).unwrap();
    set_running(&brn, &[0.0, 0.0], &[1.0, -3.0]);
    let err = brn
        .forward(&Var::constant(Tensor::ones(&[3, 2])))
        .unwrap_err();
    assert!(err.to_string().contains("running_var"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The training output and the running update are the paper's, computed in f64, for any
    /// running statistics and bounds (clipped or not).
    #[test]
    fn matches_the_float64_equations(shape in shapes(), seed in any::<u64>(), r_max in 1.0f64..4.0, d_max in 0.0f64..3.0) {
        let mut rng = Rng::seed_from_u64(seed);
        let c = shape[1];
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let mut brn = renorm_for(&shape, BatchNormConfig::default(), at_once(r_max, d_max));
        randomize_affine(brn.as_ref(), &mut rng);
        let rm = Tensor::rand_normal(&[c], 0.0, 2.0, &mut rng).to_vec();
        let rv = Tensor::rand_uniform(&[c], 0.1, 6.0, &mut rng).to_vec();
        set_running(brn.as_ref(), &rm, &rv);
        let p = brn.parameters();
        let (gamma, beta) = (p[0].value().to_vec(), p[1].value().to_vec());
        let y = brn.forward(&Var::constant(x.clone())).unwrap();
        let (want, mean, var) = reference(&x, &gamma, &beta, (&rm, &rv), (r_max, d_max), 1e-5);
        close(y.value().as_slice(), &want, 2e-5)?;
        close(&buffer(brn.as_ref(), "running_mean"), &mean, 1e-6)?;
        close(&buffer(brn.as_ref(), "running_var"), &var, 1e-6)?;
    }

    /// With r_max = 1 and d_max = 0 (the warm-up) the layer is batch norm: same output,
    /// gradients and buffers, bit for bit, over several steps.
    #[test]
    fn without_corrections_it_is_batch_norm_bit_for_bit(shape in shapes(), seed in any::<u64>(), affine in any::<bool>(), warmup in any::<bool>()) {
        let config = BatchNormConfig { affine, ..BatchNormConfig::default() };
        let renorm = if warmup { RenormConfig::default() } else { at_once(1.0, 0.0) };
        let mut brn = renorm_for(&shape, config, renorm);
        let mut bn = bn_for(&shape, config);
        prop_assert!(trace(brn.as_mut(), &shape, seed, 3) == trace(bn.as_mut(), &shape, seed, 3));
    }

    /// dx against finite differences where r and d are clipped (then constants of x, so the
    /// derivative with r and d held fixed is the true one); dγ, dβ everywhere (r and d do not
    /// depend on γ or β). Tolerances as for batch norm's checks (2e-2 absolute and relative
    /// for f32 differences with step 1e-3; 1e-3 for the exact linear γ/β quotient).
    #[test]
    fn gradients_match_finite_differences(shape in shapes(), seed in any::<u64>()) {
        let mut rng = Rng::seed_from_u64(seed);
        let c = shape[1];
        let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut rng);
        // σ = 20 against σ_B ≈ 2 and μ = 60 against μ_B ≈ 1: r = 1/2 and d = −1, both clipped.
        let build = || {
            let brn = renorm_for(&shape, BatchNormConfig::default(), at_once(2.0, 1.0));
            set_running(brn.as_ref(), &vec![60.0; c], &vec![400.0; c]);
            brn.parameters()[0].set_value(gamma.clone()).unwrap();
            brn
        };
        let f = |v: &[Var]| {
            build().forward(&v[0]).map_err(|e| norma_autograd::AutogradError::Op {
                op: "batch_renorm",
                source: norma_autograd::OpError::new(e),
            })
        };
        let cfg = GradCheck { step: 1e-3, abs_tol: 2e-2, rel_tol: 2e-2, ..GradCheck::default() };
        check(f, std::slice::from_ref(&x), &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Parameters, unclipped (fresh running statistics, d_max 5): Σ y·r per γ_j, β_j.
        let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let mut brn = renorm_for(&shape, BatchNormConfig::default(), at_once(3.0, 5.0));
        brn.parameters()[0].set_value(gamma).unwrap();
        let fresh = |m: &dyn Module| set_running(m, &vec![0.0; c], &vec![1.0; c]);
        check_parameter_gradients(brn.as_mut(), &x, &r, &fresh)?;
    }
}

#[test]
fn bitwise_identical_across_threads_and_simd_levels() {
    let shape = [16, 6, 12, 12];
    same_bits_everywhere(|| {
        let mut brn =
            BatchRenorm2d::with_config(6, BatchNormConfig::default(), at_once(1.5, 0.5)).unwrap();
        trace(&mut brn, &shape, 7, 3)
    });
}

#[test]
fn checkpoints_keep_the_state_and_the_schedule_step() {
    let mut rng = Rng::seed_from_u64(3);
    let model = || {
        Sequential::new().with(
            "brn",
            BatchRenorm2d::with_config(2, BatchNormConfig::default(), at_once(2.0, 1.0)).unwrap(),
        )
    };
    let mut a = model();
    randomize_affine(&a, &mut rng);
    for _ in 0..3 {
        let x = Tensor::rand_normal(&[2, 2, 3, 3], 2.0, 1.5, &mut rng);
        a.forward(&Var::constant(x)).unwrap();
    }
    let keys: Vec<String> = state_dict(&a).into_keys().collect();
    assert_eq!(
        keys,
        [
            "brn.bias",
            "brn.num_batches_tracked",
            "brn.running_mean",
            "brn.running_var",
            "brn.weight"
        ]
    );
    let bytes = to_bytes(&state_dict(&a)).unwrap();
    let mut b = model();
    load_bytes(&b, &bytes, std::path::Path::new("memory")).unwrap();
    let x = Var::constant(Tensor::rand_normal(&[2, 2, 3, 3], 2.0, 1.5, &mut rng));
    assert_eq!(
        a.forward(&x).unwrap().value().to_vec(),
        b.forward(&x).unwrap().value().to_vec()
    );
    a.eval();
    b.eval();
    assert_eq!(
        a.forward(&x).unwrap().value().to_vec(),
        b.forward(&x).unwrap().value().to_vec()
    );
}

/// Synchronized over K threads standing in for processes, each holding a shard, the layer
/// computes what one process computes on the whole batch (up to the order of the f64
/// additions of the all-reduce: within 1e-5): outputs and dx of Σ y·r over two steps, dγ and dβ
/// summed over the processes (the data-parallel all-reduce), and the running statistics.
#[test]
fn synchronized_matches_one_process_on_the_global_batch() {
    let shape = [6, 3, 2, 2];
    let mut rng = Rng::seed_from_u64(11);
    let x = Tensor::rand_normal(&shape, 1.0, 2.0, &mut rng);
    let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
    let make = || BatchRenorm2d::with_config(3, BatchNormConfig::default(), at_once(1.2, 0.3));
    // [y, dx] of each step, then dγ, dβ of the last step, then the running mean.
    let steps = |brn: &mut BatchRenorm2d, x: &Tensor, r: &Tensor| {
        let mut out = Vec::new();
        for _ in 0..2 {
            brn.parameters().iter().for_each(|p| p.zero_grad());
            let xp = norma_autograd::Param::new(x.clone());
            let y = brn.forward(&xp.var()).unwrap();
            y.mul(&Var::constant(r.clone()))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            out.push(y.value().to_vec());
            out.push(xp.grad().unwrap().to_vec());
        }
        out.extend(brn.parameters().iter().map(|p| p.grad().unwrap().to_vec()));
        out.push(brn.batch_norm().running_mean().unwrap().to_vec());
        out
    };
    let whole = steps(&mut make().unwrap(), &x, &r);
    let close = |got: &[f32], want: &[f32], what: String| {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{what}: {g} vs {w}");
        }
    };
    for size in [2, 3] {
        let per = shape[0] / size * 12;
        let results = run_group(size, |comm| {
            let rank = comm.rank();
            let shard = |t: &Tensor| {
                let values = t.as_slice()[rank * per..(rank + 1) * per].to_vec();
                Tensor::from_vec(&[per / 12, 3, 2, 2], values).unwrap()
            };
            let mut brn = make().unwrap().synchronized(comm);
            assert!(brn.describe().starts_with("SyncBatchRenorm2d"));
            steps(&mut brn, &shard(&x), &shard(&r))
        });
        let mut sums = vec![vec![0.0f32; 3]; 2];
        for (rank, out) in results.iter().enumerate() {
            for k in 0..4 {
                let want = &whole[k][rank * per..(rank + 1) * per];
                close(
                    &out[k],
                    want,
                    format!("{size} threads, rank {rank}, tensor {k}"),
                );
            }
            for (sum, g) in sums.iter_mut().zip(&out[4..6]) {
                sum.iter_mut().zip(g).for_each(|(s, v)| *s += v);
            }
            close(&out[6], &whole[6], format!("running mean, rank {rank}"));
        }
        close(&sums[0], &whole[4], format!("dγ over {size} threads"));
        close(&sums[1], &whole[5], format!("dβ over {size} threads"));
    }
}

/// A LeNet-BN converted keeps its weights and `state_dict` names, and while the schedule is in
/// its warm-up it trains exactly as LeNet-BN (outputs, gradients and buffers, bit for bit).
#[test]
fn converted_lenet_bn_trains_as_lenet_bn_during_the_warm_up() {
    use norma_layers::convert_batch_renorm;
    use norma_layers::models::{self, Activation};
    let build = || models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(8)).unwrap();
    let mut bn = build();
    let mut brn = convert_batch_renorm(build(), RenormConfig::default()).unwrap();
    let keys = |m: &dyn Module| state_dict(m).into_keys().collect::<Vec<_>>();
    assert_eq!(keys(&brn), keys(&bn));
    assert!(brn.describe().contains("BatchRenorm2d(6"));
    assert!(trace(&mut brn, &[4, 1, 28, 28], 2, 2) == trace(&mut bn, &[4, 1, 28, 28], 2, 2));
    let untracked = BatchNormConfig {
        track_running_stats: false,
        ..BatchNormConfig::default()
    };
    let model = Sequential::new().with(
        "bn",
        norma_layers::BatchNorm1d::with_config(2, untracked).unwrap(),
    );
    assert!(convert_batch_renorm(model, RenormConfig::default()).is_err());
}
