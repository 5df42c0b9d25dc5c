//! The machine's float32 FMA peak, measured: a loop of independent fused multiply-adds on
//! every rayon thread at once, at the widest SIMD level the CPU has. The fraction of it a
//! kernel reaches says how much faster it could still get; a measured peak also counts what
//! the spec sheet does not (clock under load, a shared or virtual core).

use std::hint::black_box;
use std::time::Instant;

/// Independent accumulators: enough to cover the FMA latency (4 cycles) times the FMA
/// units (2) with room to spare, few enough to stay in registers.
const CHAINS: usize = 12;
/// FMAs per accumulator and call; a call lasts about 10 ms.
const ROUNDS: usize = 2_000_000;

/// GFLOP/s of one thread (2 FLOPs per lane per FMA), and the lanes of the level timed.
fn one_thread() -> (f64, usize) {
    let start = Instant::now();
    let lanes = fma_rounds(ROUNDS);
    let seconds = start.elapsed().as_secs_f64();
    ((2 * CHAINS * lanes * ROUNDS) as f64 / seconds / 1e9, lanes)
}

/// The best of a few runs on every rayon thread at once: (total GFLOP/s, threads, lanes).
pub fn measure() -> (f64, usize, usize) {
    let threads = rayon::current_num_threads();
    let mut best = 0.0f64;
    let mut lanes = 1;
    for _ in 0..5 {
        let each: Vec<(f64, usize)> = rayon::broadcast(|_| one_thread());
        lanes = each[0].1;
        best = best.max(each.iter().map(|e| e.0).sum());
    }
    (best, threads, lanes)
}

/// `rounds` FMAs on each of [`CHAINS`] accumulators at the widest level; returns its lanes.
fn fma_rounds(rounds: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above), all the function needs.
            unsafe { avx512(rounds) };
            return 16;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above), all the function needs.
            unsafe { avx2(rounds) };
            return 8;
        }
    }
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..rounds {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    black_box(acc);
    1
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(rounds: usize) {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    black_box(acc);
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(rounds: usize) {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    black_box(acc);
}
