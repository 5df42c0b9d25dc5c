//! Batch-norm kernel throughput at LeNet's shapes and larger ones (issue #3), for
//! `scripts/bench_norm_vs_pytorch.py` and on its own.

mod common;

use std::hint::black_box;

use common::{forward_backward_bytes, forward_bytes, group, input, output_grad, LENET_SHAPES};
use criterion::{criterion_group, criterion_main, Criterion};
use norma_kernels::{backward_train, forward_eval, forward_train};

/// Beyond LeNet's: ResNet-like images and a large 1-D batch, larger than the last-level cache.
const LARGE_SHAPES: [&[usize]; 3] = [&[64, 64, 56, 56], &[32, 256, 28, 28], &[4096, 1024]];

fn bench(c: &mut Criterion) {
    for shape in LENET_SHAPES.into_iter().chain(LARGE_SHAPES) {
        let (x, dy) = (input(shape), output_grad(shape));
        let channels = shape[1];
        let gamma = vec![1.5f32; channels];
        let beta = vec![0.5f32; channels];
        let running_mean = vec![0.1f32; channels];
        let running_var = vec![2.0f32; channels];
        let mut group = group(c, "batch_norm", shape, "");

        group.throughput(forward_bytes(x.len()));
        group.bench_function("train forward", |b| {
            b.iter(|| forward_train(black_box(x.view()), Some(&gamma), Some(&beta), 1e-5).unwrap())
        });
        group.throughput(forward_backward_bytes(x.len()));
        group.bench_function("train forward+backward", |b| {
            b.iter(|| {
                let fwd =
                    forward_train(black_box(x.view()), Some(&gamma), Some(&beta), 1e-5).unwrap();
                backward_train(x.view(), dy.view(), &fwd.stats, Some(&gamma)).unwrap()
            })
        });
        group.throughput(forward_bytes(x.len()));
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
