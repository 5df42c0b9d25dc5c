//! # norma-tensor
//!
//! The numeric core of norma: [`Tensor`], an f32 n-dimensional array on
//! [`ndarray`], and the operations a convolutional network needs to train, each shape-checked
//! and returning a [`TensorError`] that names the operation and the shapes.
//!
//! | group | operations |
//! | --- | --- |
//! | elementwise | [`Tensor::add`], [`Tensor::sub`], [`Tensor::mul`], [`Tensor::div`] (numpy broadcasting), scalar ops, [`Tensor::exp`], [`Tensor::ln`], [`Tensor::sigmoid`], [`Tensor::relu`], [`Tensor::tanh`] |
//! | reductions | [`Tensor::sum_axes`], [`Tensor::mean_axes`], [`Tensor::sum_to_shape`] |
//! | shape | [`Tensor::reshape`], [`Tensor::permute`], [`Tensor::t`] |
//! | linear algebra | [`Tensor::matmul`], [`Tensor::matmul_t`], [`gemm`] (our SIMD kernels, split over rayon) |
//! | convolution | [`Tensor::conv2d`] and its two gradients: direct SIMD kernels at every stride (strided ones on the image's phases) |
//! | pooling | [`Tensor::avg_pool2d`], [`Tensor::max_pool2d`] and their gradients |
//! | losses | [`Tensor::log_softmax`], [`Tensor::cross_entropy`] with integer labels |
//!
//! The hot kernels pick AVX-512, AVX2+FMA or portable code when they run (see [`SimdLevel`],
//! from norma-simd; the environment variable `NORMA_SIMD` lowers the level).
//!
//! Tensors are always contiguous and row-major, so kernels work on plain slices. Parallel
//! loops split work in fixed-size pieces and combine partial results in a fixed order:
//! results are bitwise identical for any number of rayon threads.
//!
//! ```
//! use norma_tensor::{Rng, Tensor};
//! let mut rng = Rng::seed_from_u64(0);
//! let x = Tensor::rand_normal(&[2, 1, 8, 8], 0.0, 1.0, &mut rng);
//! let w = Tensor::rand_normal(&[4, 1, 3, 3], 0.0, 0.1, &mut rng);
//! let y = x.conv2d(&w, None, 1, 1)?.sigmoid().avg_pool2d(2, 2)?;
//! assert_eq!(y.shape(), &[2, 4, 4, 4]);
//! # Ok::<(), norma_tensor::TensorError>(())
//! ```

mod conv;
mod elementwise;
mod error;
mod gemm;
mod loss;
mod math;
mod matmul;
mod microkernel;
mod parallel;
mod pool;
mod reduce;
mod rng;
mod scratch;
mod shape;
mod tensor;

pub use conv::Conv2dGeometry;
pub use elementwise::{broadcast_shape, BinaryOp, Exp, Ln, Relu, Sigmoid, Tanh, UnaryFn};
pub use error::{Result, TensorError};
pub use gemm::gemm;
/// The SIMD level the kernels run at (norma-simd's, re-exported): `SimdLevel::Portable.capped(f)`
/// runs `f`'s operations on this thread at that level.
pub use norma_simd::SimdLevel;
pub use pool::MaxPoolOutput;
pub use rng::Rng;
pub use tensor::Tensor;
