//! `cargo xtask batch-size`: where batch norm breaks as the batch shrinks, and what the other
//! normalizations do there (Wu & He 2018, Figure 1). The LeNet family — no normalization
//! (`lenet`), batch (`lenet-bn`), group (`lenet-gn`) and layer norm (`lenet-ln`), and Batch
//! Renormalization (`lenet-brn`, Ioffe 2017), the remedy that keeps batch statistics — trains at
//! each batch size of a list for the same number of epochs over the same training images, so
//! every cell sees the same samples; only the batch size and, through [`LrRule`], the learning
//! rate change.
//!
//! - **Learning rate**: the rate of each model at batch [`REFERENCE_BATCH`] (`train-lenet`'s:
//!   0.9 for LeNet, 1.0 for the normalized variants) scaled with the batch size, linearly by
//!   default (Goyal et al. 2017, the rule Wu & He use): b/256 of the rate per step and 256/b
//!   as many steps keep the distance travelled per epoch. `--lr-rule sqrt` scales with
//!   √(b/256) instead.
//! - **Batch Renormalization's schedule**: Ioffe's proportions compressed into each cell's own
//!   run ([`crate::run::spec::renorm_schedule`] of epochs × steps per epoch): plain batch norm for the first
//!   eighth of the steps, then r_max relaxed linearly to 3 at the last step and d_max to 5 at
//!   five eighths. The paper's 5000-step warm-up would leave every cell at batch ≥ 32 (2 epochs
//!   are ≤ 3750 steps there) plain batch norm throughout. Its accuracy is measured like batch
//!   norm's, with precise statistics and with the moving averages.
//! - **Batch of one with batch norm**: BatchNorm1d (after fc1 and fc2) sees one value per
//!   channel and cannot compute a variance (nor can Batch Renormalization, which starts from
//!   the batch statistics). The cell takes one real training step on one image
//!   and records the error BatchNorm returns; the table shows "cannot train: one value per
//!   channel" and the report quotes the error in full.
//! - **The last batch of an epoch**: a last batch of one sample (the training set size modulo
//!   the batch size is 1, e.g. 60000 images in batches of 7) joins the batch before it, which
//!   then holds b + 1 samples — `train-lenet`'s rule ([`RunSpec::last_batch`]), for every
//!   model with batch size > 1, so every sample is seen and no batch norm sees a batch of one.
//!   At batch size 1 the models without batch norm train on every image alone.
//! - **Batch-norm accuracy**: with precise statistics (recomputed from the same
//!   `--precise-bn-images` training images at every batch size, in batches of the training
//!   batch size: 51,200 images by default, `train-lenet`'s 200 batches of 256) and with the
//!   moving averages kept during training.
//! - **Example-weighted inference** (Summers & Dinneen 2020): at the smallest batches (2 to
//!   [`EXAMPLE_WEIGHT_MAX_BATCH`]) LeNet-BN's final weights are also evaluated with every
//!   batch norm's eval statistics mixed with each test example's own by the weight
//!   α = 1/b ([`example_weight`]): in training each example was one of the b it was normalized
//!   with. The moving averages are the ones mixed (no precise statistics), so the column to
//!   compare with is the moving averages'; nothing is trained again.
//! - **Outcomes**: diverged / stalled / ok by [`crate::run::divergence::outcome`].
//!
//! Each cell is a `train-lenet` run in `runs/<model>-b<batch>-seed<seed>/` with its own report;
//! `batch-size.json`/`.csv`, a table ([`tables`]) and a chart ([`chart`]) summarise them.

pub mod chart;
pub mod tables;

use std::fmt::Write as _;
use std::time::Instant;

use clap::ValueEnum;
use norma_datasets::{Dataset, LastBatch, Order};
use norma_kernels::KernelError;
use norma_layers::{set_example_weight, LayerError};
use serde::{Deserialize, Serialize};

use norma_layers::models::ModelKind;

