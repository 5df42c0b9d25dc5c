//! The tables and files of `affine`: final test accuracy and training loss per configuration
//! and seed with their median and min–max over seeds, the per-epoch spread the chart draws,
//! the learned γ and β per layer; `affine.json`, `affine.csv` and `affine-gamma-beta.csv`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::affine::{affine_name, AffineArgs, AffineRun, AFFINE};
use crate::cli::choices::ActivationChoice;
use crate::error::Error;
use crate::output::report::{fmt_acc, fmt_loss, fmt_run_cell, spread, EpochRow};
use crate::output::run_dir::RunDir;
use crate::output::table::Table;

/// One configuration: an activation, with (`true`) or without γ and β.
pub type Config = (ActivationChoice, bool);

/// The configurations in table order: per activation, with then without γ and β.
pub fn configs(args: &AffineArgs) -> Vec<Config> {
    args.activations
        .iter()
        .flat_map(|&a| AFFINE.map(|affine| (a, affine)))
        .collect()
}

pub fn runs_of(runs: &[AffineRun], (a, affine): Config) -> Vec<&AffineRun> {
    runs.iter()
        .filter(|r| r.activation == a && r.affine == affine)
        .collect()
}

pub fn label((a, affine): Config) -> String {
    let with = if affine { "with γ, β" } else { "no γ, β" };
    format!("{}, {with}", a.activation().name())
}

/// Median, min and max over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The spread of `f` over the runs that have it (`None` if none does).
fn spread_of(cell: &[&AffineRun], f: fn(&AffineRun) -> Option<f64>) -> Option<Spread> {
    let values: Vec<f64> = cell.iter().filter_map(|r| f(r)).collect();
    spread(&values).map(|(median, min, max)| Spread { median, min, max })
}

/// One configuration over seeds (`affine.json`'s `summary`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub activation: ActivationChoice,
    pub affine: bool,
    pub seeds: usize,
    pub final_test_acc: Option<Spread>,
    pub final_test_acc_moving_avg: Option<Spread>,
    pub final_train_loss: Option<Spread>,
}

pub fn summaries(args: &AffineArgs, runs: &[AffineRun]) -> Vec<Summary> {
    configs(args)
        .into_iter()
        .map(|config| {
            let cell = runs_of(runs, config);
            Summary {
                activation: config.0,
                affine: config.1,
                seeds: cell.len(),
                final_test_acc: spread_of(&cell, |r| r.final_test_acc),
                final_test_acc_moving_avg: spread_of(&cell, |r| r.final_test_acc_moving_avg),
                final_train_loss: spread_of(&cell, |r| r.final_train_loss),
            }
        })
        .collect()
}

/// `0.8812 [0.8790, 0.8830]`.
fn fmt_spread(s: Option<Spread>, fmt: fn(f64) -> String) -> String {
    s.map_or("-".into(), |s| {
        format!("{} [{}, {}]", fmt(s.median), fmt(s.min), fmt(s.max))
    })
}

fn acc(v: f64) -> String {
    fmt_acc(Some(v))
}

/// Rows: configurations; columns: each seed's final test accuracy (moving averages in
/// brackets), the medians [min, max] over seeds, and of the last epoch's training loss.
pub fn final_table(args: &AffineArgs, runs: &[AffineRun]) -> Table {
    let seeds = args.seeds.list();
    let mut t = Table::new(
        std::iter::once("configuration".to_string())
            .chain(seeds.iter().map(|s| format!("seed {s}")))
            .chain([
                "median [min, max]".to_string(),
                "moving-avg BN".to_string(),
                "final train loss".to_string(),
            ]),
    );
    for (config, summary) in configs(args).into_iter().zip(summaries(args, runs)) {
        let cell = runs_of(runs, config);
        let mut row = vec![label(config)];
        for seed in &seeds {
            row.push(match cell.iter().find(|r| r.seed == *seed) {
                Some(r) => fmt_run_cell(r.final_test_acc, r.final_test_acc_moving_avg, r.status),
                None => "-".into(),
            });
        }
        row.push(fmt_spread(summary.final_test_acc, acc));
        row.push(fmt_spread(summary.final_test_acc_moving_avg, acc));
        row.push(fmt_spread(summary.final_train_loss, fmt_loss));
        t.row(row);
    }
    t
}

