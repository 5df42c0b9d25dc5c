//! The residual "basic block" of He et al. (2016), the unit of their CIFAR ResNets.

use norma_autograd::{Param, Var};
use norma_tensor::{Rng, Tensor};

use crate::init::{kaiming_normal, FanMode};
use crate::module::{join_name, Buffer, Mode, Module};
use crate::{Conv2d, LayerError, NormKind, Relu, Result, Sequential};

/// What a [`BasicBlock`] is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicBlockConfig {
    /// Channels of the input.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Stride of the first 3×3 convolution (and of the projection): 1 or 2 in the ResNets.
    pub stride: usize,
    /// The normalization after each convolution.
    pub norm: NormKind,
    /// Height = width of the input; only layer norm, whose shape is (C, H, W), needs it.
    pub input_side: usize,
    /// With the shortcut (a ResNet's block) or without (the same block of a plain network).
    pub shortcut: bool,
}

/// How the input reaches the output of the block.
enum Shortcut {
    /// Not at all: a plain network's block.
    None,
    /// `x` itself (same stride and width).
    Identity,
    /// `0`: a 1×1 convolution with the block's stride to the new width, `1`: its normalization
    /// (He et al.'s option B), named `shortcut.0`, `shortcut.1` as torchvision-style CIFAR
    /// ResNets do.
    Projection(Sequential),
}

/// `y = relu(n2(conv2(relu(n1(conv1(x))))) + s(x))` with 3×3 convolutions of padding 1
/// (`conv1` with the block's stride), `n1`, `n2` the chosen [`NormKind`] and `s` the shortcut:
/// the identity when stride and width stay, else a strided 1×1 convolution and a normalization.
/// Without the shortcut (`config.shortcut == false`) it is the plain block
/// `relu(n2(conv2(relu(n1(conv1(x))))))` that He et al. compare against.
///
/// - input: (N, C_in, H, H) with H = `input_side`
/// - output: (N, C_out, H', H') with H' = (H − 1)/stride + 1
/// - names: `conv1.weight`, `bn1.weight`, ..., `conv2.weight`, `bn2.running_var`, ...,
///   `shortcut.0.weight`, `shortcut.1.weight` (batch norm; `norm1`, `norm2` for group and layer
///   norm). With a normalization the convolutions have no bias (the norm's β takes its place);
///   without one they have.
///
/// The weights are He-normal with fan-out (torchvision's ResNet init), normalizations start at
/// γ = 1, β = 0. Why a shortcut helps: the block only has to learn the residual `y − x`, and the
/// gradient reaches the earlier layers through the identity undiminished, so depth stops hurting
/// (He et al.'s degradation problem).
///
/// The block's batch norms are children ([`Module::children_mut`]): `train()`/`eval()`,
/// [`crate::recompute_batch_norm_stats`] and [`crate::convert_sync_batch_norm`] reach them.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{BasicBlock, BasicBlockConfig, Module, NormKind};
/// use norma_tensor::{Rng, Tensor};
/// let config = BasicBlockConfig {
///     in_channels: 16, out_channels: 32, stride: 2, norm: NormKind::Batch, input_side: 28,
///     shortcut: true,
/// };
/// let mut block = BasicBlock::new(config, &mut Rng::seed_from_u64(0))?;
/// let y = block.forward(&Var::constant(Tensor::zeros(&[2, 16, 28, 28])))?;
/// assert_eq!(y.shape(), &[2, 32, 14, 14]);
/// assert!(block.named_parameters().iter().any(|(n, _)| n == "shortcut.0.weight"));
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct BasicBlock {
    /// `conv1`, `n1`, `relu1`, `conv2`, `n2`.
    main: Sequential,
    shortcut: Shortcut,
    config: BasicBlockConfig,
}

/// A k×k convolution of `stride` and padding k/2, He-normal (fan-out) weights, a zero bias
/// only when no normalization follows.
pub(crate) fn he_conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    bias: bool,
    rng: &mut Rng,
) -> Result<Conv2d> {
    let weight = kaiming_normal(&[cout, cin, k, k], FanMode::FanOut, rng)?;
    Conv2d::from_tensors(weight, bias.then(|| Tensor::zeros(&[cout])), stride, k / 2)
}

/// Appends `conv` and its normalization `index` (named by [`NormKind::layer_name`]) to `seq`.
pub(crate) fn conv_norm(
    seq: Sequential,
    conv_name: String,
    conv: Conv2d,
    norm: NormKind,
    index: usize,
    side: usize,
) -> Result<Sequential> {
    let channels = conv.weight().shape()[0];
    let seq = seq.with(conv_name, conv);
    Ok(
        match (norm.layer(channels, side)?, norm.layer_name(index)) {
            (Some(layer), Some(name)) => seq.with_boxed(name, layer),
            _ => seq,
        },
    )
}

