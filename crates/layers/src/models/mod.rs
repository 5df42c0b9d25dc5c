//! d2l.ai's LeNet and LeNet with batch normalization, with PyTorch-style child names so that
//! checkpoints line up with `state_dict()` of the same modules; and the deep networks of He et
//! al.'s CIFAR experiments, [`resnet`] and [`plain`] of depth 6n + 2 (`resnet.rs`, described
//! by [`DeepNet`] rather than [`ModelKind`], which names the LeNet family only).
//!
//! | `lenet` | `lenet-bn` |
//! | --- | --- |
//! | conv1 Conv2d(1, 6, 5, padding 2) | conv1 Conv2d(1, 6, 5) → bn1 BatchNorm2d(6) |
//! | act, pool 2×2 | act, pool 2×2 |
//! | conv2 Conv2d(6, 16, 5) | conv2 Conv2d(6, 16, 5) → bn2 BatchNorm2d(16) |
//! | act, pool 2×2, flatten (400) | act, pool 2×2, flatten (256) |
//! | fc1 Linear(400, 120), act | fc1 Linear(256, 120) → bn3 BatchNorm1d(120), act |
//! | fc2 Linear(120, 84), act | fc2 Linear(120, 84) → bn4 BatchNorm1d(84), act |
//! | fc3 Linear(84, 10) | fc3 Linear(84, 10) |
//!
//! Batch norm sits after each convolution or linear layer and before its activation (the
//! brief's rule; [`Placement::AfterActivation`] moves it after the activation, before pooling,
//! for the experiment that compares the two). The activation is sigmoid with average pooling
//! (d2l) or ReLU with max pooling. Inputs are (N, 1, 28, 28); outputs are (N, 10) logits.
//!
//! **Other normalizations** ([`ModelKind::LenetGn`], [`ModelKind::LenetLn`]): the same network as LeNet-BN with group norm or
//! layer norm in the four places of batch norm, named `norm1`…`norm4` (`conv1, norm1, conv2,
//! norm2, fc1, norm3, fc2, norm4, fc3`; LeNet-BN keeps `bn1`…`bn4`):
//!
//! | position | output | `lenet-bn` | `lenet-gn` | `lenet-ln` |
//! | --- | --- | --- | --- | --- |
//! | after conv1 | (N, 6, 24, 24) | BatchNorm2d(6) | GroupNorm(2, 6) | LayerNorm(\[6, 24, 24\]) |
//! | after conv2 | (N, 16, 8, 8) | BatchNorm2d(16) | GroupNorm(4, 16) | LayerNorm(\[16, 8, 8\]) |
//! | after fc1 | (N, 120) | BatchNorm1d(120) | GroupNorm(4, 120) | LayerNorm(\[120\]) |
//! | after fc2 | (N, 84) | BatchNorm1d(84) | GroupNorm(4, 84) | LayerNorm(\[84\]) |
//!
//! Group counts: Wu & He use 32 groups of ≥ 16 channels; LeNet's layers are narrow, so the
//! groups hold 3 (conv1), 4 (conv2), 30 and 21 (fc) channels. Layer norm is PyTorch's
//! `nn.LayerNorm` over each layer's whole output, with an element-wise affine of that shape.
//!
//! **Batch Renormalization** ([`ModelKind::LenetBrn`], `lenet-brn`): LeNet-BN with each batch
//! norm converted into a [`crate::BatchRenorm1d`]/[`crate::BatchRenorm2d`] of the same name
//! (`bn1`…`bn4`) and the same `state_dict` ([`crate::convert_batch_renorm`]); the weights are
//! LeNet-BN's from the same seed. [`LenetOptions::renorm`] sets the r_max/d_max schedule (the
//! paper's by default, [`RenormConfig::default`]).
//!
//! **Ghost batch norm** ([`ModelKind::LenetGbn`], `lenet-gbn`): LeNet-BN with each batch norm
//! converted into a [`crate::GhostBatchNorm1d`]/[`crate::GhostBatchNorm2d`] of the same name and
//! `state_dict` ([`crate::convert_ghost_batch_norm`]): training statistics over ghost batches
//! of [`LenetOptions::ghost_batch`] samples ([`DEFAULT_GHOST_BATCH`] unless set), one running
//! estimate; the weights are LeNet-BN's from the same seed.
//!
//! **Without γ and β** ([`LenetOptions::affine`] `false`): every norm only normalizes, as
//! PyTorch's `affine=False`; the network and its random draws are otherwise the same, and the
//! `state_dict` lacks the norms' `weight` and `bias`.

use std::fmt;
use std::str::FromStr;

