//! The vector types code is written over: one zero-sized token type per instruction set.
//!
//! A token is a proof that the CPU supports its instructions: only [`crate::dispatch`] makes
//! one, after run-time detection, so its arithmetic methods are safe. Loads and stores through
//! raw pointers stay `unsafe`: their callers guarantee the bounds. Every method is
//! `#[inline(always)]`, so that it is compiled into the dispatched function with that function's
//! target features.

use crate::SimdLevel;

/// f64 lanes of [`Simd::F64s`]: two AVX-512 registers, four AVX2 ones.
pub const WIDE: usize = 16;

/// Arithmetic on vectors of `LANES` f32 values, and on [`WIDE`] f64 lanes.
pub trait Simd: Copy + Send + Sync + 'static {
    /// The level whose instructions the token stands for.
    const LEVEL: SimdLevel;
    /// A vector of `LANES` f32 values.
    type V: Copy;
    /// Lanes per vector (at most 16).
    const LANES: usize;
    /// Vector registers code may plan for.
    const REGISTERS: usize;
    /// [`WIDE`] f64 values in vector registers.
    type F64s: Copy;

    fn splat(self, x: f32) -> Self::V;
    /// `a + b`, rounded once.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b`, rounded once.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b + c`, fused (one rounding) where the instruction set has FMA: results differ
    /// between levels. Use [`Simd::mul`] and [`Simd::add`] for the same bits everywhere.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The sum of the lanes, always added in the same order.
    fn reduce_sum(self, v: Self::V) -> f32;

    /// Loads `LANES` values from `p` (any alignment).
    ///
    /// # Safety
    /// `p .. p + LANES` must be readable.
    unsafe fn load(self, p: *const f32) -> Self::V;

    /// Stores `LANES` values at `p` (any alignment).
    ///
    /// # Safety
    /// `p .. p + LANES` must be writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);

    #[inline(always)]
    fn zero(self) -> Self::V {
        self.splat(0.0)
    }

    /// Loads the first `n <= LANES` values from `p`; the other lanes are zero.
    ///
    /// # Safety
    /// `p .. p + n` must be readable.
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> Self::V {
        debug_assert!(n <= Self::LANES);
        let mut buf = [0.0f32; 16];
        // SAFETY: the caller guarantees `n` readable values; `buf` holds 16 >= n.
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            self.load(buf.as_ptr())
        }
    }

    /// Stores the first `n <= LANES` lanes of `v` at `p`.
    ///
    /// # Safety
    /// `p .. p + n` must be writable.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: Self::V, n: usize) {
        debug_assert!(n <= Self::LANES);
        let mut buf = [0.0f32; 16];
        // SAFETY: `buf` holds 16 >= LANES values; the caller guarantees `n` writable ones.
        unsafe {
            self.store(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }

    /// [`WIDE`] copies of `v`.
    fn f64_splat(self, v: f64) -> Self::F64s;
    /// [`WIDE`] f64 values, in order.
    fn f64_load(self, x: &[f64; WIDE]) -> Self::F64s;
    /// [`WIDE`] f32 values, widened to f64 (exactly).
    fn f64_widen(self, x: &[f32; WIDE]) -> Self::F64s;
    /// Lane by lane `a + b`, rounded once.
    fn f64_add(self, a: Self::F64s, b: Self::F64s) -> Self::F64s;
    /// Lane by lane `a − b`, rounded once.
    fn f64_sub(self, a: Self::F64s, b: Self::F64s) -> Self::F64s;
    /// Lane by lane `a · b`, rounded once.
    fn f64_mul(self, a: Self::F64s, b: Self::F64s) -> Self::F64s;
    /// The lanes, in order.
    fn f64_to_array(self, v: Self::F64s) -> [f64; WIDE];

    /// The sum of the lanes as a balanced tree: lane i + lane i+8, then i + i+4, i + i+2 and
    /// the last two, ((l0 + l8) + (l4 + l12)) + ((l2 + l10) + (l6 + l14)) + …, the same
    /// additions in the same order at every level (on vector halves where the level has them).
    #[inline(always)]
    fn f64_sum_tree(self, v: Self::F64s) -> f64 {
        sum_tree(self.f64_to_array(v))
    }
}

