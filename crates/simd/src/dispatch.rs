//! Running code written once over [`Simd`] with the instructions of a level.

use crate::{Portable, Simd, SimdLevel};

/// A computation written once over any vector token, run by [`dispatch`] with the token and
/// target features of a level.
///
/// Implementations mark `run` (and everything it calls) `#[inline(always)]`, so that the whole
/// computation is compiled into the dispatched function; code called out of line runs at the
/// baseline. (A closure would not do for large bodies: the compiler is free not to inline it,
/// and then nothing in it uses the wide instructions. See [`vectorized`] for small ones.)
pub trait Kernel {
    type Output;
    /// Runs the computation with vectors of `S`.
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// Whether a kernel takes the narrower vectors of a level when it has two (AVX-512 also runs
/// 8-lane code, with its 32 registers): decided by the caller from the shapes, to waste fewer
/// lanes on short rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// The level's widest vectors.
    Widest,
    /// At most 8 lanes.
    Narrow,
}

/// Lanes per vector and vector registers of the token [`dispatch`] hands a kernel at `level`
/// with `width` (its `LANES` and `REGISTERS`).
pub fn vector_shape(level: SimdLevel, width: Width) -> (usize, usize) {
    match (level.min(SimdLevel::detected()), width) {
        (SimdLevel::Avx512, Width::Widest) => (16, 32),
        (SimdLevel::Avx512, Width::Narrow) => (8, 32),
        (SimdLevel::Avx2, _) => (8, 16),
        (SimdLevel::Portable, _) => (4, 16),
    }
}

/// What one vector operation of `width` costs at `level`, in 8-lane operations: 2 for 16-lane
/// AVX-512 vectors on a CPU that executes 512-bit arithmetic as two 256-bit halves (AMD Zen 4,
/// see [`SimdLevel::splits_512`]), else 1.
///
/// Kernels whose results do not depend on the vector width (each output one dot product summed
/// in a fixed order) pick the width that costs least, vectors × this; kernels that keep one
/// partial sum per lane must not, or their results would depend on the CPU model.
pub fn vector_cost(level: SimdLevel, width: Width) -> usize {
    let (lanes, _) = vector_shape(level, width);
    if lanes > 8 && SimdLevel::splits_512() {
        lanes / 8
    } else {
        1
    }
}

/// Runs `kernel` compiled for `level` (or for the CPU's [`SimdLevel::detected`] level if that
/// is lower) with the level's widest vectors or 8-lane ones; the token the kernel receives
/// says which level ran ([`Simd::LEVEL`]).
#[inline(always)]
pub fn dispatch<K: Kernel>(level: SimdLevel, width: Width, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        match (level.min(SimdLevel::detected()), width) {
            // SAFETY: the detected level has AVX-512 F/BW/DQ/VL, AVX2 and FMA (see `detect`).
            (SimdLevel::Avx512, Width::Widest) => unsafe { x86::avx512(kernel) },
            // SAFETY: as above.
            (SimdLevel::Avx512, Width::Narrow) => unsafe { x86::avx512_narrow(kernel) },
            // SAFETY: the detected level has at least AVX2 and FMA.
            (SimdLevel::Avx2, _) => unsafe { x86::avx2(kernel) },
            (SimdLevel::Portable, _) => kernel.run(Portable::new()),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, width);
        kernel.run(Portable::new())
    }
}

/// Runs `f`, compiled with the instructions of `level`: loops in `f` (inlined into it) are
/// vectorized for that level by the compiler. `f` must be small enough for the compiler to
/// inline it into the dispatched entry point (a loop over a slice); code it does not inline is
/// compiled for the target's baseline. Larger bodies implement [`Kernel`].
#[inline(always)]
pub fn vectorized<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    struct Body<F>(F);
    impl<R, F: FnOnce() -> R> Kernel for Body<F> {
        type Output = R;
        #[inline(always)]
        fn run<S: Simd>(self, _: S) -> R {
            (self.0)()
        }
    }
    dispatch(level, Width::Widest, Body(f))
}

