//! `cargo xtask placement`: the brief's rule "batch norm after the linear/conv step, before the
//! activation", tested. LeNet-BN trains with its batch norms before and after the activations,
//! with sigmoid (d2l) and ReLU; the same seed gives both placements the same initial weights and
//! batches (the layers and the random draws are the same, only the order of each norm and its
//! activation differs).
//!
//! Each configuration gets its own learning rate, so that none is compared at a rate tuned for
//! another (d2l's 1.0 is sigmoid-before's). In two stages ([`tuning`]):
//!
//! 1. tuning: every configuration at every rate of `--lrs` for `--tune-epochs` epochs, each
//!    seed, trained without the last `--validation` training images and evaluated on them
//!    (`tuning/<activation>-<placement>-lr<lr>-seed<seed>/`); the test set is not loaded into
//!    these runs at all. A configuration's rate is the one with the best median validation
//!    accuracy over seeds;
//! 2. final: every configuration at its rate for `--epochs` epochs on the whole training set,
//!    each seed, evaluated on the test set (`runs/<activation>-<placement>-seed<seed>/`).
//!
//! The tables ([`tables`]), `placement.json` and the csv files ([`results`]) and the charts
//! ([`chart`]) give the grid and the final test accuracies with their spread over seeds.

pub mod chart;
pub mod results;
pub mod tables;
pub mod tuning;

use serde::Serialize;

