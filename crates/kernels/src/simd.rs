//! Which vector instructions the kernels use, chosen when they run.
//!
//! The kernels are written once, as plain loops over fixed-width lane arrays, and compiled
//! three times: for the x86-64 baseline (SSE2), for AVX2 + FMA, and for AVX-512. [`vectorized`]
//! runs a piece of work through the copy that the CPU supports, so a program that depends on
//! this crate gets the wide instructions without being built with `target-cpu=native`, and a
//! binary built on one x86-64 machine runs on any other.
//!
//! The three copies perform the same floating-point operations in the same order (Rust never
//! contracts `a * b + c` into a fused multiply-add on its own, and every reduction keeps its
//! lanes explicitly), so **results are bitwise identical whichever level runs**; the tests check
//! it. Only speed differs.
//!
//! The level can be capped with the environment variable `NORMA_SIMD` (`avx512`, `avx2` or
//! `portable`), read once, to measure or test a lower path on a machine that has a higher one.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

thread_local! {
    /// A cap set by [`SimdLevel::capped`] for the kernels called on this thread.
    static CAP: Cell<Option<SimdLevel>> = const { Cell::new(None) };
}

/// A family of vector instructions the kernels can be run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The x86-64 baseline (SSE2), or any other architecture.
    Portable,
    /// AVX2 with FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/DQ/VL (x86-64-v4).
    Avx512,
}

impl SimdLevel {
    /// Every level, lowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The highest level this CPU supports.
    pub fn detected() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return SimdLevel::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Portable
    }

    /// The level the kernels run with: [`SimdLevel::detected`], lowered to `NORMA_SIMD` when
    /// that is set to a lower level. Decided once per process.
    pub fn active() -> SimdLevel {
        static ACTIVE: OnceLock<SimdLevel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let detected = SimdLevel::detected();
            match std::env::var("NORMA_SIMD") {
                Ok(cap) => SimdLevel::parse(&cap).map_or(detected, |cap| cap.min(detected)),
                Err(_) => detected,
            }
        })
    }

    /// Runs `f` with the kernels it calls on this thread capped at `self` (for comparing levels
    /// in one process, in tests and benchmarks). Results do not change, only speed.
    ///
    /// ```
    /// use norma_kernels::SimdLevel;
    /// let x = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[8, 3]), 1.5f32);
    /// let fast = norma_kernels::forward_train(x.view(), None, None, 1e-5)?;
    /// let slow = SimdLevel::Portable.capped(|| norma_kernels::forward_train(x.view(), None, None, 1e-5))?;
    /// assert_eq!(fast, slow);
    /// # Ok::<(), norma_kernels::KernelError>(())
    /// ```
    pub fn capped<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<SimdLevel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CAP.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CAP.with(|c| c.replace(Some(self))));
        f()
    }

    /// The level kernels called on this thread use now: [`SimdLevel::active`], lowered by
    /// [`SimdLevel::capped`].
    pub fn current() -> SimdLevel {
        let active = SimdLevel::active();
        CAP.with(Cell::get).map_or(active, |cap| cap.min(active))
    }

    /// Parses `portable`, `avx2` or `avx512` (the values of `NORMA_SIMD`).
    pub fn parse(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" | "none" | "sse2" => Some(SimdLevel::Portable),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" | "avx-512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }

    /// The levels this CPU can run, lowest first (for tests that compare them).
    pub fn supported() -> Vec<SimdLevel> {
        let top = SimdLevel::detected();
        SimdLevel::ALL.into_iter().filter(|l| *l <= top).collect()
    }

    /// The name `NORMA_SIMD` accepts.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level the CPU was found to support: only [`vectorized`] makes one, after checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Supported(SimdLevel);

impl Supported {
    pub fn get(self) -> SimdLevel {
        self.0
    }
}

/// A piece of work compiled once per SIMD level: [`vectorized`] calls [`Kernel::run`] from a
/// function built with the level's instructions. Implementations mark `run` (and everything
/// it calls) `#[inline(always)]`, so that the whole piece is compiled into that function; code
/// called out of line would run at the baseline. (A closure would not do: the compiler is free
/// not to inline a large closure body, and then nothing in it uses the wide instructions.)
pub(crate) trait Kernel {
    type Output;
    fn run(self, level: Supported) -> Self::Output;
}

/// Runs `kernel` compiled for `level`, or for the highest level the CPU supports if that is
/// lower; the kernel receives the level it runs at.
#[inline(always)]
pub(crate) fn vectorized<K: Kernel>(level: SimdLevel, kernel: K) -> K::Output {
    let level = Supported(level.min(SimdLevel::detected_cached()));
    #[cfg(target_arch = "x86_64")]
    {
        match level.0 {
            // SAFETY: `detected_cached` found every feature the wrapper enables on this CPU.
            SimdLevel::Avx512 => return unsafe { x86::avx512(kernel, level) },
            // SAFETY: as above, AVX2 and FMA are present.
            SimdLevel::Avx2 => return unsafe { x86::avx2(kernel, level) },
            SimdLevel::Portable => {}
        }
    }
    kernel.run(level)
}

impl SimdLevel {
    /// [`SimdLevel::detected`], computed once.
    fn detected_cached() -> SimdLevel {
        static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
        *DETECTED.get_or_init(SimdLevel::detected)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kernel, Supported};

    /// Runs `kernel` with AVX-512 code generation.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW, DQ and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub unsafe fn avx512<K: Kernel>(kernel: K, level: Supported) -> K::Output {
        kernel.run(level)
    }

    /// Runs `kernel` with AVX2 code generation.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2<K: Kernel>(kernel: K, level: Supported) -> K::Output {
        kernel.run(level)
    }
}

/// Closures as kernels, for tests only: their bodies may not be inlined (see [`Kernel`]).
#[cfg(test)]
pub(crate) struct TestKernel<F>(pub F);

#[cfg(test)]
impl<R, F: FnOnce(Supported) -> R> Kernel for TestKernel<F> {
    type Output = R;
    fn run(self, level: Supported) -> R {
        (self.0)(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_levels_are_ordered() {
        for level in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(level.name()), Some(level));
        }
        assert_eq!(SimdLevel::parse("AVX2 "), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse("neon"), None);
        assert!(SimdLevel::Portable < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512);
        assert!(SimdLevel::active() <= SimdLevel::detected());
        assert_eq!(SimdLevel::supported()[0], SimdLevel::Portable);
    }

    #[test]
    fn a_level_above_the_cpu_runs_at_the_cpu_level() {
        // Asking for AVX-512 on a machine without it must not execute AVX-512 instructions.
        let sum = vectorized(
            SimdLevel::Avx512,
            TestKernel(|_| (1..=100).map(|i| i as f64).sum::<f64>()),
        );
        assert_eq!(sum, 5050.0);
    }
}
