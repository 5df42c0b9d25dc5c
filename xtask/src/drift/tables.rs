//! The tables of `drift`: final test accuracy, and how far each pre-activation distribution
//! moved.

use norma_layers::Summary;

use crate::drift::{ModelDrift, UNIT, UNIT_LAYER};
use crate::output::report::fmt_acc;
use crate::output::table::Table;

/// Rows: models; columns: steps, learning rate, batch, test accuracy at the first and last
/// measurement.
pub fn accuracy_table(models: &[ModelDrift]) -> Table {
    let mut t = Table::new([
        "model",
        "steps",
        "lr",
        "batch",
        "test acc at step 0",
        "final test acc",
    ]);
    for m in models {
        let steps = m.curve.last().map_or(0, |p| p.step);
        t.row([
            m.model.clone(),
            steps.to_string(),
            crate::output::report::fmt_lr(m.lr),
            m.batch_size.to_string(),
            fmt_acc(m.curve.first().map(|p| p.test_acc)),
            fmt_acc(m.final_acc()),
        ]);
    }
    t
}

/// "p15 / p50 / p85" with 2 decimals.
fn percentiles(s: &Summary) -> String {
    format!("{:.2} / {:.2} / {:.2}", s.p15, s.p50, s.p85)
}

/// How far the median moved over training: max − min of p50 over the records (0 when nothing
/// was recorded). In the input's own units, not relative to its spread: a spread that starts
/// tiny (small initial weights) would make any movement look huge.
pub fn median_travel(records: &[(usize, Summary)]) -> f64 {
    if records.is_empty() {
        return 0.0;
    }
    let (lo, hi) = records
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| {
            (lo.min(s.p50), hi.max(s.p50))
        });
    hi - lo
}

/// Rows: (model, layer); columns: the first and last recorded percentiles, and
/// [`median_travel`].
pub fn drift_table(models: &[ModelDrift]) -> Table {
    let mut t = Table::new([
        "model",
        "input of",
        "first p15 / p50 / p85",
        "last p15 / p50 / p85",
        "median moved (max - min of p50)",
    ]);
    for m in models {
        let unit = (!m.unit.is_empty()).then(|| (format!("{UNIT_LAYER}, unit {UNIT}"), &m.unit));
        let layers = m
            .layers
            .iter()
            .map(|l| (format!("{}, all", l.layer), &l.records));
        for (name, records) in unit.into_iter().chain(layers) {
            let (Some((s0, first)), Some((s1, last))) = (records.first(), records.last()) else {
                continue;
            };
            t.row([
                m.model.clone(),
                name,
                format!("{} (step {s0})", percentiles(first)),
                format!("{} (step {s1})", percentiles(last)),
                format!("{:.2}", median_travel(records)),
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p15: f64, p50: f64, p85: f64) -> Summary {
        Summary {
            p15,
            p50,
            p85,
            mean: p50,
            std: 1.0,
            count: 10,
        }
    }

    #[test]
    fn the_median_travel_is_the_range_of_the_median() {
        let r = [
            (1, summary(-1.0, 0.0, 1.0)),
            (2, summary(0.0, 3.0, 4.0)),
            (3, summary(0.0, -1.0, 2.0)),
        ];
        assert_eq!(median_travel(&r), 4.0);
        assert_eq!(median_travel(&[]), 0.0);
    }
}
