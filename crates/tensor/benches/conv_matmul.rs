//! Convolutions and matrix products of a LeNet training step at batch 256, at each SIMD level
//! this CPU has (`NORMA_BENCH_LEVELS=avx512,avx2` to choose).
//!
//! Criterion's "thrpt" column is set to FLOP/s (reported as "elem/s": read Gelem/s as
//! GFLOP/s). FLOPs count 2 per multiply-add; each gradient of a convolution has the forward's
//! FLOPs.

use std::hint::black_box;

mod common;

use common::levels;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use norma_tensor::{Conv2dGeometry, Rng, Tensor};

const BATCH: usize = 256;

/// (name, input (C, H, W), output channels, padding)
const CONVS: &[(&str, [usize; 3], usize, usize)] = &[
    ("conv1 1->6 28x28 pad2", [1, 28, 28], 6, 2),
    ("conv1 1->6 28x28", [1, 28, 28], 6, 0),
    ("conv2 6->16 14x14", [6, 14, 14], 16, 0),
    ("conv2 6->16 12x12", [6, 12, 12], 16, 0),
];

/// (name, batch, in, out): LeNet's linear layers.
const LINEARS: &[(&str, usize, usize, usize)] = &[
    ("fc1 400->120", BATCH, 400, 120),
    ("fc1 256->120", BATCH, 256, 120),
    ("fc2 120->84", BATCH, 120, 84),
    ("fc3 84->10", BATCH, 84, 10),
];

fn convolutions(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(0);
    for &(name, [ch, h, w], out, pad) in CONVS {
        let x = Tensor::rand_normal(&[BATCH, ch, h, w], 0.0, 1.0, &mut rng);
        let wt = Tensor::rand_normal(&[out, ch, 5, 5], 0.0, 0.1, &mut rng);
        let b = Tensor::zeros(&[out]);
        let g = Conv2dGeometry::new(x.shape(), wt.shape(), 1, pad).unwrap();
        let flops = 2 * g.forward_macs() as u64;
        let y = x.conv2d(&wt, Some(&b), 1, pad).unwrap();
        let mut group = c.benchmark_group(format!("conv2d {name}"));
        group.sample_size(20);
        group.throughput(Throughput::Elements(flops));
        for level in levels() {
            group.bench_function(format!("{level} forward"), |bch| {
                level.capped(|| bch.iter(|| black_box(&x).conv2d(&wt, Some(&b), 1, pad).unwrap()))
            });
            group.bench_function(format!("{level} input grad"), |bch| {
                level.capped(|| {
                    bch.iter(|| {
                        black_box(&y)
                            .conv2d_backward_input(&wt, x.shape(), 1, pad)
                            .unwrap()
                    })
                })
            });
            group.bench_function(format!("{level} weight grad"), |bch| {
                level.capped(|| {
                    bch.iter(|| {
                        black_box(&y)
                            .conv2d_backward_params(&x, wt.shape(), 1, pad)
                            .unwrap()
                    })
                })
            });
        }
        group.finish();
    }
}

fn linears(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(1);
    for &(name, n, inputs, outputs) in LINEARS {
        let x = Tensor::rand_normal(&[n, inputs], 0.0, 1.0, &mut rng);
        let w = Tensor::rand_normal(&[outputs, inputs], 0.0, 1.0, &mut rng);
        let g = Tensor::rand_normal(&[n, outputs], 0.0, 1.0, &mut rng);
        let mut group = c.benchmark_group(format!("linear {name}"));
        group.throughput(Throughput::Elements(2 * (n * inputs * outputs) as u64));
        for level in levels() {
            group.bench_function(format!("{level} x·wᵀ"), |bch| {
                level.capped(|| bch.iter(|| black_box(&x).matmul_t(false, &w, true).unwrap()))
            });
            group.bench_function(format!("{level} g·w"), |bch| {
                level.capped(|| bch.iter(|| black_box(&g).matmul(&w).unwrap()))
            });
            group.bench_function(format!("{level} gᵀ·x"), |bch| {
                level.capped(|| bch.iter(|| black_box(&g).matmul_t(true, &x, false).unwrap()))
            });
        }
        group.finish();
    }
    let a = Tensor::rand_normal(&[512, 512], 0.0, 1.0, &mut rng);
    let mut group = c.benchmark_group("matmul square 512");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2 * 512u64.pow(3)));
    for level in levels() {
        group.bench_function(format!("{level} a·a"), |bch| {
            level.capped(|| bch.iter(|| black_box(&a).matmul(&a).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, convolutions, linears);
criterion_main!(benches);