mod resnet;

pub use resnet::{blocks_per_stage, plain, resnet, DeepNet};

use norma_tensor::{Rng, Tensor};

use crate::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, Flatten, GroupNorm,
    GroupNormConfig, LayerNorm, LayerNormConfig, Linear, MaxPool2d, Module, Relu, RenormConfig,
    Result, Sequential, ShiftNoise, ShiftNoiseConfig, Sigmoid,
};

/// A network of the LeNet family: d2l's LeNet and LeNet-BN's network with batch, group or
/// layer norm in the places of batch norm (see the module docs). The one type that names a
/// model: its name is the one the command line, file names and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Plain LeNet.
    Lenet,
    /// LeNet with batch normalization.
    LenetBn,
    /// LeNet-BN's network with group normalization.
    LenetGn,
    /// LeNet-BN's network with layer normalization.
    LenetLn,
    /// LeNet-BN with Batch Renormalization in the places of batch norm.
    LenetBrn,
    /// LeNet-BN with ghost batch norm in the places of batch norm.
    LenetGbn,
}

impl ModelKind {
    /// Every model, plain LeNet first, then batch, group and layer norm, then batch norm's
    /// remedies: Batch Renormalization and ghost batch norm.
    pub const ALL: [ModelKind; 6] = [
        ModelKind::Lenet,
        ModelKind::LenetBn,
        ModelKind::LenetGn,
        ModelKind::LenetLn,
        ModelKind::LenetBrn,
        ModelKind::LenetGbn,
    ];

    /// The models without a small-batch remedy of batch norm: plain LeNet, batch, group and
    /// layer norm ([`ModelKind::ALL`] but Batch Renormalization and ghost batch norm).
    pub const STANDARD: [ModelKind; 4] = [
        ModelKind::Lenet,
        ModelKind::LenetBn,
        ModelKind::LenetGn,
        ModelKind::LenetLn,
    ];

    /// The two models of the brief's experiment, plain first.
    pub const BRIEF: [ModelKind; 2] = [ModelKind::Lenet, ModelKind::LenetBn];

    /// The models with a normalization: batch, group and layer norm.
    pub const NORMALIZED: [ModelKind; 3] =
        [ModelKind::LenetBn, ModelKind::LenetGn, ModelKind::LenetLn];

    /// `lenet`, `lenet-bn`, `lenet-gn`, `lenet-ln`, `lenet-brn` or `lenet-gbn`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Lenet => "lenet",
            ModelKind::LenetBn => "lenet-bn",
            ModelKind::LenetGn => "lenet-gn",
            ModelKind::LenetLn => "lenet-ln",
            ModelKind::LenetBrn => "lenet-brn",
            ModelKind::LenetGbn => "lenet-gbn",
        }
    }

    /// The normalization by its own name: `none`, `batch`, `group`, `layer`, `renorm` or
    /// `ghost`.
    pub fn norm_name(self) -> &'static str {
        match (self, self.norm()) {
            (ModelKind::LenetBrn, _) => "renorm",
            (ModelKind::LenetGbn, _) => "ghost",
            (_, None) => "none",
            (_, Some(Norm::Batch)) => "batch",
            (_, Some(Norm::Group)) => "group",
            (_, Some(Norm::Layer)) => "layer",
        }
    }

    /// Whether the model has a normalization layer (all but plain LeNet).
    pub fn is_normalized(self) -> bool {
        self.norm().is_some()
    }

    /// Whether the model contains batch norm or one of its remedies, Batch Renormalization or
    /// ghost batch norm (which cannot train on one value per channel and have running
    /// statistics).
    pub fn has_batch_norm(self) -> bool {
        self.norm() == Some(Norm::Batch)
    }

    /// Builds the model with fresh Xavier-uniform weights drawn from `rng`, its norms (if any)
    /// before the activations.
    pub fn build(self, activation: Activation, rng: &mut Rng) -> Result<Sequential> {
        self.build_with(activation, &LenetOptions::default(), rng)
    }

    /// Builds the model with its norms before or after the activations (`placement` does not
    /// apply to plain LeNet, which has none).
    pub fn build_placed(
        self,
        activation: Activation,
        placement: Placement,
        rng: &mut Rng,
    ) -> Result<Sequential> {
        let options = LenetOptions {
            placement,
            ..LenetOptions::default()
        };
        self.build_with(activation, &options, rng)
    }

    /// Builds the model as `options` say: where its norms sit, whether they have γ and β, (for
    /// [`ModelKind::LenetBrn`]) the r_max/d_max schedule and (for [`ModelKind::LenetGbn`]) the
    /// ghost batch size. The options change no random draw: one seed gives every variant the
    /// same initial weights.
    ///
    /// Errors: a bad schedule ([`crate::BatchRenorm::from_batch_norm`]'s), a ghost batch size
    /// of 0.
    pub fn build_with(
        self,
        activation: Activation,
        options: &LenetOptions,
        rng: &mut Rng,
    ) -> Result<Sequential> {
        let model = match self.norm() {
            None => lenet(activation, rng)?,
            Some(norm) => lenet_norm(norm, activation, options, rng)?,
        };
        match self {
            ModelKind::LenetBrn => crate::convert_batch_renorm(model, options.renorm),
            ModelKind::LenetGbn => crate::convert_ghost_batch_norm(model, options.ghost_batch),
            _ => Ok(model),
        }
    }

    /// The normalization in the places of batch norm; `None` for plain LeNet.
    fn norm(self) -> Option<Norm> {
        match self {
            ModelKind::Lenet => None,
            ModelKind::LenetBn | ModelKind::LenetBrn | ModelKind::LenetGbn => Some(Norm::Batch),
            ModelKind::LenetGn => Some(Norm::Group),
            ModelKind::LenetLn => Some(Norm::Layer),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    /// A model's [`ModelKind::name`] (also with `_` for `-`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s.replace('_', "-"))
            .ok_or_else(|| {
                let names: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown model '{s}' (expected one of {})", names.join(", "))
            })
    }
}

