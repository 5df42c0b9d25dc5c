//! The tables of `batch-size` — the accuracies (rows: batch sizes; columns: the learning rate
//! and each normalization's final test accuracy over seeds), the best column at each batch
//! size, the fine-tuning — the errors of the cells that cannot train, and the report's
//! description of the experiment.

use crate::batch_size::fine_tune::FineTuneRun;
use crate::batch_size::{
    cell, example_weight, outcome_label, BatchSizeArgs, BatchSizeRun, EXAMPLE_WEIGHT_MAX_BATCH,
    REFERENCE_BATCH,
};
use norma_layers::models::ModelKind;

use crate::cli::args::seed_range;
use crate::cli::choices::{default_lr, OptimizerChoice};
use crate::output::report::{fmt_lr, median, spread};
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
            ModelKind::LenetBn | ModelKind::LenetBrn | ModelKind::LenetGbn if precise => {
                out.push((norm, Measure::Final, format!("{model} (precise BN)")));
                out.push((
                    norm,
                    Measure::MovingAverage,
                    format!("{model} (moving avg)"),
                ));
            }
            ModelKind::LenetBn | ModelKind::LenetBrn | ModelKind::LenetGbn => {
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
    spread(&accuracies(cell, measure)).map(|(median, _, _)| median)
}

/// The accuracies of `measure` over the cell's seeds that trained, in seed order.
pub fn accuracies(cell: &[&BatchSizeRun], measure: Measure) -> Vec<f64> {
    cell.iter().filter_map(|r| measure.of(r)).collect()
}

/// One table cell: the accuracy and, unless ok, the outcome; over several seeds the median,
/// the min–max range and how many seeds did not end ok.
fn cell_text(cell: &[&BatchSizeRun], measure: Measure) -> String {
    match cell {
        [] => "-".into(),
        [one] => one.label(measure.of(one)),
        several => {
            let Some((med, lo, hi)) = spread(&accuracies(several, measure)) else {
                return several[0].label(None);
            };
            let mut text = format!("{med:.4} ({lo:.4}–{hi:.4})");
            for outcome in ["stalled", "diverged", crate::batch_size::CANNOT_TRAIN] {
                let n = several.iter().filter(|r| r.outcome == outcome).count();
                if n > 0 {
                    text.push_str(&format!(
                        ", {n} of {} {}",
                        several.len(),
                        outcome.to_uppercase()
                    ));
                }
            }
            text
        }
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
            row.push(if cell::is_run(args, *norm, b) {
                cell_text(&cell_runs(runs, *norm, b), *measure)
            } else {
                "= lenet-bn".into()
            });
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
    let ghost = if args.norms.contains(&ModelKind::LenetGbn) {
        format!(
            "lenet-gbn is LeNet-BN with ghost batch norm (Hoffer et al. 2017): each batch \
             normalized in ghost batches of {} samples, one running estimate; it runs at the \
             batch sizes above {0} (at or below, it is lenet-bn bit for bit: \"= lenet-bn\"). ",
            args.ghost_batch
        )
    } else {
        String::new()
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
         accuracy, the median over seeds and their min–max range; DIVERGED marks a run stopped by a \
         batch loss above 100 or not finite, STALLED one that ended below 0.2 without \
         diverging. {renorm}{ghost}{precise}{weighted}A last batch of a single sample joins the batch before it. \
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

/// The best column at each batch size (by the median over seeds, among the headline and
/// example-weighted columns every seed trained in), the runner-up, whether the best beat it on
/// every seed (same seed: same initial weights and batch order), and the best against batch
/// norm with precise statistics.
pub fn remedies_table(args: &BatchSizeArgs, runs: &[BatchSizeRun]) -> Table {
    let seeds = args.seeds.list().len();
    let columns = columns(args);
    let mut t = Table::new([
        "batch",
        "best",
        "best (median)",
        "runner-up",
        "runner-up (median)",
        "best beats runner-up on every seed",
        "lenet-bn (median)",
        "best − lenet-bn",
    ]);
    for &b in &args.batch_sizes {
        let mut ranked: Vec<(&str, f64, Vec<f64>)> = columns
            .iter()
            // The moving averages are another reading of a model already ranked.
            .filter(|(norm, measure, _)| {
                *measure != Measure::MovingAverage && cell::is_run(args, *norm, b)
            })
            .filter_map(|(norm, measure, header)| {
                let cell = cell_runs(runs, *norm, b);
                let accs = accuracies(&cell, *measure);
                (accs.len() == seeds && seeds > 0)
                    .then(|| (header.as_str(), median(accs.clone()), accs))
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let bn = median_of(&cell_runs(runs, ModelKind::LenetBn, b), Measure::Final);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let (best, runner) = (ranked.first(), ranked.get(1));
        let every_seed = match (best, runner) {
            (Some(a), Some(r)) => {
                let wins = a.2.iter().zip(&r.2).filter(|(x, y)| x > y).count();
                if wins == a.2.len() {
                    "yes".to_string()
                } else {
                    format!("no ({wins} of {})", a.2.len())
                }
            }
            _ => "-".into(),
        };
        t.row([
            b.to_string(),
            best.map_or("-".into(), |c| c.0.to_string()),
            fmt(best.map(|c| c.1)),
            runner.map_or("-".into(), |c| c.0.to_string()),
            fmt(runner.map(|c| c.1)),
            every_seed,
            fmt(bn),
            match (best, bn) {
                (Some(c), Some(bn)) => format!("{:+.4}", c.1 - bn),
                _ => "-".into(),
            },
        ]);
    }
    t
}

/// The fine-tuning, one row per seed and a last row of medians: the accuracy before, after
/// fine-tuning with live batch norm (precise statistics, moving averages) and with frozen
/// batch norm.
pub fn fine_tune_table(runs: &[FineTuneRun]) -> Table {
    let mut t = Table::new([
        "seed",
        "before (precise BN)",
        "live BN after (precise BN)",
        "live BN after (moving avg)",
        "frozen BN after",
    ]);
    for r in runs {
        t.row([
            r.seed.to_string(),
            outcome_label(r.before_acc, "ok"),
            outcome_label(r.live_acc, r.live_outcome),
            outcome_label(r.live_acc_moving_avg, r.live_outcome),
            outcome_label(r.frozen_acc, r.frozen_outcome),
        ]);
    }
    if runs.len() > 1 {
        let med = |f: fn(&FineTuneRun) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(f).collect();
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.4}", median(v))
            }
        };
        t.row([
            "median".to_string(),
            med(|r| r.before_acc),
            med(|r| r.live_acc),
            med(|r| r.live_acc_moving_avg),
            med(|r| r.frozen_acc),
        ]);
    }
    t
}

/// What the fine-tuning did, above its table.
pub fn fine_tune_description(args: &BatchSizeArgs, trained_batch: usize) -> String {
    format!(
        "Each seed's lenet-bn trained at batch {trained_batch} (with its precise statistics) \
         fine-tuned for {} epoch(s) at batch {} and learning rate {}: with its batch norms live \
         (batch statistics of {1} samples, moving averages updated) or frozen (statistics, γ and \
         β fixed at the trained model's, as torchvision's FrozenBatchNorm2d). Test accuracy \
         before and after; live batch norm measured with precise statistics recomputed at the \
         fine-tuning batch size and with its moving averages.",
        args.fine_tune_epochs,
        args.fine_tune_batch,
        short_lr(args.lr_rule.lr(
            default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd),
            args.fine_tune_batch
        )),
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
