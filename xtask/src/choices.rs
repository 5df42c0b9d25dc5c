//! What the command line chooses between: dataset, model(s), optimizer, activation, where batch
//! norm sits, and the default learning rates; [`build_model`] builds the network they name.

use std::path::PathBuf;

use clap::ValueEnum;
use norma_datasets::DatasetKind;
use norma_layers::models::{self, Activation, ModelKind, Norm, Placement};
use norma_layers::Sequential;
use norma_tensor::Rng;
use serde::{Deserialize, Serialize};

/// `--dataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetChoice {
    FashionMnist,
    Mnist,
}

impl DatasetChoice {
    pub fn kind(self) -> DatasetKind {
        match self {
            DatasetChoice::FashionMnist => DatasetKind::FashionMnist,
            DatasetChoice::Mnist => DatasetKind::Mnist,
        }
    }
}

/// `--dataset` and `--data-dir`, shared by every command.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct DataArgs {
    /// The dataset [default: fashion-mnist].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetChoice>,
    /// Folder holding the four IDX files (.gz or extracted) [default: $NORMA_DATA_DIR,
    /// ./data/DATASET/, Debian's package, then a download].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// The dataset given, or Fashion-MNIST.
    pub fn dataset(&self) -> DatasetChoice {
        self.dataset.unwrap_or(DatasetChoice::FashionMnist)
    }
}

/// `--model` where one model is needed: d2l's LeNet and the LeNet-BN network with batch, group
/// or layer norm ([`models::lenet_norm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelChoice {
    Lenet,
    LenetBn,
    LenetGn,
    LenetLn,
}

impl ModelChoice {
    /// `lenet`, `lenet-bn`, `lenet-gn` or `lenet-ln`.
    pub fn name(self) -> &'static str {
        match self.norm() {
            None => ModelKind::Lenet.name(),
            Some(norm) => norm.model_name(),
        }
    }

    /// The normalization of the network; `None` for plain LeNet.
    pub fn norm(self) -> Option<Norm> {
        match self {
            ModelChoice::Lenet => None,
            ModelChoice::LenetBn => Some(Norm::Batch),
            ModelChoice::LenetGn => Some(Norm::Group),
            ModelChoice::LenetLn => Some(Norm::Layer),
        }
    }

    /// Whether the network contains batch norm (which cannot train on one value per channel
    /// and has running statistics).
    pub fn has_batch_norm(self) -> bool {
        self.norm() == Some(Norm::Batch)
    }
}

/// `--model` where both may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelsChoice {
    Lenet,
    LenetBn,
    Both,
}

impl ModelsChoice {
    /// The models, plain LeNet first.
    pub fn models(self) -> Vec<ModelChoice> {
        match self {
            ModelsChoice::Lenet => vec![ModelChoice::Lenet],
            ModelsChoice::LenetBn => vec![ModelChoice::LenetBn],
            ModelsChoice::Both => vec![ModelChoice::Lenet, ModelChoice::LenetBn],
        }
    }
}

/// A normalization of the LeNet family (`--norms`): none (`lenet`), batch (`lenet-bn`), group
/// (`lenet-gn`) or layer (`lenet-ln`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormChoice {
    None,
    Batch,
    Group,
    Layer,
}

impl NormChoice {
    /// Every normalization, none first.
    pub const ALL: [NormChoice; 4] = [
        NormChoice::None,
        NormChoice::Batch,
        NormChoice::Group,
        NormChoice::Layer,
    ];

    /// The network with this normalization.
    pub fn model(self) -> ModelChoice {
        match self {
            NormChoice::None => ModelChoice::Lenet,
            NormChoice::Batch => ModelChoice::LenetBn,
            NormChoice::Group => ModelChoice::LenetGn,
            NormChoice::Layer => ModelChoice::LenetLn,
        }
    }

    /// `none`, `batch`, `group` or `layer`.
    pub fn name(self) -> &'static str {
        self.model().norm().map_or("none", Norm::name)
    }
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerChoice {
    Sgd,
    Adam,
}

/// `--activation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationChoice {
    Sigmoid,
    Relu,
}

impl ActivationChoice {
    pub fn activation(self) -> Activation {
        match self {
            ActivationChoice::Sigmoid => Activation::Sigmoid,
            ActivationChoice::Relu => Activation::Relu,
        }
    }
}

/// `--placement`: batch norm before the activation (the brief's rule, d2l) or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementChoice {
    #[default]
    Before,
    After,
}

impl PlacementChoice {
    pub fn placement(self) -> Placement {
        match self {
            PlacementChoice::Before => Placement::BeforeActivation,
            PlacementChoice::After => Placement::AfterActivation,
        }
    }

    /// `before` or `after`.
    pub fn name(self) -> &'static str {
        self.placement().name()
    }
}

/// The network `model` with `activation` and, with a normalization, its norms at `placement`,
/// with Xavier-uniform weights drawn from `rng`.
pub fn build_model(
    model: ModelChoice,
    activation: ActivationChoice,
    placement: PlacementChoice,
    rng: &mut Rng,
) -> Result<Sequential, norma_layers::LayerError> {
    match model.norm() {
        None => models::lenet(activation.activation(), rng),
        Some(norm) => models::lenet_norm(norm, activation.activation(), placement.placement(), rng),
    }
}

/// The learning rate used when `--lr` is not given (batch 256): d2l's 0.9 for LeNet and 1.0
/// for LeNet-BN with SGD, LeNet-BN's 1.0 for the group- and layer-norm variants (normalized
/// like it), Adam's usual 1e-3.
pub fn default_lr(model: ModelChoice, optimizer: OptimizerChoice) -> f64 {
    match (optimizer, model.norm()) {
        (OptimizerChoice::Adam, _) => 1e-3,
        (OptimizerChoice::Sgd, None) => 0.9,
        (OptimizerChoice::Sgd, Some(_)) => 1.0,
    }
}