/// Where a normalization layer sits relative to its activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// conv/linear → norm → activation (Ioffe & Szegedy, d2l; the default).
    #[default]
    BeforeActivation,
    /// conv/linear → activation → norm (then pooling, for convolutions).
    AfterActivation,
}

impl Placement {
    /// `before` or `after`.
    pub fn name(self) -> &'static str {
        match self {
            Placement::BeforeActivation => "before",
            Placement::AfterActivation => "after",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "before" => Ok(Placement::BeforeActivation),
            "after" => Ok(Placement::AfterActivation),
            other => Err(format!(
                "unknown placement '{other}' (expected before or after)"
            )),
        }
    }
}

/// How a model of the LeNet family is built beyond its kind and activation
/// ([`ModelKind::build_with`]); the default is d2l's LeNet-BN: norms before the activations,
/// with learnable γ and β, and the paper's Batch Renormalization schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LenetOptions {
    /// Where the norms sit relative to the activations.
    pub placement: Placement,
    /// Learnable γ (init 1) and β (init 0) in every norm (true). `false` is PyTorch's
    /// `affine=False` (`elementwise_affine=False` for layer norm): the norms only normalize,
    /// γ ≡ 1 and β ≡ 0 are not parameters and the `state_dict` has no `bn{i}.weight` or
    /// `bn{i}.bias`. Plain LeNet has no norm and ignores it.
    pub affine: bool,
    /// The r_max/d_max schedule of [`ModelKind::LenetBrn`] (ignored by the other models).
    pub renorm: RenormConfig,
    /// The ghost batch size of [`ModelKind::LenetGbn`]: samples per ghost batch (ignored by the
    /// other models).
    pub ghost_batch: usize,
}

/// The ghost batch size of [`ModelKind::LenetGbn`] unless [`LenetOptions::ghost_batch`] says
/// otherwise: 16 samples, a batch size at which LeNet-BN itself trains well (`cargo xtask
/// batch-size`), so that ghost batch norm inside LeNet's batches of 64–256 keeps the noise of
/// those small batches (Hoffer et al. used ghost batches of 128 inside batches of 4096).
pub const DEFAULT_GHOST_BATCH: usize = 16;

impl Default for LenetOptions {
    fn default() -> Self {
        LenetOptions {
            placement: Placement::BeforeActivation,
            affine: true,
            renorm: RenormConfig::default(),
            ghost_batch: DEFAULT_GHOST_BATCH,
        }
    }
}

/// The normalization layer of a [`ModelKind`] in the places of batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    Batch,
    Group,
    Layer,
}

