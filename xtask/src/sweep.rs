//! `cargo xtask lr-sweep`: both models for a few epochs at each learning rate of a list and
//! several seeds. Each run is marked
//!
//! - diverged: a batch loss that is not finite or above the bound of [`crate::divergence`]
//!   (the same rule that stops a `train-lenet` run);
//! - stalled: a final test accuracy near chance (< 0.2) without diverging — a rate too small
//!   to leave the plateau, or one so large that plain LeNet's sigmoids saturate; the largest
//!   batch loss in `sweep.json` tells them apart (about 2.5 or less against 5 and more);
//! - ok: anything else.
//!
//! A table, `sweep.json`, `sweep.csv` and a chart summarise them; each run's own files are in
//! `runs/<model>-lr<lr>-seed<seed>/` of the sweep folder.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::choices::{ActivationChoice, DataArgs, ModelChoice, ModelsChoice, OptimizerChoice};
use crate::model_run::RunSpec;
use crate::report::{fmt_lr, RunRecord, Status};
use crate::run_dir::RunDir;
use crate::signals::{self, Signal};
use crate::train::{self, TrainConfig};
use crate::{checks, plot, setup, Error};

/// Final accuracy below which a run that did not diverge stalled (chance is 0.1 on ten
/// classes).
const CHANCE_BELOW: f64 = 0.2;

/// Arguments of `lr-sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Learning rates to try, each once.
    #[arg(long, num_args = 1.., allow_negative_numbers = true, default_values_t = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0])]
    pub lrs: Vec<f64>,
    /// Seeds per learning rate (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Epochs per run.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Which model(s).
    #[arg(long, value_enum, default_value = "both")]
    pub model: ModelsChoice,
    /// Samples per training batch, at most the training set.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Worker threads, at most 8 per core [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output folder; must be new or empty [default: runs/sweep-TIMESTAMP, or
    /// runs/sweep-TIMESTAMP-2, -3, ... if taken].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_samples: Option<usize>,
}

/// One run of the sweep.
#[derive(Debug, Clone, Serialize)]
struct SweepRun {
    model: String,
    lr: f64,
    seed: u64,
    final_test_acc: f64,
    outcome: &'static str,
    /// The largest batch loss of a step taken.
    max_batch_loss: f64,
}

/// Checks every option before anything is created or loaded.
fn check(args: &SweepArgs) -> Result<(), Error> {
    for (i, &lr) in args.lrs.iter().enumerate() {
        checks::learning_rate("every --lrs value", lr)?;
        if args.lrs[..i].contains(&lr) {
            return Err(Error::Usage(format!(
                "--lrs lists {} more than once; give each learning rate once (--seeds sets the repeats)",
                fmt_lr(lr)
            )));
        }
    }
    checks::at_least_one("--seeds", args.seeds)?;
    checks::at_least_one("--epochs", args.epochs as u64)?;
    checks::threads(args.threads)?;
    let train_len = checks::train_samples(args.train_samples)?;
    checks::batch_size(args.batch_size, &args.model.kinds(), train_len)
}

/// How a run of the sweep ended: `diverged`, `stalled` or `ok` (see the module docs).
fn outcome(record: &RunRecord) -> &'static str {
    match record.status {
        Status::Diverged { .. } => "diverged",
        _ if record.final_test_acc.unwrap_or(0.0) < CHANCE_BELOW => "stalled",
        _ => "ok",
    }
}

