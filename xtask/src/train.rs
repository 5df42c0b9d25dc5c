//! `cargo xtask train-lenet`: the batch-norm experiment. Trains LeNet and/or LeNet-BN, prints a
//! row per epoch, and writes metrics, plots, weights, the config and resumable checkpoints to
//! the output folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use norma_datasets::{Batches, Dataset, LastBatch, Order};
use norma_layers::checkpoint::{self, StateValue};
use norma_layers::models::ModelKind;
use norma_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::common::{
    accuracy, default_lr, load_data, setup_threads, ActivationChoice, DataArgs, DatasetChoice,
    ModelChoice, ModelRun, ModelsChoice, OptimizerChoice, RunSpec,
};
use crate::report::{self, EpochRow, RunRecord, Status};
use crate::{plot, Error};

/// Arguments of `train-lenet`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Which model(s) to train.
    #[arg(long, value_enum, default_value = "both")]
    pub model: ModelsChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Epochs to train [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per training batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Learning rate [default: 0.9 for lenet, 1.0 for lenet-bn with SGD; 0.001 with Adam].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The optimizer.
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerChoice,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub momentum: f64,
    /// Activation: sigmoid with average pooling (d2l), or relu with max pooling.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    /// Seed of the initialisation and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads [default: one per core]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Visit training batches in file order instead of shuffling.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Start from these weights and buffers (safetensors, PyTorch state_dict names).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Output folder [default: runs/<timestamp>/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this folder with its saved configuration (--epochs, --steps
    /// and --threads may be given again; other options are ignored).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Train on the first N training images only (quick experiments and tests).
    #[arg(long)]
    pub train_samples: Option<usize>,
}

/// Everything needed to rerun an experiment (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetChoice,
    pub data_dir: Option<PathBuf>,
    pub train_samples: Option<usize>,
    pub threads: Option<usize>,
    pub runs: Vec<RunSpec>,
    /// The command line that produced this configuration.
    pub command: Vec<String>,
    pub norma_version: String,
}

/// Where a model's training stands: saved in checkpoints so that a resumed run continues
/// exactly (same batches, same accumulated metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0-based epoch in progress.
    pub epoch: usize,
    /// Steps already taken in that epoch.
    pub step_in_epoch: usize,
    /// Steps taken in total.
    pub global_step: u64,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub epoch_seconds: f64,
    pub last_finite_loss: Option<f64>,
    pub record: RunRecord,
}

impl Progress {
    fn fresh(spec: &RunSpec) -> Progress {
        Progress {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            epoch_seconds: 0.0,
            last_finite_loss: None,
            record: RunRecord {
                model: spec.model.kind().name().to_string(),
                lr: spec.lr,
                status: Status::Running,
                epochs: Vec::new(),
                final_test_acc: None,
                max_batch_loss: 0.0,
            },
        }
    }

    fn finished(&self, spec: &RunSpec) -> bool {
        match self.record.status {
            Status::Diverged { .. } => true,
            Status::StepLimit { step } => spec.steps.is_some_and(|s| step >= s),
            _ => self.epoch >= spec.epochs,
        }
    }
}

/// Set by Ctrl-C: the training loops stop after the current step.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
fn watch_ctrl_c() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current step (press Ctrl-C again to quit at once)...");
        });
        if let Err(e) = result {
            eprintln!("warning: Ctrl-C will not stop training cleanly: {e}");
        }
    });
}

/// Runs `train-lenet`.
pub fn run(args: TrainArgs) -> Result<(), Error> {
    let (config, out_dir) = match &args.resume {
        Some(dir) => (resumed_config(dir, &args)?, dir.clone()),
        None => (
            new_config(&args)?,
            args.out.clone().unwrap_or_else(default_out_dir),
        ),
    };
    let threads = setup_threads(config.threads)?;
    for spec in &config.runs {
        // Building each model once fails fast on an --init file that does not fit it.
        ModelRun::new(spec.clone())?;
    }
    let data = load_data(
        config.dataset,
        config.data_dir.as_deref(),
        config.train_samples,
    )?;
    eprintln!("writing to {} ({threads} threads)", out_dir.display());
    let records = execute(&config, &out_dir, &data)?;
    println!("\n{}", report::summary(&records));
    if records
        .iter()
        .any(|r| matches!(r.status, Status::Interrupted { .. }))
    {
        eprintln!(
            "interrupted; checkpoints are in {}. Resume with:\n  cargo xtask train-lenet --resume {}",
            out_dir.join("checkpoint").display(),
            out_dir.display()
        );
    } else {
        eprintln!("results in {}", out_dir.display());
    }
    Ok(())
}