impl Norm {
    /// The layer after conv1, conv2, fc1 or fc2 (`index` 1–4), whose output has `channels`
    /// channels and `side`×`side` positions (`side` 0 for the fully connected layers).
    /// With `affine`, the layer has its learnable γ and β (PyTorch's defaults).
    fn layer(
        self,
        index: usize,
        channels: usize,
        side: usize,
        affine: bool,
    ) -> Result<Box<dyn Module>> {
        let image = side > 0;
        let bn = BatchNormConfig {
            affine,
            ..BatchNormConfig::default()
        };
        let gn = GroupNormConfig {
            affine,
            ..GroupNormConfig::default()
        };
        let ln = LayerNormConfig {
            elementwise_affine: affine,
            ..LayerNormConfig::default()
        };
        Ok(match self {
            Norm::Batch if image => Box::new(BatchNorm2d::with_config(channels, bn)?),
            Norm::Batch => Box::new(BatchNorm1d::with_config(channels, bn)?),
            Norm::Group => Box::new(GroupNorm::with_config(GN_GROUPS[index - 1], channels, gn)?),
            Norm::Layer if image => Box::new(LayerNorm::with_config(&[channels, side, side], ln)?),
            Norm::Layer => Box::new(LayerNorm::with_config(&[channels], ln)?),
        })
    }

    /// The layer's name: `bn{index}` for batch norm (as d2l), `norm{index}` otherwise.
    fn layer_name(self, index: usize) -> String {
        match self {
            Norm::Batch => format!("bn{index}"),
            _ => format!("norm{index}"),
        }
    }
}

/// Groups of group norm after conv1, conv2, fc1 and fc2 (see the module docs).
const GN_GROUPS: [usize; 4] = [2, 4, 4, 4];

/// Activation and matching pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Sigmoid with 2×2 average pooling (d2l's LeNet).
    Sigmoid,
    /// ReLU with 2×2 max pooling.
    Relu,
}

impl Activation {
    /// `sigmoid` or `relu`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
        }
    }

    /// The activation `act{index}`.
    fn push_act(self, seq: Sequential, index: usize) -> Sequential {
        match self {
            Activation::Sigmoid => seq.with(format!("act{index}"), Sigmoid),
            Activation::Relu => seq.with(format!("act{index}"), Relu),
        }
    }

    /// The matching 2×2 pooling `pool{index}`.
    fn push_pool(self, seq: Sequential, index: usize) -> Result<Sequential> {
        Ok(match self {
            Activation::Sigmoid => seq.with(format!("pool{index}"), AvgPool2d::new(2, 2)?),
            Activation::Relu => seq.with(format!("pool{index}"), MaxPool2d::new(2, 2)?),
        })
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sigmoid" => Ok(Activation::Sigmoid),
            "relu" => Ok(Activation::Relu),
            other => Err(format!(
                "unknown activation '{other}' (expected sigmoid or relu)"
            )),
        }
    }
}

fn conv(cin: usize, cout: usize, padding: usize, rng: &mut Rng) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding,
        ..Conv2dConfig::default()
    };
    Conv2d::new(cin, cout, 5, config, rng)
}

/// d2l's LeNet (see the module table).
pub fn lenet(activation: Activation, rng: &mut Rng) -> Result<Sequential> {
    let seq = Sequential::new().with("conv1", conv(1, 6, 2, rng)?);
    let seq = activation.push_pool(activation.push_act(seq, 1), 1)?;
    let seq = seq.with("conv2", conv(6, 16, 0, rng)?);
    let seq = activation.push_pool(activation.push_act(seq, 2), 2)?;
    let seq = seq
        .with("flatten", Flatten)
        .with("fc1", Linear::new(16 * 5 * 5, 120, rng)?);
    let seq = activation
        .push_act(seq, 3)
        .with("fc2", Linear::new(120, 84, rng)?);
    Ok(activation
        .push_act(seq, 4)
        .with("fc3", Linear::new(84, 10, rng)?))
}

/// d2l's LeNet with batch normalization (see the module table).
pub fn lenet_bn(activation: Activation, rng: &mut Rng) -> Result<Sequential> {
    lenet_bn_placed(activation, Placement::BeforeActivation, rng)
}

/// LeNet-BN with its batch norms before or after the activations. The layers, their names and
/// the random draws are the same for both placements; only the order of each norm and its
/// activation differs.
pub fn lenet_bn_placed(
    activation: Activation,
    placement: Placement,
    rng: &mut Rng,
) -> Result<Sequential> {
    let options = LenetOptions {
        placement,
        ..LenetOptions::default()
    };
    lenet_norm(Norm::Batch, activation, &options, rng)
}