/// The entry points compiled with each level's target features: the generic kernel is inlined
/// into them and compiled with those instructions.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::{Avx2, Avx512, Kernel};

    /// # Safety
    /// The CPU must support AVX-512 F, BW, DQ and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub(super) unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
        // SAFETY: the caller guarantees the features the token stands for.
        kernel.run(unsafe { Avx512::new_unchecked() })
    }

    /// # Safety
    /// As [`avx512`].
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub(super) unsafe fn avx512_narrow<K: Kernel>(kernel: K) -> K::Output {
        // SAFETY: AVX2 and FMA are guaranteed by the caller; AVX-512VL gives the 8-lane
        // instructions 32 registers, which the token's register count announces.
        kernel.run(unsafe { Avx2::<32>::new_unchecked() })
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
        // SAFETY: the caller guarantees the features the token stands for.
        kernel.run(unsafe { Avx2::<16>::new_unchecked() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The level and shape of the token a kernel ran with.
    struct Report;
    impl Kernel for Report {
        type Output = (SimdLevel, usize, usize);
        fn run<S: Simd>(self, _: S) -> Self::Output {
            (S::LEVEL, S::LANES, S::REGISTERS)
        }
    }

    #[test]
    fn a_vector_costs_its_halves_only_where_512_bits_are_split() {
        for level in SimdLevel::ALL {
            assert_eq!(vector_cost(level, Width::Narrow), 1, "{level}");
            let (lanes, _) = vector_shape(level, Width::Widest);
            let split = lanes == 16 && SimdLevel::splits_512();
            let want = if split { 2 } else { 1 };
            assert_eq!(vector_cost(level, Width::Widest), want, "{level}");
        }
    }

    #[test]
    fn vector_shape_matches_the_dispatched_tokens() {
        for level in SimdLevel::ALL {
            for width in [Width::Widest, Width::Narrow] {
                let (ran, lanes, registers) = dispatch(level, width, Report);
                assert_eq!(
                    (lanes, registers),
                    vector_shape(level, width),
                    "{level} {width:?}"
                );
                assert_eq!(ran, level.min(SimdLevel::detected()), "{level} {width:?}");
            }
        }
    }

    /// The cap must reach the dispatcher: each capped level runs its own token. (Summing
    /// numbers under the cap would pass whether or not it works: every level gives the same
    /// sum.)
    #[test]
    fn the_capped_level_is_the_level_that_runs() {
        for level in SimdLevel::supported() {
            let ran = level.capped(|| dispatch(SimdLevel::current(), Width::Widest, Report).0);
            assert_eq!(ran, level);
            let ran = level.capped(|| vectorized(SimdLevel::current(), SimdLevel::current));
            assert_eq!(ran, level);
        }
    }

    #[test]
    fn a_level_above_the_cpu_runs_at_the_cpu_level() {
        // Asking for AVX-512 on a machine without it must not execute AVX-512 instructions.
        let (ran, ..) = dispatch(SimdLevel::Avx512, Width::Widest, Report);
        assert_eq!(ran, SimdLevel::detected());
    }

    #[test]
    fn the_sum_tree_adds_in_one_order_at_every_level() {
        /// The tree of the lanes, widened from f32 and loaded as f64.
        struct Tree([f32; crate::WIDE]);
        impl Kernel for Tree {
            type Output = [f64; 2];
            #[inline(always)]
            fn run<S: Simd>(self, s: S) -> [f64; 2] {
                let wide: [f64; crate::WIDE] = std::array::from_fn(|i| self.0[i] as f64);
                [
                    s.f64_sum_tree(s.f64_widen(&self.0)),
                    s.f64_sum_tree(s.f64_load(&wide)),
                ]
            }
        }
        // ±2^60 in lanes 0 and 1 and ones elsewhere: each big lane absorbs (and loses) the 7
        // ones of its half of the tree before they cancel, so the tree gives 0 where adding
        // from lane 0 up gives 14.
        let mut x = [1.0f32; crate::WIDE];
        (x[0], x[1]) = (2f32.powi(60), -(2f32.powi(60)));
        let want = crate::sum_tree(std::array::from_fn(|i| x[i] as f64));
        assert_eq!(want, 0.0);
        assert_eq!(x.iter().map(|&v| v as f64).sum::<f64>(), 14.0);
        for level in SimdLevel::supported() {
            for width in [Width::Widest, Width::Narrow] {
                for got in dispatch(level, width, Tree(x)) {
                    assert_eq!(got.to_bits(), want.to_bits(), "{level} {width:?}");
                }
            }
        }
    }

    #[test]
    fn f64_lanes_are_exact_and_ordered_at_every_level() {
        struct Lanes;
        impl Kernel for Lanes {
            type Output = [f64; crate::WIDE];
            #[inline(always)]
            fn run<S: Simd>(self, s: S) -> Self::Output {
                let x: [f32; crate::WIDE] = std::array::from_fn(|i| i as f32 * 0.1 + 1e4);
                let v = s.f64_widen(&x);
                let d = s.f64_sub(v, s.f64_splat(1e4));
                s.f64_to_array(s.f64_add(s.f64_mul(d, d), d))
            }
        }
        let want: [f64; crate::WIDE] = std::array::from_fn(|i| {
            let d = (i as f32 * 0.1 + 1e4) as f64 - 1e4;
            d * d + d
        });
        for level in SimdLevel::supported() {
            assert_eq!(dispatch(level, Width::Widest, Lanes), want, "{level}");
        }
    }
}
