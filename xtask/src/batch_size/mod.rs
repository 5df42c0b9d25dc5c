//! `cargo xtask batch-size`: where batch norm breaks as the batch shrinks, and what the other
//! normalizations and batch norm's remedies do there (Wu & He 2018, Figure 1). The LeNet
//! family — no normalization (`lenet`), batch (`lenet-bn`), group (`lenet-gn`) and layer norm
//! (`lenet-ln`), Batch Renormalization (`lenet-brn`, Ioffe 2017) and ghost batch norm
//! (`lenet-gbn`, Hoffer et al. 2017), the remedies that keep batch statistics — trains at each
//! batch size of a list for the same number of epochs over the same training images, so every
//! cell sees the same samples; only the batch size and, through [`LrRule`], the learning rate
//! change. Then each seed's LeNet-BN trained at the largest batch size is fine-tuned at a tiny
//! batch with its batch norms live and frozen ([`fine_tune`]).
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
//! - **Ghost batch norm** at the batch sizes above `--ghost-batch` (16 by default): each batch
//!   normalized in ghost batches of 16 samples, one running estimate; at or below 16 it is
//!   batch norm bit for bit, and not run again.
//! - **Batch of one with batch norm**: BatchNorm1d (after fc1 and fc2) sees one value per
//!   channel and cannot compute a variance (nor can Batch Renormalization, which starts from
//!   the batch statistics). The cell takes one real training step on one image
//!   and records the error BatchNorm returns; the table shows "cannot train: one value per
//!   channel" and the report quotes the error in full.
//! - **The last batch of an epoch**: a last batch of one sample (the training set size modulo
//!   the batch size is 1, e.g. 60000 images in batches of 7) joins the batch before it, which
//!   then holds b + 1 samples — `train-lenet`'s rule ([`crate::run::spec::RunSpec::last_batch`]), for every
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
//! `batch-size.json`/`.csv`, `summary.csv` (the table), `remedies.csv` (which column wins at
//! each batch size), `fine-tune.json`/`.csv`, the tables ([`tables`]) and the chart ([`chart`])
//! summarise them ([`results`]).

pub mod cell;
pub mod chart;
pub mod fine_tune;
pub mod results;
pub mod tables;

use std::time::Instant;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use norma_layers::models::{ModelKind, DEFAULT_GHOST_BATCH};

use crate::cli::args::{CommonArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::{
    default_lr, norm_name, norm_names, norm_parser, ActivationChoice, OptimizerChoice,
};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;

/// Batch sizes tried unless `--batch-sizes` says otherwise.
pub const DEFAULT_BATCH_SIZES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The batch size the base learning rates belong to (d2l's, `train-lenet`'s).
pub const REFERENCE_BATCH: usize = 256;

/// Training images precise statistics are averaged over unless `--precise-bn-images` says
/// otherwise: `train-lenet`'s 200 batches of 256.
pub const DEFAULT_PRECISE_IMAGES: usize = 51_200;

/// Epochs per cell unless `--epochs` says otherwise.
pub const DEFAULT_EPOCHS: usize = 2;

/// The fine-tuning batch size unless `--fine-tune-batch` says otherwise: 2, detection's
/// images per GPU and the smallest batch live batch norm can train at.
pub const DEFAULT_FINE_TUNE_BATCH: usize = 2;

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
/// batch size: 49 cells and two fine-tunings, about 12 minutes on 2 cores; the reproduce plan
/// runs 3 seeds, and docs/experiments.md states the time they took).
#[derive(Debug, clap::Args, Serialize)]
#[command(mut_arg("seeds", |a| a.default_value("1")))]
pub struct BatchSizeArgs {
    /// Batch sizes, each once (space- or comma-separated).
    #[arg(long, num_args = 1.., value_delimiter = ',', default_values_t = DEFAULT_BATCH_SIZES)]
    pub batch_sizes: Vec<usize>,
    /// Normalizations, each once: none (lenet), batch (lenet-bn), group (lenet-gn), layer
    /// (lenet-ln), renorm (lenet-brn: Batch Renormalization, its schedule compressed into the
    /// cell's steps), ghost (lenet-gbn: ghost batch norm, at batch sizes above --ghost-batch).
    #[arg(long, value_parser = norm_parser(), num_args = 1.., value_delimiter = ',', default_values = ["none", "batch", "group", "layer", "renorm", "ghost"])]
    #[serde(serialize_with = "norm_names")]
    pub norms: Vec<ModelKind>,
    /// Epochs per cell: every batch size sees the same images this many times.
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// Samples per ghost batch of ghost batch norm (which runs at the batch sizes above it).
    #[arg(long, default_value_t = DEFAULT_GHOST_BATCH)]
    pub ghost_batch: usize,
    /// The batch size LeNet-BN trained at the largest batch size is fine-tuned at, with its
    /// batch norms live and frozen.
    #[arg(long, default_value_t = DEFAULT_FINE_TUNE_BATCH)]
    pub fine_tune_batch: usize,
    /// Epochs of that fine-tuning (0: none).
    #[arg(long, default_value_t = 1)]
    pub fine_tune_epochs: usize,
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
    /// `ok`, `stalled`, `diverged` ([`crate::run::divergence::outcome`]) or `cannot train`.
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
        match &self.reason {
            Some(reason) => format!("{CANNOT_TRAIN}: {reason}"),
            None => outcome_label(acc, self.outcome),
        }
    }
}

