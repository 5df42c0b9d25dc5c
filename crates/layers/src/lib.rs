//! # norma-layers
//!
//! Neural-network building blocks on [`norma_autograd`]: the [`Module`] trait and the layers a
//! LeNet needs, one per file, each documenting its formula and shapes.
//!
//! | layer | computes |
//! | --- | --- |
//! | [`Linear`] | `y = x·Wᵀ + b` |
//! | [`Conv2d`] | 2-D convolution (stride, zero padding), direct SIMD kernels |
//! | [`BatchNorm1d`], [`BatchNorm2d`] | batch normalization, fused kernels from `norma-kernels` |
//! | synchronized batch norm | [`BatchNorm::synchronized`], [`convert_sync_batch_norm`]: statistics over every process ([`sync_batch_norm`]) |
//! | [`BatchRenorm1d`], [`BatchRenorm2d`] | Batch Renormalization (Ioffe 2017): batch statistics corrected towards the moving averages |
//! | [`GhostBatchNorm1d`], [`GhostBatchNorm2d`] | ghost batch norm (Hoffer et al. 2017): statistics over virtual batches |
//! | [`FrozenBatchNorm1d`], [`FrozenBatchNorm2d`] | fixed statistics and affine; [`freeze_batch_norm`] converts a model |
//! | example-weighted inference | [`BatchNorm::set_example_weight`], [`set_example_weight`] (Summers & Dinneen 2020) |
//! | [`GroupNorm`], [`LayerNorm`] | group and layer normalization (no batch dependence) |
//! | [`InstanceNorm1d`], [`InstanceNorm2d`], [`RmsNorm`] | instance and RMS normalization, on the group/layer-norm kernels |
//! | [`AvgPool2d`], [`MaxPool2d`], [`GlobalAvgPool2d`] | pooling (the last PyTorch's `AdaptiveAvgPool2d(1)`) |
//! | [`BasicBlock`] | He et al.'s residual block (or its plain twin), any [`NormKind`] |
//! | [`Sigmoid`], [`Relu`] | activations |
//! | [`Flatten`], [`Dropout`], [`Sequential`] | plumbing |
//!
//! Models ([`models`]): d2l's LeNet and LeNet with batch norm, and He et al.'s CIFAR ResNets
//! ([`models::resnet`], [`models::plain`]: depth 6n + 2, any [`NormKind`]), with PyTorch-style
//! parameter names; [`fold_batch_norm`] folds eval-mode batch norms into the preceding layer;
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
//!
//! A ResNet-20 with batch norm, one SGD step with momentum (He init, shortcuts and global
//! pooling come with it; [`BasicBlock`] and [`GlobalAvgPool2d`] build other shapes):
//!
//! ```
//! use norma_autograd::Var;
//! use norma_layers::{models, Module, NormKind};
//! use norma_optim::{Optimizer, Sgd, SgdConfig};
//! use norma_tensor::{Rng, Tensor};
//!
//! let mut rng = Rng::seed_from_u64(0);
//! let mut net = models::resnet(20, NormKind::Batch, &mut rng)?;
//! let config = SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() };
//! let mut sgd = Sgd::new(net.parameters(), config)?;
//!
//! let images = Var::constant(Tensor::rand_uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut rng));
//! let loss = net.forward(&images)?.cross_entropy(&[0, 1, 2, 3, 4, 5, 6, 7])?;
//! sgd.zero_grad();
//! loss.backward()?;
//! sgd.step()?;
//! assert_eq!(net.named_parameters()[3].0, "layer1.0.conv1.weight");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod activation;
pub mod checkpoint;
mod conv2d;
mod dropout;
mod error;
mod flatten;
pub mod init;
mod linear;
pub mod models;
mod module;
mod norm;
pub mod observe;
mod pool;
mod residual;
mod sequential;

pub use activation::{Relu, Sigmoid};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dropout::Dropout;
pub use error::{LayerError, Result};
pub use flatten::Flatten;
pub use linear::Linear;
pub use module::{
    for_each_module_mut, join_name, Buffer, CounterBuffer, Mode, Module, TensorBuffer,
};
pub use norm::{
    batch_norm, convert_batch_renorm, convert_ghost_batch_norm, convert_sync_batch_norm,
    fold_batch_norm, freeze_batch_norm, recompute_batch_norm_stats, set_example_weight,
    set_noise_at_eval, sync_batch_norm, BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormConfig,
    BatchRenorm, BatchRenorm1d, BatchRenorm2d, FrozenBatchNorm, FrozenBatchNorm1d,
    FrozenBatchNorm2d, GhostBatchNorm, GhostBatchNorm1d, GhostBatchNorm2d, GroupNorm,
    GroupNormConfig, InstanceNorm, InstanceNorm1d, InstanceNorm2d, InstanceNormConfig, LayerNorm,
    LayerNormConfig, NoiseAtEval, NormKind, PreciseBnReport, RenormConfig, RmsNorm, RmsNormConfig,
    ShiftNoise, ShiftNoiseConfig,
};
pub use observe::{ActivationRecord, ActivationStats, InputObserver, Summary};
pub use pool::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};
pub use residual::{BasicBlock, BasicBlockConfig};
pub use sequential::Sequential;
