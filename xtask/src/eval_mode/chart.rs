//! The chart of `eval-mode`.

use std::fmt::Write as _;

use plotters::prelude::IntoLogRange;

use crate::error::Error;
use crate::eval_mode::measure::BatchOutcome;
use crate::eval_mode::Results;
use crate::output::plot::{self, Figure, Line, Panel, Series, XTicks};
use crate::output::run_dir::RunDir;

/// `eval-mode.png` / `.svg`: accuracy against test batch size in training mode, with the
/// eval-mode accuracies as levels; and how often the class depends on the company.
pub fn chart(dir: &RunDir, r: &Results) -> Result<Figure, Error> {
    let ok: Vec<&BatchOutcome> = r.train.iter().filter(|o| o.error.is_none()).collect();
    let sizes: Vec<f64> = r
        .train
        .iter()
        .map(|o| o.batch_size as f64)
        .chain(r.eval.iter().map(|o| o.batch_size as f64))
        .collect();
    let lo = sizes.iter().copied().fold(f64::INFINITY, f64::min).min(1.0);
    let hi = sizes.iter().copied().fold(1.0f64, f64::max).max(2.0);
    // The eval-mode measurements at every batch size used the reference statistics: precise
    // ones when computed.
    let mut lines = vec![
        Line::solid("training mode (mean over orders)", 0),
        Line::reference("eval mode, stored statistics", 1),
    ];
    if r.eval_precise.is_some() {
        lines.push(Line::reference("eval mode, precise statistics", 2));
    }
    let reference = lines.len() - 1;
    let sorted = lines.len();
    lines.push(Line::dashed("training mode, test set sorted by class", 3));
    let overwritten = lines.len();
    lines.push(Line::dashed("eval mode after a training-mode pass", 4));
    let overwritten_by_class = lines.len();
    lines.push(Line::dashed(
        "eval mode after a class-sorted training-mode pass",
        5,
    ));
    let sorted_ok: Vec<&BatchOutcome> = r
        .train_by_class
        .iter()
        .filter(|o| o.error.is_none())
        .collect();
    let level = |y: f64| vec![(lo, y), (hi, y)];
    let panels = || {
        let train = |f: fn(&BatchOutcome) -> f64| Series {
            line: 0,
            points: ok.iter().map(|o| (o.batch_size as f64, f(o))).collect(),
        };
        let mut accuracy = vec![
            train(BatchOutcome::mean_accuracy),
            Series {
                line: 1,
                points: level(r.eval_stored),
            },
        ];
        if let Some((acc, _)) = r.eval_precise {
            accuracy.push(Series {
                line: 2,
                points: level(acc),
            });
        }
        accuracy.push(Series {
            line: sorted,
            points: sorted_ok
                .iter()
                .map(|o| (o.batch_size as f64, o.mean_accuracy()))
                .collect(),
        });
        for (line, outcomes) in [
            (overwritten, &r.overwritten),
            (overwritten_by_class, &r.overwritten_by_class),
        ] {
            accuracy.push(Series {
                line,
                points: outcomes
                    .iter()
                    .filter_map(|o| Some((o.batch_size as f64, o.eval_accuracy?)))
                    .collect(),
            });
        }
        let company = vec![
            train(|o| o.depends_on_company),
            Series {
                line: reference,
                points: r
                    .eval
                    .iter()
                    .map(|o| (o.batch_size as f64, o.depends_on_company))
                    .collect(),
            },
        ];
        let top = plot::finite_max(ok.iter().map(|o| o.depends_on_company)).max(0.1) * 1.1;
        vec![
            Panel {
                title: "Test accuracy".into(),
                x_label: "test batch size (log scale)".into(),
                y_label: "accuracy".into(),
                x_range: (lo / 1.3..hi * 1.3).log_scale(),
                y_range: 0.0..1.0,
                series: accuracy,
                x_ticks: XTicks::Plain,
            },
            Panel {
                title: "Images whose class depends on the company".into(),
                x_label: "test batch size (log scale)".into(),
                y_label: "fraction of test images".into(),
                x_range: (lo / 1.3..hi * 1.3).log_scale(),
                y_range: 0.0..top,
                series: company,
                x_ticks: XTicks::Plain,
            },
        ]
    };
    let failed: Vec<String> = r
        .train
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.batch_size.to_string())
        .collect();
    let mut caption = "LeNet-BN predicting the test set in training mode, in batches of each \
                       size (each batch normalized with its own statistics), against eval mode; \
                       right: the fraction of test images whose class changes with the random \
                       order, i.e. with the other images in the batch. Dashed: training mode on \
                       the test set sorted by class, and eval mode once a training-mode pass \
                       (shuffled, or sorted by class) has overwritten the running statistics."
        .to_string();
    if !failed.is_empty() {
        let _ = write!(
            caption,
            " Training mode failed with batches of {} (no point drawn).",
            failed.join(", ")
        );
    }
    plot::render(dir, "eval-mode", &caption, &lines, panels)
}
