//! `cargo xtask placement`: the brief's rule "batch norm after the linear/conv step, before the
//! activation", tested. LeNet-BN trains with its batch norms before and after the activations,
//! with sigmoid (d2l) and ReLU, for each seed; the same seed gives both placements the same
//! initial weights and batches (the layers and the random draws are the same, only the order of
//! each norm and its activation differs).
//!
//! Each run is a `train-lenet` run in `runs/<activation>-<placement>-seed<seed>/` with its own
//! report; the experiment's table gives the final test accuracy of every run (precise
//! batch-norm statistics, and the moving averages) with the median over seeds, the per-epoch
//! median, and a chart of both ([`tables`], [`chart`]).

pub mod chart;
pub mod tables;

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::args::{seed_range, CommonArgs, PreciseArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::{default_lr, ActivationChoice, OptimizerChoice, PlacementChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::{fmt_lr, RunRecord};
use crate::output::run_dir::RunDir;
use crate::run::spec::RunSpec;
use norma_layers::models::ModelKind;

/// Arguments of `placement` (one seed by default: 4 runs of 10 epochs, a few minutes).
#[derive(Debug, clap::Args, Serialize)]
#[command(mut_arg("seeds", |a| a.default_value("1")))]
pub struct PlacementArgs {
    /// Activations to compare the placements with.
    #[arg(long, value_enum, num_args = 1.., default_values = ["sigmoid", "relu"])]
    pub activations: Vec<ActivationChoice>,
    /// Epochs per run.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate (SGD, batch 256) [default: 1.0, d2l's rate for LeNet-BN].
    #[arg(long)]
    pub lr: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub seeds: SeedArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub precise: PreciseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// The two placements, the brief's first.
pub const PLACEMENTS: [PlacementChoice; 2] = [PlacementChoice::Before, PlacementChoice::After];

/// One trained configuration.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementRun {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub seed: u64,
    /// With precise statistics (unless `--precise-bn 0`).
    pub final_test_acc: Option<f64>,
    /// With the running statistics.
    pub final_test_acc_moving_avg: Option<f64>,
    pub final_train_acc: Option<f64>,
    pub status: &'static str,
    #[serde(skip)]
    pub record: RunRecord,
}

/// Checks every option before anything is created or loaded.
fn check(args: &PlacementArgs) -> Result<(), Error> {
    for (i, a) in args.activations.iter().enumerate() {
        if args.activations[..i].contains(a) {
            return Err(Error::Usage(format!(
                "--activations lists {} more than once",
                a.activation().name()
            )));
        }
    }
    checks::at_least_one("--epochs", args.epochs as u64)?;
    if let Some(lr) = args.lr {
        checks::learning_rate("--lr", lr)?;
    }
    args.seeds.check()?;
    args.common.check()?;
    Ok(())
}

/// Runs `placement`; returns the signal that interrupted it, if one did.
pub fn run(args: PlacementArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("placement", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let runs_dir = session.dir.subdir("runs")?;
    let total = args.seeds.list().len() * args.activations.len() * PLACEMENTS.len();
    let mut runs = Vec::new();
    for seed in args.seeds.list() {
        for &activation in &args.activations {
            for placement in PLACEMENTS {
                let base = RunSpec::recipe(ModelKind::LenetBn, activation, seed, args.epochs);
                let spec = RunSpec {
                    lr: args.lr.unwrap_or(base.lr),
                    placement,
                    precise_bn: args.precise.precise_bn,
                    ..base
                };
                let name = format!(
                    "{}-{}-seed{seed}",
                    activation.activation().name(),
                    placement.name()
                );
                eprintln!("\n== run {}/{total}: {name}", runs.len() + 1);
                let record = match session.train(&runs_dir, &name, vec![spec])? {
                    Ok(mut records) => records.remove(0),
                    Err(signal) => return Ok(Some(signal)),
                };
                runs.push(PlacementRun {
                    activation,
                    placement,
                    seed,
                    final_test_acc: record.final_test_acc_precise,
                    final_test_acc_moving_avg: record.final_test_acc,
                    final_train_acc: record.epochs.last().map(|e| e.train_acc),
                    status: record.status.word(),
                    record,
                });
            }
        }
    }
    write_results(&session.dir, &runs)?;
    let finals = tables::final_table(&args, &runs);
    let epochs = tables::epoch_table(&args, &runs);
    println!("\nfinal test accuracy:\n{}", finals.text());
    println!(
        "median test accuracy per epoch (precise BN):\n{}",
        epochs.text()
    );
    let mut page = Page::new("placement: batch norm before or after the activation");
    page.text(format!(
        "LeNet-BN trained for {} epochs at lr {} (SGD, batch 256) with its batch norms before \
         the activations (conv/linear → BN → activation, the brief's rule) and after them \
         (conv/linear → activation → BN), seeds {}. Test accuracy with precise batch-norm \
         statistics ({} training batches) and, in brackets, with the moving averages kept \
         during training. Every run's own folder, with its report, is in runs/.",
        args.epochs,
        fmt_lr(
            args.lr
                .unwrap_or_else(|| default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd))
        ),
        seed_range(&args.seeds.list()),
        args.precise.precise_bn
    ));
    page.heading("Final test accuracy").table(finals);
    page.figure(
        "the placement chart",
        chart::chart(&session.dir, &args, &runs),
    );
    page.heading("Median test accuracy per epoch").table(epochs);
    session.finish(page, &args)?;
    Ok(None)
}

/// `placement.json` and `placement.csv`: one entry per run.
fn write_results(dir: &RunDir, runs: &[PlacementRun]) -> Result<(), Error> {
    dir.write_json("placement.json", &runs)?;
    let mut csv = String::from(
        "activation,placement,seed,final_test_acc,final_test_acc_moving_avg,final_train_acc,status\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            r.activation.activation().name(),
            r.placement.name(),
            r.seed,
            opt(r.final_test_acc),
            opt(r.final_test_acc_moving_avg),
            opt(r.final_train_acc),
            r.status
        );
    }
    dir.write("placement.csv", csv.as_bytes())
}
