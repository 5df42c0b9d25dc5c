//! `cargo xtask lr-sweep`: both models for a few epochs at each learning rate of a list and
//! several seeds. Each run is marked
//!
//! - diverged: a batch loss that is not finite or above the bound of [`crate::run::divergence`]
//!   (the same rule that stops a `train-lenet` run);
//! - stalled: a final test accuracy near chance (< 0.2) without diverging — a rate too small
//!   to leave the plateau, or one so large that plain LeNet's sigmoids saturate; the largest
//!   batch loss in `sweep.json` tells them apart (about 2.5 or less against 5 and more);
//! - ok: anything else.
//!
//! A table, `sweep.json`, `sweep.csv` and a chart summarise them; each run's own files are in
//! `runs/<model>-lr<lr>-seed<seed>/` of the sweep folder.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::args::{seed_range, CommonArgs, PreciseArgs, SeedArgs};
use crate::cli::choices::{ActivationChoice, Models};
use crate::cli::signals::{self, Signal};
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::{fmt_lr, median};
use crate::output::table::Table;
use crate::run::divergence::{outcome, CHANCE_BELOW};
use crate::run::spec::{RunSpec, DEFAULT_BATCH_SIZE};
use plotters::prelude::IntoLogRange;

use crate::cli::checks;
use crate::error::Error;
use crate::output::plot::{band, render, Figure, Line, Panel, Series, XTicks};
use crate::output::run_dir::RunDir;

