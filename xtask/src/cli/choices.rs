//! What the command line chooses between: dataset, model(s), optimizer, activation, where batch
//! norm sits, and the default learning rates; [`build_model`] builds the network they name.
//! The model itself is norma-layers' [`ModelKind`], parsed by [`model_parser`], [`norm_parser`]
//! and [`Models::parser`].

use std::ffi::OsStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::ValueEnum;
use norma_datasets::DatasetKind;
use norma_layers::models::{Activation, ModelKind, Placement};
use norma_layers::Sequential;
use norma_tensor::Rng;
use serde::{Deserialize, Serialize, Serializer};

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

/// A clap value parser for a type of another crate named by words (clap cannot derive
/// `ValueEnum` on [`ModelKind`]): the words are the possible values, shown by `--help` and
/// named in errors exactly as for a `ValueEnum`.
#[derive(Clone)]
pub struct Named<T> {
    values: Vec<(&'static str, T)>,
}

impl<T: Copy + Send + Sync + 'static> Named<T> {
    /// A parser of `values`, each called by `name`.
    pub fn new(values: impl IntoIterator<Item = T>, name: fn(T) -> &'static str) -> Named<T> {
        Named {
            values: values.into_iter().map(|v| (name(v), v)).collect(),
        }
    }
}

impl<T: Copy + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let words = self.values.iter().map(|(word, _)| *word);
        let word = PossibleValuesParser::new(words).parse_ref(cmd, arg, value)?;
        self.values
            .iter()
            .find(|(w, _)| *w == word)
            .map(|&(_, v)| v)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.values
                .iter()
                .map(|(word, _)| PossibleValue::new(*word)),
        ))
    }
}

/// `--model` where one model is needed: any of the LeNet family without a small-batch remedy,
/// by name (`lenet`, `lenet-bn`, `lenet-gn`, `lenet-ln`; [`ModelKind::STANDARD`]).
pub fn model_parser() -> Named<ModelKind> {
    Named::new(ModelKind::STANDARD, ModelKind::name)
}

/// `--norms`: a model of the LeNet family by its normalization (`none`, `batch`, `group`,
/// `layer`, `renorm`).
pub fn norm_parser() -> Named<ModelKind> {
    Named::new(ModelKind::ALL, ModelKind::norm_name)
}

/// `--model` where both of the brief's models may run: `lenet`, `lenet-bn` or `both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Models(&'static [ModelKind]);

impl Models {
    /// Every choice: each model alone, then both.
    pub const ALL: [Models; 3] = [
        Models(&[ModelKind::Lenet]),
        Models(&[ModelKind::LenetBn]),
        Models(&ModelKind::BRIEF),
    ];

    /// Both models, plain LeNet first.
    pub const BOTH: Models = Models(&ModelKind::BRIEF);

    /// The models, plain LeNet first.
    pub fn models(self) -> Vec<ModelKind> {
        self.0.to_vec()
    }

    /// The choice that trains exactly `models`, if there is one.
    pub fn of(models: &[ModelKind]) -> Option<Models> {
        Models::ALL.into_iter().find(|m| m.0 == models)
    }

    /// `lenet`, `lenet-bn` or `both`.
    pub fn name(self) -> &'static str {
        match self.0 {
            [one] => one.name(),
            _ => "both",
        }
    }

    /// The value parser of `--model`.
    pub fn parser() -> Named<Models> {
        Named::new(Models::ALL, Models::name)
    }
}

impl Serialize for Models {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Serde of a [`ModelKind`] by its name (`"lenet-bn"`), as `config.json` stores it.
pub mod model_name {
    use norma_layers::models::ModelKind;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(model: &ModelKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(model.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ModelKind, D::Error> {
        let word = String::deserialize(d)?;
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == word)
            .ok_or_else(|| {
                let names: Vec<String> = ModelKind::ALL.iter().map(|m| format!("`{m}`")).collect();
                de::Error::custom(format!(
                    "unknown variant `{word}`, expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Serialization of a [`ModelKind`] by its normalization's name (`"batch"`), as `batch-size`
/// writes its options and cells.
pub fn norm_name<S: Serializer>(model: &ModelKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(model.norm_name())
}

/// [`norm_name`] for a list.
pub fn norm_names<S: Serializer>(models: &[ModelKind], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(models.iter().map(|m| m.norm_name()))
}

/// `--bn`: how batch norm computes its training statistics in a data-parallel job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BnChoice {
    /// Over the global batch (synchronized batch norm): the training of one process.
    Sync,
    /// Over each process's shard (plain data parallelism): batches of N/K for batch norm.
    Local,
}

impl BnChoice {
    /// The value as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BnChoice::Sync => "sync",
            BnChoice::Local => "local",
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

/// The network `model` with `activation` and, with a normalization, its norms at `placement`,
/// with Xavier-uniform weights drawn from `rng`.
pub fn build_model(
    model: ModelKind,
    activation: ActivationChoice,
    placement: PlacementChoice,
    rng: &mut Rng,
) -> Result<Sequential, norma_layers::LayerError> {
    model.build_placed(activation.activation(), placement.placement(), rng)
}

/// The learning rate used when `--lr` is not given (batch 256): d2l's 0.9 for LeNet and 1.0
/// for LeNet-BN with SGD, LeNet-BN's 1.0 for the group- and layer-norm variants (normalized
/// like it), Adam's usual 1e-3.
pub fn default_lr(model: ModelKind, optimizer: OptimizerChoice) -> f64 {
    match (optimizer, model.is_normalized()) {
        (OptimizerChoice::Adam, _) => 1e-3,
        (OptimizerChoice::Sgd, false) => 0.9,
        (OptimizerChoice::Sgd, true) => 1.0,
    }
}

/// The name clap shows for a value of a `--flag` enum.
pub fn flag_value<T: clap::ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}
