//! How `placement` chooses each configuration's learning rate: the tuning runs' validation
//! accuracies ([`TuningRun`]), summarised per configuration and rate over seeds ([`grid`]),
//! and the rate with the best median ([`choose`]). Only validation accuracies enter: a tuning
//! run never sees the test set, and the final runs' test accuracies come after the choice.

use serde::Serialize;

use crate::cli::choices::{ActivationChoice, PlacementChoice};
use crate::output::report::{spread, RunRecord};
use crate::placement::tables::configs;
use crate::placement::{Config, PlacementArgs};

/// One tuning run: a configuration at one rate and seed, evaluated on the validation split.
#[derive(Debug, Clone, Serialize)]
pub struct TuningRun {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub lr: f64,
    pub seed: u64,
    /// The final validation accuracy (precise statistics when measured); `None` when the run
    /// diverged.
    pub validation_acc: Option<f64>,
    pub status: &'static str,
}

impl TuningRun {
    pub fn new(config: Config, lr: f64, seed: u64, record: &RunRecord) -> TuningRun {
        TuningRun {
            activation: config.0,
            placement: config.1,
            lr,
            seed,
            // A diverged run's last weights say nothing about the rate but that it is too large.
            validation_acc: if record.status.diverged() {
                None
            } else {
                record.headline_acc()
            },
            status: record.status.word(),
        }
    }

    /// The accuracy the choice ranks by: a diverged run counts as 0.
    pub fn score(&self) -> f64 {
        self.validation_acc.unwrap_or(0.0)
    }
}

/// The median, least and greatest of some values over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        spread(values).map(|(median, min, max)| Spread { median, min, max })
    }
}

/// One cell of the grid: a configuration at one rate, over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct GridCell {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub lr: f64,
    /// Validation accuracy over seeds, a diverged seed counted as 0.
    pub validation_acc: Option<Spread>,
    pub seeds: usize,
    pub diverged: usize,
    /// Whether this is the configuration's chosen rate (set by [`choose`]).
    pub chosen: bool,
}

/// Every configuration at every rate of `--lrs` (configurations in table order, rates
/// increasing), from the tuning runs.
pub fn grid(args: &PlacementArgs, tuned: &[TuningRun]) -> Vec<GridCell> {
    let mut cells = Vec::new();
    for (activation, placement) in configs(args) {
        for &lr in &args.lrs {
            let runs: Vec<&TuningRun> = tuned
                .iter()
                .filter(|r| r.activation == activation && r.placement == placement && r.lr == lr)
                .collect();
            let scores: Vec<f64> = runs.iter().map(|r| r.score()).collect();
            cells.push(GridCell {
                activation,
                placement,
                lr,
                validation_acc: Spread::of(&scores),
                seeds: runs.len(),
                diverged: runs.iter().filter(|r| r.validation_acc.is_none()).count(),
                chosen: false,
            });
        }
    }
    cells
}

/// A configuration's chosen rate.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub activation: ActivationChoice,
    pub placement: PlacementChoice,
    pub lr: f64,
    /// The median validation accuracy over seeds at that rate.
    pub validation_acc: f64,
}

/// Each configuration's rate: the cell of the best median validation accuracy, the smaller
/// rate on a tie (cells in increasing rate). Marks the chosen cells in `grid`.
pub fn choose(args: &PlacementArgs, grid: &mut [GridCell]) -> Vec<Choice> {
    let mut choices = Vec::new();
    for (activation, placement) in configs(args) {
        let mut best: Option<(usize, f64)> = None;
        for (i, cell) in grid.iter().enumerate() {
            if cell.activation != activation || cell.placement != placement {
                continue;
            }
            let Some(acc) = cell.validation_acc.map(|s| s.median) else {
                continue;
            };
            if best.is_none_or(|(_, b)| acc > b) {
                best = Some((i, acc));
            }
        }
        if let Some((i, acc)) = best {
            grid[i].chosen = true;
            choices.push(Choice {
                activation,
                placement,
                lr: grid[i].lr,
                validation_acc: acc,
            });
        }
    }
    choices
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PlacementArgs,
    }

    fn args(extra: &[&str]) -> PlacementArgs {
        Cli::parse_from(std::iter::once("placement").chain(extra.iter().copied())).args
    }

    fn run(config: Config, lr: f64, seed: u64, acc: Option<f64>) -> TuningRun {
        TuningRun {
            activation: config.0,
            placement: config.1,
            lr,
            seed,
            validation_acc: acc,
            status: if acc.is_some() { "ok" } else { "diverged" },
        }
    }

    #[test]
    fn the_chosen_rate_has_the_best_median_validation_accuracy() {
        let args = args(&["--activations", "relu", "--lrs", "0.1", "1", "3"]);
        let before = (ActivationChoice::Relu, PlacementChoice::Before);
        let after = (ActivationChoice::Relu, PlacementChoice::After);
        let tuned = [
            // before: 1 wins on the median although 3 has the best single seed.
            run(before, 0.1, 0, Some(0.80)),
            run(before, 0.1, 1, Some(0.81)),
            run(before, 1.0, 0, Some(0.86)),
            run(before, 1.0, 1, Some(0.85)),
            run(before, 3.0, 0, Some(0.90)),
            run(before, 3.0, 1, None),
            // after: a tie between 0.1 and 1 goes to the smaller.
            run(after, 0.1, 0, Some(0.84)),
            run(after, 1.0, 0, Some(0.84)),
            run(after, 3.0, 0, Some(0.70)),
        ];
        let mut grid = grid(&args, &tuned);
        assert_eq!(grid.len(), 6);
        let three = &grid[2];
        assert_eq!((three.lr, three.seeds, three.diverged), (3.0, 2, 1));
        assert_eq!(
            three.validation_acc,
            Some(Spread {
                median: 0.45,
                min: 0.0,
                max: 0.90
            })
        );
        let choices = choose(&args, &mut grid);
        let picked: Vec<(Config, f64)> = choices
            .iter()
            .map(|c| ((c.activation, c.placement), c.lr))
            .collect();
        assert_eq!(picked, [(before, 1.0), (after, 0.1)]);
        assert!((choices[0].validation_acc - 0.855).abs() < 1e-12);
        let chosen: Vec<bool> = grid.iter().map(|c| c.chosen).collect();
        assert_eq!(chosen, [false, true, false, true, false, false]);
    }

    #[test]
    fn a_diverged_run_ranks_below_any_that_trained() {
        let d = run(
            (ActivationChoice::Sigmoid, PlacementChoice::After),
            3.0,
            0,
            None,
        );
        assert_eq!(d.score(), 0.0);
        assert!(
            run(
                (ActivationChoice::Sigmoid, PlacementChoice::After),
                1.0,
                0,
                Some(0.1)
            )
            .score()
                > d.score()
        );
    }
}
