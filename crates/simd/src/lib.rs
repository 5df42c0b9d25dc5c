//! # norma-simd
//!
//! The one SIMD floor of norma: which vector instructions the hot loops of norma-tensor and
//! norma-kernels run with, chosen when they run.
//!
//! - [`SimdLevel`]: `Portable < Avx2 < Avx512`, the CPU's [`SimdLevel::detected`] level, the
//!   process-wide [`SimdLevel::active`] one (lowered by the environment variable
//!   `NORMA_SIMD=avx512|avx2|portable`, see [`SimdLevel::parse`]) and the per-thread
//!   [`SimdLevel::capped`].
//! - [`Simd`]: vector arithmetic on f32 (and sixteen f64 lanes) through zero-sized tokens,
//!   [`Portable`], [`Avx2`] and [`Avx512`]. A token proves that the CPU has its instructions,
//!   so its arithmetic is safe; only [`dispatch`] makes one, after detection.
//! - [`dispatch`] runs a [`Kernel`], written once over any token, compiled with the target
//!   features of a level; [`vectorized`] does the same for a small closure.
//!
//! A binary built with default flags thus runs the widest instructions the CPU has, and runs
//! on any x86-64 machine.
//!
//! **What changes between levels.** The tokens offer both a fused [`Simd::mul_add`] (one
//! rounding where the level has FMA) and separate [`Simd::mul`] / [`Simd::add`]. Code that uses
//! only the separate operations and reduces its lanes in a fixed order (norma-kernels) gives the
//! same bits at every level; code that fuses (norma-tensor's GEMM and convolutions) differs
//! between levels by rounding.
//!
//! ```
//! use norma_simd::{dispatch, Kernel, Simd, SimdLevel, Width};
//!
//! /// Which level's token a kernel ran with.
//! struct Report;
//! impl Kernel for Report {
//!     type Output = SimdLevel;
//!     fn run<S: Simd>(self, _: S) -> SimdLevel {
//!         S::LEVEL
//!     }
//! }
//! let ran = SimdLevel::Portable.capped(|| dispatch(SimdLevel::current(), Width::Widest, Report));
//! assert_eq!(ran, SimdLevel::Portable);
//! ```

mod dispatch;
mod level;
mod vector;

pub use dispatch::{dispatch, vector_cost, vector_shape, vectorized, Kernel, Width};
pub use level::{ParseLevelError, SimdLevel};
pub use vector::{sum_tree, Portable, Simd, WIDE};
#[cfg(target_arch = "x86_64")]
pub use vector::{Avx2, Avx512};
