//! Collective scenarios for synchronized batch norm, shared by the thread-group tests
//! (`tests/sync_batch_norm.rs`, plain `cargo test`) and the MPI program
//! (`tests/sync_batch_norm_mpi.rs`, under mpirun). Each runs on every process of `comm` and
//! returns this process's verdict.
//!
//! Every process generates the whole global batch from a seed, takes its shard
//! (`norma_distributed::shard`), and computes the single-process reference on the global batch
//! itself, so each compares its own part.
//!
//! Tolerance: relative differences (max |a − b| over max |b|) ≤ 1e-5, the bound. Only
//! the order of additions differs from the reference (f64 statistics, f32 outputs and
//! gradients), which is worth about 1e-7.

#![allow(dead_code)] // each test binary uses some of the scenarios

use std::ops::Range;
use std::rc::Rc;

use norma_autograd::{Param, Var};
use norma_distributed::{same_on_every_process, shard, CommError, Communicator};
use norma_layers::models::{self, Activation};
use norma_layers::{
    convert_sync_batch_norm, BatchNorm1d, BatchNorm2d, BatchNormConfig, LayerError, Linear, Module,
    Relu, Sequential,
};
use norma_tensor::{Rng, Tensor};

/// The bound on relative differences from one process.
pub const TOL: f32 = 1e-5;

pub type Verdict = Result<(), String>;

/// max |a − b| / max |b| (0 for two empty or zero tensors of one size).
pub fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in length");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f32::MIN_POSITIVE)
    }
}

fn close(what: &str, a: &[f32], b: &[f32]) -> Verdict {
    let d = rel_diff(a, b);
    if d <= TOL {
        Ok(())
    } else {
        Err(format!("{what}: relative difference {d:e} > {TOL:e}"))
    }
}

/// Samples `range` of a batch (dimension 0).
pub fn rows(t: &Tensor, range: Range<usize>) -> Tensor {
    let per: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = range.len();
    Tensor::from_vec(
        &shape,
        t.as_slice()[range.start * per..range.end * per].to_vec(),
    )
    .expect("a slice of rows has the shape of its rows")
}

/// A batch whose samples do not share a distribution (sample i is shifted by 3·i/N), so that
/// shards have different statistics; around `mean` with spread 2.
fn batch(shape: &[usize], mean: f32, seed: u64) -> Tensor {
    let mut t = Tensor::rand_normal(shape, mean, 2.0, &mut Rng::seed_from_u64(seed));
    let n = shape[0].max(1);
    let per = t.len() / n;
    for (i, v) in t.as_slice_mut().iter_mut().enumerate() {
        *v += 3.0 * (i / per) as f32 / n as f32;
    }
    t
}

fn bn(shape: &[usize], config: BatchNormConfig) -> Box<dyn Module> {
    if shape.len() == 4 {
        Box::new(BatchNorm2d::with_config(shape[1], config).expect("valid config"))
    } else {
        Box::new(BatchNorm1d::with_config(shape[1], config).expect("valid config"))
    }
}

/// One training step of a batch-norm layer on `x` with loss Σ y·w: (y, dx, dγ, dβ).
fn step(m: &mut dyn Module, x: &Tensor, w: &Tensor) -> Result<[Vec<f32>; 4], LayerError> {
    let input = Param::new(x.clone());
    let y = m.forward(&input.var())?;
    y.mul(&Var::constant(w.clone()))?.sum_all()?.backward()?;
    let params = m.parameters();
    let grad = |p: &Param| p.grad().map(|g| g.to_vec()).unwrap_or_default();
    let out = [
        y.value().to_vec(),
        grad(&input),
        grad(&params[0]),
        grad(&params[1]),
    ];
    for p in &params {
        p.zero_grad();
    }
    Ok(out)
}