/// The (median, min, max) over seeds of `f` at each epoch of configuration `config`.
pub fn per_epoch(
    runs: &[AffineRun],
    config: Config,
    epochs: usize,
    f: fn(&EpochRow) -> f64,
) -> crate::output::plot::SpreadCurve {
    let cell = runs_of(runs, config);
    (1..=epochs)
        .filter_map(|epoch| {
            let v: Vec<f64> = cell
                .iter()
                .filter_map(|r| r.record.epochs.iter().find(|e| e.epoch == epoch))
                .map(f)
                .filter(|v| v.is_finite())
                .collect();
            spread(&v).map(|s| (epoch as f64, s))
        })
        .collect()
}

/// Mean, min and max of `values` (NaN when empty).
fn mean_min_max(values: &[f32]) -> (f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (mean, f64::from(min), f64::from(max))
}

fn fmt_mmm((mean, min, max): (f64, f64, f64)) -> String {
    format!("{mean:.3} [{min:.3}, {max:.3}]")
}

/// Rows: the runs with γ and β, per activation, seed and batch norm; columns: the mean [min,
/// max] over channels of the learned γ and β.
pub fn gamma_beta_table(args: &AffineArgs, runs: &[AffineRun]) -> Table {
    let mut t = Table::new([
        "activation",
        "seed",
        "layer",
        "channels",
        "γ mean [min, max]",
        "β mean [min, max]",
    ]);
    for &a in &args.activations {
        for r in runs_of(runs, (a, true)) {
            for l in &r.layers {
                t.row([
                    a.activation().name().to_string(),
                    r.seed.to_string(),
                    l.layer.clone(),
                    l.gamma.len().to_string(),
                    fmt_mmm(mean_min_max(&l.gamma)),
                    fmt_mmm(mean_min_max(&l.beta)),
                ]);
            }
        }
    }
    t
}

/// `affine.json`: the runs, the summary over seeds and every learned γ and β.
#[derive(Serialize)]
struct Results<'a> {
    runs: &'a [AffineRun],
    summary: Vec<Summary>,
    gamma_beta: Vec<RunAffine<'a>>,
}

/// One run's learned γ and β.
#[derive(Serialize)]
struct RunAffine<'a> {
    activation: ActivationChoice,
    seed: u64,
    layers: &'a [crate::affine::gamma_beta::LayerAffine],
}

/// `affine.json`, `affine.csv` (one line per run) and `affine-gamma-beta.csv` (one line per
/// channel of every batch norm of the runs with γ and β).
pub fn write_results(dir: &RunDir, args: &AffineArgs, runs: &[AffineRun]) -> Result<(), Error> {
    let gamma_beta = runs
        .iter()
        .filter(|r| r.affine)
        .map(|r| RunAffine {
            activation: r.activation,
            seed: r.seed,
            layers: &r.layers,
        })
        .collect();
    dir.write_json(
        "affine.json",
        &Results {
            runs,
            summary: summaries(args, runs),
            gamma_beta,
        },
    )?;
    let mut csv = String::from(
        "activation,affine,seed,final_test_acc,final_test_acc_moving_avg,final_train_loss,\
         final_train_acc,norm_parameters,status\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.activation.activation().name(),
            affine_name(r.affine),
            r.seed,
            opt(r.final_test_acc),
            opt(r.final_test_acc_moving_avg),
            opt(r.final_train_loss),
            opt(r.final_train_acc),
            r.norm_parameters,
            r.status
        );
    }
    dir.write("affine.csv", csv.as_bytes())?;
    let mut csv = String::from("activation,seed,layer,channel,gamma,beta\n");
    for r in runs.iter().filter(|r| r.affine) {
        for l in &r.layers {
            for (c, (g, b)) in l.gamma.iter().zip(&l.beta).enumerate() {
                let _ = writeln!(
                    csv,
                    "{},{},{},{c},{g},{b}",
                    r.activation.activation().name(),
                    r.seed,
                    l.layer
                );
            }
        }
    }
    dir.write("affine-gamma-beta.csv", csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_min_max_over_channels() {
        assert_eq!(mean_min_max(&[1.0, 3.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(
            fmt_mmm(mean_min_max(&[0.5, -0.25])),
            "0.125 [-0.250, 0.500]"
        );
    }
}
