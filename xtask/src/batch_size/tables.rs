//! The table of `batch-size` (rows: batch sizes; columns: the learning rate and each
//! normalization's final test accuracy), the errors of the cells that cannot train, and the
//! report's description of the experiment.

use crate::batch_size::{
    example_weight, BatchSizeArgs, BatchSizeRun, EXAMPLE_WEIGHT_MAX_BATCH, REFERENCE_BATCH,
};
use norma_layers::models::ModelKind;

use crate::cli::args::seed_range;
use crate::cli::choices::{default_lr, OptimizerChoice};
use crate::output::report::{fmt_lr, median};
use crate::output::table::Table;

/// Which accuracy a column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The headline accuracy: precise statistics for batch norm when measured.
    Final,
    /// Batch norm with its moving averages (beside [`Measure::Final`] when precise statistics
    /// were measured).
    MovingAverage,
    /// Batch norm with its moving averages mixed with each example's statistics, at the
    /// smallest batches ([`crate::batch_size::example_weight`]).
    ExampleWeighted,
}

impl Measure {
    /// The accuracy of `run` this measure shows.
    pub fn of(self, run: &BatchSizeRun) -> Option<f64> {
        match self {
            Measure::Final => run.final_test_acc,
            Measure::MovingAverage => run.final_test_acc_moving_avg,
            Measure::ExampleWeighted => run.final_test_acc_example_weighted,
        }
    }
}

/// The columns of accuracies, in order: each normalization, batch norm and Batch
/// Renormalization twice (precise, then moving averages) when precise statistics are measured,
/// with its header; then batch norm with example-weighted inference when a batch size has it.
pub fn columns(args: &BatchSizeArgs) -> Vec<(ModelKind, Measure, String)> {
    let precise = args.precise_bn_images > 0;
    let weighted = args
        .batch_sizes
        .iter()
        .any(|&b| example_weight(b).is_some());
    let mut out = Vec::new();
    for &norm in &args.norms {
        let model = norm.name();
        match norm {
            ModelKind::LenetBn | ModelKind::LenetBrn if precise => {
                out.push((norm, Measure::Final, format!("{model} (precise BN)")));
                out.push((
                    norm,
                    Measure::MovingAverage,
                    format!("{model} (moving avg)"),
                ));
            }
            ModelKind::LenetBn | ModelKind::LenetBrn => {
                out.push((norm, Measure::Final, format!("{model} (moving avg)")));
            }
            _ => out.push((norm, Measure::Final, model.to_string())),
        }
        if norm == ModelKind::LenetBn && weighted {
            out.push((
                norm,
                Measure::ExampleWeighted,
                format!("{model} (example-weighted, α = 1/b)"),
            ));
        }
    }
    out
}

/// The cells of one normalization at one batch size, one per seed.
pub fn cell_runs(runs: &[BatchSizeRun], norm: ModelKind, batch_size: usize) -> Vec<&BatchSizeRun> {
    runs.iter()
        .filter(|r| r.norm == norm && r.batch_size == batch_size)
        .collect()
}

/// The median over seeds of `measure` (seeds that trained), if any trained.
pub fn median_of(cell: &[&BatchSizeRun], measure: Measure) -> Option<f64> {
    let accs: Vec<f64> = cell.iter().filter_map(|r| measure.of(r)).collect();
    (!accs.is_empty()).then(|| median(accs))
}

/// One table cell: the accuracy and, unless ok, the outcome; over several seeds the median and
/// then each seed's.
fn cell_text(cell: &[&BatchSizeRun], measure: Measure) -> String {
    match cell {
        [] => "-".into(),
        [one] => one.label(measure.of(one)),
        several => match median_of(several, measure) {
            None => several[0].label(None),
            Some(med) => {
                let each: Vec<String> = several.iter().map(|r| r.label(measure.of(r))).collect();
                format!("{med:.4} ({})", each.join(", "))
            }
        },
    }
}

