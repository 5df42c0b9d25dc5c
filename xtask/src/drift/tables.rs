//! The tables of `drift`: final test accuracy, and how far each probed distribution moved
//! after warm-up ([`crate::drift::measure`]).

use norma_layers::Summary;

use crate::drift::ModelDrift;
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

/// Rows: (model, probed input), then the model's mean over its activations; columns: the
/// percentiles after warm-up and at the end, and the two drift measures.
pub fn drift_table(models: &[ModelDrift]) -> Table {
    let mut t = Table::new([
        "model",
        "input of",
        "p15 / p50 / p85 after warm-up",
        "p15 / p50 / p85 at the end",
        "median shift",
        "spread change",
    ]);
    for m in models {
        for input in m.inputs() {
            let Some(d) = input.drift else { continue };
            let at = |step: usize| {
                input
                    .records
                    .iter()
                    .find(|(s, _)| *s == step)
                    .map_or(String::new(), |(_, s)| {
                        format!("{} (step {step})", percentiles(s))
                    })
            };
            t.row([
                m.model.clone(),
                input.label(),
                at(d.from_step),
                at(d.to_step),
                format!("{:.3}", d.median_shift),
                format!("{:.3}", d.spread_change),
            ]);
        }
        if let Some(s) = m.drift {
            t.row([
                m.model.clone(),
                "mean over activations".into(),
                String::new(),
                String::new(),
                format!("{:.3}", s.median_shift),
                format!("{:.3}", s.spread_change),
            ]);
        }
    }
    t
}
