//! Chart pieces shared by the stepwise experiments: a test-accuracy panel and percentile bands
//! over training.

use std::ops::Range;

use norma_layers::Summary;

use crate::output::plot::{self, Panel, Series, XTicks};
use crate::steps::CurvePoint;

/// The x range of a chart of `steps` steps.
pub fn step_range(steps: usize) -> Range<f64> {
    0.0..(steps.max(1) as f64)
}

/// Test accuracy against steps, one series per (legend entry, curve).
pub fn accuracy_panel(
    title: &str,
    steps: usize,
    curves: &[(usize, &[CurvePoint])],
) -> Panel<Range<f64>> {
    Panel {
        title: title.into(),
        x_label: "training step".into(),
        y_label: "test accuracy".into(),
        x_range: step_range(steps),
        y_range: 0.0..1.0,
        series: curves
            .iter()
            .map(|&(line, curve)| Series {
                line,
                points: curve.iter().map(|p| (p.step as f64, p.test_acc)).collect(),
            })
            .collect(),
        x_ticks: XTicks::Plain,
    }
}

/// The 15th–85th percentile band (legend entry `band`) and the median line (entry `median`)
/// of summaries recorded on training passes: `(pass, summary)`, the pass counted from 1. Pass
/// s runs after s − 1 updates, so it is drawn at step s − 1, where the test accuracy of the
/// same weights is drawn.
pub fn percentile_series(records: &[(usize, Summary)], band: usize, median: usize) -> [Series; 2] {
    let at = |f: fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        records
            .iter()
            .map(|(s, m)| (s.saturating_sub(1) as f64, f(m)))
            .collect()
    };
    [
        Series {
            line: band,
            points: plot::band(&at(|m| m.p15), &at(|m| m.p85)),
        },
        Series {
            line: median,
            points: at(|m| m.p50),
        },
    ]
}

/// A y range holding every 15th and 85th percentile of `records`, with a margin.
pub fn percentile_range<'a>(records: impl IntoIterator<Item = &'a Summary>) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for m in records {
        for v in [m.p15, m.p85] {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if lo > hi {
        return -1.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(0.05);
    (lo - pad)..(hi + pad)
}