/// Trains every model of `config` on `data`, writing all outputs to `out_dir`; stops early
/// (after saving checkpoints) on Ctrl-C.
pub fn execute(
    config: &TrainConfig,
    out_dir: &Path,
    data: &Dataset,
) -> Result<Vec<RunRecord>, Error> {
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    report::write_json(&out_dir.join("config.json"), config)?;
    watch_ctrl_c();
    println!("{}", report::table_header());
    let mut records = Vec::new();
    for spec in &config.runs {
        let record = train_model(spec, data, out_dir, &STOP)?;
        let interrupted = matches!(record.status, Status::Interrupted { .. });
        records.push(record);
        report::write_metrics(out_dir, &records)?;
        if interrupted {
            break;
        }
    }
    if let Err(e) = plot::training_curves(out_dir, &records) {
        eprintln!("warning: plots not written: {e}");
    }
    Ok(records)
}

pub fn new_config(args: &TrainArgs) -> Result<TrainConfig, Error> {
    let epochs = args.epochs.unwrap_or(10);
    if epochs == 0 {
        return Err(Error::Usage("--epochs must be at least 1".into()));
    }
    if args.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if args.steps == Some(0) {
        return Err(Error::Usage("--steps must be at least 1".into()));
    }
    let kinds = args.model.kinds();
    if args.batch_size == 1 && kinds.iter().any(|k| k.has_batch_norm()) {
        return Err(Error::Usage(
            "--batch-size 1 cannot train batch norm (one value per channel has no variance); use 2 or more".into(),
        ));
    }
    if let Some(lr) = args.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Usage(format!(
                "--lr must be a positive finite number, got {lr}"
            )));
        }
    }
    if !(args.momentum.is_finite() && (0.0..1.0).contains(&args.momentum)) {
        return Err(Error::Usage(format!(
            "--momentum must be in [0, 1), got {}",
            args.momentum
        )));
    }
    if args.init.is_some() && kinds.len() > 1 {
        return Err(Error::Usage(
            "--init holds one model's weights: add --model lenet or --model lenet-bn".into(),
        ));
    }
    if let Some(init) = &args.init {
        if !init.is_file() {
            return Err(Error::Usage(format!(
                "--init {}: no such file",
                init.display()
            )));
        }
    }
    let runs = kinds
        .into_iter()
        .map(|kind| RunSpec {
            model: match kind {
                ModelKind::Lenet => ModelChoice::Lenet,
                ModelKind::LenetBn => ModelChoice::LenetBn,
            },
            activation: args.activation,
            optimizer: args.optimizer,
            lr: args.lr.unwrap_or_else(|| default_lr(kind, args.optimizer)),
            momentum: args.momentum,
            seed: args.seed,
            batch_size: args.batch_size,
            epochs,
            shuffle: !args.no_shuffle,
            steps: args.steps,
            init: args.init.clone(),
        })
        .collect();
    Ok(TrainConfig {
        dataset: args.data.dataset,
        data_dir: args.data.data_dir.clone(),
        train_samples: args.train_samples,
        threads: args.threads,
        runs,
        command: std::env::args().collect(),
        norma_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The saved configuration of `dir`, with `--epochs`, `--steps` and `--threads` from the
/// command line applied on top.
fn resumed_config(dir: &Path, args: &TrainArgs) -> Result<TrainConfig, Error> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "--resume {}: no config.json there",
            dir.display()
        )));
    }
    let mut config: TrainConfig = report::read_json(&path)?;
    for spec in &mut config.runs {
        if let Some(e) = args.epochs {
            spec.epochs = e;
        }
        // A step limit is where a run paused, not part of the experiment: resuming drops it
        // unless it is given again.
        spec.steps = args.steps;
    }
    if args.threads.is_some() {
        config.threads = args.threads;
    }
    Ok(config)
}

