//! The chart of `batch-size`, drawn as Wu & He's Figure 1: test error against the batch size,
//! decreasing to the right on a log₂ axis, the median over seeds with the min–max band. Two
//! panels: batch norm beside the normalizations without batch statistics (none, group, layer),
//! and batch norm beside its remedies (Batch Renormalization, ghost batch norm, example-
//! weighted inference, and its own moving averages). A model that cannot train at a batch
//! size is drawn as a dot at error 1 on its own legend line. Batch Renormalization's and ghost
//! batch norm's moving averages are in the table only.

use norma_layers::models::ModelKind;

use crate::batch_size::tables::{accuracies, cell_runs, columns, Measure};
use crate::batch_size::{cell, BatchSizeArgs, BatchSizeRun, CANNOT_TRAIN};
use crate::error::Error;
use crate::output::plot::{self, render, Figure, Line, Panel, Series, SpreadCurve, XTicks};
use crate::output::report::spread;
use crate::output::run_dir::RunDir;

/// The legend color of a column: its model's place in [`ModelKind::ALL`]; example-weighted
/// inference a color of its own after them.
fn color(norm: ModelKind, measure: Measure) -> usize {
    match measure {
        Measure::ExampleWeighted => ModelKind::ALL.len(),
        _ => ModelKind::ALL.iter().position(|n| *n == norm).unwrap_or(0),
    }
}

/// Whether a column belongs in the first panel (batch norm against the normalizations without
/// batch statistics) and in the second (batch norm against its remedies).
fn panels_of(norm: ModelKind, measure: Measure) -> [bool; 2] {
    let headline_bn = norm == ModelKind::LenetBn && measure == Measure::Final;
    match norm {
        ModelKind::Lenet | ModelKind::LenetGn | ModelKind::LenetLn => [true, false],
        ModelKind::LenetBn => [headline_bn, true],
        ModelKind::LenetBrn | ModelKind::LenetGbn => [false, measure == Measure::Final],
    }
}

/// `batch-size.png` / `.svg` (see the module docs).
pub fn chart(dir: &RunDir, args: &BatchSizeArgs, runs: &[BatchSizeRun]) -> Result<Figure, Error> {
    let columns = columns(args);
    // Legend: each drawn column's median (2k) and band (2k + 1), then the cannot-train dots.
    let columns: Vec<_> = columns
        .into_iter()
        .filter(|(norm, measure, _)| panels_of(*norm, *measure).contains(&true))
        .collect();
    let mut lines: Vec<Line> = Vec::new();
    for (norm, measure, header) in &columns {
        let median = match measure {
            Measure::Final => Line::solid(format!("{header}: median"), color(*norm, *measure)),
            _ => Line::dashed(format!("{header}: median"), color(*norm, *measure)),
        };
        lines.push(median);
        lines.push(Line::band(
            format!("{header}: min–max over seeds"),
            color(*norm, *measure),
        ));
    }
    let cannot = lines.len();
    lines.push(Line::points(
        "cannot train (one value per channel), drawn at error 1",
        9,
    ));
    let mut sizes = args.batch_sizes.clone();
    sizes.sort_unstable();
    let x = |b: usize| -(b as f64).log2();
    let (lo, hi) = (
        x(sizes.last().copied().unwrap_or(1)),
        x(sizes.first().copied().unwrap_or(1)),
    );
    let panel = |which: usize, title: &str| {
        let mut curves: Vec<SpreadCurve> = Vec::new();
        let mut owners = Vec::new();
        let mut failed = Vec::new();
        for (k, (norm, measure, _)) in columns.iter().enumerate() {
            if !panels_of(*norm, *measure)[which] {
                continue;
            }
            let mut curve = SpreadCurve::new();
            for &b in sizes.iter().filter(|&&b| cell::is_run(args, *norm, b)) {
                let cell = cell_runs(runs, *norm, b);
                let errors: Vec<f64> = accuracies(&cell, *measure)
                    .iter()
                    .map(|a| 1.0 - a)
                    .collect();
                match spread(&errors) {
                    Some(point) => curve.push((x(b), point)),
                    None if cell.iter().any(|r| r.outcome == CANNOT_TRAIN) => {
                        failed.push((x(b), 1.0))
                    }
                    None => {}
                }
            }
            curves.push(curve);
            owners.push(k);
        }
        // median_bands numbers its series by the curves' order; renumber them as the legend.
        let mut series: Vec<Series> = plot::median_bands(&curves)
            .into_iter()
            .map(|s| Series {
                line: 2 * owners[s.line / 2] + s.line % 2,
                points: s.points,
            })
            .collect();
        if !failed.is_empty() {
            series.push(Series {
                line: cannot,
                points: failed,
            });
        }
        Panel {
            title: title.into(),
            x_label: "batch size (log scale, decreasing)".into(),
            y_label: "test error".into(),
            x_range: lo - 0.4..hi + 0.4,
            y_range: 0.0..1.02,
            series,
            x_ticks: XTicks::DecreasingPowersOfTwo,
        }
    };
    let panels = || {
        vec![
            panel(0, "Batch norm and the norms without batch statistics"),
            panel(1, "Batch norm and its remedies"),
        ]
    };
    let caption = "Test error against batch size, decreasing to the right on a log scale (as \
                   Wu & He 2018, Figure 1), the median over seeds and the min–max band; left: \
                   batch norm (precise statistics) beside no normalization, group and layer norm; \
                   right: batch norm beside Batch Renormalization, ghost batch norm, example-\
                   weighted inference and its own moving averages (dashed). Where a model cannot \
                   train (batch norm at batch 1) a dot sits at error 1.";
    render(dir, "batch-size", caption, &lines, panels)
}
