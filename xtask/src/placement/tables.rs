//! The tables of `placement`: each configuration's chosen rate and final test accuracy over
//! seeds, the tuning grid, the final accuracy per seed, and the median per epoch.

use crate::output::report::{fmt_acc, fmt_lr, fmt_run_cell, EpochRow};
use crate::output::table::Table;
use crate::placement::results::ConfigSummary;
use crate::placement::tuning::{GridCell, Spread};
use crate::placement::{Config, PlacementArgs, PlacementRun, PLACEMENTS};

/// The configurations in table order: per activation, before then after.
pub fn configs(args: &PlacementArgs) -> Vec<Config> {
    args.activations
        .iter()
        .flat_map(|&a| PLACEMENTS.map(|p| (a, p)))
        .collect()
}

pub fn runs_of(runs: &[PlacementRun], (a, p): Config) -> Vec<&PlacementRun> {
    runs.iter()
        .filter(|r| r.activation == a && r.placement == p)
        .collect()
}

pub fn label((a, p): Config) -> String {
    format!("{}, BN {} activation", a.activation().name(), p.name())
}

/// `0.8512 [0.8490–0.8533]`, or `-`.
fn fmt_spread(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!(
            "{} [{}–{}]",
            fmt_acc(Some(s.median)),
            fmt_acc(Some(s.min)),
            fmt_acc(Some(s.max))
        ),
        None => "-".into(),
    }
}

/// Rows: configurations; columns: the chosen rate, its validation accuracy, the final test
/// accuracy over seeds (precise BN, then moving averages) and the training accuracy.
pub fn summary_table(args: &PlacementArgs, summary: &[ConfigSummary]) -> Table {
    let mut t = Table::new([
        "configuration".to_string(),
        "chosen lr".into(),
        format!("validation acc after {} epochs (median)", args.tune_epochs),
        format!("test acc after {} epochs, median [min–max]", args.epochs),
        "moving-avg BN, median [min–max]".into(),
        "train acc (median)".into(),
        "seeds".into(),
    ]);
    for s in summary {
        let seeds = if s.not_ok == 0 {
            s.seeds.to_string()
        } else {
            format!("{} ({} not ok)", s.seeds, s.not_ok)
        };
        t.row([
            label((s.activation, s.placement)),
            fmt_lr(s.chosen_lr),
            fmt_acc(Some(s.validation_acc_median)),
            fmt_spread(s.test_acc),
            fmt_spread(s.test_acc_moving_avg),
            fmt_acc(s.train_acc.map(|t| t.median)),
            seeds,
        ]);
    }
    t
}

/// Rows: configurations; columns: rates; cells: validation accuracy over seeds, `*` on the
/// chosen rate and the count of diverged seeds.
pub fn grid_table(args: &PlacementArgs, grid: &[GridCell]) -> Table {
    let mut t = Table::new(
        std::iter::once("configuration".to_string())
            .chain(args.lrs.iter().map(|&lr| format!("lr {}", fmt_lr(lr)))),
    );
    for config in configs(args) {
        let mut row = vec![label(config)];
        for &lr in &args.lrs {
            let cell = grid
                .iter()
                .find(|c| (c.activation, c.placement) == config && c.lr == lr);
            row.push(match cell {
                Some(c) => format!(
                    "{}{}{}",
                    fmt_spread(c.validation_acc),
                    if c.chosen { " *" } else { "" },
                    if c.diverged > 0 {
                        format!(" ({} diverged)", c.diverged)
                    } else {
                        String::new()
                    }
                ),
                None => "-".into(),
            });
        }
        t.row(row);
    }
    t
}

/// Rows: configurations; columns: the rate and each seed's final test accuracy (moving
/// averages in brackets).
pub fn final_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
    let seeds = args.seeds.list();
    let mut t = Table::new(
        ["configuration".to_string(), "lr".to_string()]
            .into_iter()
            .chain(seeds.iter().map(|s| format!("seed {s}"))),
    );
    for config in configs(args) {
        let cell = runs_of(runs, config);
        let mut row = vec![
            label(config),
            cell.first().map_or("-".into(), |r| fmt_lr(r.lr)),
        ];
        for seed in &seeds {
            row.push(match cell.iter().find(|r| r.seed == *seed) {
                Some(r) => fmt_run_cell(r.final_test_acc, r.final_test_acc_moving_avg, r.status),
                None => "-".into(),
            });
        }
        t.row(row);
    }
    t
}

/// `f` of configuration `config` at each epoch: the median, least and greatest over seeds.
pub fn spread_per_epoch(
    runs: &[PlacementRun],
    config: Config,
    epochs: usize,
    f: fn(&EpochRow) -> f64,
) -> Vec<(f64, Spread)> {
    let cell = runs_of(runs, config);
    (1..=epochs)
        .filter_map(|epoch| {
            let v: Vec<f64> = cell
                .iter()
                .filter_map(|r| r.record.epochs.iter().find(|e| e.epoch == epoch))
                .map(f)
                .collect();
            Spread::of(&v).map(|s| (epoch as f64, s))
        })
        .collect()
}

/// Rows: epochs; columns: configurations; cells: median test accuracy over seeds.
pub fn epoch_table(args: &PlacementArgs, runs: &[PlacementRun]) -> Table {
    let configs = configs(args);
    let mut t =
        Table::new(std::iter::once("epoch".to_string()).chain(configs.iter().map(|&c| label(c))));
    let columns: Vec<Vec<(f64, Spread)>> = configs
        .iter()
        .map(|&c| spread_per_epoch(runs, c, args.epochs, |e| e.headline_acc()))
        .collect();
    for epoch in 1..=args.epochs {
        let mut row = vec![epoch.to_string()];
        for column in &columns {
            let acc = column.iter().find(|(e, _)| *e as usize == epoch);
            row.push(fmt_acc(acc.map(|(_, s)| s.median)));
        }
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_print_median_then_range() {
        let s = Spread::of(&[0.9, 0.8, 0.85]);
        assert_eq!(
            fmt_spread(s),
            format!(
                "{} [{}–{}]",
                fmt_acc(Some(0.85)),
                fmt_acc(Some(0.8)),
                fmt_acc(Some(0.9))
            )
        );
        assert_eq!(fmt_spread(None), "-");
    }
}