use crate::cli::args::{CommonArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::{
    default_lr, norm_name, norm_names, norm_parser, ActivationChoice, OptimizerChoice,
};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::run_dir::RunDir;
use crate::run::divergence;
use crate::run::model_run::{accuracy, ModelRun};
use crate::run::spec::RunSpec;

/// Batch sizes tried unless `--batch-sizes` says otherwise.
pub const DEFAULT_BATCH_SIZES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The batch size the base learning rates belong to (d2l's, `train-lenet`'s).
pub const REFERENCE_BATCH: usize = 256;

/// Training images precise statistics are averaged over unless `--precise-bn-images` says
/// otherwise: `train-lenet`'s 200 batches of 256.
pub const DEFAULT_PRECISE_IMAGES: usize = 51_200;

/// Epochs per cell unless `--epochs` says otherwise.
pub const DEFAULT_EPOCHS: usize = 2;

/// The largest batch size at which LeNet-BN is also evaluated with example-weighted inference
/// statistics ([`example_weight`]).
pub const EXAMPLE_WEIGHT_MAX_BATCH: usize = 8;

/// The example weight α batch norm's inference statistics get at `batch_size`: 1/b, the share
/// an example had in the statistics it was normalized with in training, for the batch sizes
/// 2..=[`EXAMPLE_WEIGHT_MAX_BATCH`] (at 1 batch norm cannot train); `None` at the others.
pub fn example_weight(batch_size: usize) -> Option<f64> {
    (2..=EXAMPLE_WEIGHT_MAX_BATCH)
        .contains(&batch_size)
        .then(|| 1.0 / batch_size as f64)
}

/// How the learning rate follows the batch size (`--lr-rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrRule {
    /// base × b / 256 (Goyal et al. 2017; Wu & He 2018).
    Linear,
    /// base × √(b / 256).
    Sqrt,
}

impl LrRule {
    /// The learning rate at batch size `batch` for a model whose rate at [`REFERENCE_BATCH`] is
    /// `base`.
    pub fn lr(self, base: f64, batch: usize) -> f64 {
        let ratio = batch as f64 / REFERENCE_BATCH as f64;
        match self {
            LrRule::Linear => base * ratio,
            LrRule::Sqrt => base * ratio.sqrt(),
        }
    }

    /// `linear` or `sqrt`.
    pub fn name(self) -> &'static str {
        match self {
            LrRule::Linear => "linear",
            LrRule::Sqrt => "sqrt",
        }
    }
}

