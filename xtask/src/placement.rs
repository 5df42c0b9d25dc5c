//! `cargo xtask placement`: the brief's rule "batch norm after the linear/conv step, before the
//! activation", tested. LeNet-BN trains with its batch norms before and after the activations,
//! with sigmoid (d2l) and ReLU, for each seed; the same seed gives both placements the same
//! initial weights and batches (the layers and the random draws are the same, only the order of
//! each norm and its activation differs).
//!
//! Each run is a `train-lenet` run in `runs/<activation>-<placement>-seed<seed>/` with its own
//! report; the experiment's table gives the final test accuracy of every run (precise
//! batch-norm statistics, and the moving averages) with the median over seeds, the per-epoch
//! median, and a chart of both.

use std::fmt::Write as _;

use serde::Serialize;

use norma_layers::models::ModelKind;

use crate::choices::{default_lr, ActivationChoice, ModelChoice, OptimizerChoice, PlacementChoice};
use crate::experiment::{self, CommonArgs, PreciseArgs, SeedArgs};
use crate::html::Page;
use crate::model_run::RunSpec;
use crate::plot::{self, Figure, Line, Panel, Series};
use crate::report::{fmt_acc, fmt_lr, median, RunRecord};
use crate::run_dir::RunDir;
use crate::signals::{self, Signal};
use crate::table::Table;
use crate::{checks, Error};

/// Arguments of `placement`.
#[derive(Debug, clap::Args, Serialize)]
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
    pub seeds: SeedArgs<1>,
    #[command(flatten)]
    #[serde(flatten)]
    pub precise: PreciseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// The two placements, the brief's first.
const PLACEMENTS: [PlacementChoice; 2] = [PlacementChoice::Before, PlacementChoice::After];

/// One trained configuration.
#[derive(Debug, Clone, Serialize)]
struct PlacementRun {
    activation: ActivationChoice,
    placement: PlacementChoice,
    seed: u64,
    /// With precise statistics (unless `--precise-bn 0`).
    final_test_acc: Option<f64>,
    /// With the running statistics.
    final_test_acc_moving_avg: Option<f64>,
    final_train_acc: Option<f64>,
    status: &'static str,
    #[serde(skip)]
    record: RunRecord,
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
    session.write_config("placement", &args)?;
    let runs_dir = session.dir.subdir("runs")?;
    let total = args.seeds.list().len() * args.activations.len() * PLACEMENTS.len();
    let mut runs = Vec::new();
    for seed in args.seeds.list() {
        for &activation in &args.activations {
            for placement in PLACEMENTS {
                let base = RunSpec::recipe(ModelChoice::LenetBn, activation, seed, args.epochs);
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
    let finals = final_table(&args, &runs);
    let epochs = epoch_table(&args, &runs);
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
        experiment::seed_range(&args.seeds.list()),
        args.precise.precise_bn
    ));
    page.heading("Final test accuracy").table(finals);
    page.figure("the placement chart", chart(&session.dir, &args, &runs));
    page.heading("Median test accuracy per epoch").table(epochs);
    session.finish(page, "placement", &args)?;
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

/// The configurations in table order: per activation, before then after.
fn configs(args: &PlacementArgs) -> Vec<(ActivationChoice, PlacementChoice)> {
    args.activations
        .iter()
        .flat_map(|&a| PLACEMENTS.map(|p| (a, p)))
        .collect()
}

fn runs_of(
    runs: &[PlacementRun],
    (a, p): (ActivationChoice, PlacementChoice),
) -> Vec<&PlacementRun> {
    runs.iter()
        .filter(|r| r.activation == a && r.placement == p)
        .collect()
}

fn label((a, p): (ActivationChoice, PlacementChoice)) -> String {
    format!("{}, BN {} activation", a.activation().name(), p.name())
}

/// Rows: configurations; columns: each seed's final test accuracy (moving averages in
/// brackets), the medians, the last epoch's train accuracy.
fn final_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
    let seeds = args.seeds.list();
    let mut t = Table::new(
        std::iter::once("configuration".to_string())
            .chain(seeds.iter().map(|s| format!("seed {s}")))
            .chain([
                "median".to_string(),
                "median, moving-avg BN".to_string(),
                "median train acc".to_string(),
            ]),
    );
    for config in configs(args) {
        let cell = runs_of(runs, config);
        let mut row = vec![label(config)];
        for seed in &seeds {
            row.push(match cell.iter().find(|r| r.seed == *seed) {
                Some(r) => format!(
                    "{} ({}){}",
                    fmt_acc(r.final_test_acc),
                    fmt_acc(r.final_test_acc_moving_avg),
                    if r.status == "ok" {
                        String::new()
                    } else {
                        format!(" {}", r.status)
                    }
                ),
                None => "-".into(),
            });
        }
        let med = |f: fn(&PlacementRun) -> Option<f64>| {
            let v: Vec<f64> = cell.iter().filter_map(|r| f(r)).collect();
            fmt_acc((!v.is_empty()).then(|| median(v)))
        };
        row.push(med(|r| r.final_test_acc));
        row.push(med(|r| r.final_test_acc_moving_avg));
        row.push(med(|r| r.final_train_acc));
        t.row(row);
    }
    t
}

/// The median over seeds of `f` at each epoch of configuration `config`.
fn median_per_epoch(
    runs: &[PlacementRun],
    config: (ActivationChoice, PlacementChoice),
    epochs: usize,
    f: fn(&crate::report::EpochRow) -> f64,
) -> Vec<(f64, f64)> {
    let cell = runs_of(runs, config);
    (1..=epochs)
        .filter_map(|epoch| {
            let v: Vec<f64> = cell
                .iter()
                .filter_map(|r| r.record.epochs.iter().find(|e| e.epoch == epoch))
                .map(f)
                .collect();
            (!v.is_empty()).then(|| (epoch as f64, median(v)))
        })
        .collect()
}

/// Rows: epochs; columns: configurations; cells: median test accuracy over seeds.
fn epoch_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
    let configs = configs(args);
    let mut t =
        Table::new(std::iter::once("epoch".to_string()).chain(configs.iter().map(|&c| label(c))));
    let columns: Vec<Vec<(f64, f64)>> = configs
        .iter()
        .map(|&c| median_per_epoch(runs, c, args.epochs, |e| e.headline_acc()))
        .collect();
    for epoch in 1..=args.epochs {
        let mut row = vec![epoch.to_string()];
        for column in &columns {
            let acc = column.iter().find(|(e, _)| *e as usize == epoch);
            row.push(fmt_acc(acc.map(|(_, a)| *a)));
        }
        t.row(row);
    }
    t
}

