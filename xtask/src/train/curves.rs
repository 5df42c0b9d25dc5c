//! The chart of a `train-lenet` run.

use crate::error::Error;
use crate::output::plot::{finite_max, render, Figure, Line, Panel, Series};
use crate::output::report::{fmt_lr, EpochRow, RunRecord};
use crate::output::run_dir::RunDir;

/// `curves.png` / `curves.svg`: per epoch, every model's training loss, test accuracy (with
/// precise statistics as a solid line and the moving averages dashed, for models that have
/// both) and train − test accuracy gap.
pub fn training_curves(dir: &RunDir, records: &[RunRecord]) -> Result<Option<Figure>, Error> {
    let records: Vec<&RunRecord> = records.iter().filter(|r| !r.epochs.is_empty()).collect();
    let epochs = records.iter().map(|r| r.epochs.len()).max().unwrap_or(0);
    if epochs == 0 {
        return Ok(None);
    }
    let max_loss = finite_max(
        records
            .iter()
            .flat_map(|r| r.epochs.iter().map(|e| e.train_loss)),
    );
    let x_range = 0.5..epochs as f64 + 0.5;
    let gaps = records
        .iter()
        .flat_map(|r| r.epochs.iter().map(|e| e.train_acc - e.headline_acc()));
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
    let points = |r: &RunRecord, f: &dyn Fn(&EpochRow) -> f64| -> Vec<(f64, f64)> {
        r.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    let panels = || {
        let solid = |f: &dyn Fn(&EpochRow) -> f64| -> Vec<Series> {
            records
                .iter()
                .zip(&entries)
                .map(|(r, &(line, _))| Series {
                    line,
                    points: points(r, f),
                })
                .collect()
        };
        let mut accuracy = solid(&|e| e.headline_acc());
        for (r, &(_, dashed)) in records.iter().zip(&entries) {
            if let Some(line) = dashed {
                accuracy.push(Series {
                    line,
                    points: points(r, &|e| e.test_acc),
                });
            }
        }
        vec![
            Panel {
                title: "Training loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy (train mode)".into(),
                x_range: x_range.clone(),
                y_range: 0.0..(max_loss * 1.1).max(0.1),
                series: solid(&|e| e.train_loss),
                integer_x: true,
            },
            Panel {
                title: "Test accuracy".into(),
                x_label: "epoch".into(),
                y_label: "accuracy (eval mode)".into(),
                x_range: x_range.clone(),
                y_range: 0.0..1.0,
                series: accuracy,
                integer_x: true,
            },
            Panel {
                title: "Train - test accuracy gap".into(),
                x_label: "epoch".into(),
                y_label: "train acc - test acc".into(),
                x_range: x_range.clone(),
                y_range: gap_lo - 0.02..gap_hi + 0.02,
                series: solid(&|e| e.train_acc - e.headline_acc()),
                integer_x: true,
            },
        ]
    };
    let caption = "Per epoch: training loss; test accuracy (solid: precise batch-norm \
                   statistics for models with batch norm; dashed: the moving averages kept \
                   during training); train accuracy (mean over the epoch, training mode) \
                   minus test accuracy.";
    render(dir, "curves", caption, &lines, panels).map(Some)
}
