//! Every convolution of a ResNet-20 training step on Fashion-MNIST (batch 128, 1×28×28, 3×3
//! convolutions with padding 1 and no bias, 1×1 projections of stride 2), forward and both
//! gradients, at each SIMD level this CPU has (`NORMA_BENCH_LEVELS=avx512,avx2` to choose)
//! and the thread count rayon uses (`RAYON_NUM_THREADS`).
//!
//! Criterion's "thrpt" column is FLOP/s (read Gelem/s as GFLOP/s; 2 FLOPs per multiply-add,
//! each gradient with the forward's FLOPs). After each shape the bench also prints the median
//! of criterion's own samples as GFLOP/s and as a fraction of the machine's float32 FMA peak,
//! measured first with a loop of independent FMAs on every thread ([`peak`]). At the end it
//! prints what the convolutions of one ResNet-20 step cost at each level: every shape's three
//! passes times how many the network has (six 16→16, five 32→32, five 64→64, one of each other),
//! in ms and as shares of the step's convolution FLOPs and time.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
#[path = "common/peak.rs"]
mod peak;

use common::levels;
use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use norma_tensor::{Conv2dGeometry, Rng, SimdLevel, Tensor};

const BATCH: usize = 128;

/// (name, input (C, H, W), output channels, kernel, stride, padding, how many ResNet-20 has).
type Conv = (&'static str, [usize; 3], usize, usize, usize, usize, usize);

/// Each distinct convolution of ResNet-20 at 28×28 (the stem, the three stages' 3×3
/// convolutions, the strided first convolutions of stages 2 and 3, and their 1×1 projection
/// shortcuts).
const CONVS: &[Conv] = &[
    ("stem 1->16 28x28", [1, 28, 28], 16, 3, 1, 1, 1),
    ("16->16 28x28", [16, 28, 28], 16, 3, 1, 1, 6),
    ("16->32 stride 2", [16, 28, 28], 32, 3, 2, 1, 1),
    ("32->32 14x14", [32, 14, 14], 32, 3, 1, 1, 5),
    ("32->64 stride 2", [32, 14, 14], 64, 3, 2, 1, 1),
    ("64->64 7x7", [64, 7, 7], 64, 3, 1, 1, 5),
    ("proj 16->32 1x1 stride 2", [16, 28, 28], 32, 1, 2, 0, 1),
    ("proj 32->64 1x1 stride 2", [32, 14, 14], 64, 1, 2, 0, 1),
];

/// Times `f` through criterion and keeps each sample's seconds per call in `samples`.
fn timed<R>(b: &mut Bencher, samples: &RefCell<Vec<f64>>, mut f: impl FnMut() -> R) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let elapsed = start.elapsed();
        samples
            .borrow_mut()
            .push(elapsed.as_secs_f64() / iters.max(1) as f64);
        elapsed
    });
}

/// The median of `samples` (criterion's warm-up calls included; they are few).
fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn convolutions(c: &mut Criterion) {
    let (peak, threads, lanes) = peak::measure();
    println!("float32 FMA peak: {peak:.0} GFLOP/s on {threads} thread(s) ({lanes} lanes per FMA)");
    let mut rng = Rng::seed_from_u64(0);
    let levels = levels();
    // Per level: (name, FLOPs, seconds) of each shape's three passes times its count.
    let mut step = vec![Vec::new(); levels.len()];
    for &(name, [ch, h, w], out, k, stride, pad, count) in CONVS {
        let x = Tensor::rand_normal(&[BATCH, ch, h, w], 0.0, 1.0, &mut rng);
        let wt = Tensor::rand_normal(&[out, ch, k, k], 0.0, 0.1, &mut rng);
        let g = Conv2dGeometry::new(x.shape(), wt.shape(), stride, pad).unwrap();
        let flops = 2 * g.forward_macs() as u64;
        let y = x.conv2d(&wt, None, stride, pad).unwrap();
        let mut group = c.benchmark_group(format!("resnet20 conv {name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(flops));
        let mut report = Vec::new();
        for (at, &level) in levels.iter().enumerate() {
            let mut seconds_of_passes = 0.0;
            let ops: [(&str, &dyn Fn() -> Tensor); 3] = [
                ("forward", &|| {
                    black_box(&x).conv2d(&wt, None, stride, pad).unwrap()
                }),
                ("input grad", &|| {
                    black_box(&y)
                        .conv2d_backward_input(&wt, x.shape(), stride, pad)
                        .unwrap()
                }),
                ("weight grad", &|| {
                    black_box(&y)
                        .conv2d_backward_params(&x, wt.shape(), stride, pad)
                        .unwrap()
                        .0
                }),
            ];
            for (op, f) in ops {
                let samples = RefCell::new(Vec::new());
                group.bench_function(format!("{level} {op}"), |b| {
                    level.capped(|| timed(b, &samples, f))
                });
                let seconds = median(&samples.borrow());
                report.push((format!("{level} {op}"), flops as f64 / seconds / 1e9));
                seconds_of_passes += seconds;
            }
            let n = count as f64;
            step[at].push((name, n * 3.0 * flops as f64, n * seconds_of_passes));
        }
        group.finish();
        for (what, gflops) in report {
            if gflops.is_nan() {
                // `--test` runs each function once, outside iter_custom's timing.
                println!("  {name}, {what}: not timed");
                continue;
            }
            println!(
                "  {name}, {what}: {gflops:.1} GFLOP/s, {:.0} % of the FMA peak",
                100.0 * gflops / peak
            );
        }
    }
    print_step(&levels, &step);
}

/// Prints, per level, what the convolutions of one ResNet-20 training step cost: each shape's
/// three passes times how many the network has, and its share of the step's convolution FLOPs
/// and time.
fn print_step(levels: &[SimdLevel], step: &[Vec<(&str, f64, f64)>]) {
    for (level, convs) in levels.iter().zip(step) {
        let flops: f64 = convs.iter().map(|c| c.1).sum();
        let seconds: f64 = convs.iter().map(|c| c.2).sum();
        if !seconds.is_finite() {
            continue;
        }
        println!(
            "ResNet-20 step (batch {BATCH}), {level}: convolutions {:.1} GFLOP in {:.1} ms",
            flops / 1e9,
            seconds * 1e3
        );
        for (name, f, t) in convs {
            println!(
                "  {name}: {:.1} ms, {:.1} % of the FLOPs, {:.1} % of the time",
                t * 1e3,
                100.0 * f / flops,
                100.0 * t / seconds
            );
        }
    }
}

criterion_group!(benches, convolutions);
criterion_main!(benches);
