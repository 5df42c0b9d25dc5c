//! He et al.'s (2016, Section 4.2) CIFAR ResNets and the same networks without shortcuts,
//! adapted to 1×28×28 images (Fashion-MNIST) and 10 classes.
//!
//! A network of depth `6n + 2` (8, 14, 20, 32, ...) is, in `state_dict` order:
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `conv1`, `bn1`, `relu` | Conv2d(1, 16, 3, padding 1), norm, ReLU | (N, 16, 28, 28) |
//! | `layer1.0` … `layer1.{n-1}` | n [`BasicBlock`]s of width 16, stride 1 | (N, 16, 28, 28) |
//! | `layer2.0` … | n blocks of width 32, the first of stride 2 | (N, 32, 14, 14) |
//! | `layer3.0` … | n blocks of width 64, the first of stride 2 | (N, 64, 7, 7) |
//! | `pool`, `flatten` | [`GlobalAvgPool2d`], flatten | (N, 64) |
//! | `fc` | Linear(64, 10) | (N, 10) |
//!
//! `6n + 2` counts the first convolution, the `6n` convolutions of the blocks and `fc`. The
//! only change from CIFAR is the input: one channel of 28×28 instead of three of 32×32, so the
//! stages run at 28, 14 and 7. In [`resnet`] the first block of stages 2 and 3 has a 1×1
//! projection shortcut (`layer2.0.shortcut.0.weight`, `layer2.0.shortcut.1.running_mean`;
//! He et al.'s option B), the others the identity; [`plain`] has the same layers and names with
//! no shortcut at all. The normalization ([`NormKind`]) is named `bn1`/`bn2` for batch norm,
//! `norm1`/`norm2` otherwise (the stem's is `bn1` or `norm1`), and with none the convolutions
//! carry biases. scripts/norma_models.py defines the same networks in PyTorch, so a checkpoint
//! loads both ways.
//!
//! Initialisation: He-normal (fan-out) convolutions as torchvision's ResNet, normalizations at
//! γ = 1, β = 0, `fc` Xavier-uniform with zero bias (as norma's [`Linear::new`]).

use std::fmt;
use std::str::FromStr;

use norma_tensor::Rng;

use crate::residual::{conv_norm, he_conv};
use crate::{
    BasicBlock, BasicBlockConfig, Flatten, GlobalAvgPool2d, LayerError, Linear, NormKind, Relu,
    Result, Sequential,
};

/// Widths of the three stages.
const WIDTHS: [usize; 3] = [16, 32, 64];
/// Side of the input images.
const SIDE: usize = 28;
/// Classes.
const CLASSES: usize = 10;

/// A deep network of this module: ResNet or plain, its depth and its normalization. Its
/// [`name`](DeepNet::name) (`resnet20-batch`, `plain32-none`) parses back with [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeepNet {
    /// With shortcuts ([`resnet`]) or without ([`plain`]).
    pub residual: bool,
    /// Layers with weights: `6n + 2`.
    pub depth: usize,
    /// The normalization after every convolution.
    pub norm: NormKind,
}

impl DeepNet {
    /// `resnet{depth}-{norm}` or `plain{depth}-{norm}`.
    pub fn name(&self) -> String {
        let family = if self.residual { "resnet" } else { "plain" };
        format!("{family}{}-{}", self.depth, self.norm)
    }

    /// Builds the network, weights drawn from `rng`.
    ///
    /// Errors: a depth that is not `6n + 2` ([`LayerError::Depth`]).
    pub fn build(&self, rng: &mut Rng) -> Result<Sequential> {
        cifar(*self, rng)
    }
}

impl fmt::Display for DeepNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for DeepNet {
    type Err = String;
    /// `resnet20-batch`, `plain8-none`, ... (see [`DeepNet::name`]; `bn`, `gn`, `ln` work too).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("unknown network '{s}' (expected resnet<depth>-<norm> or plain<depth>-<norm>, e.g. resnet20-batch)")
        };
        let (residual, rest) = if let Some(rest) = s.strip_prefix("resnet") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("plain") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (depth, norm) = rest.split_once('-').ok_or_else(bad)?;
        let depth: usize = depth.parse().map_err(|_| bad())?;
        let norm: NormKind = norm.parse()?;
        blocks_per_stage(depth).map_err(|e| e.to_string())?;
        Ok(DeepNet {
            residual,
            depth,
            norm,
        })
    }
}

