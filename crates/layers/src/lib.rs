//! # norma-layers
//!
//! Neural-network building blocks on [`norma_autograd`]: the [`Module`] trait and the layers a
//! LeNet needs, one per file, each documenting its formula and shapes.
//!
//! | layer | computes |
//! | --- | --- |
//! | [`Linear`] | `y = x·Wᵀ + b` |
//! | [`Conv2d`] | 2-D convolution (stride, zero padding), im2col + GEMM |
//! | [`BatchNorm1d`], [`BatchNorm2d`] | batch normalization, fused kernels from `norma-kernels` |
//! | synchronized batch norm | [`BatchNorm::synchronized`], [`convert_sync_batch_norm`]: statistics over every process ([`sync_batch_norm`]) |
//! | [`GroupNorm`], [`LayerNorm`] | group and layer normalization (no batch dependence) |
//! | [`AvgPool2d`], [`MaxPool2d`] | pooling |
//! | [`Sigmoid`], [`Relu`] | activations |
//! | [`Flatten`], [`Dropout`], [`Sequential`] | plumbing |
//!
//! Models ([`models`]): d2l's LeNet and LeNet with batch norm, with PyTorch-style parameter
//! names; [`fold_batch_norm`] folds eval-mode batch norms into the preceding layer;
//! [`checkpoint`] saves and loads safetensors files that PyTorch's `load_state_dict` accepts.
//!
//! ```
//! use norma_autograd::Var;
//! use norma_layers::{models, Module};
//! use norma_tensor::{Rng, Tensor};
//!
//! let mut net = models::lenet_bn(models::Activation::Sigmoid, &mut Rng::seed_from_u64(0))?;
//! let images = Var::constant(Tensor::zeros(&[4, 1, 28, 28]));
//! let logits = net.forward(&images)?;
//! assert_eq!(logits.shape(), &[4, 10]);
//! let loss = logits.cross_entropy(&[0, 1, 2, 3])?;
//! loss.backward()?;
//! assert!(net.parameters().iter().all(|p| p.grad().is_some()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod activation;
mod affine;
pub mod batch_norm;
mod batch_norm1d;
mod batch_norm2d;
pub mod checkpoint;
mod conv2d;
mod dropout;
mod error;
mod flatten;
mod fold;
mod group_norm;
pub mod init;
mod layer_norm;
mod linear;
pub mod models;
mod module;
pub mod observe;
mod pool;
mod precise_bn;
mod sequential;
mod shift_noise;
pub mod sync_batch_norm;

pub use activation::{Relu, Sigmoid};
pub use batch_norm::{BatchNorm, BatchNormConfig};
pub use batch_norm1d::BatchNorm1d;
pub use batch_norm2d::BatchNorm2d;
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dropout::Dropout;
pub use error::{LayerError, Result};
pub use flatten::Flatten;
pub use fold::fold_batch_norm;
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use linear::Linear;
pub use module::{
    for_each_module_mut, join_name, Buffer, CounterBuffer, Mode, Module, TensorBuffer,
};
pub use observe::{ActivationRecord, ActivationStats, InputObserver, Summary};
pub use pool::{AvgPool2d, MaxPool2d};
pub use precise_bn::{recompute_batch_norm_stats, PreciseBnReport};
pub use sequential::Sequential;
pub use shift_noise::{ShiftNoise, ShiftNoiseConfig};
pub use sync_batch_norm::convert_sync_batch_norm;
