//! `cargo xtask lr-sweep`: both models for a few epochs at each learning rate of a list and
//! several seeds. Each run is marked
//!
//! - diverged: a non-finite loss, or a final accuracy near chance after the loss blew up
//!   (a batch loss above 4, where training starts near ln 10 ≈ 2.3);
//! - stalled: a final accuracy near chance (< 0.2) without such a spike;
//! - ok: anything else.
//!
//! A table, `sweep.json`, `sweep.csv` and a chart summarise them.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::common::{
    load_data, setup_threads, ActivationChoice, DataArgs, ModelsChoice, OptimizerChoice,
};
use crate::report::{self, Status};
use crate::train::{self, TrainArgs};
use crate::{plot, Error};

/// Final accuracy below which a run failed (chance is 0.1 on ten classes).
const CHANCE_BELOW: f64 = 0.2;
/// A batch loss above this (the loss starts near ln 10 ≈ 2.3) means the run blew up; a failed
/// run that never went above it stalled instead.
const SPIKE_LOSS: f64 = 4.0;

/// Arguments of `lr-sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Learning rates to try.
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
    /// Samples per training batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output folder [default: runs/sweep-<timestamp>/].
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
}

/// Runs `lr-sweep`.
pub fn run(args: SweepArgs) -> Result<(), Error> {
    if args.lrs.iter().any(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(Error::Usage(
            "every --lrs value must be a positive finite number".into(),
        ));
    }
    if args.seeds == 0 || args.epochs == 0 {
        return Err(Error::Usage(
            "--seeds and --epochs must be at least 1".into(),
        ));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("sweep-{}", crate::timestamp())));
    setup_threads(args.threads)?;
    let data = load_data(
        args.data.dataset,
        args.data.data_dir.as_deref(),
        args.train_samples,
    )?;
    let mut runs = Vec::new();
    for &lr in &args.lrs {
        for seed in 0..args.seeds {
            for kind in args.model.kinds() {
                let dir = out
                    .join("runs")
                    .join(format!("{}-lr{lr}-seed{seed}", kind.name()));
                let train_args = TrainArgs {
                    model: if kind.has_batch_norm() {
                        ModelsChoice::LenetBn
                    } else {
                        ModelsChoice::Lenet
                    },
                    data: args.data.clone(),
                    epochs: Some(args.epochs),
                    batch_size: args.batch_size,
                    lr: Some(lr),
                    optimizer: OptimizerChoice::Sgd,
                    momentum: 0.0,
                    activation: args.activation,
                    seed,
                    threads: None,
                    steps: None,
                    no_shuffle: false,
                    init: None,
                    out: Some(dir.clone()),
                    resume: None,
                    train_samples: args.train_samples,
                };
                eprintln!("\n== {} lr {lr} seed {seed}", kind.name());
                let config = train::new_config(&train_args)?;
                let records = train::execute(&config, &dir, &data)?;
                if records
                    .iter()
                    .any(|r| matches!(r.status, Status::Interrupted { .. }))
                {
                    return Err(Error::Usage(format!(
                        "interrupted; partial results are in {}",
                        out.display()
                    )));
                }
                for r in records {
                    let acc = r.final_test_acc.unwrap_or(0.0);
                    let outcome = match r.status {
                        Status::Diverged { .. } => "diverged",
                        _ if acc < CHANCE_BELOW && r.max_batch_loss > SPIKE_LOSS => "diverged",
                        _ if acc < CHANCE_BELOW => "stalled",
                        _ => "ok",
                    };
                    runs.push(SweepRun {
                        model: r.model,
                        lr,
                        seed,
                        final_test_acc: acc,
                        outcome,
                    });
                }
            }
        }
    }
    report::write_json(&out.join("sweep.json"), &runs)?;
    let mut csv = String::from("model,lr,seed,final_test_acc,outcome\n");
    for r in &runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            r.model, r.lr, r.seed, r.final_test_acc, r.outcome
        );
    }
    report::write_file(&out.join("sweep.csv"), csv.as_bytes())?;
    let lines = summary_lines(&args, &runs);
    println!("\n{}", table(&args, &runs));
    if let Err(e) = plot::sweep_chart(&out, &args.lrs, &lines) {
        eprintln!("warning: chart not written: {e}");
    }
    eprintln!("results in {}", out.display());
    Ok(())
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
        let _ = write!(s, "{lr:>8}");
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
