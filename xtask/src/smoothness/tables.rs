//! The table of `smoothness`: per model, the final test accuracy and the medians (and largest
//! values) of the three measures over the probes.

use crate::output::report::{fmt_acc, median};
use crate::output::table::Table;
use crate::smoothness::ModelTrajectory;

/// A number in 4 significant digits, or `-`.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

/// The median over the probes of `f`, `None` without probes.
pub fn probe_median(
    m: &ModelTrajectory,
    f: fn(&crate::smoothness::ProbeRecord) -> f64,
) -> Option<f64> {
    (!m.probes.is_empty()).then(|| median(m.probes.iter().map(f).collect()))
}

/// Rows: models; columns: final test accuracy, median loss range (max − min of L(x − ηg)),
/// median largest gradient change, median and largest effective β.
pub fn smoothness_table(models: &[ModelTrajectory]) -> Table {
    let mut t = Table::new([
        "model",
        "final test acc",
        "probes",
        "median loss range",
        "median max gradient change",
        "median β",
        "largest β",
    ]);
    for m in models {
        let largest = m
            .probes
            .iter()
            .map(|p| p.beta)
            .fold(None, |a: Option<f64>, b| {
                Some(a.map_or(b, |a| if b.is_nan() { b } else { a.max(b) }))
            });
        t.row([
            m.model.clone(),
            fmt_acc(m.final_acc()),
            m.probes.len().to_string(),
            num(probe_median(m, |p| p.loss_max - p.loss_min)),
            num(probe_median(m, |p| p.predictiveness_max)),
            num(probe_median(m, |p| p.beta)),
            num(largest),
        ]);
    }
    t
}