/// An accuracy as the tables show it, with the run's outcome when it is not `ok`; `-` for none.
pub fn outcome_label(acc: Option<f64>, outcome: &str) -> String {
    match acc {
        Some(a) if outcome == "ok" => format!("{a:.4}"),
        Some(a) => format!("{a:.4} {}", outcome.to_uppercase()),
        None => "-".into(),
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
    if args.norms.contains(&ModelKind::LenetGbn) {
        check_ghost_batches(args, train_len)?;
    }
    if fine_tune::is_run(args) && !(2..=train_len).contains(&args.fine_tune_batch) {
        return Err(Error::Usage(format!(
            "--fine-tune-batch must be between 2 (live batch norm needs two samples) and the training set's {train_len} images, got {}",
            args.fine_tune_batch
        )));
    }
    for &n in &args.norms {
        let base = default_lr(n, OptimizerChoice::Sgd);
        for &b in &args.batch_sizes {
            checks::learning_rate("the learning rate", args.lr_rule.lr(base, b))?;
        }
    }
    Ok(())
}

/// Ghost batch norm cannot normalize a ghost batch of one sample (its fully connected layers
/// would see one value per channel): refuse a ghost size below 2, and a batch size whose
/// batches — the full ones, and the last one after a single sample joined the batch before it
/// — leave one sample over in their last ghost batch.
fn check_ghost_batches(args: &BatchSizeArgs, train_len: usize) -> Result<(), Error> {
    let v = args.ghost_batch;
    if v < 2 {
        return Err(Error::Usage(format!(
            "--ghost-batch must be at least 2 (a ghost batch of one sample has one value per channel), got {v}"
        )));
    }
    for &b in args.batch_sizes.iter().filter(|&&b| b > v) {
        let last = match train_len % b {
            0 => b,
            1 => b + 1,
            r => r,
        };
        if let Some(m) = [b, last].into_iter().find(|m| m % v == 1) {
            return Err(Error::Usage(format!(
                "at batch size {b} a batch of {m} samples leaves one sample in its last ghost batch of --ghost-batch {v}; choose another --ghost-batch or batch size"
            )));
        }
    }
    Ok(())
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
    let per_seed: usize = args
        .batch_sizes
        .iter()
        .map(|&b| {
            let run = |n: &&ModelKind| cell::is_run(&args, **n, b);
            args.norms.iter().filter(run).count()
        })
        .sum();
    let total = seeds.len() * per_seed;
    let largest = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let mut runs = Vec::new();
    let mut fine_tunes = Vec::new();
    for &seed in &seeds {
        for &batch_size in &args.batch_sizes {
            for &norm in &args.norms {
                if !cell::is_run(&args, norm, batch_size) {
                    continue;
                }
                let spec = cell::spec(&args, norm, batch_size, seed, &session.data)?;
                let name = format!("{}-b{batch_size}-seed{seed}", spec.model.name());
                eprintln!(
                    "\n== run {}/{total}: {name} (lr {}, {:.0} s so far)",
                    runs.len() + 1,
                    tables::short_lr(spec.lr),
                    started.elapsed().as_secs_f64()
                );
                match cell::run_cell(&session, &runs_dir, &name, &spec)? {
                    Ok(cell) => runs.push(cell),
                    Err(signal) => return Ok(Some(signal)),
                }
            }
        }
        if fine_tune::is_run(&args) {
            let Some(source) = runs.iter().find(|r| {
                r.seed == seed && r.norm == ModelKind::LenetBn && r.batch_size == largest
            }) else {
                continue;
            };
            let source_name = format!("{}-b{largest}-seed{seed}", source.model);
            match fine_tune::fine_tune(&session, &args, &runs_dir, source, &source_name)? {
                Ok(Some(done)) => fine_tunes.push(done),
                Ok(None) => {}
                Err(signal) => return Ok(Some(signal)),
            }
        }
    }
    let summary = results::write(&session.dir, &args, &runs, &fine_tunes)?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!("\nfinal test accuracy:\n{}", summary.accuracy.text());
    let errors = tables::errors(&runs);
    for line in &errors {
        println!("{line}");
    }
    println!("\nbest at each batch size:\n{}", summary.remedies.text());
    if let Some(t) = &summary.fine_tune {
        println!("\nfine-tuning:\n{}", t.text());
    }
    println!("{total} cells in {minutes:.1} min");
    let mut page = Page::new("batch-size: test accuracy against batch size, per normalization");
    page.text(tables::description(&args, minutes));
    page.heading("Final test accuracy").table(summary.accuracy);
    for line in errors {
        page.text(line);
    }
    page.figure(
        "the batch-size chart",
        chart::chart(&session.dir, &args, &runs),
    );
    page.heading("Best at each batch size")
        .table(summary.remedies);
    if let Some(t) = summary.fine_tune {
        page.heading("Fine-tuning at a tiny batch: live or frozen batch norm")
            .text(tables::fine_tune_description(&args, largest))
            .table(t);
    }
    session.finish(page, &args)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> BatchSizeArgs {
        let line = ["xtask", "batch-size"]
            .into_iter()
            .chain(extra.iter().copied());
        match crate::Cli::try_parse_from(line).unwrap().command {
            crate::Command::BatchSize(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn ghost_batches_of_one_sample_are_refused_before_training() {
        // The defaults: batches of 32–256 over 60,000 images in ghosts of 16 never leave one.
        assert!(check_ghost_batches(&args(&[]), 60_000).is_ok());
        for bad in [&["--ghost-batch", "1"][..], &["--ghost-batch", "0"]] {
            let e = check_ghost_batches(&args(bad), 60_000)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--ghost-batch must be at least 2"), "{e}");
        }
        // Batches of 17 in ghosts of 16 leave one sample.
        let e = check_ghost_batches(&args(&["--batch-sizes", "17"]), 34)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch size 17") && e.contains("17 samples"),
            "{e}"
        );
        // 20 images in batches of 19: the last one joins (20 = 16 + 4), fine; 49 in batches of
        // 32: a last batch of 17 = 16 + 1.
        assert!(check_ghost_batches(&args(&["--batch-sizes", "19"]), 20).is_ok());
        let e = check_ghost_batches(&args(&["--batch-sizes", "32"]), 49)
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch of 17 samples"), "{e}");
        // Ghost batch norm at or below its ghost size is batch norm, not run.
        let a = args(&[]);
        assert!(!cell::is_run(&a, ModelKind::LenetGbn, 16));
        assert!(cell::is_run(&a, ModelKind::LenetGbn, 32));
        assert!(cell::is_run(&a, ModelKind::LenetBn, 1));
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