fn default_out_dir() -> PathBuf {
    PathBuf::from("runs").join(crate::timestamp())
}

fn epoch_batches<'a>(
    spec: &RunSpec,
    data: &'a Dataset,
    epoch: usize,
) -> Result<Batches<'a>, Error> {
    let order = if spec.shuffle {
        Order::Shuffled(spec.epoch_seed(epoch))
    } else {
        Order::Sequential
    };
    Ok(data
        .train
        .batches(spec.batch_size, order, LastBatch::MergeSingle)?)
}

/// Trains one model from its checkpoint (or from scratch), epoch by epoch.
fn train_model(
    spec: &RunSpec,
    data: &Dataset,
    out: &Path,
    stop: &AtomicBool,
) -> Result<RunRecord, Error> {
    let name = spec.model.kind().name();
    let ckpt = out.join("checkpoint").join(name);
    let mut run = ModelRun::new(spec.clone())?;
    let mut p = match load_checkpoint(&ckpt, &mut run)? {
        Some(saved) => saved,
        None => Progress::fresh(spec),
    };
    p.record.lr = spec.lr;
    if p.finished(spec) {
        return Ok(p.record);
    }
    p.record.status = Status::Running;
    while p.epoch < spec.epochs {
        let batches = epoch_batches(spec, data, p.epoch)?;
        let total = batches.len();
        let bar = progress_bar(name, p.epoch + 1, spec.epochs, total);
        bar.set_position(p.step_in_epoch as u64);
        for batch in batches.skip(p.step_in_epoch) {
            let n = batch.len() as u64;
            let start = Instant::now();
            let outcome = run.step(batch)?;
            p.epoch_seconds += start.elapsed().as_secs_f64();
            if !outcome.loss.is_finite() {
                bar.finish_and_clear();
                p.record.status = Status::Diverged {
                    epoch: p.epoch + 1,
                    step: p.step_in_epoch + 1,
                    last_finite_loss: p.last_finite_loss,
                };
                eprintln!(
                    "{name}: the loss became {} at epoch {}, step {} (last finite loss {}); the run stopped. \
                     Lower --lr (now {}) or use batch norm (--model lenet-bn).",
                    outcome.loss,
                    p.epoch + 1,
                    p.step_in_epoch + 1,
                    p.last_finite_loss.map_or("none".into(), |l| format!("{l:.4e}")),
                    report::fmt_lr(spec.lr)
                );
                return finish(run, p, data, out);
            }
            p.last_finite_loss = Some(outcome.loss as f64);
            p.record.max_batch_loss = p.record.max_batch_loss.max(outcome.loss as f64);
            p.loss_sum += outcome.loss as f64 * n as f64;
            p.correct += outcome.correct as u64;
            p.seen += n;
            p.step_in_epoch += 1;
            p.global_step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4}  acc {:.4}  {:.0} samples/s",
                p.loss_sum / p.seen as f64,
                p.correct as f64 / p.seen as f64,
                p.seen as f64 / p.epoch_seconds.max(1e-9)
            ));
            if spec.steps.is_some_and(|s| p.global_step >= s) {
                // Stop mid-epoch without closing it, so that --resume continues this epoch.
                bar.finish_and_clear();
                p.record.status = Status::StepLimit {
                    step: p.global_step,
                };
                return finish(run, p, data, out);
            }
            if stop.load(Ordering::SeqCst) {
                bar.finish_and_clear();
                p.record.status = Status::Interrupted {
                    epoch: p.epoch + 1,
                    step: p.step_in_epoch,
                };
                save_checkpoint(&ckpt, &run, &p)?;
                return Ok(p.record);
            }
        }
        bar.finish_and_clear();
        end_epoch(&mut run, &mut p, data, name)?;
        save_checkpoint(&ckpt, &run, &p)?;
    }
    p.record.status = Status::Completed;
    finish(run, p, data, out)
}

