//! The normalization layers built on batch norm's and group norm's kernels — Batch
//! Renormalization, ghost batch norm, frozen batch norm, instance norm, RMSNorm — next to
//! plain BatchNorm, at LeNet's shapes at batch 256, through the layer (`Module::forward` and,
//! for training, the autograd backward with a fixed output gradient), for
//! `scripts/bench_norm_vs_pytorch.py --layers` and on its own.
//!
//! Criterion's "thrpt" is effective GB/s, as the kernel benches count it: forward 2 × numel × 4
//! bytes, forward + backward 5 × numel × 4. Batch Renormalization runs past its warm-up (r and d
//! corrections in force, r_max 3, d_max 5); ghost batch norm with ghost batches of 16.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use norma_autograd::{no_grad, Param, Var};
use norma_layers::{
    BatchNorm1d, BatchNorm2d, BatchNormConfig, BatchRenorm1d, BatchRenorm2d, FrozenBatchNorm1d,
    FrozenBatchNorm2d, GhostBatchNorm1d, GhostBatchNorm2d, InstanceNorm2d, Module, RenormConfig,
    RmsNorm,
};
use norma_tensor::Tensor;

/// The outputs of LeNet's four normalized layers at batch 256: conv1, conv2, fc1, fc2.
const LENET_SHAPES: [&[usize]; 4] = [&[256, 6, 24, 24], &[256, 16, 8, 8], &[256, 120], &[256, 84]];

/// Ghost batch size of the ghost-batch-norm rows (norma's `DEFAULT_GHOST_BATCH`).
const GHOST: usize = 16;

/// A cheap deterministic pattern with a non-zero mean (the values do not affect the speed).
fn pattern(shape: &[usize], scale: f32, offset: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * scale + offset)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Renorm with its corrections in force from the first batch.
fn renorm_now() -> RenormConfig {
    RenormConfig {
        warmup_steps: 0,
        r_max_at: 0,
        d_max_at: 0,
        ..RenormConfig::default()
    }
}

/// The layers timed at `shape`: (name, layer, whether it trains).
fn layers(shape: &[usize]) -> Vec<(&'static str, Box<dyn Module>, bool)> {
    let c = shape[1];
    let bn = BatchNormConfig::default();
    let normalized = &shape[1..];
    let mut out: Vec<(&'static str, Box<dyn Module>, bool)> = if shape.len() == 4 {
        vec![
            ("BatchNorm", Box::new(BatchNorm2d::new(c).unwrap()), true),
            (
                "BatchRenorm",
                Box::new(BatchRenorm2d::with_config(c, bn, renorm_now()).unwrap()),
                true,
            ),
            (
                "GhostBatchNorm",
                Box::new(GhostBatchNorm2d::new(c, GHOST).unwrap()),
                true,
            ),
            (
                "FrozenBatchNorm",
                Box::new(FrozenBatchNorm2d::new(c).unwrap()),
                false,
            ),
            (
                "InstanceNorm",
                Box::new(InstanceNorm2d::new(c).unwrap()),
                true,
            ),
        ]
    } else {
        vec![
            ("BatchNorm", Box::new(BatchNorm1d::new(c).unwrap()), true),
            (
                "BatchRenorm",
                Box::new(BatchRenorm1d::with_config(c, bn, renorm_now()).unwrap()),
                true,
            ),
            (
                "GhostBatchNorm",
                Box::new(GhostBatchNorm1d::new(c, GHOST).unwrap()),
                true,
            ),
            (
                "FrozenBatchNorm",
                Box::new(FrozenBatchNorm1d::new(c).unwrap()),
                false,
            ),
        ]
    };
    out.push(("RMSNorm", Box::new(RmsNorm::new(normalized).unwrap()), true));
    out
}

fn bench_layers(c: &mut Criterion) {
    for shape in LENET_SHAPES {
        let numel: usize = shape.iter().product();
        let x = pattern(shape, 0.01, 3.0);
        let dy = pattern(shape, 0.007, -3.5);
        let mut group = c.benchmark_group(format!("norm_layers {shape:?}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (name, mut layer, trains) in layers(shape) {
            let input = Var::constant(x.clone());
            if trains {
                layer.train();
                group.throughput(Throughput::Bytes(2 * numel as u64 * 4));
                group.bench_function(format!("{name} train forward"), |b| {
                    b.iter(|| no_grad(|| layer.forward(black_box(&input)).unwrap()))
                });
                group.throughput(Throughput::Bytes(5 * numel as u64 * 4));
                // The input's gradient too, as PyTorch's autograd.grad of x, γ, β; x is one
                // leaf for every call, as PyTorch's `x.requires_grad_()`, and the copy of the
                // output gradient `backward_with` takes is made outside the timing.
                let leaf = Param::new(x.clone());
                group.bench_function(format!("{name} train forward+backward"), |b| {
                    b.iter_batched(
                        || dy.clone(),
                        |dy| {
                            let y = layer.forward(&leaf.var()).unwrap();
                            y.backward_with(dy).unwrap();
                            for p in layer.parameters() {
                                p.zero_grad();
                            }
                            let grad = leaf.grad();
                            leaf.zero_grad();
                            grad
                        },
                        BatchSize::LargeInput,
                    )
                });
            }
            layer.eval();
            group.throughput(Throughput::Bytes(2 * numel as u64 * 4));
            group.bench_function(format!("{name} eval forward"), |b| {
                b.iter(|| no_grad(|| layer.forward(black_box(&input)).unwrap()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_layers);
criterion_main!(benches);
