//! Group-norm and layer-norm kernel throughput at the shapes of LeNet-GN and LeNet-LN at batch
//! 256 (`norma_layers::models::ModelKind`), for `scripts/bench_norm_vs_pytorch.py` and on its
//! own. There is no train/eval distinction: both compute the same thing.

mod common;

use std::hint::black_box;

use common::{forward_backward_bytes, forward_bytes, group, input, output_grad, LENET_SHAPES};
use criterion::{criterion_group, criterion_main, Criterion};
use norma_kernels::{
    group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward,
};

/// LeNet-GN's groups after conv1, conv2, fc1 and fc2 (the order of `LENET_SHAPES`).
const GN_GROUPS: [usize; 4] = [2, 4, 4, 4];

fn bench_group_norm(c: &mut Criterion) {
    for (shape, groups) in LENET_SHAPES.into_iter().zip(GN_GROUPS) {
        let (x, dy) = (input(shape), output_grad(shape));
        let gamma = vec![1.5f32; shape[1]];
        let beta = vec![0.5f32; shape[1]];
        let mut group = group(c, "group_norm", shape, &format!(" {groups} groups"));
        let forward = || {
            group_norm_forward(black_box(x.view()), groups, Some(&gamma), Some(&beta), 1e-5)
                .unwrap()
        };
        group.throughput(forward_bytes(x.len()));
        group.bench_function("forward", |b| b.iter(forward));
        group.throughput(forward_backward_bytes(x.len()));
        group.bench_function("forward+backward", |b| {
            b.iter(|| {
                let fwd = forward();
                group_norm_backward(x.view(), dy.view(), &fwd.stats, Some(&gamma)).unwrap()
            })
        });
        group.finish();
    }
}

fn bench_layer_norm(c: &mut Criterion) {
    for shape in LENET_SHAPES {
        let (x, dy) = (input(shape), output_grad(shape));
        let normalized = &shape[1..];
        let d: usize = normalized.iter().product();
        let gamma = vec![1.5f32; d];
        let beta = vec![0.5f32; d];
        let mut group = group(c, "layer_norm", shape, &format!(" over {normalized:?}"));
        let forward = || {
            layer_norm_forward(
                black_box(x.view()),
                normalized,
                Some(&gamma),
                Some(&beta),
                1e-5,
            )
            .unwrap()
        };
        group.throughput(forward_bytes(x.len()));
        group.bench_function("forward", |b| b.iter(forward));
        group.throughput(forward_backward_bytes(x.len()));
        group.bench_function("forward+backward", |b| {
            b.iter(|| {
                let fwd = forward();
                layer_norm_backward(x.view(), dy.view(), normalized, &fwd.stats, Some(&gamma))
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_group_norm, bench_layer_norm);
criterion_main!(benches);
