//! The chart of `placement`.

use crate::cli::choices::PlacementChoice;
use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series};
use crate::output::report::EpochRow;
use crate::output::run_dir::RunDir;
use crate::placement::tables::{configs, label, median_per_epoch};
use crate::placement::{PlacementArgs, PlacementRun};

/// `placement.png` / `.svg`: median test accuracy and training loss per epoch, one line per
/// configuration (a color per activation, solid before and dashed after).
pub fn chart(dir: &RunDir, args: &PlacementArgs, runs: &[PlacementRun]) -> Result<Figure, Error> {
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
        let series = |f: fn(&EpochRow) -> f64| {
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
