//! The instruction-set level: what the CPU has, what `NORMA_SIMD` allows, what this thread
//! runs with.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A family of vector instructions the kernels can be compiled for, from the most portable to
/// the fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// No extension beyond the target's baseline (SSE2 on x86-64), or any other architecture.
    Portable,
    /// AVX2 with FMA (x86-64-v3): 8 f32 lanes, 16 registers.
    Avx2,
    /// AVX-512 F, BW, DQ and VL with AVX2 and FMA (x86-64-v4): 16 f32 lanes, 32 registers.
    Avx512,
}

/// A `NORMA_SIMD` value that names no level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SIMD level {value:?}: expected avx512, avx2 or portable")]
pub struct ParseLevelError {
    /// The value as given.
    pub value: String,
}

thread_local! {
    /// The level set by [`SimdLevel::capped`] for the code run on this thread.
    static CAP: Cell<Option<SimdLevel>> = const { Cell::new(None) };
}

impl SimdLevel {
    /// Every level, lowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];

    /// `portable`, `avx2` or `avx512`: the names `NORMA_SIMD` accepts.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Parses a [`SimdLevel::name`], ignoring case and surrounding whitespace; any other value
    /// is an error that names it.
    pub fn parse(value: &str) -> Result<SimdLevel, ParseLevelError> {
        SimdLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| ParseLevelError {
                value: value.to_owned(),
            })
    }

    /// The highest level this CPU supports (detected once per process). AVX-512 needs every
    /// feature either crate compiles its AVX-512 code with: F, BW, DQ, VL, AVX2 and FMA.
    pub fn detected() -> SimdLevel {
        static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }

    /// Whether this CPU executes a 512-bit vector operation as two 256-bit halves, so that
    /// 16-lane AVX-512 vectors give no more arithmetic per cycle than 8-lane ones: AMD's Zen 4
    /// (family 19h, the only family of that vendor with AVX-512 and halved execution; Zen 5,
    /// family 1Ah, executes 512 bits at once). Intel CPUs are taken as full width. Read once
    /// from CPUID.
    pub fn splits_512() -> bool {
        static SPLITS: OnceLock<bool> = OnceLock::new();
        *SPLITS.get_or_init(|| cpu_family() == Some(("AuthenticAMD", 0x19)))
    }

    /// The levels this CPU can run, lowest first (for tests that compare them).
    pub fn supported() -> Vec<SimdLevel> {
        let top = SimdLevel::detected();
        SimdLevel::ALL.into_iter().filter(|l| *l <= top).collect()
    }

    /// The level of the process: [`SimdLevel::detected`], lowered to `NORMA_SIMD` when that
    /// names a lower level. An unknown value is named in one warning on stderr and ignored.
    /// Decided once per process.
    pub fn active() -> SimdLevel {
        static ACTIVE: OnceLock<SimdLevel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let detected = SimdLevel::detected();
            let Ok(value) = std::env::var("NORMA_SIMD") else {
                return detected;
            };
            match SimdLevel::parse(&value) {
                Ok(level) => level.min(detected),
                Err(e) => {
                    eprintln!("norma: ignoring NORMA_SIMD: {e}; using {detected}");
                    detected
                }
            }
        })
    }

    /// The level code called on this thread runs with now: the one set by the innermost
    /// [`SimdLevel::capped`], else [`SimdLevel::active`].
    pub fn current() -> SimdLevel {
        CAP.with(Cell::get).unwrap_or_else(SimdLevel::active)
    }

    /// Runs `f` with the code it calls on this thread at `self`, capped at what the CPU
    /// supports, in place of `NORMA_SIMD` and of any enclosing `capped` (for comparing levels
    /// in one process, in tests and benchmarks). Operations read the level on the calling
    /// thread and hand it to their worker threads, so the whole operation runs at it.
    ///
    /// ```
    /// use norma_simd::SimdLevel;
    /// let level = SimdLevel::Portable.capped(SimdLevel::current);
    /// assert_eq!(level, SimdLevel::Portable);
    /// ```
    pub fn capped<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<SimdLevel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CAP.with(|c| c.set(self.0));
            }
        }
        let previous = CAP.with(|c| c.replace(Some(self.min(SimdLevel::detected()))));
        let _restore = Restore(previous);
        f()
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimdLevel {
    type Err = ParseLevelError;

    fn from_str(value: &str) -> Result<SimdLevel, ParseLevelError> {
        SimdLevel::parse(value)
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> SimdLevel {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma");
    if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
        SimdLevel::Avx512
    } else if avx2 {
        SimdLevel::Avx2
    } else {
        SimdLevel::Portable
    }
}

/// The CPU's vendor string and family (base plus extended family, as CPUID leaf 1 defines it).
#[cfg(target_arch = "x86_64")]
fn cpu_family() -> Option<(&'static str, u32)> {
    use std::arch::x86_64::__cpuid;
    let vendor = __cpuid(0);
    let bytes: Vec<u8> = [vendor.ebx, vendor.edx, vendor.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let name = match bytes.as_slice() {
        b"AuthenticAMD" => "AuthenticAMD",
        b"GenuineIntel" => "GenuineIntel",
        _ => return None,
    };
    if vendor.eax < 1 {
        return None;
    }
    let eax = __cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    };
    Some((name, family))
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_family() -> Option<(&'static str, u32)> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> SimdLevel {
    SimdLevel::Portable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_levels_are_ordered() {
        for level in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(level.name()), Ok(level));
            assert_eq!(level.to_string().parse(), Ok(level));
        }
        assert_eq!(SimdLevel::parse(" AVX2 "), Ok(SimdLevel::Avx2));
        assert!(SimdLevel::Portable < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512);
        assert!(SimdLevel::active() <= SimdLevel::detected());
        assert_eq!(SimdLevel::supported()[0], SimdLevel::Portable);
    }

    #[test]
    fn an_unknown_value_is_an_error_that_names_it() {
        // Names other code once accepted are not levels any more: one rule for every crate.
        for bad in ["sse9", "neon", "none", "sse2", "avx-512", ""] {
            let err = SimdLevel::parse(bad).unwrap_err();
            assert_eq!(err.value, bad);
            assert_eq!(
                err.to_string(),
                format!("unknown SIMD level {bad:?}: expected avx512, avx2 or portable")
            );
        }
    }

    #[test]
    fn capped_replaces_the_level_caps_at_the_cpu_and_restores() {
        let outer = SimdLevel::current();
        SimdLevel::Portable.capped(|| {
            assert_eq!(SimdLevel::current(), SimdLevel::Portable);
            SimdLevel::Avx512.capped(|| {
                assert_eq!(SimdLevel::current(), SimdLevel::detected());
            });
            assert_eq!(SimdLevel::current(), SimdLevel::Portable);
        });
        assert_eq!(SimdLevel::current(), outer);
        // A panic inside does not leave the cap behind.
        let caught = std::panic::catch_unwind(|| SimdLevel::Portable.capped(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(SimdLevel::current(), outer);
    }
}
