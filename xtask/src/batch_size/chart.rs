//! The chart of `batch-size`: final test accuracy against batch size on a log₂ axis, one line
//! per normalization.

use plotters::prelude::IntoLogRange;

use crate::batch_size::tables::{cell_runs, columns, median_of, Measure};
use crate::batch_size::{BatchSizeArgs, BatchSizeRun};
use crate::error::Error;
use crate::output::plot::{render, Figure, Line, Panel, Series};
use crate::output::run_dir::RunDir;

/// `batch-size.png` / `.svg`: the median over seeds of each column of the table (a color per
/// normalization; batch norm with its moving averages dashed), through the batch sizes where
/// the model trained.
pub fn chart(dir: &RunDir, args: &BatchSizeArgs, runs: &[BatchSizeRun]) -> Result<Figure, Error> {
    let columns = columns(args);
    let lines: Vec<Line> = columns
        .iter()
        .map(|(norm, measure, header)| {
            let color = norma_layers::models::ModelKind::ALL
                .iter()
                .position(|n| n == norm)
                .unwrap_or(0);
            match measure {
                Measure::Final => Line::solid(header.clone(), color),
                Measure::MovingAverage => Line::dashed(header.clone(), color),
                // A color of its own, beside batch norm's two lines.
                Measure::ExampleWeighted => {
                    Line::dashed(header.clone(), norma_layers::models::ModelKind::ALL.len())
                }
            }
        })
        .collect();
    let mut sizes = args.batch_sizes.clone();
    sizes.sort_unstable();
    let lo = sizes.first().copied().unwrap_or(1) as f64;
    let hi = sizes.last().copied().unwrap_or(1) as f64;
    let panels = || {
        vec![Panel {
            title: "Final test accuracy vs batch size".into(),
            x_label: "batch size (log scale)".into(),
            y_label: "test accuracy (median over seeds)".into(),
            x_range: (lo / 1.4..hi * 1.4).log_scale().base(2.0),
            y_range: 0.0..1.0,
            series: columns
                .iter()
                .enumerate()
                .map(|(line, (norm, measure, _))| Series {
                    line,
                    points: sizes
                        .iter()
                        .filter_map(|&b| {
                            median_of(&cell_runs(runs, *norm, b), *measure)
                                .map(|acc| (b as f64, acc))
                        })
                        .collect(),
                })
                .collect(),
            integer_x: true,
        }]
    };
    let caption = "Final test accuracy against batch size (log scale), one line per \
                   normalization, median over seeds; a batch size where a model cannot train \
                   has no point, and the table marks diverged and stalled runs.";
    render(dir, "batch-size", caption, &lines, panels)
}
