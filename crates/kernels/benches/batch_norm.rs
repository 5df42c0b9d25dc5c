//! Batch-norm kernel throughput at the shapes of issue #3 (and PyTorch's `torch_bn_bench.py`).
//!
//! Effective bytes, as in the PyTorch reference: forward 2 × numel × 4 (read x, write y),
//! forward + backward 5 × numel × 4. Criterion reports them as GB/s ("thrpt").

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use norma_kernels::{backward_train, forward_eval, forward_train};

const SHAPES: &[&[usize]] = &[
    &[256, 6, 24, 24],
    &[256, 16, 8, 8],
    &[64, 64, 56, 56],
    &[32, 256, 28, 28],
    &[256, 120],
    &[4096, 1024],
];

fn input(shape: &[usize]) -> ArrayD<f32> {
    // A cheap deterministic pattern with a non-zero mean per channel; values do not affect speed.
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + 3.0)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

fn bench(c: &mut Criterion) {
    for shape in SHAPES {
        let x = input(shape);
        // An output gradient unrelated to x (a dy linear in x would be the cancelling case that the
        // backward evaluates in f64).
        let dy = input(shape).mapv(|v| ((v * 977.0) % 7.0) - 3.5);
        let channels = shape[1];
        let gamma = vec![1.5f32; channels];
        let beta = vec![0.5f32; channels];
        let running_mean = vec![0.1f32; channels];
        let running_var = vec![2.0f32; channels];
        let bytes = (x.len() * 4) as u64;
        let name = format!("{shape:?}");
        let mut group = c.benchmark_group(format!("batch_norm {name}"));
        group.sample_size(30);

        group.throughput(Throughput::Bytes(2 * bytes));
        group.bench_function("train forward", |b| {
            b.iter(|| forward_train(black_box(x.view()), Some(&gamma), Some(&beta), 1e-5).unwrap())
        });
        group.throughput(Throughput::Bytes(5 * bytes));
        group.bench_function("train forward+backward", |b| {
            b.iter(|| {
                let fwd =
                    forward_train(black_box(x.view()), Some(&gamma), Some(&beta), 1e-5).unwrap();
                backward_train(x.view(), dy.view(), &fwd.stats, Some(&gamma)).unwrap()
            })
        });
        group.throughput(Throughput::Bytes(2 * bytes));
        group.bench_function("eval forward", |b| {
            b.iter(|| {
                forward_eval(
                    black_box(x.view()),
                    &running_mean,
                    &running_var,
                    Some(&gamma),
                    Some(&beta),
                    1e-5,
                )
                .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