/// Arguments of `batch-size` (by default one seed, 2 epochs of the whole training set at each
/// batch size: 45 cells, about 19 minutes on 2 cores; the reproduce plan's 3 seeds about an
/// hour).
#[derive(Debug, clap::Args, Serialize)]
#[command(mut_arg("seeds", |a| a.default_value("1")))]
pub struct BatchSizeArgs {
    /// Batch sizes, each once (space- or comma-separated).
    #[arg(long, num_args = 1.., value_delimiter = ',', default_values_t = DEFAULT_BATCH_SIZES)]
    pub batch_sizes: Vec<usize>,
    /// Normalizations, each once: none (lenet), batch (lenet-bn), group (lenet-gn), layer
    /// (lenet-ln), renorm (lenet-brn: Batch Renormalization, its schedule compressed into the
    /// cell's steps).
    #[arg(long, value_parser = norm_parser(), num_args = 1.., value_delimiter = ',', default_values = ["none", "batch", "group", "layer", "renorm"])]
    #[serde(serialize_with = "norm_names")]
    pub norms: Vec<ModelKind>,
    /// Epochs per cell: every batch size sees the same images this many times.
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// How the learning rate follows the batch size, from each model's rate at batch 256
    /// (0.9 for lenet, 1.0 for the others): linear (b/256) or sqrt (√(b/256)).
    #[arg(long, value_enum, default_value = "linear")]
    pub lr_rule: LrRule,
    /// Activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    /// Measure batch norm's test accuracy also with statistics recomputed from this many
    /// training images (in batches of the training batch size; 0: only with the moving
    /// averages).
    #[arg(long, default_value_t = DEFAULT_PRECISE_IMAGES)]
    pub precise_bn_images: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub seeds: SeedArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// How a cell ended when it could not train at all.
pub const CANNOT_TRAIN: &str = "cannot train";

/// One cell: a normalization at a batch size for one seed.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSizeRun {
    /// The model, written by its normalization (`none`, `batch`, ...).
    #[serde(serialize_with = "norm_name")]
    pub norm: ModelKind,
    pub model: &'static str,
    pub batch_size: usize,
    pub seed: u64,
    pub lr: f64,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Final test accuracy: with precise statistics for batch norm (unless
    /// `--precise-bn-images 0`); `None` for a cell that cannot train.
    pub final_test_acc: Option<f64>,
    /// Batch norm's final test accuracy with the moving averages, when precise statistics
    /// were measured.
    pub final_test_acc_moving_avg: Option<f64>,
    /// LeNet-BN's final test accuracy with the moving averages mixed with each example's
    /// statistics by [`BatchSizeRun::example_weight`], at the smallest batches.
    pub final_test_acc_example_weighted: Option<f64>,
    /// The example weight α of that accuracy ([`example_weight`]).
    pub example_weight: Option<f64>,
    /// `ok`, `stalled`, `diverged` ([`divergence::outcome`]) or `cannot train`.
    pub outcome: &'static str,
    /// Why the cell cannot train, in short (`one value per channel`).
    pub reason: Option<String>,
    /// The error the model returned when it could not train, in full.
    pub error: Option<String>,
    /// The largest batch loss of a step taken.
    pub max_batch_loss: Option<f64>,
    /// Seconds of training steps (evaluation excluded).
    pub train_seconds: f64,
}

impl BatchSizeRun {
    /// What the tables show for a cell that trained: the accuracy, and the outcome unless ok.
    pub fn label(&self, acc: Option<f64>) -> String {
        match (&self.reason, acc) {
            (Some(reason), _) => format!("{CANNOT_TRAIN}: {reason}"),
            (None, Some(a)) if self.outcome == "ok" => format!("{a:.4}"),
            (None, Some(a)) => format!("{a:.4} {}", self.outcome.to_uppercase()),
            (None, None) => "-".into(),
        }
    }
}

/// Checks every option before anything is created or loaded.
fn check(args: &BatchSizeArgs) -> Result<(), Error> {
    let train_len = args.common.check()?;
    for (i, &b) in args.batch_sizes.iter().enumerate() {
        if b == 0 {
            return Err(Error::Usage(
                "every --batch-sizes value must be at least 1, got 0".into(),
            ));
        }
        if b > train_len {
            return Err(Error::Usage(format!(
                "--batch-sizes {b} is larger than the training set ({train_len} images); use at most {train_len}, or more --train-samples"
            )));
        }
        if args.batch_sizes[..i].contains(&b) {
            return Err(Error::Usage(format!(
                "--batch-sizes lists {b} more than once; give each batch size once (--seeds sets the repeats)"
            )));
        }
    }
    for (i, n) in args.norms.iter().enumerate() {
        if args.norms[..i].contains(n) {
            return Err(Error::Usage(format!(
                "--norms lists {} more than once",
                n.norm_name()
            )));
        }
    }
    checks::at_least_one("--epochs", args.epochs as u64)?;
    args.seeds.check()?;
    for &n in &args.norms {
        let base = default_lr(n, OptimizerChoice::Sgd);
        for &b in &args.batch_sizes {
            checks::learning_rate("the learning rate", args.lr_rule.lr(base, b))?;
        }
    }
    Ok(())
}

/// The training run of one cell, on `data`: for Batch Renormalization with its schedule
/// compressed into the cell's steps (see the module docs).
fn spec(
    args: &BatchSizeArgs,
    model: ModelKind,
    batch_size: usize,
    seed: u64,
    data: &Dataset,
) -> Result<RunSpec, Error> {
    let base = RunSpec::recipe(model, args.activation, seed, args.epochs);
    let mut spec = RunSpec {
        lr: args.lr_rule.lr(base.lr, batch_size),
        batch_size,
        precise_bn: args.precise_bn_images.div_ceil(batch_size),
        ..base
    };
    // (At batch 1 renorm cannot train and has no batches to count: see [`cannot_train`].)
    if model == ModelKind::LenetBrn && batch_size > 1 {
        let steps = spec.epoch_batches(data, 0)?.len() * args.epochs;
        spec.renorm_steps = Some(steps as u64);
    }
    Ok(spec)
}

/// Whether a model cannot train at this batch size: batch norm on batches of one image. Then
/// one real training step on the first training image alone gives the error, in full and in
/// short; `None` when the model can train.
fn cannot_train(spec: &RunSpec, data: &Dataset) -> Result<Option<(String, String)>, Error> {
    if !(spec.batch_size == 1 && spec.model.has_batch_norm()) {
        return Ok(None);
    }
    let mut run = ModelRun::new(spec.clone())?;
    let Some(batch) = data
        .train
        .batches(1, Order::Sequential, LastBatch::Keep)?
        .next()
    else {
        return Err(Error::Usage("the training set is empty".into()));
    };
    match run.step(batch) {
        Ok(_) => Err(Error::Usage(format!(
            "{} trained on a batch of one image; batch norm should have refused it",
            spec.model.name()
        ))),
        Err(e) => Ok(Some((reason(&e), e.to_string()))),
    }
}

/// The short form of the error a model returned for a batch it cannot train on: `one value
/// per channel` for batch norm's, else the error itself.
pub fn reason(e: &Error) -> String {
    match e {
        Error::Layer(LayerError::Kernel(KernelError::SingleValuePerChannel { .. })) => {
            "one value per channel".into()
        }
        other => other.to_string(),
    }
}

/// Runs `batch-size`; returns the signal that interrupted it, if one did.
pub fn run(args: BatchSizeArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("batch-size", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let started = Instant::now();
    let runs_dir = session.dir.subdir("runs")?;
    let seeds = args.seeds.list();
    let total = seeds.len() * args.norms.len() * args.batch_sizes.len();
    let mut runs = Vec::new();
    for &seed in &seeds {
        for &batch_size in &args.batch_sizes {
            for &norm in &args.norms {
                let spec = spec(&args, norm, batch_size, seed, &session.data)?;
                let name = format!("{}-b{batch_size}-seed{seed}", spec.model.name());
                eprintln!(
                    "\n== run {}/{total}: {name} (lr {}, {:.0} s so far)",
                    runs.len() + 1,
                    tables::short_lr(spec.lr),
                    started.elapsed().as_secs_f64()
                );
                let cell = match cannot_train(&spec, &session.data)? {
                    Some((reason, error)) => {
                        eprintln!("{name}: {CANNOT_TRAIN}: {error}");
                        BatchSizeRun {
                            norm,
                            model: spec.model.name(),
                            batch_size,
                            seed,
                            lr: spec.lr,
                            steps_per_epoch: 0,
                            final_test_acc: None,
                            final_test_acc_moving_avg: None,
                            final_test_acc_example_weighted: None,
                            example_weight: None,
                            outcome: CANNOT_TRAIN,
                            reason: Some(reason),
                            error: Some(error),
                            max_batch_loss: None,
                            train_seconds: 0.0,
                        }
                    }
                    None => {
                        let steps_per_epoch = spec.epoch_batches(&session.data, 0)?.len();
                        let record = match session.train(&runs_dir, &name, vec![spec.clone()])? {
                            Ok(mut records) => records.remove(0),
                            Err(signal) => return Ok(Some(signal)),
                        };
                        let alpha =
                            example_weight(batch_size).filter(|_| norm == ModelKind::LenetBn);
                        let weighted = match alpha {
                            Some(a) => {
                                let weights = runs_dir
                                    .path()
                                    .join(&name)
                                    .join(format!("{}.safetensors", spec.model.name()));
                                Some(example_weighted_acc(&spec, &weights, a, &session.data)?)
                            }
                            None => None,
                        };
                        BatchSizeRun {
                            norm,
                            model: spec.model.name(),
                            batch_size,
                            seed,
                            lr: spec.lr,
                            steps_per_epoch,
                            final_test_acc: record.headline_acc(),
                            final_test_acc_moving_avg: record
                                .final_test_acc_precise
                                .and(record.final_test_acc),
                            final_test_acc_example_weighted: weighted,
                            example_weight: alpha,
                            outcome: divergence::outcome(&record),
                            reason: None,
                            error: None,
                            max_batch_loss: Some(record.max_batch_loss),
                            train_seconds: record.epochs.iter().map(|e| e.seconds).sum(),
                        }
                    }
                };
                runs.push(cell);
            }
        }
    }
    write_results(&session.dir, &runs)?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let table = tables::accuracy_table(&args, &runs);
    println!("\nfinal test accuracy:\n{}", table.text());
    let errors = tables::errors(&runs);
    for line in &errors {
        println!("{line}");
    }
    println!("{total} cells in {minutes:.1} min");
    let mut page = Page::new("batch-size: test accuracy against batch size, per normalization");
    page.text(tables::description(&args, minutes));
    page.heading("Final test accuracy").table(table);
    for line in errors {
        page.text(line);
    }
    page.figure(
        "the batch-size chart",
        chart::chart(&session.dir, &args, &runs),
    );
    session.finish(page, &args)?;
    Ok(None)
}

/// The test accuracy of the trained weights `weights` of `spec`'s model with every batch norm's
/// example weight set to `alpha` (the moving averages mixed with each example's statistics).
fn example_weighted_acc(
    spec: &RunSpec,
    weights: &std::path::Path,
    alpha: f64,
    data: &Dataset,
) -> Result<f64, Error> {
    let mut run = ModelRun::new(RunSpec {
        init: Some(weights.to_path_buf()),
        ..spec.clone()
    })?;
    set_example_weight(&mut run.model, alpha)?;
    Ok(accuracy(&run.predict(&data.test)?, data.test.labels()))
}

/// `batch-size.json` and `batch-size.csv`: one entry per cell.
fn write_results(dir: &RunDir, runs: &[BatchSizeRun]) -> Result<(), Error> {
    dir.write_json("batch-size.json", &runs)?;
    let mut csv = String::from(
        "norm,model,batch_size,seed,lr,steps_per_epoch,final_test_acc,final_test_acc_moving_avg,final_test_acc_example_weighted,example_weight,outcome,reason,max_batch_loss,train_seconds\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}",
            r.norm.norm_name(),
            r.model,
            r.batch_size,
            r.seed,
            r.lr,
            r.steps_per_epoch,
            opt(r.final_test_acc),
            opt(r.final_test_acc_moving_avg),
            opt(r.final_test_acc_example_weighted),
            opt(r.example_weight),
            r.outcome,
            r.reason
                .as_deref()
                .map_or(String::new(), |s| format!("\"{}\"", s.replace('"', "\"\""))),
            opt(r.max_batch_loss),
            r.train_seconds
        );
    }
    dir.write("batch-size.csv", csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norms_error_is_named_in_short_and_others_in_full() {
        let single = Error::Layer(LayerError::Kernel(KernelError::SingleValuePerChannel {
            shape: vec![1, 120],
        }));
        assert_eq!(reason(&single), "one value per channel");
        let other = Error::Layer(LayerError::Kernel(KernelError::TooFewValues { count: 1 }));
        assert_eq!(reason(&other), other.to_string());
    }

    #[test]
    fn example_weights_are_one_over_the_smallest_batch_sizes() {
        assert_eq!(example_weight(1), None);
        assert_eq!(example_weight(2), Some(0.5));
        assert_eq!(example_weight(8), Some(0.125));
        assert_eq!(example_weight(16), None);
        assert_eq!(example_weight(256), None);
    }

    #[test]
    fn learning_rates_scale_from_batch_256() {
        assert_eq!(LrRule::Linear.lr(1.0, 256), 1.0);
        assert_eq!(LrRule::Linear.lr(0.9, 128), 0.45);
        assert_eq!(LrRule::Linear.lr(1.0, 1), 1.0 / 256.0);
        assert_eq!(LrRule::Sqrt.lr(1.0, 64), 0.5);
        assert_eq!(LrRule::Sqrt.lr(1.0, 1), 1.0 / 16.0);
    }
}
