//! The charts of `depth`: test error and training loss against steps (one panel per depth,
//! the median over seeds and their min–max band per network), and the stage inputs of the
//! deepest plain nets without and with batch norm.

use crate::depth::tables::runs_of;
use crate::depth::{nets, DepthArgs, DepthRun, OBSERVED};
use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series, XTicks};
use crate::output::report::spread;
use crate::output::run_dir::RunDir;
use crate::steps::chart::{percentile_range, percentile_series, step_range};
use crate::steps::CurvePoint;

/// What a curve chart draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// 1 − test accuracy.
    TestError,
    /// Mean training loss since the previous point.
    TrainLoss,
}

impl Measure {
    fn of(self, p: &CurvePoint) -> Option<f64> {
        match self {
            Measure::TestError => Some(1.0 - p.test_acc),
            Measure::TrainLoss => p.train_loss,
        }
    }
}

/// The three networks' labels: plain without BN, plain with BN, ResNet with BN.
const KINDS: [&str; 3] = ["plain, no norm", "plain, batch norm", "ResNet, batch norm"];

/// At each step some seed recorded, the (median, min, max) of `measure` over the seeds that
/// have it (a diverged seed's curve ends early).
pub fn over_seeds(runs: &[&DepthRun], measure: Measure) -> plot::SpreadCurve {
    let mut steps: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.curve.iter().map(|p| p.step))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
        .into_iter()
        .filter_map(|s| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.curve.iter().find(|p| p.step == s))
                .filter_map(|p| measure.of(p))
                .filter(|v| v.is_finite())
                .collect();
            spread(&values).map(|m| (s as f64, m))
        })
        .collect()
}

/// `depth-error` or `depth-loss` (`.png` / `.svg`): one panel per depth.
pub fn curves_chart(
    dir: &RunDir,
    args: &DepthArgs,
    runs: &[DepthRun],
    measure: Measure,
) -> Result<Figure, Error> {
    let lines: Vec<Line> = KINDS
        .iter()
        .enumerate()
        .flat_map(|(k, name)| {
            [
                Line::solid(format!("{name}: median"), k),
                Line::band(format!("{name}: min-max over seeds"), k),
            ]
        })
        .collect();
    let (stem, what, y_range) = match measure {
        Measure::TestError => ("depth-error", "test error", 0.0..1.0),
        Measure::TrainLoss => {
            let max = plot::finite_max(
                runs.iter()
                    .flat_map(|r| r.curve.iter().filter_map(|p| p.train_loss)),
            );
            ("depth-loss", "training loss", 0.0..(max * 1.05).max(0.1))
        }
    };
    let panels = || {
        args.depths
            .iter()
            .map(|&depth| {
                let curves: Vec<_> = nets(depth)
                    .iter()
                    .map(|net| over_seeds(&runs_of(runs, &net.name()), measure))
                    .collect();
                let bands = plot::median_bands(&curves);
                Panel {
                    title: format!("depth {depth}"),
                    x_label: "training step".into(),
                    y_label: what.into(),
                    x_range: step_range(args.steps),
                    y_range: y_range.clone(),
                    series: bands,
                    x_ticks: XTicks::Plain,
                }
            })
            .collect()
    };
    let caption = format!(
        "The {what} against training steps of the plain nets without and with batch norm and \
         the ResNet, one panel per depth: the median over seeds {} and their min-max band (a \
         diverged seed's curve ends where it diverged).",
        crate::cli::args::seed_range(&args.seeds.list())
    );
    plot::render(dir, stem, &caption, &lines, panels)
}

/// `depth-drift` (`.png` / `.svg`): for each observed input, the 15th–85th percentile band
/// and the median over training of the deepest plain net without and with batch norm (first
/// seed).
pub fn drift_chart(dir: &RunDir, args: &DepthArgs, runs: &[DepthRun]) -> Result<Figure, Error> {
    let observed: Vec<&DepthRun> = runs.iter().filter(|r| !r.layers.is_empty()).collect();
    if observed.is_empty() {
        return Err(Error::Plot("no stage inputs were recorded".into()));
    }
    let lines: Vec<Line> = observed
        .iter()
        .enumerate()
        .flat_map(|(k, r)| {
            [
                Line::solid(format!("{}: median", r.model), k),
                Line::band(format!("{}: 15th-85th percentile", r.model), k),
            ]
        })
        .collect();
    let panels = || {
        OBSERVED
            .iter()
            .map(|&layer| {
                let records: Vec<_> = observed
                    .iter()
                    .map(|r| {
                        r.layers
                            .iter()
                            .find(|l| l.layer == layer)
                            .map_or(&[][..], |l| l.records.as_slice())
                    })
                    .collect();
                let mut series: Vec<Series> = records
                    .iter()
                    .enumerate()
                    .flat_map(|(k, rec)| percentile_series(rec, 2 * k + 1, 2 * k))
                    .collect();
                series.sort_by_key(|s| !lines[s.line].fill);
                Panel {
                    title: format!("input of {layer}"),
                    x_label: "training step".into(),
                    y_label: "value".into(),
                    x_range: step_range(args.steps),
                    y_range: percentile_range(records.iter().flat_map(|r| r.iter().map(|x| &x.1))),
                    series,
                    x_ticks: XTicks::Plain,
                }
            })
            .collect()
    };
    let caption = format!(
        "The 15th, 50th and 85th percentiles over each training batch (all channels and \
         positions) of the input of the stem's ReLU, of stages 2 and 3 and of the classifier, \
         in the deepest plain net without and with batch norm, seed {}, every {} steps.",
        args.seeds.seed, args.every
    );
    plot::render(dir, "depth-drift", &caption, &lines, panels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Ending;

    fn run(points: &[(usize, f64)]) -> DepthRun {
        DepthRun {
            model: "plain8-none".into(),
            depth: 8,
            seed: 0,
            curve: points
                .iter()
                .map(|&(step, test_acc)| CurvePoint {
                    step,
                    test_acc,
                    train_loss: (step > 0).then_some(test_acc),
                })
                .collect(),
            ending: Ending::Completed,
            layers: Vec::new(),
            probes: Vec::new(),
        }
    }

    #[test]
    fn seeds_are_summarized_per_step_and_a_short_curve_drops_out() {
        let (a, b) = (run(&[(0, 0.1), (5, 0.5)]), run(&[(0, 0.3)]));
        let agg = over_seeds(&[&a, &b], Measure::TestError);
        assert_eq!(agg.len(), 2);
        assert_eq!(agg[0].0, 0.0);
        let (med, min, max) = agg[0].1;
        assert!((med - 0.8).abs() < 1e-12 && (min - 0.7).abs() < 1e-12 && max == 0.9);
        assert_eq!(agg[1].1, (0.5, 0.5, 0.5));
        // No training loss at step 0.
        assert_eq!(over_seeds(&[&a], Measure::TrainLoss).len(), 1);
    }
}