/// Runs `lr-sweep`; returns the signal that interrupted it, if one did.
pub fn run(args: SweepArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let out = RunDir::create(args.out.as_deref(), "sweep-")?;
    setup::threads(args.threads)?;
    signals::watch();
    let dataset = args.data.dataset();
    let data = setup::load_data(dataset, args.data.data_dir.as_deref(), args.train_samples)?;
    if let Some(signal) = signals::received() {
        eprintln!("{}: stopped before training", signal.name());
        return Ok(Some(signal));
    }
    let runs_dir = out.subdir("runs")?;
    let mut runs = Vec::new();
    for &lr in &args.lrs {
        for seed in 0..args.seeds {
            for kind in args.model.kinds() {
                let spec = RunSpec {
                    model: ModelChoice::of(kind),
                    activation: args.activation,
                    optimizer: OptimizerChoice::Sgd,
                    lr,
                    momentum: 0.0,
                    seed,
                    batch_size: args.batch_size,
                    epochs: args.epochs,
                    shuffle: true,
                    steps: None,
                    init: None,
                };
                eprintln!("\n== {} lr {lr} seed {seed}", kind.name());
                let dir = runs_dir.subdir(&format!("{}-lr{lr}-seed{seed}", kind.name()))?;
                let config = TrainConfig::new(
                    dataset,
                    args.data.data_dir.clone(),
                    args.train_samples,
                    args.threads,
                    vec![spec],
                );
                let states = train::new_states(&config)?;
                let result = train::execute(&config, &dir, &data, states)?;
                if let Some(signal) = result.stopped_by {
                    eprintln!(
                        "interrupted by {}; the finished runs are in {} (a sweep cannot be resumed; \
                         a single run can, with train-lenet --resume {})",
                        signal.name(),
                        runs_dir.path().display(),
                        dir.path().display()
                    );
                    return Ok(Some(signal));
                }
                for r in result.records {
                    runs.push(SweepRun {
                        outcome: outcome(&r),
                        model: r.model,
                        lr,
                        seed,
                        final_test_acc: r.final_test_acc.unwrap_or(0.0),
                        max_batch_loss: r.max_batch_loss,
                    });
                }
            }
        }
    }
    out.write_json("sweep.json", &runs)?;
    let mut csv = String::from("model,lr,seed,final_test_acc,outcome,max_batch_loss\n");
    for r in &runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            r.model, r.lr, r.seed, r.final_test_acc, r.outcome, r.max_batch_loss
        );
    }
    out.write("sweep.csv", csv.as_bytes())?;
    let lines = summary_lines(&args, &runs);
    println!("\n{}", table(&args, &runs));
    if let Err(e) = plot::sweep_chart(&out, &args.lrs, &lines) {
        eprintln!("warning: chart not written: {e}");
    }
    eprintln!("results in {}", out.path().display());
    Ok(None)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median accuracy per (model, lr), for the chart.
fn summary_lines(args: &SweepArgs, runs: &[SweepRun]) -> Vec<(String, Vec<(f64, f64)>)> {
    args.model
        .kinds()
        .iter()
        .map(|k| {
            let points = args
                .lrs
                .iter()
                .map(|&lr| {
                    let accs = runs
                        .iter()
                        .filter(|r| r.model == k.name() && r.lr == lr)
                        .map(|r| r.final_test_acc);
                    (lr, median(accs.collect()))
                })
                .collect();
            (k.name().to_string(), points)
        })
        .collect()
}

/// Rows: learning rates; per model the median accuracy and each seed's outcome.
fn table(args: &SweepArgs, runs: &[SweepRun]) -> String {
    let kinds = args.model.kinds();
    let mut s = format!("{:>8}", "lr");
    for k in &kinds {
        let _ = write!(s, "  {:<48}", format!("{} median acc (per seed)", k.name()));
    }
    s.push('\n');
    for &lr in &args.lrs {
        let _ = write!(s, "{:>8}", fmt_lr(lr));
        for k in &kinds {
            let cell: Vec<&SweepRun> = runs
                .iter()
                .filter(|r| r.model == k.name() && r.lr == lr)
                .collect();
            let med = median(cell.iter().map(|r| r.final_test_acc).collect());
            let seeds: Vec<String> = cell
                .iter()
                .map(|r| format!("{:.2} {}", r.final_test_acc, r.outcome))
                .collect();
            let _ = write!(s, "  {:<48}", format!("{med:.3} ({})", seeds.join(", ")));
        }
        s.push('\n');
    }
    s
}