/// The model's state (parameters, running statistics, counters) as one f32 vector.
fn buffers(m: &dyn Module) -> Vec<f32> {
    norma_layers::checkpoint::state_dict(m)
        .into_values()
        .flat_map(|v| match v {
            norma_layers::checkpoint::StateValue::F32(t) => t.to_vec(),
            norma_layers::checkpoint::StateValue::I64(n) => vec![n as f32],
            other => panic!("unexpected buffer {other:?}"),
        })
        .collect()
}

fn sum_over(comm: &dyn Communicator, v: &[f32]) -> Result<Vec<f32>, String> {
    let mut v = v.to_vec();
    comm.all_reduce_sum_f32(&mut v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// Synchronized batch norm over the processes equals batch norm on the global batch: outputs,
/// input gradients, dγ and dβ (summed over processes), running statistics after three steps;
/// the running statistics are the same bits on every process; batch norm over each shard alone
/// ("local" batch norm) differs by more than 1e-2, or fails on a shard of one sample.
pub fn layer_matches_one_process(comm: &Rc<dyn Communicator>) -> Verdict {
    let (rank, size) = (comm.rank(), comm.size());
    let cumulative = BatchNormConfig {
        momentum: None,
        ..BatchNormConfig::default()
    };
    let cases: Vec<(Vec<usize>, f32, BatchNormConfig)> = vec![
        (vec![13, 3], 0.5, BatchNormConfig::default()),
        (vec![13, 3], 1e4, BatchNormConfig::default()), // large mean: the shift matters
        (vec![7, 2, 5], -1.0, cumulative),
        (vec![7, 4, 3, 3], 2.0, BatchNormConfig::default()),
        (vec![size.max(2), 3], 0.0, BatchNormConfig::default()), // shards of one sample
        (vec![2, 3, 2, 2], 1.0, BatchNormConfig::default()), // with 3 processes, one empty shard
    ];
    for (shape, mean, config) in cases {
        let case = format!("{shape:?} mean {mean}");
        let mut reference = bn(&shape, config);
        let mut synced = bn(&shape, config);
        convert_sync_batch_norm(synced.as_mut(), comm.clone());
        // γ and β away from 1 and 0, the same on every layer.
        let c = shape[1];
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut Rng::seed_from_u64(9));
        let beta = Tensor::rand_normal(&[c], 0.0, 0.5, &mut Rng::seed_from_u64(10));
        for m in [&reference, &synced] {
            m.parameters()[0]
                .set_value(gamma.clone())
                .map_err(|e| e.to_string())?;
            m.parameters()[1]
                .set_value(beta.clone())
                .map_err(|e| e.to_string())?;
        }
        let mine = shard(shape[0], rank, size);
        let mut local_differs = false;
        for s in 0..3 {
            let x = batch(&shape, mean, 100 + s);
            let w = Tensor::rand_normal(&shape, 0.0, 1.0, &mut Rng::seed_from_u64(200 + s));
            let want = step(reference.as_mut(), &x, &w).map_err(|e| format!("{case}: {e}"))?;
            let (xs, ws) = (rows(&x, mine.clone()), rows(&w, mine.clone()));
            let got = step(synced.as_mut(), &xs, &ws).map_err(|e| format!("{case}: {e}"))?;
            let per = want[0].len() / shape[0];
            let part = |v: &[f32]| v[mine.start * per..mine.end * per].to_vec();
            close(
                &format!("{case} step {s}: output"),
                &got[0],
                &part(&want[0]),
            )?;
            close(&format!("{case} step {s}: dx"), &got[1], &part(&want[1]))?;
            close(
                &format!("{case} step {s}: dγ"),
                &sum_over(comm.as_ref(), &got[2])?,
                &want[2],
            )?;
            close(
                &format!("{case} step {s}: dβ"),
                &sum_over(comm.as_ref(), &got[3])?,
                &want[3],
            )?;
            close(
                &format!("{case} step {s}: running statistics"),
                &buffers(synced.as_ref()),
                &buffers(reference.as_ref()),
            )?;
            let same = same_on_every_process(comm.as_ref(), &buffers(synced.as_ref()))
                .map_err(|e| e.to_string())?;
            if !same {
                return Err(format!(
                    "{case}: running statistics differ between processes"
                ));
            }
            // Local batch norm: statistics of this shard only, or an error for a shard of
            // fewer than two values per channel.
            let mut local = bn(&shape, config);
            local.parameters()[0]
                .set_value(gamma.clone())
                .map_err(|e| e.to_string())?;
            local.parameters()[1]
                .set_value(beta.clone())
                .map_err(|e| e.to_string())?;
            local_differs |= match step(local.as_mut(), &xs, &ws) {
                Ok(y) => rel_diff(&y[0], &part(&want[0])) > 1e-2,
                Err(_) => true,
            };
        }
        // With one process "local" is global; with several, the shards' statistics differ.
        let any_differs = sum_over(comm.as_ref(), &[f32::from(u8::from(local_differs))])?[0] > 0.0;
        if any_differs != (size > 1) {
            return Err(format!(
                "{case}: local batch norm differs from the global one: {any_differs} with {size} processes"
            ));
        }
    }
    Ok(())
}

/// A global batch with one value per channel is batch norm's own error, on every process.
pub fn one_value_per_channel_is_the_batch_norm_error(comm: &Rc<dyn Communicator>) -> Verdict {
    let x = batch(&[1, 3], 0.0, 1);
    let want = BatchNorm1d::new(3)
        .map_err(|e| e.to_string())?
        .forward(&Var::constant(x.clone()))
        .err()
        .ok_or("batch norm accepted one value per channel")?;
    let mut synced = BatchNorm1d::new(3)
        .map_err(|e| e.to_string())?
        .synchronized(comm.clone());
    let mine = rows(&x, shard(1, comm.rank(), comm.size()));
    match synced.forward(&Var::constant(mine)) {
        Err(e) if e == want => Ok(()),
        other => Err(format!("expected {want}, got {other:?}")),
    }
}

/// A process whose input has the wrong shape gets its own error and every other process a
/// PeerFailed from the same layer (nobody waits), whether it is process 0 (which broadcasts the
/// shift) or the last; afterwards the layer still works on every process.
pub fn a_failing_process_fails_every_process(comm: &Rc<dyn Communicator>) -> Verdict {
    let (rank, size) = (comm.rank(), comm.size());
    let mut layer = BatchNorm1d::new(3)
        .map_err(|e| e.to_string())?
        .synchronized(comm.clone());
    for failing in [0, size - 1] {
        let shape = if rank == failing { [4, 5] } else { [4, 3] };
        let x = Var::constant(batch(&shape, 0.0, 3));
        match (layer.forward(&x), rank == failing) {
            (Err(LayerError::Input { .. }), true) => {}
            (Err(LayerError::Distributed(CommError::PeerFailed { failed: 1, .. })), false) => {}
            (other, mine) => {
                return Err(format!(
                    "process {failing} failing: process {rank} (failing: {mine}) got {other:?}"
                ))
            }
        }
    }
    let x = Var::constant(batch(&[4, 3], 0.0, 4));
    layer
        .forward(&x)
        .map(|_| ())
        .map_err(|e| format!("after the failures: {e}"))
}

/// A small classifier: Linear(6, 8) → BatchNorm1d(8) → ReLU → Linear(8, 4).
fn classifier(seed: u64) -> Sequential {
    let mut rng = Rng::seed_from_u64(seed);
    Sequential::new()
        .with("fc1", Linear::new(6, 8, &mut rng).expect("sizes are valid"))
        .with("bn", BatchNorm1d::new(8).expect("sizes are valid"))
        .with("act", Relu)
        .with("fc2", Linear::new(8, 4, &mut rng).expect("sizes are valid"))
}

/// Every parameter gradient of `model`, flattened in parameter order.
pub fn flat_grads(model: &dyn Module) -> Vec<f32> {
    model
        .parameters()
        .iter()
        .flat_map(|p| {
            p.grad()
                .map(|g| g.to_vec())
                .unwrap_or_else(|| vec![0.0; p.len()])
        })
        .collect()
}

/// One data-parallel step of phase 2's recipe: process r back-propagates (n_r/N)·L_r (L_r the
/// mean loss over its shard), then the gradients are summed over processes in one all-reduce.
/// Returns the summed gradients and the model's buffers.
fn data_parallel_step(
    model: &mut dyn Module,
    comm: &dyn Communicator,
    x: &Tensor,
    labels: &[usize],
    weighted: bool,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let n = x.shape()[0];
    let mine = shard(n, comm.rank(), comm.size());
    let logits = model
        .forward(&Var::constant(rows(x, mine.clone())))
        .map_err(|e| e.to_string())?;
    let loss = logits
        .cross_entropy(&labels[mine.clone()])
        .map_err(|e| e.to_string())?;
    let weight = if weighted {
        mine.len() as f32 / n as f32
    } else {
        1.0 / comm.size() as f32 // PyTorch DDP: the mean of the processes' gradients
    };
    loss.mul_scalar(weight)
        .backward()
        .map_err(|e| e.to_string())?;
    let grads = sum_over(comm, &flat_grads(model))?;
    Ok((grads, buffers(model)))
}

/// Phase 2's recipe with synchronized batch norm gives one process's gradients on the global
/// batch (mean loss), for shards of unequal size too; averaging unweighted gradients (PyTorch
/// DDP's mean) does not when the shards differ in size. Run on the classifier and on LeNet-BN
/// converted with `convert_sync_batch_norm`.
pub fn data_parallel_gradients_match_one_process(comm: &Rc<dyn Communicator>) -> Verdict {
    let size = comm.size();
    let n = 10; // 5 + 5, 4 + 3 + 3
    let mut rng = Rng::seed_from_u64(21);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % 4).collect();
    let x = Tensor::rand_normal(&[n, 6], 0.0, 1.0, &mut rng);
    let images = batch(&[n, 1, 28, 28], 0.5, 22);
    let digits: Vec<usize> = (0..n).map(|i| (i * 3) % 10).collect();

    type Build = Box<dyn Fn() -> Box<dyn Module>>;
    let builds: Vec<(&str, Build, &Tensor, &[usize])> = vec![
        (
            "classifier",
            Box::new(|| Box::new(classifier(5))),
            &x,
            &labels,
        ),
        (
            "LeNet-BN",
            Box::new(|| {
                Box::new(
                    models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(6))
                        .expect("LeNet-BN builds"),
                )
            }),
            &images,
            &digits,
        ),
    ];
    for (name, build, x, labels) in builds {
        let mut reference = build();
        let logits = reference
            .forward(&Var::constant(x.clone()))
            .map_err(|e| e.to_string())?;
        logits
            .cross_entropy(labels)
            .map_err(|e| e.to_string())?
            .backward()
            .map_err(|e| e.to_string())?;
        let (want, want_buffers) = (flat_grads(reference.as_ref()), buffers(reference.as_ref()));

        let mut model = build();
        let converted = convert_sync_batch_norm(model.as_mut(), comm.clone());
        if converted.is_empty() {
            return Err(format!("{name}: no batch norm converted"));
        }
        let (got, got_buffers) =
            data_parallel_step(model.as_mut(), comm.as_ref(), x, labels, true)?;
        close(&format!("{name}: summed gradients"), &got, &want)?;
        close(
            &format!("{name}: running statistics"),
            &got_buffers,
            &want_buffers,
        )?;

        let mut ddp = build();
        convert_sync_batch_norm(ddp.as_mut(), comm.clone());
        let (mean, _) = data_parallel_step(ddp.as_mut(), comm.as_ref(), x, labels, false)?;
        let uneven = n % size != 0;
        let d = rel_diff(&mean, &want);
        if uneven && d < 1e-2 {
            return Err(format!(
                "{name}: unweighted averaging matched ({d:e}) with uneven shards"
            ));
        }
        if !uneven && d > TOL {
            return Err(format!(
                "{name}: unweighted averaging differs ({d:e}) with even shards"
            ));
        }
    }
    Ok(())
}
