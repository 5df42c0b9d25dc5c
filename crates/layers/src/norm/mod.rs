//! The normalization layers and what works on them, in one place.
//!
//! | file | holds |
//! | --- | --- |
//! | `affine` | the optional γ/β every normalization layer has, and the autograd plumbing around a normalization kernel |
//! | `choice` | [`NormKind`]: which normalization a model builder puts after a convolution |
//! | `batch_norm/` | [`BatchNorm`] and its two kinds [`BatchNorm1d`], [`BatchNorm2d`]; on it [`BatchRenorm`] (`renorm`) and [`GhostBatchNorm`] (`ghost`) |
//! | `sync_batch_norm` | batch norm over the global batch of a data-parallel job |
//! | `group_norm`, `layer_norm` | [`GroupNorm`], [`LayerNorm`]: per-sample statistics, no running state |
//! | `instance_norm`, `rms_norm` | [`InstanceNorm1d`]/[`InstanceNorm2d`] (group norm with one channel per group), [`RmsNorm`] (layer norm without centring) |
//! | `precise_bn` | recomputing the running statistics of a trained model |
//! | `fold` | folding eval-mode batch norms into the layer before them |
//! | `frozen_batch_norm` | [`FrozenBatchNorm`]: fixed statistics and affine, and [`freeze_batch_norm`] |
//! | `shift_noise` | [`ShiftNoise`], the noise that undoes batch norm's stable distributions on purpose |
//!
//! Every public item is re-exported at the crate root.

mod affine;
pub mod batch_norm;
mod choice;
mod fold;
mod frozen_batch_norm;
mod group_norm;
mod instance_norm;
mod layer_norm;
mod precise_bn;
mod rms_norm;
mod shift_noise;
pub mod sync_batch_norm;

pub use batch_norm::{
    convert_batch_renorm, convert_ghost_batch_norm, set_example_weight, BatchNorm, BatchNorm1d,
    BatchNorm2d, BatchNormConfig, BatchRenorm, BatchRenorm1d, BatchRenorm2d, GhostBatchNorm,
    GhostBatchNorm1d, GhostBatchNorm2d, RenormConfig,
};
pub use choice::NormKind;
pub use fold::fold_batch_norm;
pub use frozen_batch_norm::{
    freeze_batch_norm, FrozenBatchNorm, FrozenBatchNorm1d, FrozenBatchNorm2d,
};
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use instance_norm::{InstanceNorm, InstanceNorm1d, InstanceNorm2d, InstanceNormConfig};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use precise_bn::{recompute_batch_norm_stats, PreciseBnReport};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use shift_noise::{set_noise_at_eval, NoiseAtEval, ShiftNoise, ShiftNoiseConfig};
pub use sync_batch_norm::convert_sync_batch_norm;