/// LeNet-BN's network with `norm` in the places of batch norm (see the module docs), before or
/// after each activation, with or without γ and β (`options`). Convolutions and linear layers
/// draw their weights in the same order for every normalization, so one seed gives every
/// variant the same initial weights.
fn lenet_norm(
    norm: Norm,
    activation: Activation,
    options: &LenetOptions,
    rng: &mut Rng,
) -> Result<Sequential> {
    // Block `i`'s normalization and activation, in the chosen order.
    let pair = |seq: Sequential, i: usize, channels: usize, side: usize| -> Result<Sequential> {
        let layer = norm.layer(i, channels, side, options.affine)?;
        let name = norm.layer_name(i);
        Ok(match options.placement {
            Placement::BeforeActivation => activation.push_act(seq.with_boxed(name, layer), i),
            Placement::AfterActivation => activation.push_act(seq, i).with_boxed(name, layer),
        })
    };
    let seq = Sequential::new().with("conv1", conv(1, 6, 0, rng)?);
    let seq = pair(seq, 1, 6, 24)?;
    let seq = activation
        .push_pool(seq, 1)?
        .with("conv2", conv(6, 16, 0, rng)?);
    let seq = pair(seq, 2, 16, 8)?;
    let seq = activation
        .push_pool(seq, 2)?
        .with("flatten", Flatten)
        .with("fc1", Linear::new(16 * 4 * 4, 120, rng)?);
    let seq = pair(seq, 3, 120, 0)?.with("fc2", Linear::new(120, 84, rng)?);
    let seq = pair(seq, 4, 84, 0)?;
    Ok(seq.with("fc3", Linear::new(84, 10, rng)?))
}

/// LeNet-BN with Santurkar et al.'s "noisy BatchNorm": a [`ShiftNoise`] (`noise1`…`noise4`)
/// right after each batch norm, moving every channel's distribution at every training step.
/// The weights are those of [`lenet_bn`] from the same generator (the noise draws from a
/// generator forked after them), and the `state_dict` is the same (the noise has no state).
pub fn lenet_bn_noisy(
    activation: Activation,
    noise: ShiftNoiseConfig,
    rng: &mut Rng,
) -> Result<Sequential> {
    let clean = lenet_bn(activation, rng)?;
    let mut noisy = Sequential::new();
    for (name, layer) in clean.into_children() {
        let channels = match name.as_str() {
            "bn1" => Some(6),
            "bn2" => Some(16),
            "bn3" => Some(120),
            "bn4" => Some(84),
            _ => None,
        };
        noisy.push(name.clone(), layer);
        if let Some(c) = channels {
            let noise = ShiftNoise::new(c, noise, rng.fork())?;
            noisy.push(name.replace("bn", "noise"), Box::new(noise));
        }
    }
    Ok(noisy)
}

/// The multilayer perceptron of Ioffe & Szegedy's MNIST experiment (Section 4.1, Figure 1):
/// flattened 28×28 inputs, hidden layers of `hidden` sizes (theirs: 100, 100, 100) with
/// sigmoid activations, 10 outputs; with `batch_norm`, a BatchNorm1d after each hidden linear
/// layer, before its sigmoid. Weights are drawn from N(0, `init_std`²) ("small random Gaussian
/// values"), biases start at 0. Names: `flatten, fc1, [bn1,] act1, …, fc{k+1}`.
///
/// Errors: no hidden layer, a size of 0, or an `init_std` that is negative or not finite.
pub fn mlp(hidden: &[usize], batch_norm: bool, init_std: f32, rng: &mut Rng) -> Result<Sequential> {
    if hidden.is_empty() || hidden.contains(&0) || !(init_std >= 0.0 && init_std.is_finite()) {
        return Err(crate::LayerError::Config {
            layer: format!("mlp({hidden:?})"),
            reason: format!(
                "needs at least one hidden layer, no size 0 and a finite init_std >= 0 (got {init_std})"
            ),
        });
    }
    let mut seq = Sequential::new().with("flatten", Flatten);
    let mut fan_in = 28 * 28;
    for (i, &width) in hidden.iter().enumerate() {
        let weight = Tensor::rand_normal(&[width, fan_in], 0.0, init_std, rng);
        seq = seq.with(
            format!("fc{}", i + 1),
            Linear::from_tensors(weight, Some(Tensor::zeros(&[width])))?,
        );
        if batch_norm {
            seq = seq.with(format!("bn{}", i + 1), BatchNorm1d::new(width)?);
        }
        seq = seq.with(format!("act{}", i + 1), Sigmoid);
        fan_in = width;
    }
    let weight = Tensor::rand_normal(&[10, fan_in], 0.0, init_std, rng);
    Ok(seq.with(
        format!("fc{}", hidden.len() + 1),
        Linear::from_tensors(weight, Some(Tensor::zeros(&[10])))?,
    ))
}

/// The PyTorch `state_dict` names and shapes of a model's parameters and buffers, in order
/// (handy for documentation and for checking an imported file).
pub fn state_shapes(model: &dyn Module) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    for (n, b) in model.named_buffers() {
        out.push((n, b.shape()));
    }
    out
}
