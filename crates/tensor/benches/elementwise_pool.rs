//! The memory-bound passes of a LeNet training step at batch 256 (sigmoid and its gradient,
//! 2×2 average pooling and its gradient), at each SIMD level this CPU has
//! (`NORMA_BENCH_LEVELS=avx512,avx2` to choose).
//!
//! Criterion's "thrpt" column is in bytes read and written per second (GiB/s).

use std::hint::black_box;

mod common;

use common::levels;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use norma_tensor::{Rng, Sigmoid, Tensor};

/// (name, activation shape): the convolution outputs of LeNet and LeNet-BN.
const SHAPES: &[(&str, [usize; 4])] = &[
    ("256x6x28x28", [256, 6, 28, 28]),
    ("256x6x24x24", [256, 6, 24, 24]),
    ("256x16x10x10", [256, 16, 10, 10]),
    ("256x16x8x8", [256, 16, 8, 8]),
];

fn passes(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(0);
    for &(name, shape) in SHAPES {
        let x = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let y = x.sigmoid();
        let pooled = y.avg_pool2d(2, 2).unwrap();
        let bytes = 4 * x.len() as u64;
        let mut group = c.benchmark_group(format!("pass {name}"));
        group.sample_size(30);
        for level in levels() {
            group.throughput(Throughput::Bytes(2 * bytes));
            group.bench_function(format!("{level} sigmoid"), |b| {
                level.capped(|| b.iter(|| black_box(&x).sigmoid()))
            });
            group.throughput(Throughput::Bytes(4 * bytes));
            group.bench_function(format!("{level} sigmoid grad"), |b| {
                level.capped(|| {
                    b.iter(|| Tensor::unary_backward::<Sigmoid>(black_box(&x), &y, &x).unwrap())
                })
            });
            group.throughput(Throughput::Bytes(bytes + bytes / 4));
            group.bench_function(format!("{level} avg_pool2d"), |b| {
                level.capped(|| b.iter(|| black_box(&y).avg_pool2d(2, 2).unwrap()))
            });
            group.bench_function(format!("{level} avg_pool2d grad"), |b| {
                level.capped(|| {
                    b.iter(|| {
                        black_box(&pooled)
                            .avg_pool2d_backward(&shape, 2, 2)
                            .unwrap()
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, passes);
criterion_main!(benches);
