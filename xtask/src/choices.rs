//! What the command line chooses between: dataset, model(s), optimizer, activation, where batch
//! norm sits, and the default learning rates; [`build_model`] builds the network they name.

use std::path::PathBuf;

use clap::ValueEnum;
use norma_datasets::DatasetKind;
use norma_layers::models::{self, Activation, ModelKind, Placement};
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

/// `--model` where one model is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelChoice {
    Lenet,
    LenetBn,
}

impl ModelChoice {
    pub fn kind(self) -> ModelKind {
        match self {
            ModelChoice::Lenet => ModelKind::Lenet,
            ModelChoice::LenetBn => ModelKind::LenetBn,
        }
    }

    pub fn of(kind: ModelKind) -> ModelChoice {
        match kind {
            ModelKind::Lenet => ModelChoice::Lenet,
            ModelKind::LenetBn => ModelChoice::LenetBn,
        }
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
    pub fn kinds(self) -> Vec<ModelKind> {
        match self {
            ModelsChoice::Lenet => vec![ModelKind::Lenet],
            ModelsChoice::LenetBn => vec![ModelKind::LenetBn],
            ModelsChoice::Both => ModelKind::ALL.to_vec(),
        }
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

/// The network `model` with `activation` and, for LeNet-BN, its batch norms at `placement`,
/// with Xavier-uniform weights drawn from `rng`.
pub fn build_model(
    model: ModelChoice,
    activation: ActivationChoice,
    placement: PlacementChoice,
    rng: &mut Rng,
) -> Result<Sequential, norma_layers::LayerError> {
    match model {
        ModelChoice::Lenet => models::lenet(activation.activation(), rng),
        ModelChoice::LenetBn => {
            models::lenet_bn_placed(activation.activation(), placement.placement(), rng)
        }
    }
}

/// The learning rate used when `--lr` is not given: d2l's 0.9 for LeNet and 1.0 for LeNet-BN
/// with SGD, Adam's usual 1e-3.
pub fn default_lr(model: ModelKind, optimizer: OptimizerChoice) -> f64 {
    match (optimizer, model) {
        (OptimizerChoice::Adam, _) => 1e-3,
        (OptimizerChoice::Sgd, ModelKind::Lenet) => 0.9,
        (OptimizerChoice::Sgd, ModelKind::LenetBn) => 1.0,
    }
}