/// Closes the epoch in progress: evaluates, prints and records its row, resets the counters.
fn end_epoch(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    name: &str,
) -> Result<(), Error> {
    let test_acc = accuracy(&run.predict(&data.test)?, data.test.labels());
    let row = EpochRow {
        epoch: p.epoch + 1,
        train_loss: p.loss_sum / p.seen.max(1) as f64,
        train_acc: p.correct as f64 / p.seen.max(1) as f64,
        test_acc,
        seconds: p.epoch_seconds,
        samples_per_sec: p.seen as f64 / p.epoch_seconds.max(1e-9),
    };
    println!("{}", report::table_row(name, &row));
    p.record.epochs.push(row);
    p.record.final_test_acc = Some(test_acc);
    p.epoch += 1;
    p.step_in_epoch = 0;
    p.loss_sum = 0.0;
    p.correct = 0;
    p.seen = 0;
    p.epoch_seconds = 0.0;
    Ok(())
}

/// Saves the final weights and checkpoint of a run that stopped for good.
fn finish(
    mut run: ModelRun,
    mut p: Progress,
    data: &Dataset,
    out: &Path,
) -> Result<RunRecord, Error> {
    let name = run.spec.model.kind().name();
    // A completed run was just evaluated at the end of its last epoch; any other stop
    // happened after steps that no evaluation has seen yet.
    if p.record.status != Status::Completed {
        let acc = accuracy(&run.predict(&data.test)?, data.test.labels());
        p.record.final_test_acc = Some(acc);
        println!(
            "{name}: stopped ({}) after {} steps at epoch {}, step {}; test accuracy {acc:.4}",
            p.record.status.word(),
            p.global_step,
            p.epoch + 1,
            p.step_in_epoch
        );
    }
    checkpoint::save(&run.model, &out.join(format!("{name}.safetensors")))?;
    save_checkpoint(&out.join("checkpoint").join(name), &run, &p)?;
    Ok(p.record)
}

fn progress_bar(name: &str, epoch: usize, epochs: usize, batches: usize) -> ProgressBar {
    let bar = ProgressBar::new(batches as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{name} epoch {epoch}/{epochs}"));
    bar
}

/// Writes model weights, optimizer state and progress into `dir`, replacing the previous
/// checkpoint only once the new one is complete.
fn save_checkpoint(dir: &Path, run: &ModelRun, p: &Progress) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let fresh = dir.with_extension("new");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(io(&fresh))?;
    checkpoint::save(&run.model, &fresh.join("model.safetensors"))?;
    let state: BTreeMap<String, StateValue> = run
        .optimizer
        .state()
        .into_iter()
        .map(|(n, t)| (n, StateValue::F32(t)))
        .collect();
    let bytes = checkpoint::to_bytes(&state)
        .map_err(|reason| Error::Usage(format!("optimizer state: {reason}")))?;
    report::write_file(&fresh.join("optimizer.safetensors"), &bytes)?;
    report::write_json(&fresh.join("progress.json"), p)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&fresh, dir).map_err(io(dir))
}

/// Restores model, optimizer and progress from `dir`, if a checkpoint is there.
fn load_checkpoint(dir: &Path, run: &mut ModelRun) -> Result<Option<Progress>, Error> {
    let progress_path = dir.join("progress.json");
    if !progress_path.is_file() {
        return Ok(None);
    }
    let progress: Progress = report::read_json(&progress_path)?;
    checkpoint::load(&run.model, &dir.join("model.safetensors"))?;
    let opt_path = dir.join("optimizer.safetensors");
    let bytes = std::fs::read(&opt_path).map_err(|source| Error::Io {
        path: opt_path.clone(),
        source,
    })?;
    let entries = checkpoint::from_bytes(&bytes)
        .map_err(|reason| Error::Usage(format!("{}: {reason}", opt_path.display())))?;
    let state: Vec<(String, Tensor)> = entries
        .into_iter()
        .filter_map(|(n, v)| match v {
            StateValue::F32(t) => Some((n, t)),
            _ => None,
        })
        .collect();
    run.optimizer.load_state(&state)?;
    Ok(Some(progress))
}
