//! The tables of `smoothness`: per model, the final test accuracy and training loss and the
//! medians (and largest β) of the three measures over the probes; and the measures of LeNet
//! and LeNet-BN at equal training loss ([`super::summary`]).

use crate::output::report::fmt_acc;
use crate::output::table::Table;
use crate::smoothness::results::Results;
use crate::smoothness::summary::Measures;

/// A number in 4 decimals, or `-`.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

/// Rows: models; columns: final test accuracy (and with the noise left out), final training
/// loss, median loss range (max − min of L(x − ηg)), median largest gradient change, median
/// and largest effective β.
pub fn smoothness_table(r: &Results) -> Table {
    let mut t = Table::new([
        "model",
        "final test acc",
        "noise left out",
        "final train loss",
        "probes",
        "median loss range",
        "median max gradient change",
        "median β",
        "largest β",
    ]);
    for m in r.models {
        let s = m.summary();
        let median = |f: fn(&Measures) -> f64| num(s.median.as_ref().map(f));
        let largest = m
            .probes
            .iter()
            .map(|p| p.beta)
            .fold(None, |a: Option<f64>, b| {
                Some(a.map_or(b, |a| if b.is_nan() { b } else { a.max(b) }))
            });
        t.row([
            m.model.clone(),
            fmt_acc(s.final_test_acc),
            s.final_test_acc_noise_left_out
                .map_or("-".into(), |a| fmt_acc(Some(a))),
            num(Some(s.final_train_loss)),
            m.probes.len().to_string(),
            median(|x| x.loss_range),
            median(|x| x.gradient_change),
            median(|x| x.beta),
            num(largest),
        ]);
    }
    t
}

/// Rows: (level, LeNet / LeNet-BN / their ratio); columns: the probes counted and the
/// measures there.
pub fn at_loss_table(r: &Results) -> Table {
    let mut t = Table::new([
        "train loss level",
        "model",
        "probes",
        "train loss",
        "loss range",
        "max gradient change",
        "β",
        "‖g‖",
    ]);
    // Highest level first: the order training passes them.
    for (level, row) in r.at_loss.iter().rev() {
        let cells = [
            (
                "lenet",
                row.lenet
                    .as_ref()
                    .map(|a| (a.probes.to_string(), a.measures)),
            ),
            (
                "lenet-bn",
                row.lenet_bn
                    .as_ref()
                    .map(|a| (a.probes.to_string(), a.measures)),
            ),
            ("lenet-bn / lenet", row.ratio.map(|m| (String::new(), m))),
        ];
        for (model, cell) in cells {
            let (probes, m) = match cell {
                Some((p, m)) => (p, Some(m)),
                None => ("-".into(), None),
            };
            let f = |g: fn(&Measures) -> f64| num(m.as_ref().map(g));
            t.row([
                level.clone(),
                model.into(),
                probes,
                f(|x| x.train_loss),
                f(|x| x.loss_range),
                f(|x| x.gradient_change),
                f(|x| x.beta),
                f(|x| x.grad_norm),
            ]);
        }
    }
    t
}
