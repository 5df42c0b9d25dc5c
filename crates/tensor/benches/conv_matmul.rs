//! Matmul and conv2d (forward, input gradient, weight gradient) at LeNet's shapes, batch 256.
//!
//! Criterion's "thrpt" column is set to FLOP/s (reported as "elem/s": read Gelem/s as
//! GFLOP/s). FLOPs count 2 per multiply-add; the backward pass of a convolution has the
//! forward's FLOPs once for the input gradient and once for the weight gradient.

use std::hint::black_box;

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

/// (name, m, k, n): LeNet's linear layers (forward x·Wᵀ and the two backward products).
const MATMULS: &[(&str, usize, usize, usize)] = &[
    ("fc1 256x400x120", BATCH, 400, 120),
    ("fc1 256x256x120", BATCH, 256, 120),
    ("fc2 256x120x84", BATCH, 120, 84),
    ("square 512", 512, 512, 512),
];

fn bench(c: &mut Criterion) {
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
        group.bench_function("forward", |bch| {
            bch.iter(|| black_box(&x).conv2d(&wt, Some(&b), 1, pad).unwrap())
        });
        group.bench_function("input grad", |bch| {
            bch.iter(|| {
                black_box(&y)
                    .conv2d_backward_input(&wt, x.shape(), 1, pad)
                    .unwrap()
            })
        });
        group.bench_function("weight grad", |bch| {
            bch.iter(|| {
                black_box(&y)
                    .conv2d_backward_params(&x, wt.shape(), 1, pad)
                    .unwrap()
            })
        });
        group.throughput(Throughput::Elements(3 * flops));
        group.bench_function("forward+backward", |bch| {
            bch.iter(|| {
                let y = black_box(&x).conv2d(&wt, Some(&b), 1, pad).unwrap();
                let dx = y.conv2d_backward_input(&wt, x.shape(), 1, pad).unwrap();
                (
                    dx,
                    y.conv2d_backward_params(&x, wt.shape(), 1, pad).unwrap(),
                )
            })
        });
        group.finish();
    }
    for &(name, m, k, n) in MATMULS {
        let a = Tensor::rand_normal(&[m, k], 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[k, n], 0.0, 1.0, &mut rng);
        let mut group = c.benchmark_group(format!("matmul {name}"));
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        group.bench_function("a·b", |bch| bch.iter(|| black_box(&a).matmul(&b).unwrap()));
        group.bench_function("aᵀ·(a·b)", |bch| {
            let ab = a.matmul(&b).unwrap();
            bch.iter(|| black_box(&a).matmul_t(true, &ab, false).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
