//! What every command shares: choices on the command line, thread setup, data loading, and
//! [`ModelRun`] — one model with its optimizer, able to take a training step and evaluate.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use norma_autograd::{no_grad, Var};
use norma_datasets::{Batch, Dataset, DatasetKind, LoadOptions, Split};
use norma_layers::checkpoint;
use norma_layers::models::{Activation, ModelKind};
use norma_layers::{Module, Sequential};
use norma_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use norma_tensor::Rng;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Samples per forward pass when evaluating (fixed, so that accuracies printed by `train-lenet`
/// and `eval` come from identical computations).
pub const EVAL_BATCH: usize = 500;

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
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// The dataset.
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    pub dataset: DatasetChoice,
    /// Folder holding the four IDX files (.gz or extracted) [default: $NORMA_DATA_DIR,
    /// ./data/<dataset>/, Debian's package, then a download].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
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

/// The learning rate used when `--lr` is not given: d2l's 0.9 for LeNet and 1.0 for LeNet-BN
/// with SGD, Adam's usual 1e-3.
pub fn default_lr(model: ModelKind, optimizer: OptimizerChoice) -> f64 {
    match (optimizer, model) {
        (OptimizerChoice::Adam, _) => 1e-3,
        (OptimizerChoice::Sgd, ModelKind::Lenet) => 0.9,
        (OptimizerChoice::Sgd, ModelKind::LenetBn) => 1.0,
    }
}

/// Sizes the global rayon pool (`None`: one thread per core). Every kernel splits its work
/// independently of this number, so results do not depend on it.
pub fn setup_threads(threads: Option<usize>) -> Result<usize, Error> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(rayon::current_num_threads())
}

/// Loads the dataset (see norma-datasets for where it looks), optionally keeping only the first
/// `train_samples` training images, and says where it was found.
pub fn load_data(
    dataset: DatasetChoice,
    data_dir: Option<&Path>,
    train_samples: Option<usize>,
) -> Result<Dataset, Error> {
    let mut data = LoadOptions::new(dataset.kind())
        .data_dir(data_dir.map(Path::to_path_buf))
        .load()?;
    eprintln!(
        "{}: {} training and {} test images from {} ({})",
        dataset.kind().display_name(),
        data.train.len(),
        data.test.len(),
        data.location.dir.display(),
        data.location.origin
    );
    if let Some(n) = train_samples {
        if n < 2 || n > data.train.len() {
            return Err(Error::Usage(format!(
                "--train-samples must be between 2 and {}, got {n}",
                data.train.len()
            )));
        }
        let drop = data.train.len() - n;
        if drop > 0 {
            let (head, _) = data.train.split_tail(drop)?;
            data.train = head;
        }
    }
    Ok(data)
}

/// Everything that defines one model's training run (part of `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub model: ModelChoice,
    pub activation: ActivationChoice,
    pub optimizer: OptimizerChoice,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub batch_size: usize,
    pub epochs: usize,
    pub shuffle: bool,
    /// Stop after this many optimizer steps in total.
    pub steps: Option<u64>,
    /// Start from these weights and buffers instead of a fresh initialisation.
    pub init: Option<PathBuf>,
}

impl RunSpec {
    /// The seed of epoch `epoch`'s shuffle: distinct per epoch, fixed by the run seed.
    pub fn epoch_seed(&self, epoch: usize) -> u64 {
        self.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// One model being trained: network, optimizer, and the spec they came from.
pub struct ModelRun {
    pub spec: RunSpec,
    pub model: Sequential,
    pub optimizer: Box<dyn Optimizer>,
}

/// Loss and correct predictions of one training step.
pub struct StepOutcome {
    pub loss: f32,
    pub correct: usize,
}

impl ModelRun {
    /// Builds the model (Xavier-uniform from the seed, or the `init` checkpoint) and its
    /// optimizer.
    pub fn new(spec: RunSpec) -> Result<ModelRun, Error> {
        let kind = spec.model.kind();
        let model = kind.build(
            spec.activation.activation(),
            &mut Rng::seed_from_u64(spec.seed),
        )?;
        if let Some(init) = &spec.init {
            checkpoint::load(&model, init)?;
        }
        let params = model.parameters();
        let optimizer: Box<dyn Optimizer> = match spec.optimizer {
            OptimizerChoice::Sgd => Box::new(Sgd::new(
                params,
                SgdConfig {
                    lr: spec.lr,
                    momentum: spec.momentum,
                    ..SgdConfig::default()
                },
            )?),
            OptimizerChoice::Adam => Box::new(Adam::new(
                params,
                AdamConfig {
                    lr: spec.lr,
                    ..AdamConfig::default()
                },
            )?),
        };
        Ok(ModelRun {
            spec,
            model,
            optimizer,
        })
    }

    /// One optimizer step on `batch` in training mode (forward, mean cross-entropy, backward,
    /// update).
    pub fn step(&mut self, batch: Batch) -> Result<StepOutcome, Error> {
        self.model.train();
        self.optimizer.zero_grad();
        let logits = self.model.forward(&Var::constant(batch.images))?;
        let loss = logits.cross_entropy(&batch.labels)?;
        let loss_value = loss.value().item()?;
        let correct = count_correct(logits.value(), &batch.labels)?;
        if loss_value.is_finite() {
            loss.backward()?;
            self.optimizer.step()?;
        }
        Ok(StepOutcome {
            loss: loss_value,
            correct,
        })
    }

    /// Predicted class of every sample of `split`, in eval mode without recording a graph.
    pub fn predict(&mut self, split: &Split) -> Result<Vec<usize>, Error> {
        predict(&mut self.model, split)
    }
}

/// Predicted class of every sample of `split` (eval mode, no graph).
pub fn predict(model: &mut dyn Module, split: &Split) -> Result<Vec<usize>, Error> {
    model.eval();
    let mut out = Vec::with_capacity(split.len());
    for batch in split.eval_batches(EVAL_BATCH)? {
        let logits = no_grad(|| model.forward(&Var::constant(batch.images)))?;
        out.extend(logits.value().argmax_rows()?);
    }
    Ok(out)
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

fn count_correct(logits: &norma_tensor::Tensor, labels: &[usize]) -> Result<usize, Error> {
    let predicted = logits.argmax_rows()?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}
