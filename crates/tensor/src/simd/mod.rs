//! Run-time choice of the instruction set used by the hot kernels.
//!
//! The kernels (convolution, matrix product, elementwise maps, pooling) are written once,
//! generically over a vector type, and compiled three times: for AVX-512 (AVX-512F/VL with
//! AVX2 and FMA), for AVX2 with FMA, and portably (SSE2 on x86-64, plain Rust elsewhere). Which
//! one runs is decided when a kernel is called, from what the CPU supports, so a binary built
//! with default flags is as fast as one built with `-C target-cpu=native` and runs on any
//! x86-64 machine.
//!
//! The level can be lowered (never raised above what the CPU has) with the environment variable
//! `NORMA_SIMD=avx512|avx2|portable`, read once, or per thread with [`with_level`].
//!
//! Results are bitwise identical for any number of threads at a given level. Between levels
//! they differ by float rounding: the portable level multiplies and adds separately where the
//! others fuse them, and reductions split into as many partial sums as a vector has lanes.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

mod vector;

#[cfg(target_arch = "x86_64")]
pub(crate) use vector::{Avx2, Avx512};
pub(crate) use vector::{Portable, Simd};

/// An instruction-set level of the kernels, from the most portable to the fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No extension beyond the target's baseline (SSE2 on x86-64).
    Portable,
    /// AVX2 with FMA: 8-lane vectors, 16 registers.
    Avx2,
    /// AVX-512F and AVX-512VL with AVX2 and FMA: 16-lane vectors, 32 registers.
    Avx512,
}

impl Level {
    /// Every level, from the most portable.
    pub const ALL: [Level; 3] = [Level::Portable, Level::Avx2, Level::Avx512];

    /// `portable`, `avx2` or `avx512` (the values `NORMA_SIMD` accepts).
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Parses a [`Level::name`] (case-insensitive).
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The best level this CPU supports (detected once).
    pub fn detected() -> Level {
        static DETECTED: OnceLock<Level> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
        Level::Avx512
    } else if has!("avx2") && has!("fma") {
        Level::Avx2
    } else {
        Level::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Portable
}

/// The level named by `NORMA_SIMD`, capped at the detected one; the detected level when the
/// variable is unset. An unknown value is reported once on stderr and ignored.
fn from_env() -> Level {
    static FROM_ENV: OnceLock<Level> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        let detected = Level::detected();
        match std::env::var("NORMA_SIMD") {
            Ok(value) => match Level::parse(&value) {
                Some(level) => level.min(detected),
                None => {
                    eprintln!(
                        "norma: ignoring NORMA_SIMD={value:?} (expected avx512, avx2 or portable)"
                    );
                    detected
                }
            },
            Err(_) => detected,
        }
    })
}

thread_local! {
    static OVERRIDE: Cell<Option<Level>> = const { Cell::new(None) };
}

/// The level the kernels use when called from this thread: the one set by [`with_level`],
/// else `NORMA_SIMD`, else the best the CPU supports.
pub fn active_level() -> Level {
    OVERRIDE.with(Cell::get).unwrap_or_else(from_env)
}

/// Runs `f` with the kernels it calls from this thread limited to `level` (and to what the
/// CPU supports). Operations read the level on the calling thread and hand it to their worker
/// threads, so the whole operation runs at that level.
///
/// ```
/// use norma_tensor::simd::{active_level, with_level, Level};
/// let level = with_level(Level::Portable, active_level);
/// assert_eq!(level, Level::Portable);
/// ```
pub fn with_level<R>(level: Level, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Level>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let previous = OVERRIDE.with(|o| o.replace(Some(level.min(Level::detected()))));
    let _restore = Restore(previous);
    f()
}

/// Whether a kernel prefers the narrower vectors of a level when it has two (AVX-512 runs
/// 8-lane kernels too, with its 32 registers): decided by the caller from the shapes, to waste
/// fewer lanes on short rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    /// The level's widest vectors.
    Widest,
    /// At most 8 lanes.
    Narrow,
}

/// Lanes per vector and vector registers of the kernels [`dispatch`] runs at `level` with
/// `width` (the `LANES` and `REGISTERS` of the token it hands them).
pub(crate) fn vector_shape(level: Level, width: Width) -> (usize, usize) {
    match (level.min(Level::detected()), width) {
        (Level::Avx512, Width::Widest) => (16, 32),
        (Level::Avx512, Width::Narrow) => (8, 32),
        (Level::Avx2, _) => (8, 16),
        (Level::Portable, _) => (4, 16),
    }
}

/// A computation written once over any vector type (see [`Simd`]), run by [`dispatch`] with
/// the vector type and target features of a level.
pub(crate) trait Kernel {
    type Output;
    /// Runs the computation with vectors of `S`. Implementations should be `#[inline(always)]`
    /// so that the code is compiled with the level's instructions.
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// Runs `kernel` at `level` (which must not exceed [`Level::detected`]; higher requests run at
/// the detected level), with the level's widest vectors or 8-lane ones.
pub(crate) fn dispatch<K: Kernel>(level: Level, width: Width, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        match (level.min(Level::detected()), width) {
            // SAFETY: the detected level has AVX-512F/VL, AVX2 and FMA (see `detect`).
            (Level::Avx512, Width::Widest) => unsafe { x86::avx512(kernel) },
            // SAFETY: as above.
            (Level::Avx512, Width::Narrow) => unsafe { x86::avx512_narrow(kernel) },
            // SAFETY: the detected level has at least AVX2 and FMA.
            (Level::Avx2, _) => unsafe { x86::avx2(kernel) },
            (Level::Portable, _) => kernel.run(Portable),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, width);
        kernel.run(Portable)
    }
}

/// The entry points compiled with each level's target features: the generic kernel is inlined
/// into them and compiled with those instructions.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Avx2, Avx512, Kernel};

    /// # Safety
    /// The CPU must support AVX-512F, AVX-512VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
        // SAFETY: the caller guarantees the features the token stands for.
        kernel.run(unsafe { Avx512::new_unchecked() })
    }

    /// # Safety
    /// As [`avx512`].
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
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

    #[test]
    fn names_round_trip_and_levels_are_ordered() {
        for level in Level::ALL {
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("sse9"), None);
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512);
    }

    struct Shape;
    impl Kernel for Shape {
        type Output = (usize, usize);
        fn run<S: Simd>(self, _: S) -> (usize, usize) {
            (S::LANES, S::REGISTERS)
        }
    }

    #[test]
    fn vector_shape_matches_the_dispatched_tokens() {
        for level in Level::ALL {
            for width in [Width::Widest, Width::Narrow] {
                assert_eq!(
                    dispatch(level, width, Shape),
                    vector_shape(level, width),
                    "{level} {width:?}"
                );
            }
        }
    }

    #[test]
    fn with_level_caps_at_the_cpu_and_restores() {
        let outer = active_level();
        with_level(Level::Portable, || {
            assert_eq!(active_level(), Level::Portable);
            with_level(Level::Avx512, || {
                assert_eq!(active_level(), Level::detected());
            });
            assert_eq!(active_level(), Level::Portable);
        });
        assert_eq!(active_level(), outer);
    }
}
