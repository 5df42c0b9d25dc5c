//! What the kernel benches share: LeNet's shapes, deterministic inputs, and the effective bytes
//! that criterion turns into GB/s ("thrpt").
//!
//! Effective bytes, as in `scripts/bench_norm_vs_pytorch.py`: forward 2 × numel × 4 (read x,
//! write y), forward + backward 5 × numel × 4 (the forward's, then read x and dy, write dx).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};

/// The outputs of LeNet's four normalized layers at batch 256: conv1, conv2, fc1, fc2.
pub const LENET_SHAPES: [&[usize]; 4] =
    [&[256, 6, 24, 24], &[256, 16, 8, 8], &[256, 120], &[256, 84]];

/// Effective bytes moved by a forward pass over `numel` values.
pub fn forward_bytes(numel: usize) -> Throughput {
    Throughput::Bytes(2 * numel as u64 * 4)
}

/// Effective bytes moved by a forward and a backward pass over `numel` values.
pub fn forward_backward_bytes(numel: usize) -> Throughput {
    Throughput::Bytes(5 * numel as u64 * 4)
}

/// A cheap deterministic pattern with a non-zero mean; the values do not affect the speed.
pub fn input(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + 3.0)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

/// An output gradient unrelated to [`input`]: a dy linear in x would be the cancelling case that
/// the backward kernels evaluate in f64, not the common one.
pub fn output_grad(shape: &[usize]) -> ArrayD<f32> {
    input(shape).mapv(|v| ((v * 977.0) % 7.0) - 3.5)
}

/// A benchmark group named `<kernel> <shape><detail>`, with 30 samples.
pub fn group<'a>(
    c: &'a mut Criterion,
    kernel: &str,
    shape: &[usize],
    detail: &str,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(format!("{kernel} {shape:?}{detail}"));
    group.sample_size(30);
    group
}