/// `n` of a depth `6n + 2`.
///
/// Errors: any other depth ([`LayerError::Depth`]).
pub fn blocks_per_stage(depth: usize) -> Result<usize> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) {
        return Err(LayerError::Depth {
            model: "resnet/plain",
            depth,
        });
    }
    Ok((depth - 2) / 6)
}

/// He et al.'s CIFAR ResNet of `depth` = 6n + 2 layers (see the module docs) with `norm` after
/// every convolution.
///
/// ```
/// use norma_layers::models::resnet;
/// use norma_layers::{Module, NormKind};
/// use norma_tensor::Rng;
/// let net = resnet(20, NormKind::Batch, &mut Rng::seed_from_u64(0))?;
/// assert_eq!(net.num_parameters(), 272_186); // 269,722 in CIFAR without projections
/// assert!(resnet(10, NormKind::Batch, &mut Rng::seed_from_u64(0)).is_err());
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
///
/// Errors: a depth that is not `6n + 2` ([`LayerError::Depth`]).
pub fn resnet(depth: usize, norm: NormKind, rng: &mut Rng) -> Result<Sequential> {
    cifar(
        DeepNet {
            residual: true,
            depth,
            norm,
        },
        rng,
    )
}

/// The network of [`resnet`] without its shortcuts: `6n + 2` layers in a chain, He et al.'s
/// "plain" baseline. Same layers, names and random draws except the projections.
///
/// Errors: a depth that is not `6n + 2` ([`LayerError::Depth`]).
pub fn plain(depth: usize, norm: NormKind, rng: &mut Rng) -> Result<Sequential> {
    cifar(
        DeepNet {
            residual: false,
            depth,
            norm,
        },
        rng,
    )
}

fn cifar(net: DeepNet, rng: &mut Rng) -> Result<Sequential> {
    let n = blocks_per_stage(net.depth).map_err(|_| LayerError::Depth {
        model: if net.residual { "resnet" } else { "plain" },
        depth: net.depth,
    })?;
    let norm = net.norm;
    let stem = he_conv(1, WIDTHS[0], 3, 1, norm == NormKind::None, rng)?;
    let mut seq =
        conv_norm(Sequential::new(), "conv1".into(), stem, norm, 1, SIDE)?.with("relu", Relu);
    let (mut channels, mut side) = (WIDTHS[0], SIDE);
    for (stage, &width) in WIDTHS.iter().enumerate() {
        let mut layer = Sequential::new();
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let config = BasicBlockConfig {
                in_channels: channels,
                out_channels: width,
                stride,
                norm,
                input_side: side,
                shortcut: net.residual,
            };
            layer = layer.with(i.to_string(), BasicBlock::new(config, rng)?);
            channels = width;
            side = (side - 1) / stride + 1;
        }
        seq = seq.with(format!("layer{}", stage + 1), layer);
    }
    Ok(seq
        .with("pool", GlobalAvgPool2d)
        .with("flatten", Flatten)
        .with("fc", Linear::new(channels, CLASSES, rng)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_of_the_form_6n_plus_2_only() {
        assert_eq!(blocks_per_stage(8).unwrap(), 1);
        assert_eq!(blocks_per_stage(20).unwrap(), 3);
        assert_eq!(blocks_per_stage(110).unwrap(), 18);
        for bad in [0, 2, 7, 9, 10, 21] {
            assert_eq!(
                blocks_per_stage(bad),
                Err(LayerError::Depth {
                    model: "resnet/plain",
                    depth: bad
                })
            );
        }
        let err = plain(10, NormKind::None, &mut Rng::seed_from_u64(0)).err();
        assert_eq!(
            err,
            Some(LayerError::Depth {
                model: "plain",
                depth: 10
            })
        );
    }

    #[test]
    fn names_parse_back() {
        for residual in [true, false] {
            for norm in NormKind::ALL {
                let net = DeepNet {
                    residual,
                    depth: 14,
                    norm,
                };
                assert_eq!(net.name().parse::<DeepNet>().unwrap(), net);
            }
        }
        assert_eq!("resnet20-batch".parse::<DeepNet>().unwrap().depth, 20);
        for bad in [
            "resnet-batch",
            "resnet10-batch",
            "vgg16-batch",
            "plain8-weird",
            "plain8",
        ] {
            assert!(bad.parse::<DeepNet>().is_err(), "{bad}");
        }
    }
}