/// Arguments of `lr-sweep`.
#[derive(Debug, clap::Args, Serialize)]
pub struct SweepArgs {
    /// Learning rates to try, each once.
    #[arg(long, num_args = 1.., allow_negative_numbers = true, default_values_t = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0])]
    pub lrs: Vec<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub seeds: SeedArgs,
    /// Epochs per run.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Which model(s).
    #[arg(long, value_parser = Models::parser(), default_value = "both")]
    pub model: Models,
    /// Samples per training batch, at most the training set.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    #[command(flatten)]
    #[serde(flatten)]
    pub precise: PreciseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// One run of the sweep.
#[derive(Debug, Clone, Serialize)]
struct SweepRun {
    model: String,
    lr: f64,
    seed: u64,
    /// With precise statistics for LeNet-BN (unless `--precise-bn 0`), else with the running
    /// statistics.
    final_test_acc: f64,
    /// With the running statistics (the moving averages), for LeNet-BN with precise statistics.
    final_test_acc_moving_avg: Option<f64>,
    outcome: &'static str,
    /// The largest batch loss of a step taken.
    max_batch_loss: f64,
}

/// Checks every option before anything is created or loaded.
fn check(args: &SweepArgs) -> Result<(), Error> {
    checks::distinct_learning_rates("--lrs", &args.lrs)?;
    args.seeds.check()?;
    checks::at_least_one("--epochs", args.epochs as u64)?;
    let train_len = args.common.check()?;
    checks::batch_size(args.batch_size, &args.model.models(), train_len)
}

/// Runs `lr-sweep`; returns the signal that interrupted it, if one did.
pub fn run(args: SweepArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("lr-sweep", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let runs_dir = session.dir.subdir("runs")?;
    let mut runs = Vec::new();
    for &lr in &args.lrs {
        for seed in args.seeds.list() {
            for model in args.model.models() {
                let spec = RunSpec {
                    lr,
                    batch_size: args.batch_size,
                    precise_bn: args.precise.precise_bn,
                    ..RunSpec::recipe(model, args.activation, seed, args.epochs)
                };
                eprintln!("\n== {} lr {lr} seed {seed}", model.name());
                let name = format!("{}-lr{lr}-seed{seed}", model.name());
                let records = match session.train(&runs_dir, &name, vec![spec])? {
                    Ok(records) => records,
                    Err(signal) => return Ok(Some(signal)),
                };
                for r in records {
                    runs.push(SweepRun {
                        outcome: outcome(&r),
                        model: r.model.clone(),
                        lr,
                        seed,
                        final_test_acc: r.headline_acc().unwrap_or(0.0),
                        final_test_acc_moving_avg: r.final_test_acc_precise.and(r.final_test_acc),
                        max_batch_loss: r.max_batch_loss,
                    });
                }
            }
        }
    }
    session.dir.write_json("sweep.json", &runs)?;
    let mut csv = String::from(
        "model,lr,seed,final_test_acc,final_test_acc_moving_avg,outcome,max_batch_loss\n",
    );
    for r in &runs {
        let moving = r
            .final_test_acc_moving_avg
            .map_or(String::new(), |a| a.to_string());
        let _ = writeln!(
            csv,
            "{},{},{},{},{moving},{},{}",
            r.model, r.lr, r.seed, r.final_test_acc, r.outcome, r.max_batch_loss
        );
    }
    session.dir.write("sweep.csv", csv.as_bytes())?;
    let table = table(&args, &runs);
    println!("\n{}", table.text());
    let mut page = Page::new("lr-sweep: final test accuracy against learning rate");
    page.text(format!(
        "Each model trained for {} epochs at every learning rate, seeds {}. Cells: the median \
         final test accuracy over seeds (LeNet-BN with precise batch-norm statistics unless \
         --precise-bn 0; sweep.csv also has the accuracy with the moving averages), then each \
         seed's accuracy and outcome: diverged (a batch loss above 100 or not finite), stalled \
         (ending below {CHANCE_BELOW} without diverging) or ok. Every run's own folder, with \
         its report, is in runs/.",
        args.epochs,
        seed_range(&args.seeds.list())
    ));
    page.table(table);
    let lines = summary(&args, &runs);
    session
        .dir
        .write("sweep-summary.csv", summary_csv(&lines).as_bytes())?;
    if let Some(chart) = chart(&session.dir, &args.lrs, &lines).transpose() {
        page.figure("the sweep chart", chart);
    }
    session.finish(page, &args)?;
    Ok(None)
}

/// One model at one learning rate over the seeds.
struct Cell {
    lr: f64,
    median: f64,
    min: f64,
    max: f64,
    /// Each seed's outcome, in seed order.
    outcomes: Vec<&'static str>,
}

/// The cells of each model, in `--lrs` order.
fn summary(args: &SweepArgs, runs: &[SweepRun]) -> Vec<(String, Vec<Cell>)> {
    args.model
        .models()
        .iter()
        .map(|k| {
            let cells = args
                .lrs
                .iter()
                .map(|&lr| {
                    let cell: Vec<&SweepRun> = runs
                        .iter()
                        .filter(|r| r.model == k.name() && r.lr == lr)
                        .collect();
                    let accs: Vec<f64> = cell.iter().map(|r| r.final_test_acc).collect();
                    Cell {
                        lr,
                        median: median(accs.clone()),
                        min: accs.iter().copied().fold(f64::INFINITY, f64::min),
                        max: accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        outcomes: cell.iter().map(|r| r.outcome).collect(),
                    }
                })
                .collect();
            (k.name().to_string(), cells)
        })
        .collect()
}

/// `sweep-summary.csv`: one line per learning rate; per model the median, min and max final
/// test accuracy over the seeds and the seeds' outcomes (space-separated, in seed order).
fn summary_csv(lines: &[(String, Vec<Cell>)]) -> String {
    let mut csv = String::from("lr");
    for (model, _) in lines {
        let _ = write!(
            csv,
            ",{model} median,{model} min,{model} max,{model} outcomes"
        );
    }
    csv.push('\n');
    for i in 0..lines.first().map_or(0, |(_, cells)| cells.len()) {
        csv.push_str(&fmt_lr(lines[0].1[i].lr));
        for (_, cells) in lines {
            let c = &cells[i];
            let _ = write!(
                csv,
                ",{:.4},{:.4},{:.4},{}",
                c.median,
                c.min,
                c.max,
                c.outcomes.join(" ")
            );
        }
        csv.push('\n');
    }
    csv
}

/// Rows: learning rates; per model the median accuracy and each seed's outcome.
fn table(args: &SweepArgs, runs: &[SweepRun]) -> Table {
    let kinds = args.model.models();
    let mut t = Table::new(
        std::iter::once("lr".to_string()).chain(
            kinds
                .iter()
                .map(|k| format!("{} median acc (per seed)", k.name())),
        ),
    );
    for &lr in &args.lrs {
        let mut row = vec![fmt_lr(lr)];
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
            row.push(format!("{med:.3} ({})", seeds.join(", ")));
        }
        t.row(row);
    }
    t
}

/// `sweep.png` / `sweep.svg`: final test accuracy against learning rate, one line per model
/// through the median over seeds, the min–max over seeds shaded around it.
fn chart(
    dir: &RunDir,
    lrs: &[f64],
    lines: &[(String, Vec<Cell>)],
) -> Result<Option<Figure>, Error> {
    let lo = lrs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = lrs.iter().copied().fold(0.0f64, f64::max);
    if !(lo > 0.0 && hi >= lo) {
        return Ok(None);
    }
    let seeds = lines
        .first()
        .and_then(|(_, cells)| cells.first())
        .map_or(0, |c| c.outcomes.len());
    let mut legend: Vec<Line> = Vec::new();
    let mut series = Vec::new();
    for (i, (label, cells)) in lines.iter().enumerate() {
        let points = |f: &dyn Fn(&Cell) -> f64| -> Vec<(f64, f64)> {
            cells.iter().map(|c| (c.lr, f(c))).collect()
        };
        legend.push(Line::band(format!("{label}: min–max"), i));
        series.push(Series {
            line: legend.len() - 1,
            points: band(&points(&|c| c.min), &points(&|c| c.max)),
        });
        legend.push(Line::solid(format!("{label}: median"), i));
        series.push(Series {
            line: legend.len() - 1,
            points: points(&|c| c.median),
        });
    }
    let panels = || {
        vec![Panel {
            title: format!("Final test accuracy vs learning rate, {seeds} seeds"),
            x_label: "learning rate (log scale)".into(),
            y_label: "test accuracy".into(),
            x_range: (lo / 1.5..hi * 1.5).log_scale(),
            y_range: 0.0..1.0,
            series: series.clone(),
            x_ticks: XTicks::Plain,
        }]
    };
    let caption = format!(
        "Final test accuracy against learning rate: the median over {seeds} seeds, the min–max \
         shaded (LeNet-BN with precise statistics)."
    );
    render(dir, "sweep", &caption, &legend, panels).map(Some)
}