impl BasicBlock {
    /// A block drawing its weights from `rng` (conv1, conv2, then the projection).
    ///
    /// Errors: zero channels, side or stride, or a width group norm cannot split.
    pub fn new(config: BasicBlockConfig, rng: &mut Rng) -> Result<BasicBlock> {
        let BasicBlockConfig {
            in_channels: cin,
            out_channels: cout,
            stride,
            norm,
            input_side,
            shortcut,
        } = config;
        if cin == 0 || cout == 0 || stride == 0 || input_side == 0 {
            return Err(LayerError::Config {
                layer: format!("BasicBlock({cin}, {cout}, stride={stride}, side={input_side})"),
                reason: "channels, stride and input side must be positive".into(),
            });
        }
        let bias = norm == NormKind::None;
        let side = (input_side - 1) / stride + 1;
        let main = conv_norm(
            Sequential::new(),
            "conv1".into(),
            he_conv(cin, cout, 3, stride, bias, rng)?,
            norm,
            1,
            side,
        )?
        .with("relu1", Relu);
        let main = conv_norm(
            main,
            "conv2".into(),
            he_conv(cout, cout, 3, 1, bias, rng)?,
            norm,
            2,
            side,
        )?;
        let shortcut = match (shortcut, stride == 1 && cin == cout) {
            (false, _) => Shortcut::None,
            (true, true) => Shortcut::Identity,
            (true, false) => {
                let projection = he_conv(cin, cout, 1, stride, bias, rng)?;
                // `shortcut.0` the convolution, `shortcut.1` its normalization.
                let seq = Sequential::new().with("0", projection);
                Shortcut::Projection(match norm.layer(cout, side)? {
                    Some(layer) => seq.with_boxed("1", layer),
                    None => seq,
                })
            }
        };
        Ok(BasicBlock {
            main,
            shortcut,
            config,
        })
    }

    /// The configuration the block was built with.
    pub fn config(&self) -> BasicBlockConfig {
        self.config
    }

    /// The block with `f` applied to its main path and to its projection shortcut (if it has
    /// one), the names kept: [`crate::fold_batch_norm`] folds each path's batch norms into
    /// its convolutions this way, after which the block has no normalization (its
    /// configuration says [`NormKind::None`], as for convolutions with a bias).
    pub(crate) fn map_sequentials(
        self,
        mut f: impl FnMut(Sequential) -> Result<Sequential>,
    ) -> Result<BasicBlock> {
        let shortcut = match self.shortcut {
            Shortcut::Projection(p) => Shortcut::Projection(f(p)?),
            other => other,
        };
        Ok(BasicBlock {
            main: f(self.main)?,
            shortcut,
            config: BasicBlockConfig {
                norm: NormKind::None,
                ..self.config
            },
        })
    }

    /// Whether the shortcut is a 1×1 convolution (stride or width change) rather than `x`.
    pub fn has_projection(&self) -> bool {
        matches!(self.shortcut, Shortcut::Projection(_))
    }
}

impl Module for BasicBlock {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        let residual = self.main.forward(input)?;
        let sum = match &mut self.shortcut {
            Shortcut::None => residual,
            Shortcut::Identity => residual.add(input)?,
            Shortcut::Projection(p) => residual.add(&p.forward(input)?)?,
        };
        Ok(sum.relu())
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.main.collect_params(prefix, out);
        if let Shortcut::Projection(p) = &self.shortcut {
            p.collect_params(&join_name(prefix, "shortcut"), out);
        }
    }

    fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, Buffer)>) {
        self.main.collect_buffers(prefix, out);
        if let Shortcut::Projection(p) = &self.shortcut {
            p.collect_buffers(&join_name(prefix, "shortcut"), out);
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        self.main.set_mode(mode);
        if let Shortcut::Projection(p) = &mut self.shortcut {
            p.set_mode(mode);
        }
    }

    /// `conv1`, its norm, `relu1`, `conv2`, its norm, then `shortcut` (a projection only).
    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Module)> {
        let mut children = self.main.children_mut();
        if let Shortcut::Projection(p) = &mut self.shortcut {
            children.push(("shortcut", p as &mut dyn Module));
        }
        children
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let shortcut = match self.shortcut {
            Shortcut::None => "none",
            Shortcut::Identity => "identity",
            Shortcut::Projection(_) => "1x1 projection",
        };
        format!(
            "BasicBlock({}, {}, stride={}, norm={}, shortcut={shortcut})",
            c.in_channels, c.out_channels, c.stride, c.norm
        )
    }
}
