//! The charts of `placement`: the final runs per epoch ([`chart`]) and the tuning grid
//! ([`grid_chart`]), each with the median over seeds and the min–max band.

use plotters::prelude::IntoLogRange;

use crate::cli::args::seed_range;
use crate::cli::choices::PlacementChoice;
use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series, XTicks};
use crate::output::report::EpochRow;
use crate::output::run_dir::RunDir;
use crate::placement::tables::{configs, label, spread_per_epoch};
use crate::placement::tuning::{GridCell, Spread};
use crate::placement::{Config, PlacementArgs, PlacementRun};

/// A median line per configuration (a color each, solid before and dashed after) and its
/// band: line `2k` is configuration `k`'s median, `2k + 1` its band.
fn lines(configs: &[Config], suffix: impl Fn(Config) -> String) -> Vec<Line> {
    configs
        .iter()
        .enumerate()
        .flat_map(|(k, &c)| {
            let median = match c.1 {
                PlacementChoice::Before => Line::solid(format!("{}{}", label(c), suffix(c)), k),
                PlacementChoice::After => Line::dashed(format!("{}{}", label(c), suffix(c)), k),
            };
            [median, Line::band(format!("{}: min–max", label(c)), k)]
        })
        .collect()
}

/// The series of configuration `k` from points with their spread: the band, then the median.
fn band_and_median(k: usize, points: &[(f64, Spread)]) -> [Series; 2] {
    let at = |f: fn(&Spread) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|(x, s)| (*x, f(s))).collect()
    };
    [
        Series {
            line: 2 * k + 1,
            points: plot::band(&at(|s| s.min), &at(|s| s.max)),
        },
        Series {
            line: 2 * k,
            points: at(|s| s.median),
        },
    ]
}

/// Bands first, so that no band covers a median.
fn bands_first(series: Vec<[Series; 2]>) -> Vec<Series> {
    let (bands, medians): (Vec<Series>, Vec<Series>) =
        series.into_iter().map(|[b, m]| (b, m)).unzip();
    bands.into_iter().chain(medians).collect()
}

fn seeds_title(args: &PlacementArgs) -> String {
    let n = args.seeds.list().len();
    format!("{n} seed{}", if n == 1 { "" } else { "s" })
}

/// `placement.png` / `.svg`: test accuracy and training loss per epoch of the final runs, each
/// configuration at its chosen rate.
pub fn chart(dir: &RunDir, args: &PlacementArgs, runs: &[PlacementRun]) -> Result<Figure, Error> {
    let configs = configs(args);
    let lr_of = |c: Config| {
        crate::placement::tables::runs_of(runs, c)
            .first()
            .map_or(String::new(), |r| {
                format!(" (lr {})", crate::output::report::fmt_lr(r.lr))
            })
    };
    let lines = lines(&configs, lr_of);
    let max_loss = plot::finite_max(
        runs.iter()
            .flat_map(|r| r.record.epochs.iter().map(|e| e.train_loss)),
    );
    let x_range = 0.5..args.epochs as f64 + 0.5;
    let seeds = seeds_title(args);
    let panels = || {
        let series = |f: fn(&EpochRow) -> f64| {
            bands_first(
                configs
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| band_and_median(k, &spread_per_epoch(runs, c, args.epochs, f)))
                    .collect(),
            )
        };
        vec![
            Panel {
                title: format!("Test accuracy (precise BN), {seeds}"),
                x_label: "epoch".into(),
                y_label: "test accuracy".into(),
                x_range: x_range.clone(),
                y_range: 0.0..1.0,
                series: series(|e| e.headline_acc()),
                x_ticks: XTicks::Integer,
            },
            Panel {
                title: format!("Training loss, {seeds}"),
                x_label: "epoch".into(),
                y_label: "cross-entropy (mean over the epoch's batches)".into(),
                x_range: x_range.clone(),
                y_range: 0.0..(max_loss * 1.1).max(0.1),
                series: series(|e| e.train_loss),
                x_ticks: XTicks::Integer,
            },
        ]
    };
    let caption = format!(
        "LeNet-BN with batch norm before (solid) or after (dashed) each activation, each at its \
         chosen learning rate: the test accuracy with precise statistics and the training loss \
         per epoch, median over seeds {} (lines) and min–max over them (bands).",
        seed_range(&args.seeds.list())
    );
    plot::render(dir, "placement", &caption, &lines, panels)
}

/// `placement-grid.png` / `.svg`: the validation accuracy after the tuning epochs against the
/// learning rate, one panel per activation.
pub fn grid_chart(dir: &RunDir, args: &PlacementArgs, grid: &[GridCell]) -> Result<Figure, Error> {
    let configs = configs(args);
    let lines = lines(&configs, |_| String::new());
    let lo = args.lrs.first().copied().unwrap_or(1.0);
    let hi = args.lrs.last().copied().unwrap_or(1.0);
    let seeds = seeds_title(args);
    let panels = || {
        args.activations
            .iter()
            .map(|&activation| {
                let series = configs
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.0 == activation)
                    .map(|(k, &c)| {
                        let points: Vec<(f64, Spread)> = grid
                            .iter()
                            .filter(|g| (g.activation, g.placement) == c)
                            .filter_map(|g| g.validation_acc.map(|s| (g.lr, s)))
                            .collect();
                        band_and_median(k, &points)
                    })
                    .collect();
                Panel {
                    title: format!(
                        "{}: validation accuracy after {} epochs, {seeds}",
                        activation.activation().name(),
                        args.tune_epochs
                    ),
                    x_label: "learning rate (log scale)".into(),
                    y_label: "validation accuracy".into(),
                    x_range: (lo / 1.5..hi * 1.5).log_scale(),
                    y_range: 0.0..1.0,
                    series: bands_first(series),
                    x_ticks: XTicks::Plain,
                }
            })
            .collect()
    };
    let caption = format!(
        "The learning-rate grid: validation accuracy (precise statistics, the last {} training \
         images held out) after {} epochs at each rate, median over seeds {} (lines) and min–max \
         over them (bands; a diverged seed counts as 0). Each configuration's rate is its \
         highest median.",
        args.validation,
        args.tune_epochs,
        seed_range(&args.seeds.list())
    );
    plot::render(dir, "placement-grid", &caption, &lines, panels)
}
