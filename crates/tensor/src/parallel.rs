//! Elementwise loops split over rayon in fixed-size chunks, each compiled for every SIMD level
//! and run at the caller's level (see [`norma_simd`]).
//!
//! Chunk boundaries never depend on the number of threads, so any reduction built on them
//! combines the same partial results in the same order on 1 or 64 threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use norma_simd::{vectorized, SimdLevel};

/// Elements per rayon task: big enough to amortise scheduling (~10 µs of work),
/// small enough to spread LeNet's activations over both cores.
pub(crate) const CHUNK: usize = 1 << 15;

/// `dst[i] = f(src[i])`, initialising every element of `dst`.
pub(crate) fn map_into(src: &[f32], dst: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32 + Sync) {
    assert_eq!(src.len(), dst.len());
    let level = SimdLevel::current();
    let kernel = |(s, d): (&[f32], &mut [MaybeUninit<f32>])| {
        vectorized(level, || {
            for (d, &s) in d.iter_mut().zip(s) {
                d.write(f(s));
            }
        })
    };
    if src.len() <= CHUNK {
        kernel((src, dst));
    } else {
        src.par_chunks(CHUNK)
            .zip(dst.par_chunks_mut(CHUNK))
            .for_each(kernel);
    }
}

/// `dst[i] = f(a[i], b[i])`, initialising every element of `dst`.
pub(crate) fn zip_map_into(
    a: &[f32],
    b: &[f32],
    dst: &mut [MaybeUninit<f32>],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    assert!(a.len() == dst.len() && b.len() == dst.len());
    let level = SimdLevel::current();
    let kernel = |a: &[f32], b: &[f32], d: &mut [MaybeUninit<f32>]| {
        vectorized(level, || {
            for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                d.write(f(a, b));
            }
        })
    };
    if dst.len() <= CHUNK {
        kernel(a, b, dst);
    } else {
        a.par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .zip(dst.par_chunks_mut(CHUNK))
            .for_each(|((a, b), d)| kernel(a, b, d));
    }
}

/// `dst[i] = f(a[i], b[i], c[i])`, initialising every element of `dst`.
pub(crate) fn zip3_map_into(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    dst: &mut [MaybeUninit<f32>],
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) {
    assert!(a.len() == dst.len() && b.len() == dst.len() && c.len() == dst.len());
    let level = SimdLevel::current();
    let kernel = |a: &[f32], b: &[f32], c: &[f32], d: &mut [MaybeUninit<f32>]| {
        vectorized(level, || {
            for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
                d.write(f(a, b, c));
            }
        })
    };
    if dst.len() <= CHUNK {
        kernel(a, b, c, dst);
    } else {
        a.par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .zip(c.par_chunks(CHUNK))
            .zip(dst.par_chunks_mut(CHUNK))
            .for_each(|(((a, b), c), d)| kernel(a, b, c, d));
    }
}

/// `dst[i] = f(dst[i], src[i])`, in place.
pub(crate) fn update_with(dst: &mut [f32], src: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert_eq!(src.len(), dst.len());
    let level = SimdLevel::current();
    let kernel = |(d, s): (&mut [f32], &[f32])| {
        vectorized(level, || {
            for (d, &s) in d.iter_mut().zip(s) {
                *d = f(*d, s);
            }
        })
    };
    if dst.len() <= CHUNK {
        kernel((dst, src));
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(kernel);
    }
}
