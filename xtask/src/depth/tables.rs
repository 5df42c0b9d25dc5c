//! The table and files of `depth`: final test accuracy per model over seeds (median, min,
//! max), `depth.json`, `depth.csv` and `curves.csv`.

use std::fmt::Write as _;

use crate::depth::{nets, DepthArgs, DepthRun};
use crate::error::Error;
use crate::output::report::fmt_acc;
use crate::output::run_dir::RunDir;
use crate::output::table::Table;
use crate::steps::{self, CurvePoint, Ending};

pub use crate::output::report::spread;

/// The models in table order: per depth, plain without BN, plain with BN, ResNet.
pub fn models(args: &DepthArgs) -> Vec<String> {
    args.depths
        .iter()
        .flat_map(|&d| nets(d).map(|n| n.name()))
        .collect()
}

/// The runs of `model`, in seed order.
pub fn runs_of<'a>(runs: &'a [DepthRun], model: &str) -> Vec<&'a DepthRun> {
    runs.iter().filter(|r| r.model == model).collect()
}

/// How many of `runs` diverged.
fn diverged(runs: &[&DepthRun]) -> usize {
    runs.iter()
        .filter(|r| matches!(r.ending, Ending::NonFiniteLoss { .. }))
        .count()
}

/// Rows: models; columns: the final test accuracy's median, min and max over seeds, and how
/// many seeds diverged.
pub fn final_table(args: &DepthArgs, runs: &[DepthRun]) -> Table {
    let mut t = Table::new([
        "model",
        "depth",
        "seeds",
        "median final test acc",
        "min",
        "max",
        "diverged",
    ]);
    for model in models(args) {
        let cell = runs_of(runs, &model);
        let accs: Vec<f64> = cell.iter().filter_map(|r| r.final_acc()).collect();
        let s = spread(&accs);
        t.row([
            model.clone(),
            cell.first().map_or(String::new(), |r| r.depth.to_string()),
            cell.len().to_string(),
            fmt_acc(s.map(|s| s.0)),
            fmt_acc(s.map(|s| s.1)),
            fmt_acc(s.map(|s| s.2)),
            diverged(&cell).to_string(),
        ]);
    }
    t
}

/// `depth.json` (every run), `depth.csv` (the final table) and `curves.csv`
/// (`model,step,test_acc,train_loss` with the model named `<net>/seed<seed>`).
pub fn write_results(dir: &RunDir, args: &DepthArgs, runs: &[DepthRun]) -> Result<(), Error> {
    dir.write_json("depth.json", &runs)?;
    let mut csv = String::from(
        "model,depth,seeds,median_final_test_acc,min_final_test_acc,max_final_test_acc,diverged\n",
    );
    for model in models(args) {
        let cell = runs_of(runs, &model);
        let accs: Vec<f64> = cell.iter().filter_map(|r| r.final_acc()).collect();
        let (med, min, max) = spread(&accs).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        let _ = writeln!(
            csv,
            "{model},{},{},{med},{min},{max},{}",
            cell.first().map_or(0, |r| r.depth),
            cell.len(),
            diverged(&cell)
        );
    }
    dir.write("depth.csv", csv.as_bytes())?;
    let names: Vec<String> = runs
        .iter()
        .map(|r| format!("{}/seed{}", r.model, r.seed))
        .collect();
    let curves: Vec<(&str, &[CurvePoint])> = names
        .iter()
        .zip(runs)
        .map(|(n, r)| (n.as_str(), r.curve.as_slice()))
        .collect();
    steps::write_curves(dir, "curves", &curves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_median_min_and_max() {
        assert_eq!(spread(&[0.5, 0.9, 0.7]), Some((0.7, 0.5, 0.9)));
        assert_eq!(spread(&[0.5, 0.9]), Some((0.7, 0.5, 0.9)));
        assert_eq!(spread(&[]), None);
    }
}