/// The sum of [`WIDE`] values as the balanced tree of [`Simd::f64_sum_tree`], in plain f64.
#[inline(always)]
pub fn sum_tree(mut lanes: [f64; WIDE]) -> f64 {
    let mut width = WIDE;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// Plain Rust on 4-lane arrays, which the compiler maps to the target's baseline vectors
/// (SSE2 on x86-64). Multiply and add are rounded separately, also in `mul_add`.
#[derive(Debug, Clone, Copy)]
pub struct Portable(());

impl Portable {
    /// The portable token needs no CPU feature.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Portable(())
    }
}

impl Simd for Portable {
    const LEVEL: SimdLevel = SimdLevel::Portable;
    type V = [f32; 4];
    const LANES: usize = 4;
    const REGISTERS: usize = 16;
    type F64s = [f64; WIDE];

    #[inline(always)]
    fn splat(self, x: f32) -> [f32; 4] {
        [x; 4]
    }
    #[inline(always)]
    fn add(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn mul_add(self, a: [f32; 4], b: [f32; 4], c: [f32; 4]) -> [f32; 4] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn reduce_sum(self, v: [f32; 4]) -> f32 {
        (v[0] + v[2]) + (v[1] + v[3])
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> [f32; 4] {
        // SAFETY: the caller guarantees 4 readable values.
        unsafe { p.cast::<[f32; 4]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: [f32; 4]) {
        // SAFETY: the caller guarantees 4 writable values.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(v) }
    }

    #[inline(always)]
    fn f64_splat(self, v: f64) -> [f64; WIDE] {
        [v; WIDE]
    }
    #[inline(always)]
    fn f64_load(self, x: &[f64; WIDE]) -> [f64; WIDE] {
        *x
    }
    #[inline(always)]
    fn f64_widen(self, x: &[f32; WIDE]) -> [f64; WIDE] {
        std::array::from_fn(|l| x[l] as f64)
    }
    #[inline(always)]
    fn f64_add(self, a: [f64; WIDE], b: [f64; WIDE]) -> [f64; WIDE] {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    fn f64_sub(self, a: [f64; WIDE], b: [f64; WIDE]) -> [f64; WIDE] {
        std::array::from_fn(|l| a[l] - b[l])
    }
    #[inline(always)]
    fn f64_mul(self, a: [f64; WIDE], b: [f64; WIDE]) -> [f64; WIDE] {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    fn f64_to_array(self, v: [f64; WIDE]) -> [f64; WIDE] {
        v
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Simd, WIDE};
    use crate::SimdLevel;

    /// AVX2 with FMA: 8 lanes. `REGS` is 16, or 32 when AVX-512VL is also enabled (the same
    /// instructions then reach 32 registers).
    #[derive(Debug, Clone, Copy)]
    pub struct Avx2<const REGS: usize>(());

    impl<const REGS: usize> Avx2<REGS> {
        /// # Safety
        /// The CPU must support AVX2 and FMA (and AVX-512VL if `REGS` is 32), and the code using
        /// the token must be compiled with those features (see `crate::dispatch`).
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Self {
            Avx2(())
        }
    }

    /// Sum of the 8 lanes: halves, then pairs, then the last two (a fixed order).
    ///
    /// # Safety
    /// The CPU must support AVX (callers hold a token that proves it).
    #[inline(always)]
    unsafe fn sum8(v: __m256) -> f32 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
        }
    }

    /// Sum of 4 f64 lanes: (l0 + l2) + (l1 + l3).
    ///
    /// # Safety
    /// The CPU must support AVX (callers hold a token that proves it).
    #[inline(always)]
    unsafe fn sum4(v: __m256d) -> f64 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            let pair = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
            _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
        }
    }

    // SAFETY (every `unsafe` block below): the token exists only if the CPU supports AVX2 and
    // FMA (see `new_unchecked`); pointer bounds are the caller's contract, stated on the trait,
    // and `&[f32; WIDE]` (`&[f64; WIDE]`) references hold the 16 values the widening loads (the
    // f64 loads) read.
    impl<const REGS: usize> Simd for Avx2<REGS> {
        /// The 32-register token runs inside code compiled for AVX-512 (its narrow vectors).
        const LEVEL: SimdLevel = if REGS == 32 {
            SimdLevel::Avx512
        } else {
            SimdLevel::Avx2
        };
        type V = __m256;
        const LANES: usize = 8;
        const REGISTERS: usize = REGS;
        type F64s = [__m256d; 4];

        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m256) -> f32 {
            unsafe { sum8(v) }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }

        #[inline(always)]
        fn f64_splat(self, v: f64) -> [__m256d; 4] {
            unsafe { [_mm256_set1_pd(v); 4] }
        }
        #[inline(always)]
        fn f64_load(self, x: &[f64; WIDE]) -> [__m256d; 4] {
            // Offsets 0, 4, 8 and 12 of the 16-value array.
            let p = x.as_ptr();
            unsafe {
                [
                    _mm256_loadu_pd(p),
                    _mm256_loadu_pd(p.add(4)),
                    _mm256_loadu_pd(p.add(8)),
                    _mm256_loadu_pd(p.add(12)),
                ]
            }
        }
        #[inline(always)]
        fn f64_widen(self, x: &[f32; WIDE]) -> [__m256d; 4] {
            let p = x.as_ptr();
            // Four loads of 4 floats at offsets 0, 4, 8, 12: inside the array.
            unsafe {
                [
                    _mm256_cvtps_pd(_mm_loadu_ps(p)),
                    _mm256_cvtps_pd(_mm_loadu_ps(p.add(4))),
                    _mm256_cvtps_pd(_mm_loadu_ps(p.add(8))),
                    _mm256_cvtps_pd(_mm_loadu_ps(p.add(12))),
                ]
            }
        }
        #[inline(always)]
        fn f64_add(self, a: [__m256d; 4], b: [__m256d; 4]) -> [__m256d; 4] {
            unsafe {
                [
                    _mm256_add_pd(a[0], b[0]),
                    _mm256_add_pd(a[1], b[1]),
                    _mm256_add_pd(a[2], b[2]),
                    _mm256_add_pd(a[3], b[3]),
                ]
            }
        }
        #[inline(always)]
        fn f64_sub(self, a: [__m256d; 4], b: [__m256d; 4]) -> [__m256d; 4] {
            unsafe {
                [
                    _mm256_sub_pd(a[0], b[0]),
                    _mm256_sub_pd(a[1], b[1]),
                    _mm256_sub_pd(a[2], b[2]),
                    _mm256_sub_pd(a[3], b[3]),
                ]
            }
        }
        #[inline(always)]
        fn f64_mul(self, a: [__m256d; 4], b: [__m256d; 4]) -> [__m256d; 4] {
            unsafe {
                [
                    _mm256_mul_pd(a[0], b[0]),
                    _mm256_mul_pd(a[1], b[1]),
                    _mm256_mul_pd(a[2], b[2]),
                    _mm256_mul_pd(a[3], b[3]),
                ]
            }
        }
        #[inline(always)]
        fn f64_to_array(self, v: [__m256d; 4]) -> [f64; WIDE] {
            let mut out = [0.0f64; WIDE];
            for (i, v) in v.into_iter().enumerate() {
                // Offsets 0, 4, 8 and 12 of a 16-value array.
                unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * i), v) };
            }
            out
        }
        #[inline(always)]
        fn f64_sum_tree(self, v: [__m256d; 4]) -> f64 {
            // Lanes 0..4 of v[0] + v[2] and v[1] + v[3] are lane i + lane i+8; their sum is
            // i + i+4; then the 128-bit halves (i + i+2) and the last two.
            unsafe {
                sum4(_mm256_add_pd(
                    _mm256_add_pd(v[0], v[2]),
                    _mm256_add_pd(v[1], v[3]),
                ))
            }
        }
    }

    /// AVX-512F: 16 lanes, 32 registers.
    #[derive(Debug, Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        /// # Safety
        /// The CPU must support AVX-512 F, BW, DQ and VL, AVX2 and FMA, and the code using the
        /// token must be compiled with those features (see `crate::dispatch`).
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Self {
            Avx512(())
        }
    }

    // SAFETY (every `unsafe` block below): the token exists only if the CPU supports AVX-512F
    // (see `new_unchecked`); pointer bounds are the caller's contract, stated on the trait, and
    // `&[f32; WIDE]` (`&[f64; WIDE]`) references hold the 16 values the widening loads (the f64
    // loads) read.
    impl Simd for Avx512 {
        const LEVEL: SimdLevel = SimdLevel::Avx512;
        type V = __m512;
        const LANES: usize = 16;
        const REGISTERS: usize = 32;
        type F64s = [__m512d; 2];

        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m512) -> f32 {
            unsafe {
                let lo = _mm512_castps512_ps256(v);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                sum8(_mm256_add_ps(lo, hi))
            }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn load_partial(self, p: *const f32, n: usize) -> __m512 {
            debug_assert!(n <= 16);
            unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
        }
        #[inline(always)]
        unsafe fn store_partial(self, p: *mut f32, v: __m512, n: usize) {
            debug_assert!(n <= 16);
            unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
        }

        #[inline(always)]
        fn f64_splat(self, v: f64) -> [__m512d; 2] {
            unsafe { [_mm512_set1_pd(v); 2] }
        }
        #[inline(always)]
        fn f64_load(self, x: &[f64; WIDE]) -> [__m512d; 2] {
            // Offsets 0 and 8 of the 16-value array.
            unsafe {
                [
                    _mm512_loadu_pd(x.as_ptr()),
                    _mm512_loadu_pd(x.as_ptr().add(8)),
                ]
            }
        }
        #[inline(always)]
        fn f64_widen(self, x: &[f32; WIDE]) -> [__m512d; 2] {
            let p = x.as_ptr();
            // Two loads of 8 floats, both inside the 16-float array.
            unsafe {
                [
                    _mm512_cvtps_pd(_mm256_loadu_ps(p)),
                    _mm512_cvtps_pd(_mm256_loadu_ps(p.add(8))),
                ]
            }
        }
        #[inline(always)]
        fn f64_add(self, a: [__m512d; 2], b: [__m512d; 2]) -> [__m512d; 2] {
            unsafe { [_mm512_add_pd(a[0], b[0]), _mm512_add_pd(a[1], b[1])] }
        }
        #[inline(always)]
        fn f64_sub(self, a: [__m512d; 2], b: [__m512d; 2]) -> [__m512d; 2] {
            unsafe { [_mm512_sub_pd(a[0], b[0]), _mm512_sub_pd(a[1], b[1])] }
        }
        #[inline(always)]
        fn f64_mul(self, a: [__m512d; 2], b: [__m512d; 2]) -> [__m512d; 2] {
            unsafe { [_mm512_mul_pd(a[0], b[0]), _mm512_mul_pd(a[1], b[1])] }
        }
        #[inline(always)]
        fn f64_to_array(self, v: [__m512d; 2]) -> [f64; WIDE] {
            let mut out = [0.0f64; WIDE];
            // Offsets 0 and 8 of a 16-value array.
            unsafe {
                _mm512_storeu_pd(out.as_mut_ptr(), v[0]);
                _mm512_storeu_pd(out.as_mut_ptr().add(8), v[1]);
            }
            out
        }
        #[inline(always)]
        fn f64_sum_tree(self, v: [__m512d; 2]) -> f64 {
            // v[0] + v[1] is lane i + lane i+8; then the 256-bit halves (i + i+4), and so on.
            unsafe {
                let eight = _mm512_add_pd(v[0], v[1]);
                let lo = _mm512_castpd512_pd256(eight);
                sum4(_mm256_add_pd(lo, _mm512_extractf64x4_pd::<1>(eight)))
            }
        }
    }
}
