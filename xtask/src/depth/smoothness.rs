//! Santurkar et al.'s smoothness measures at depth: the deepest plain nets without and with
//! batch norm probed along their trajectories, on every seed — their VGG result was on such a
//! deep ReLU chain, where LeNet (`cargo xtask smoothness`) is five layers.
//!
//! Every `--every` steps, before the step and on the batch it is about to train on, at the
//! weights x with gradient g: the loss range max − min of L(x − η·g), the largest gradient
//! change ‖∇L(x) − ∇L(x − η·g)‖ and the effective β-smoothness, for η in
//! [`ETA_FACTORS`] × lr (the probe of [`crate::smoothness::probe`], which puts weights and
//! batch-norm statistics back bit for bit: the trajectory is the one without probes). The
//! step training takes follows SGD's momentum, not g alone; the probe follows g, as
//! Santurkar et al.'s does.
//!
//! Outputs: the probes in `depth.json` (per run), `smoothness.csv` (per model: each measure's
//! median over a run's probes, then median, min and max over seeds) and the table.

use std::fmt::Write as _;

use crate::depth::tables::runs_of;
use crate::depth::{DepthArgs, DepthRun};
use crate::error::Error;
use crate::output::report::spread;
use crate::output::run_dir::RunDir;
use crate::output::table::Table;
use crate::smoothness::summary::Measures;
use crate::smoothness::ETA_FACTORS;

/// The step sizes probed at learning rate `lr`.
pub fn etas(lr: f64) -> Vec<f64> {
    ETA_FACTORS.iter().map(|f| f * lr).collect()
}

/// The probed models in table order: the plain nets of the deepest depth, without then with
/// batch norm (also the nets whose stage inputs `depth` records).
pub fn probed_models(args: &DepthArgs) -> Vec<String> {
    let deepest = args.depths.iter().copied().max().unwrap_or(0);
    crate::depth::nets(deepest)
        .iter()
        .filter(|n| !n.residual)
        .map(|n| n.name())
        .collect()
}

/// One measure: (column name, csv name, how to read it from a probe's [`Measures`]).
type Measure = (&'static str, &'static str, fn(&Measures) -> f64);

/// (median, min, max) over seeds.
type Spread = (f64, f64, f64);

/// The measures in the table's and the csv's order.
const MEASURES: [Measure; 4] = [
    ("train loss", "train_loss", |m| m.train_loss),
    ("loss range", "loss_range", |m| m.loss_range),
    ("max gradient change", "gradient_change", |m| {
        m.gradient_change
    }),
    ("β-smoothness", "beta", |m| m.beta),
];

/// A run's measures: each one's median over its probes (`None` without probes).
fn run_median(run: &DepthRun) -> Option<Measures> {
    let ms: Vec<Measures> = run.probes.iter().map(Measures::of).collect();
    (!ms.is_empty()).then(|| Measures::median(&ms))
}

/// (median, min, max) over the seeds of `model` of each of [`MEASURES`].
fn over_seeds(runs: &[DepthRun], model: &str) -> (usize, Vec<Option<Spread>>) {
    let medians: Vec<Measures> = runs_of(runs, model)
        .into_iter()
        .filter_map(run_median)
        .collect();
    let cells = MEASURES
        .iter()
        .map(|(_, _, f)| spread(&medians.iter().map(f).collect::<Vec<_>>()))
        .collect();
    (medians.len(), cells)
}

/// `v` to four significant digits (the measures span orders of magnitude).
fn sig(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return v.to_string();
    }
    let digits = (3 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

/// Rows: the probed models; columns: seeds probed, then each measure as median (min–max)
/// over seeds of the run's median over its probes.
pub fn table(args: &DepthArgs, runs: &[DepthRun]) -> Table {
    let mut header = vec!["model".to_string(), "seeds".to_string()];
    header.extend(MEASURES.iter().map(|(name, _, _)| name.to_string()));
    let mut t = Table::new(header);
    for model in probed_models(args) {
        let (seeds, cells) = over_seeds(runs, &model);
        let mut row = vec![model, seeds.to_string()];
        row.extend(cells.into_iter().map(|c| {
            c.map_or("-".into(), |(med, lo, hi)| {
                format!("{} ({}–{})", sig(med), sig(lo), sig(hi))
            })
        }));
        t.row(row);
    }
    t
}

/// `smoothness.csv`: per probed model, the seeds and each measure's median, min and max over
/// seeds.
pub fn write_csv(dir: &RunDir, args: &DepthArgs, runs: &[DepthRun]) -> Result<(), Error> {
    let mut csv = String::from("model,seeds");
    for (_, name, _) in MEASURES {
        let _ = write!(csv, ",{name},{name}_min,{name}_max");
    }
    csv.push('\n');
    for model in probed_models(args) {
        let (seeds, cells) = over_seeds(runs, &model);
        let _ = write!(csv, "{model},{seeds}");
        for c in cells {
            let (med, lo, hi) = c.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            let _ = write!(csv, ",{med},{lo},{hi}");
        }
        csv.push('\n');
    }
    dir.write("smoothness.csv", csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits_at_any_magnitude() {
        assert_eq!(sig(1234.4), "1234");
        assert_eq!(sig(2.31258), "2.313");
        assert_eq!(sig(0.000123456), "0.0001235");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sig(f64::INFINITY), "inf");
    }
}
