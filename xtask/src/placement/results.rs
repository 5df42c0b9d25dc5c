//! The files of `placement`:
//!
//! - `placement.json`: the protocol, `configs.<activation>-<placement>` with the chosen rate
//!   (`chosen_lr`), its median validation accuracy and the final test accuracy over seeds
//!   (`test_acc.median`, `.min`, `.max`, and the same with the moving averages), then the grid,
//!   every tuning run and every final run;
//! - `placement.csv`: one row per configuration (the `configs` entries);
//! - `placement-grid.csv`: one row per configuration and rate (validation accuracy over seeds,
//!   and whether it was chosen);
//! - `placement-runs.csv`: one row per final run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::choices::{ActivationChoice, PlacementChoice};
use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::placement::tables::runs_of;
use crate::placement::tuning::{Choice, GridCell, Spread, TuningRun};
use crate::placement::{key, PlacementArgs, PlacementRun};

/// One configuration's result: its rate and its final accuracies over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub chosen_lr: f64,
    /// Median over seeds at the chosen rate after the tuning epochs.
    pub validation_acc_median: f64,
    /// Final test accuracy with precise statistics, over the seeds that have one.
    pub test_acc: Option<Spread>,
    /// The same with the moving averages.
    pub test_acc_moving_avg: Option<Spread>,
    /// Last epoch's training accuracy.
    pub train_acc: Option<Spread>,
    pub seeds: usize,
    /// Final runs that did not complete (diverged or stopped).
    pub not_ok: usize,
}

/// Each chosen configuration's summary, in table order.
pub fn summarise(choices: &[Choice], runs: &[PlacementRun]) -> Vec<ConfigSummary> {
    choices
        .iter()
        .map(|c| {
            let cell = runs_of(runs, (c.activation, c.placement));
            let over = |f: fn(&PlacementRun) -> Option<f64>| {
                Spread::of(&cell.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            ConfigSummary {
                activation: c.activation,
                placement: c.placement,
                chosen_lr: c.lr,
                validation_acc_median: c.validation_acc,
                test_acc: over(|r| r.final_test_acc),
                test_acc_moving_avg: over(|r| r.final_test_acc_moving_avg),
                train_acc: over(|r| r.final_train_acc),
                seeds: cell.len(),
                not_ok: cell.iter().filter(|r| r.status != "ok").count(),
            }
        })
        .collect()
}

/// `placement.json`.
#[derive(Serialize)]
struct Results<'a> {
    /// How the rates were chosen, in a sentence.
    selection: String,
    lrs: &'a [f64],
    tune_epochs: usize,
    epochs: usize,
    validation_images: usize,
    seeds: Vec<u64>,
    configs: BTreeMap<String, &'a ConfigSummary>,
    grid: &'a [GridCell],
    tuning_runs: &'a [TuningRun],
    runs: &'a [PlacementRun],
}

/// Writes `placement.json`, `placement.csv`, `placement-grid.csv` and `placement-runs.csv`.
pub fn write(
    dir: &RunDir,
    args: &PlacementArgs,
    summary: &[ConfigSummary],
    grid: &[GridCell],
    tuned: &[TuningRun],
    runs: &[PlacementRun],
) -> Result<(), Error> {
    let results = Results {
        selection: format!(
            "per configuration, the rate of lrs with the best median over seeds of the \
             validation accuracy (the last {} training images, held out) after {} epochs; a \
             diverged run counts as 0 and a tie goes to the smaller rate. The final runs then \
             train {} epochs on all training images at that rate and are evaluated on the test \
             set.",
            args.validation, args.tune_epochs, args.epochs
        ),
        lrs: &args.lrs,
        tune_epochs: args.tune_epochs,
        epochs: args.epochs,
        validation_images: args.validation,
        seeds: args.seeds.list(),
        configs: summary
            .iter()
            .map(|s| (key((s.activation, s.placement)), s))
            .collect(),
        grid,
        tuning_runs: tuned,
        runs,
    };
    dir.write_json("placement.json", &results)?;
    dir.write("placement.csv", summary_csv(summary).as_bytes())?;
    dir.write("placement-grid.csv", grid_csv(grid).as_bytes())?;
    dir.write("placement-runs.csv", runs_csv(runs).as_bytes())
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |a| a.to_string())
}

/// The median, min and max columns of `s` (empty when `None`).
fn spread_cells(s: Option<Spread>) -> String {
    format!(
        "{},{},{}",
        opt(s.map(|s| s.median)),
        opt(s.map(|s| s.min)),
        opt(s.map(|s| s.max))
    )
}

fn names(a: ActivationChoice, p: PlacementChoice) -> String {
    format!("{},{}", a.activation().name(), p.name())
}

fn summary_csv(summary: &[ConfigSummary]) -> String {
    let mut csv = String::from(
        "activation,placement,chosen_lr,validation_acc_median,test_acc_median,test_acc_min,\
         test_acc_max,test_acc_moving_avg_median,test_acc_moving_avg_min,\
         test_acc_moving_avg_max,train_acc_median,seeds,not_ok\n",
    );
    for s in summary {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            names(s.activation, s.placement),
            s.chosen_lr,
            s.validation_acc_median,
            spread_cells(s.test_acc),
            spread_cells(s.test_acc_moving_avg),
            opt(s.train_acc.map(|t| t.median)),
            s.seeds,
            s.not_ok
        );
    }
    csv
}

fn grid_csv(grid: &[GridCell]) -> String {
    let mut csv = String::from(
        "activation,placement,lr,validation_acc_median,validation_acc_min,validation_acc_max,\
         seeds,diverged,chosen\n",
    );
    for c in grid {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            names(c.activation, c.placement),
            c.lr,
            spread_cells(c.validation_acc),
            c.seeds,
            c.diverged,
            c.chosen
        );
    }
    csv
}

fn runs_csv(runs: &[PlacementRun]) -> String {
    let mut csv = String::from(
        "activation,placement,lr,seed,final_test_acc,final_test_acc_moving_avg,final_train_acc,\
         status\n",
    );
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            names(r.activation, r.placement),
            r.lr,
            r.seed,
            opt(r.final_test_acc),
            opt(r.final_test_acc_moving_avg),
            opt(r.final_train_acc),
            r.status
        );
    }
    csv
}