/// `placement.png` / `.svg`: median test accuracy and training loss per epoch, one line per
/// configuration (a color per activation, solid before and dashed after).
fn chart(dir: &RunDir, args: &PlacementArgs, runs: &[PlacementRun]) -> Result<Figure, Error> {
    let configs = configs(args);
    let lines: Vec<Line> = configs
        .iter()
        .map(|&(a, p)| {
            let color = args.activations.iter().position(|x| *x == a).unwrap_or(0);
            match p {
                PlacementChoice::Before => Line::solid(label((a, p)), color),
                PlacementChoice::After => Line::dashed(label((a, p)), color),
            }
        })
        .collect();
    let max_loss = plot::finite_max(
        runs.iter()
            .flat_map(|r| r.record.epochs.iter().map(|e| e.train_loss)),
    );
    let x_range = 0.5..args.epochs as f64 + 0.5;
    let panels = || {
        let series = |f: fn(&crate::report::EpochRow) -> f64| {
            configs
                .iter()
                .enumerate()
                .map(|(line, &c)| Series {
                    line,
                    points: median_per_epoch(runs, c, args.epochs, f),
                })
                .collect()
        };
        vec![
            Panel {
                title: "Test accuracy (precise BN)".into(),
                x_label: "epoch".into(),
                y_label: "accuracy, median over seeds".into(),
                x_range: x_range.clone(),
                y_range: 0.0..1.0,
                series: series(|e| e.headline_acc()),
                integer_x: true,
            },
            Panel {
                title: "Training loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy, median over seeds".into(),
                x_range: x_range.clone(),
                y_range: 0.0..(max_loss * 1.1).max(0.1),
                series: series(|e| e.train_loss),
                integer_x: true,
            },
        ]
    };
    let caption = "LeNet-BN with batch norm before (solid) or after (dashed) each activation: \
                   median over seeds of the test accuracy with precise statistics and of the \
                   training loss, per epoch.";
    plot::render(dir, "placement", caption, &lines, panels)
}
