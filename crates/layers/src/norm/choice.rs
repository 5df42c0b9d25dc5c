//! Which normalization a model builder puts after a convolution: [`NormKind`].

use std::fmt;
use std::str::FromStr;

use crate::{BatchNorm2d, GroupNorm, LayerNorm, Module, Result};

/// The normalization after each convolution of a [`crate::BasicBlock`] and of the deep models
/// ([`crate::models::resnet`], [`crate::models::plain`]), on a (N, C, H, W) output:
///
/// | kind | layer | name in the `state_dict` |
/// | --- | --- | --- |
/// | `None` | none; the convolution gets a bias instead | — |
/// | `Batch` | `BatchNorm2d(C)` (He et al.'s ResNets) | `bn1`, `bn2` |
/// | `Group` | `GroupNorm(GROUPS, C)`, [`NormKind::GROUPS`] = 8 | `norm1`, `norm2` |
/// | `Layer` | `LayerNorm([C, H, W])`, PyTorch's `nn.LayerNorm` over the whole output | `norm1`, `norm2` |
///
/// Batch norm keeps the names torchvision's ResNets give it (`bn1`); the other two are named
/// `norm1`, as in the LeNet family ([`crate::models`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NormKind {
    /// No normalization.
    None,
    /// Batch normalization.
    #[default]
    Batch,
    /// Group normalization in [`NormKind::GROUPS`] groups.
    Group,
    /// Layer normalization over (C, H, W).
    Layer,
}

impl NormKind {
    /// Every kind: none, batch, group, layer.
    pub const ALL: [NormKind; 4] = [
        NormKind::None,
        NormKind::Batch,
        NormKind::Group,
        NormKind::Layer,
    ];

    /// Groups of [`NormKind::Group`]. Wu & He's 32 groups do not fit 16-channel layers; their
    /// Table 3 finds 8 to 32 groups within 0.5% of each other, and 8 divides the widths 16, 32
    /// and 64 of the CIFAR ResNets (2 to 8 channels a group).
    pub const GROUPS: usize = 8;

    /// `none`, `batch`, `group` or `layer`.
    pub fn name(self) -> &'static str {
        match self {
            NormKind::None => "none",
            NormKind::Batch => "batch",
            NormKind::Group => "group",
            NormKind::Layer => "layer",
        }
    }

    /// The name of normalization `index` (`bn1`, `norm2`, ...); `None` for [`NormKind::None`].
    pub fn layer_name(self, index: usize) -> Option<String> {
        match self {
            NormKind::None => None,
            NormKind::Batch => Some(format!("bn{index}")),
            NormKind::Group | NormKind::Layer => Some(format!("norm{index}")),
        }
    }

    /// The layer after a convolution with `channels` output channels of `side`×`side`
    /// positions (`side` matters to layer norm only); `None` for [`NormKind::None`].
    ///
    /// Errors: no channels, or (group norm) channels that [`NormKind::GROUPS`] does not divide.
    pub fn layer(self, channels: usize, side: usize) -> Result<Option<Box<dyn Module>>> {
        Ok(match self {
            NormKind::None => None,
            NormKind::Batch => Some(Box::new(BatchNorm2d::new(channels)?)),
            NormKind::Group => Some(Box::new(GroupNorm::new(Self::GROUPS, channels)?)),
            NormKind::Layer => Some(Box::new(LayerNorm::new(&[channels, side, side])?)),
        })
    }
}

impl fmt::Display for NormKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NormKind {
    type Err = String;
    /// A [`NormKind::name`] (`bn`, `gn` and `ln` also work).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(NormKind::None),
            "batch" | "bn" => Ok(NormKind::Batch),
            "group" | "gn" => Ok(NormKind::Group),
            "layer" | "ln" => Ok(NormKind::Layer),
            other => Err(format!(
                "unknown normalization '{other}' (expected none, batch, group or layer)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_layers_have_the_right_kind() {
        for kind in NormKind::ALL {
            assert_eq!(kind.name().parse::<NormKind>().unwrap(), kind);
        }
        assert!("batchnorm".parse::<NormKind>().is_err());
        assert!(NormKind::None.layer(16, 28).unwrap().is_none());
        let bn = NormKind::Batch.layer(16, 28).unwrap().unwrap();
        assert!(bn.is::<BatchNorm2d>());
        assert_eq!(bn.num_parameters(), 32);
        let gn = NormKind::Group.layer(16, 28).unwrap().unwrap();
        assert!(gn.is::<GroupNorm>());
        let ln = NormKind::Layer.layer(4, 7).unwrap().unwrap();
        assert_eq!(ln.num_parameters(), 2 * 4 * 7 * 7);
        assert!(NormKind::Group.layer(12, 7).is_err());
        assert_eq!(NormKind::Batch.layer_name(2).unwrap(), "bn2");
        assert_eq!(NormKind::Layer.layer_name(1).unwrap(), "norm1");
    }
}
