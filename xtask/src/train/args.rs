//! The command line of `train-lenet`. Options that define the experiment are `Option`s with
//! their defaults applied in [`super::config`], so that `--resume` can tell which ones were
//! given and refuse those that contradict the stored run.

use std::path::PathBuf;

use crate::cli::args::CommonArgs;
use crate::cli::choices::BnChoice;
use crate::cli::choices::{ActivationChoice, Models, OptimizerChoice, PlacementChoice};

/// Arguments of `train-lenet`.
#[derive(Debug, Default, clap::Args)]
pub struct TrainArgs {
    /// Which model(s) to train [default: both].
    #[arg(long, value_parser = Models::parser())]
    pub model: Option<Models>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Epochs to train [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per training batch, at most the training set [default: 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: 0.9 for lenet, 1.0 for lenet-bn with SGD; 0.001 with Adam].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The optimizer [default: sgd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerChoice>,
    /// SGD momentum, in [0, 1) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Activation: sigmoid with average pooling (d2l), or relu with max pooling [default:
    /// sigmoid].
    #[arg(long, value_enum)]
    pub activation: Option<ActivationChoice>,
    /// LeNet-BN's batch norms before or after the activations [default: before].
    #[arg(long, value_enum)]
    pub placement: Option<PlacementChoice>,
    /// Seed of the initialisation and of the data order [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// After every epoch, also measure test accuracy with batch-norm statistics recomputed from
    /// this many training batches (precise BN; 0: off) [default: 200]. Training itself is
    /// unchanged; MODEL-precise-bn.safetensors holds the final weights with these statistics.
    #[arg(long, allow_negative_numbers = true)]
    pub precise_bn: Option<usize>,
    /// Stop after this many optimizer steps in total.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Visit training batches in file order instead of shuffling.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Start from these weights and buffers (safetensors, PyTorch state_dict names).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Freeze the batch norms of the --init model (torchvision's FrozenBatchNorm2d: its
    /// statistics, γ and β fixed, none trained) and train the rest: fine-tuning at batches too
    /// small for batch statistics.
    #[arg(long, requires = "init")]
    pub freeze_bn: bool,
    /// Batch-norm statistics in a data-parallel run (under mpirun; needs the cargo feature
    /// `mpi`): over the global batch (sync), or over each process's shard (local) [default:
    /// sync].
    #[arg(long, value_enum)]
    pub bn: Option<BnChoice>,
    /// Continue the run stored in this folder. --epochs, --steps, --threads and --data-dir may
    /// be given again; any other option must match the stored configuration.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}