use crate::cli::args::{seed_range, CommonArgs, PreciseArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::{ActivationChoice, PlacementChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment::{self, Session};
use crate::output::html::Page;
use crate::output::report::{fmt_lr, RunRecord};
use crate::output::run_dir::RunDir;
use crate::run::setup;
use crate::run::spec::RunSpec;
use norma_layers::models::ModelKind;

/// Arguments of `placement` (one seed by default; the documented run takes `--seeds 3`).
#[derive(Debug, clap::Args, Serialize)]
#[command(mut_arg("seeds", |a| a.default_value("1")))]
pub struct PlacementArgs {
    /// Activations to compare the placements with.
    #[arg(long, value_enum, num_args = 1.., default_values = ["sigmoid", "relu"])]
    pub activations: Vec<ActivationChoice>,
    /// Epochs of each final run (at the configuration's chosen learning rate).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// The learning rates every configuration is tuned over (SGD, batch 256).
    #[arg(long, num_args = 1.., default_values_t = [0.1, 0.3, 1.0, 3.0])]
    pub lrs: Vec<f64>,
    /// Epochs of each tuning run.
    #[arg(long, default_value_t = 3)]
    pub tune_epochs: usize,
    /// Training images held out (the last ones) to choose the learning rates on.
    #[arg(long, default_value_t = 5000)]
    pub validation: usize,
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

/// A configuration: the activation and where batch norm sits.
pub type Config = (ActivationChoice, PlacementChoice);

/// `sigmoid-before`, the configuration's key in files and folder names.
pub fn key((a, p): Config) -> String {
    format!("{}-{}", a.activation().name(), p.name())
}

/// One final run: a configuration at its chosen rate, evaluated on the test set.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementRun {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub lr: f64,
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
    checks::distinct_activations("--activations", &args.activations)?;
    checks::at_least_one("--epochs", args.epochs as u64)?;
    checks::at_least_one("--tune-epochs", args.tune_epochs as u64)?;
    checks::distinct_learning_rates("--lrs", &args.lrs)?;
    args.seeds.check()?;
    let train_len = args.common.check()?;
    setup::check_validation(args.validation, train_len)
}

/// The spec of `config` at `lr` from `seed` for `epochs` epochs.
fn spec(
    args: &PlacementArgs,
    (activation, placement): Config,
    lr: f64,
    seed: u64,
    epochs: usize,
) -> RunSpec {
    RunSpec {
        lr,
        placement,
        precise_bn: args.precise.precise_bn,
        ..RunSpec::recipe(ModelKind::LenetBn, activation, seed, epochs)
    }
}

/// Runs `placement`; returns the signal that interrupted it, if one did.
pub fn run(mut args: PlacementArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    // The grid in increasing order: tables read left to right, and a tie goes to the smaller.
    args.lrs.sort_by(f64::total_cmp);
    let Some(session) = experiment::start("placement", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let tuned = match tune(&session, &args)? {
        Ok(tuned) => tuned,
        Err(signal) => return Ok(Some(signal)),
    };
    let mut grid = tuning::grid(&args, &tuned);
    let choices = tuning::choose(&args, &mut grid);
    let runs = match train_final(&session, &args, &choices)? {
        Ok(runs) => runs,
        Err(signal) => return Ok(Some(signal)),
    };
    let summary = results::summarise(&choices, &runs);
    results::write(&session.dir, &args, &summary, &grid, &tuned, &runs)?;
    println!(
        "\nvalidation accuracy after {} epochs (median over seeds; * chosen):\n{}",
        args.tune_epochs,
        tables::grid_table(&args, &grid).text()
    );
    println!(
        "final test accuracy at the chosen rates:\n{}",
        tables::summary_table(&args, &summary).text()
    );
    session.finish(page(&session.dir, &args, &summary, &grid, &runs), &args)?;
    Ok(None)
}

/// Stage 1: every configuration at every rate and seed, on the held-out split.
fn tune(
    session: &Session,
    args: &PlacementArgs,
) -> Result<Result<Vec<tuning::TuningRun>, Signal>, Error> {
    let held = session.held_out(args.validation)?;
    let dir = session.dir.subdir("tuning")?;
    let configs = tables::configs(args);
    let seeds = args.seeds.list();
    let total = seeds.len() * configs.len() * args.lrs.len();
    let mut tuned = Vec::new();
    for &seed in &seeds {
        for &config in &configs {
            for &lr in &args.lrs {
                let name = format!("{}-lr{}-seed{seed}", key(config), fmt_lr(lr));
                eprintln!("\n== tuning run {}/{total}: {name}", tuned.len() + 1);
                let spec = spec(args, config, lr, seed, args.tune_epochs);
                let record = match session.train_held_out(&dir, &name, vec![spec], &held)? {
                    Ok(mut records) => records.remove(0),
                    Err(signal) => return Ok(Err(signal)),
                };
                tuned.push(tuning::TuningRun::new(config, lr, seed, &record));
            }
        }
    }
    Ok(Ok(tuned))
}

/// Stage 2: every configuration at its chosen rate, each seed, on the test set.
fn train_final(
    session: &Session,
    args: &PlacementArgs,
    choices: &[tuning::Choice],
) -> Result<Result<Vec<PlacementRun>, Signal>, Error> {
    let dir = session.dir.subdir("runs")?;
    let seeds = args.seeds.list();
    let total = seeds.len() * choices.len();
    let mut runs = Vec::new();
    for &seed in &seeds {
        for choice in choices {
            let config = (choice.activation, choice.placement);
            let name = format!("{}-seed{seed}", key(config));
            eprintln!(
                "\n== final run {}/{total}: {name} (lr {})",
                runs.len() + 1,
                fmt_lr(choice.lr)
            );
            let spec = spec(args, config, choice.lr, seed, args.epochs);
            let record = match session.train(&dir, &name, vec![spec])? {
                Ok(mut records) => records.remove(0),
                Err(signal) => return Ok(Err(signal)),
            };
            runs.push(PlacementRun {
                activation: choice.activation,
                placement: choice.placement,
                lr: choice.lr,
                seed,
                final_test_acc: record.final_test_acc_precise,
                final_test_acc_moving_avg: record.final_test_acc,
                final_train_acc: record.epochs.last().map(|e| e.train_acc),
                status: record.status.word(),
                record,
            });
        }
    }
    Ok(Ok(runs))
}

/// `report.html`.
fn page(
    dir: &RunDir,
    args: &PlacementArgs,
    summary: &[results::ConfigSummary],
    grid: &[tuning::GridCell],
    runs: &[PlacementRun],
) -> Page {
    let seeds = args.seeds.list();
    let lrs: Vec<String> = args.lrs.iter().map(|&lr| fmt_lr(lr)).collect();
    let mut page = Page::new("placement: batch norm before or after the activation");
    page.text(format!(
        "LeNet-BN (SGD, batch 256) with its batch norms before the activations \
         (conv/linear → BN → activation, the brief's rule) and after them (conv/linear → \
         activation → BN), seeds {}. Each configuration runs at its own learning rate: every \
         configuration was first trained at each rate of {} for {} epochs without the last {} \
         training images and evaluated on them (the validation split; the test set is not used \
         to choose), and the rate with the best median validation accuracy over seeds was kept \
         (a tie goes to the smaller rate). Each configuration then trained for {} epochs at its \
         rate on all the training images and was evaluated on the test set. Accuracies use \
         precise batch-norm statistics ({} training batches); the moving averages kept during \
         training are given alongside. The tuning runs are in tuning/ (their reports' \"test\" \
         accuracy is the validation split's), the final runs in runs/.",
        seed_range(&seeds),
        lrs.join(", "),
        args.tune_epochs,
        args.validation,
        args.epochs,
        args.precise.precise_bn
    ));
    page.heading("Final test accuracy at each configuration's rate")
        .table(tables::summary_table(args, summary));
    page.figure("the placement chart", chart::chart(dir, args, runs));
    page.heading(format!(
        "Validation accuracy after {} epochs, every rate (median [min–max] over seeds; * chosen)",
        args.tune_epochs
    ))
    .table(tables::grid_table(args, grid));
    page.figure("the tuning chart", chart::grid_chart(dir, args, grid));
    page.heading("Final test accuracy per seed")
        .table(tables::final_table(args, runs));
    page.heading("Median test accuracy per epoch")
        .table(tables::epoch_table(args, runs));
    page
}