/// The learning rates at `batch_size`, per distinct base rate (`lenet`'s, then the
/// normalized models').
fn lr_cell(args: &BatchSizeArgs, batch_size: usize) -> String {
    let mut rates: Vec<f64> = Vec::new();
    for n in &args.norms {
        let lr = args
            .lr_rule
            .lr(default_lr(*n, OptimizerChoice::Sgd), batch_size);
        if !rates.contains(&lr) {
            rates.push(lr);
        }
    }
    rates
        .iter()
        .map(|&r| short_lr(r))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A learning rate to three significant digits (0.00352, 0.9, 1), for the table.
pub fn short_lr(lr: f64) -> String {
    if !(lr.is_finite() && lr > 0.0) {
        return fmt_lr(lr);
    }
    let decimals = (2 - lr.log10().floor() as i32).max(0) as usize;
    let text = format!("{lr:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Rows: batch sizes; columns: the learning rate(s), then the final test accuracy of each
/// normalization (see [`columns`]).
pub fn accuracy_table(args: &BatchSizeArgs, runs: &[BatchSizeRun]) -> Table {
    let columns = columns(args);
    let plain = args.norms.contains(&ModelKind::Lenet);
    let normalized = args.norms.iter().any(|n| n.is_normalized());
    let lr_header = if plain && normalized {
        "lr (lenet / normalized)"
    } else {
        "lr"
    };
    let mut t = Table::new(
        ["batch".to_string(), lr_header.to_string()]
            .into_iter()
            .chain(columns.iter().map(|(_, _, h)| h.clone())),
    );
    for &b in &args.batch_sizes {
        let mut row = vec![b.to_string(), lr_cell(args, b)];
        for (norm, measure, _) in &columns {
            row.push(cell_text(&cell_runs(runs, *norm, b), *measure));
        }
        t.row(row);
    }
    t
}

/// One line per distinct error of a cell that cannot train, quoting the model's error.
pub fn errors(runs: &[BatchSizeRun]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for r in runs {
        if let Some(e) = &r.error {
            let line = format!("{} at batch size {}: {e}", r.model, r.batch_size);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines
}

/// What the experiment did, for the top of the report.
pub fn description(args: &BatchSizeArgs, minutes: f64) -> String {
    let samples = args
        .common
        .train_samples
        .map_or("all".to_string(), |n| format!("the first {n}"));
    let precise = if args.precise_bn_images > 0 {
        format!(
            "LeNet-BN's (and LeNet-BRN's) accuracy with precise batch-norm statistics \
             (recomputed from the first {} training images of a fixed order, or all of them if \
             fewer, in batches of the training batch size) and with the moving averages kept \
             during training. ",
            args.precise_bn_images
        )
    } else {
        String::new()
    };
    let renorm = if args.norms.contains(&ModelKind::LenetBrn) {
        "lenet-brn is LeNet-BN with Batch Renormalization (Ioffe 2017) in place of each batch \
         norm, its schedule compressed into each cell's T training steps in the paper's \
         proportions: plain batch norm for the first T/8 steps, then r_max relaxed linearly to 3 \
         at step T and d_max to 5 at step 5T/8 (the paper: 5000, 40 000 and 25 000 steps, a \
         warm-up longer than most cells here). "
    } else {
        ""
    };
    let weighted = if args.norms.contains(&ModelKind::LenetBn)
        && args
            .batch_sizes
            .iter()
            .any(|&b| example_weight(b).is_some())
    {
        format!(
            "At batch sizes 2 to {EXAMPLE_WEIGHT_MAX_BATCH}, LeNet-BN's final weights are also \
             evaluated with example-weighted inference statistics (Summers & Dinneen 2020): \
             each batch norm's moving averages mixed with the test example's own statistics by \
             α = 1/b, the example's share of its training batch; compare with the moving \
             averages' column. "
        )
    } else {
        String::new()
    };
    format!(
        "The LeNet family ({} activation, SGD without momentum) trained for {} epoch(s) on {samples} \
         training images at every batch size, so every cell sees the same number of samples; \
         the learning rate is each model's rate at batch {REFERENCE_BATCH} (0.9 for lenet, 1.0 \
         for the normalized models) scaled by the {} rule ({}), seeds {}. Cells: final test \
         accuracy (median over seeds, then each seed's); DIVERGED marks a run stopped by a \
         batch loss above 100 or not finite, STALLED one that ended below 0.2 without \
         diverging. {renorm}{precise}{weighted}A last batch of a single sample joins the batch before it. \
         {minutes:.1} minutes in all. Every cell's own folder, with its report, is in runs/.",
        args.activation.activation().name(),
        args.epochs,
        args.lr_rule.name(),
        match args.lr_rule {
            crate::batch_size::LrRule::Linear => "b/256",
            crate::batch_size::LrRule::Sqrt => "√(b/256)",
        },
        seed_range(&args.seeds.list()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rates_are_short() {
        assert_eq!(short_lr(0.9 / 256.0), "0.00352");
        assert_eq!(short_lr(1.0 / 256.0), "0.00391");
        assert_eq!(short_lr(0.9), "0.9");
        assert_eq!(short_lr(1.0), "1");
        assert_eq!(short_lr(0.225), "0.225");
        assert_eq!(short_lr(0.0625), "0.0625");
    }
}
