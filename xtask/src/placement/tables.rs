//! The tables of `placement`: final accuracy per configuration and seed, and the median per
//! epoch.

use crate::cli::choices::{ActivationChoice, PlacementChoice};
use crate::output::report::{fmt_acc, median, EpochRow};
use crate::output::table::Table;
use crate::placement::{PlacementArgs, PlacementRun, PLACEMENTS};

/// The configurations in table order: per activation, before then after.
pub fn configs(args: &PlacementArgs) -> Vec<(ActivationChoice, PlacementChoice)> {
    args.activations
        .iter()
        .flat_map(|&a| PLACEMENTS.map(|p| (a, p)))
        .collect()
}

pub fn runs_of(
    runs: &[PlacementRun],
    (a, p): (ActivationChoice, PlacementChoice),
) -> Vec<&PlacementRun> {
    runs.iter()
        .filter(|r| r.activation == a && r.placement == p)
        .collect()
}

pub fn label((a, p): (ActivationChoice, PlacementChoice)) -> String {
    format!("{}, BN {} activation", a.activation().name(), p.name())
}

/// Rows: configurations; columns: each seed's final test accuracy (moving averages in
/// brackets), the medians, the last epoch's train accuracy.
pub fn final_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
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
pub fn median_per_epoch(
    runs: &[PlacementRun],
    config: (ActivationChoice, PlacementChoice),
    epochs: usize,
    f: fn(&EpochRow) -> f64,
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
pub fn epoch_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
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
