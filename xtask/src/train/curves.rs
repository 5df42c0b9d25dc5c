//! The chart of a `train-lenet` run.

use crate::error::Error;
use crate::output::plot::{finite_max, render_grid, Figure, Grid, Line, Panel, Series, XTicks};
use crate::output::report::{fmt_lr, EpochRow, RunRecord};
use crate::output::run_dir::RunDir;

/// What a panel reads of an epoch (`None`: not measured in that epoch's record).
type Measure<'a> = &'a dyn Fn(&EpochRow) -> Option<f64>;

/// `curves.png` / `curves.svg`, two rows of two panels: per epoch, every model's loss on the
/// fixed training subset and on the test set (both in eval mode with the headline statistics,
/// on one scale), its test accuracy (with precise statistics as a solid line and the moving
/// averages dashed, for models that have both) and its train − test accuracy gap.
pub fn training_curves(dir: &RunDir, records: &[RunRecord]) -> Result<Option<Figure>, Error> {
    let records: Vec<&RunRecord> = records.iter().filter(|r| !r.epochs.is_empty()).collect();
    let epochs = records.iter().map(|r| r.epochs.len()).max().unwrap_or(0);
    if epochs == 0 {
        return Ok(None);
    }
    // One scale for both losses, so that a test loss rising above a falling train loss shows.
    let max_loss = finite_max(records.iter().flat_map(|r| {
        r.epochs
            .iter()
            .flat_map(|e| [e.eval_train_loss, e.test_loss])
            .flatten()
    }));
    let x_range = 0.5..epochs as f64 + 0.5;
    let gaps = records
        .iter()
        .flat_map(|r| r.epochs.iter().map(EpochRow::gap));
    let (gap_lo, gap_hi) = gaps.fold((-0.05f64, 0.1f64), |(lo, hi), g| (lo.min(g), hi.max(g)));
    // Per record: its solid line and, with precise statistics, the dashed moving-average one.
    let mut lines = Vec::new();
    let mut entries = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let name = format!("{} (lr {})", r.model, fmt_lr(r.lr));
        if r.epochs.iter().any(|e| e.test_acc_precise.is_some()) {
            lines.push(Line::solid(format!("{name}, precise BN"), i));
            lines.push(Line::dashed(format!("{name}, moving-avg BN"), i));
            entries.push((lines.len() - 2, Some(lines.len() - 1)));
        } else {
            lines.push(Line::solid(name, i));
            entries.push((lines.len() - 1, None));
        }
    }
    let points = |r: &RunRecord, f: Measure| -> Vec<(f64, f64)> {
        r.epochs
            .iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let panels = || {
        let solid = |f: Measure| -> Vec<Series> {
            records
                .iter()
                .zip(&entries)
                .map(|(r, &(line, _))| Series {
                    line,
                    points: points(r, f),
                })
                .collect()
        };
        let mut accuracy = solid(&|e| Some(e.headline_acc()));
        for (r, &(_, dashed)) in records.iter().zip(&entries) {
            if let Some(line) = dashed {
                accuracy.push(Series {
                    line,
                    points: points(r, &|e| Some(e.test_acc)),
                });
            }
        }
        let loss_range = 0.0..(max_loss * 1.1).max(0.1);
        let panel = |title: &str, y_label: &str, y_range, series| Panel {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y_label.into(),
            x_range: x_range.clone(),
            y_range,
            series,
            x_ticks: XTicks::Integer,
        };
        vec![
            panel(
                "Train loss (fixed training subset)",
                "cross-entropy (eval mode)",
                loss_range.clone(),
                solid(&|e| e.eval_train_loss),
            ),
            panel(
                "Test loss",
                "cross-entropy (eval mode)",
                loss_range,
                solid(&|e| e.test_loss),
            ),
            panel("Test accuracy", "accuracy (eval mode)", 0.0..1.0, accuracy),
            panel(
                "Train - test accuracy gap",
                "train acc - test acc",
                gap_lo - 0.02..gap_hi + 0.02,
                solid(&|e| Some(e.gap())),
            ),
        ]
    };
    let caption = "Per epoch, with the weights at its end: the loss on a fixed training subset \
                   and on the test set (eval mode, same scale); test accuracy (solid: precise \
                   batch-norm statistics for models with batch norm; dashed: the moving \
                   averages kept during training); train minus test accuracy, both in eval \
                   mode. Losses and train accuracy use the statistics of the solid accuracy.";
    render_grid(dir, "curves", caption, &lines, Grid::columns(2), panels).map(Some)
}
