//! Per-epoch metrics, run outcomes, and how they are written (`metrics.json`, `metrics.csv`)
//! and printed (one table row per epoch, a final comparison).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::output::table::Table;

/// One epoch of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training samples, in train mode.
    pub train_loss: f64,
    /// Fraction of the epoch's training samples predicted right, in train mode.
    pub train_acc: f64,
    /// Test accuracy after the epoch, in eval mode with the running statistics (the moving
    /// averages kept during training: what PyTorch reports by default).
    pub test_acc: f64,
    /// Test accuracy after the epoch with precise batch-norm statistics (see
    /// [`crate::run::precise`]); `None` without batch norm or with `--precise-bn 0`.
    #[serde(default)]
    pub test_acc_precise: Option<f64>,
    /// Mean cross-entropy on the test set after the epoch, in eval mode with the statistics of
    /// [`EpochRow::headline_acc`] (precise when measured, the running ones otherwise). `None`
    /// in records written before it was measured, as are the next two.
    #[serde(default)]
    pub test_loss: Option<f64>,
    /// Accuracy after the epoch on a fixed subset of the training set (the first
    /// [`crate::run::model_run::TRAIN_SUBSET`] images), in eval mode with the same statistics
    /// as the test loss: unlike `train_acc`, the same weights and statistics as the test
    /// accuracy it is compared with.
    #[serde(default)]
    pub eval_train_acc: Option<f64>,
    /// Mean cross-entropy on that subset, measured alike.
    #[serde(default)]
    pub eval_train_loss: Option<f64>,
    /// Wall-clock seconds of the epoch's training steps (data, evaluation and I/O excluded).
    pub seconds: f64,
    /// Training samples per second over those steps.
    pub samples_per_sec: f64,
}

/// How a model's run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Not started yet.
    Pending,
    /// In progress (a checkpoint in the middle of training).
    Running,
    /// All epochs done.
    Completed,
    /// Stopped by `--steps`.
    StepLimit { step: u64 },
    /// A diverged batch loss (see [`crate::run::divergence`]) stopped the run.
    Diverged {
        epoch: usize,
        step: usize,
        /// The loss that stopped it, when finite.
        #[serde(default)]
        loss: Option<f64>,
        /// The last loss that was not diverged.
        last_finite_loss: Option<f64>,
    },
    /// Stopped by SIGINT or SIGTERM; resumable.
    Interrupted { epoch: usize, step: usize },
    /// Training is over (`then` says how it ended) but its final evaluation and files have not
    /// all been written: the run was stopped or failed while writing them, and `--resume`
    /// writes them.
    Finishing { then: Box<Status> },
}

impl EpochRow {
    /// The test accuracy to lead with: precise statistics when measured, else the running
    /// statistics.
    pub fn headline_acc(&self) -> f64 {
        self.test_acc_precise.unwrap_or(self.test_acc)
    }

    /// The train accuracy to compare with [`EpochRow::headline_acc`]: the eval-mode accuracy
    /// on the fixed training subset when measured, else the epoch's training-mode mean (older
    /// records).
    pub fn compared_train_acc(&self) -> f64 {
        self.eval_train_acc.unwrap_or(self.train_acc)
    }

    /// The train − test accuracy gap: [`EpochRow::compared_train_acc`] minus
    /// [`EpochRow::headline_acc`].
    pub fn gap(&self) -> f64 {
        self.compared_train_acc() - self.headline_acc()
    }
}

impl RunRecord {
    /// The final test accuracy to lead with: precise statistics when measured.
    pub fn headline_acc(&self) -> Option<f64> {
        self.final_test_acc_precise.or(self.final_test_acc)
    }
}

impl Status {
    /// A short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "ok",
            Status::StepLimit { .. } => "step limit",
            Status::Diverged { .. } => "diverged",
            Status::Interrupted { .. } => "interrupted",
            Status::Finishing { .. } => "finishing",
        }
    }

    /// Whether training diverged (whether or not its final files are written yet).
    pub fn diverged(&self) -> bool {
        match self {
            Status::Diverged { .. } => true,
            Status::Finishing { then } => then.diverged(),
            _ => false,
        }
    }

    /// Whether the status says how training ended (completed, step limit, diverged), rather
    /// than that it is still to come, under way or stopped.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Status::Completed | Status::StepLimit { .. } | Status::Diverged { .. }
        )
    }
}

/// Everything recorded about one model's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub model: String,
    pub lr: f64,
    pub status: Status,
    pub epochs: Vec<EpochRow>,
    /// Test accuracy of the final weights (after the last step taken), with the running
    /// statistics.
    pub final_test_acc: Option<f64>,
    /// The same with precise batch-norm statistics, when the run computes them.
    #[serde(default)]
    pub final_test_acc_precise: Option<f64>,
    /// Training batches the precise statistics were averaged over.
    #[serde(default)]
    pub precise_bn_batches: Option<usize>,
    /// Of the final weights, measured as [`EpochRow::test_loss`], [`EpochRow::eval_train_acc`]
    /// and [`EpochRow::eval_train_loss`] are.
    #[serde(default)]
    pub final_test_loss: Option<f64>,
    #[serde(default)]
    pub final_eval_train_acc: Option<f64>,
    #[serde(default)]
    pub final_eval_train_loss: Option<f64>,
    /// The largest batch loss of a step that was taken (below the divergence bound).
    #[serde(default)]
    pub max_batch_loss: f64,
}

/// A learning rate, compactly (1e-5, 0.03, 10, 1e6).
pub fn fmt_lr(lr: f64) -> String {
    if lr != 0.0 && !(1e-3..1e4).contains(&lr.abs()) {
        format!("{lr:e}")
    } else {
        format!("{lr}")
    }
}

/// A loss in at most 10 characters: 4 decimals up to 1e4, scientific notation above (a
/// diverging run's loss can reach 1e7 or more), so that table columns stay aligned.
pub fn fmt_loss(loss: f64) -> String {
    if loss.is_finite() && loss.abs() < 1e4 {
        format!("{loss:.4}")
    } else {
        format!("{loss:.3e}")
    }
}

/// An accuracy with 4 decimals, or `-`.
pub fn fmt_acc(acc: Option<f64>) -> String {
    acc.map_or("-".into(), |a| format!("{a:.4}"))
}

/// One run in a per-seed table cell: `0.8755 (0.8048)`, the test accuracy and in brackets
/// the one with the moving averages, then the run's status unless it is `ok`.
pub fn fmt_run_cell(test_acc: Option<f64>, moving_avg: Option<f64>, status: &str) -> String {
    let status = if status == "ok" {
        String::new()
    } else {
        format!(" {status}")
    };
    format!("{} ({}){status}", fmt_acc(test_acc), fmt_acc(moving_avg))
}

/// The columns of the per-epoch table and their widths on the terminal (rows are printed one
/// at a time, as epochs end, so the widths are fixed).
const EPOCH_COLUMNS: [(&str, usize); 11] = [
    ("model", 9),
    ("epoch", 5),
    ("train loss", 10),
    ("train acc", 9),
    ("test acc", 8),
    ("precise BN", 10),
    ("eval train loss", 15),
    ("eval train acc", 14),
    ("test loss", 10),
    ("seconds", 8),
    ("samples/s", 10),
];

/// The cells of one row of the per-epoch table.
fn epoch_cells(model: &str, row: &EpochRow) -> Vec<String> {
    vec![
        model.to_string(),
        row.epoch.to_string(),
        fmt_loss(row.train_loss),
        format!("{:.4}", row.train_acc),
        format!("{:.4}", row.test_acc),
        fmt_acc(row.test_acc_precise),
        row.eval_train_loss.map_or("-".into(), fmt_loss),
        fmt_acc(row.eval_train_acc),
        row.test_loss.map_or("-".into(), fmt_loss),
        format!("{:.2}", row.seconds),
        format!("{:.0}", row.samples_per_sec),
    ]
}

/// `cells` padded to the widths of [`EPOCH_COLUMNS`] (the first left-aligned).
fn fixed_width(cells: &[String]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(EPOCH_COLUMNS)
        .enumerate()
        .map(|(i, (c, (_, w)))| {
            if i == 0 {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            }
        })
        .collect();
    padded.join(" ")
}

/// The header of the per-epoch table.
pub fn table_header() -> String {
    let names: Vec<String> = EPOCH_COLUMNS.iter().map(|(n, _)| n.to_string()).collect();
    fixed_width(&names)
}

/// One row of the per-epoch table.
pub fn table_row(model: &str, row: &EpochRow) -> String {
    fixed_width(&epoch_cells(model, row))
}

/// Every epoch of every model: the rows printed during training.
pub fn epochs_table(records: &[RunRecord]) -> Table {
    let mut t = Table::new(EPOCH_COLUMNS.iter().map(|(n, _)| *n));
    for r in records {
        for e in &r.epochs {
            t.row(epoch_cells(&r.model, e));
        }
    }
    t
}

/// What the test-accuracy columns mean, for runs that measured precise statistics (`None`
/// otherwise: then there is one test accuracy, with the running statistics).
pub fn accuracy_note(records: &[RunRecord]) -> Option<&'static str> {
    records
        .iter()
        .any(|r| r.final_test_acc_precise.is_some())
        .then_some(
            "test acc: eval mode with the running statistics (moving averages kept during \
             training, PyTorch's default); precise BN: eval mode with batch-norm statistics \
             recomputed from training batches after the epoch (see --precise-bn). In the final \
             comparison, test acc is the precise-BN accuracy for models with batch norm and \
             moving-avg BN the accuracy with the running statistics.",
        )
}

/// What the eval-mode columns mean (every run measures them; records from before they existed
/// show `-`).
pub fn eval_train_note() -> String {
    format!(
        "train loss, train acc: means over the epoch's batches in training mode while the weights \
     move (d2l.ai's measure). eval train loss, eval train acc: the weights at the end of the \
     epoch on a fixed training subset (the first {} training images the run trains on, \
     all of them when there are fewer), in eval mode with the same batch-norm statistics as \
     the headline test accuracy (precise when measured, the running ones otherwise); test \
     loss: the mean cross-entropy on the test set, measured alike. The eval-mode numbers \
     compare like for like with the test accuracy; the training-mode means do not.",
        crate::run::model_run::TRAIN_SUBSET
    )
}

/// The final side-by-side comparison of the models of a run: last epoch's training loss and
/// accuracy (training mode), final test accuracy (precise statistics first, then the moving
/// averages), the final eval-mode training-subset loss and accuracy and test loss, mean time
/// per epoch, status.
pub fn summary(records: &[RunRecord]) -> Table {
    let mut t = Table::new([
        "model",
        "lr",
        "train loss",
        "train acc",
        "test acc",
        "moving-avg BN",
        "eval train loss",
        "eval train acc",
        "test loss",
        "s/epoch",
        "samples/s",
        "status",
    ]);
    for r in records {
        let last = r.epochs.last();
        let mean = |f: fn(&EpochRow) -> f64, digits: usize| {
            if r.epochs.is_empty() {
                return "-".to_string();
            }
            let m = r.epochs.iter().map(f).sum::<f64>() / r.epochs.len() as f64;
            format!("{m:.digits$}")
        };
        t.row([
            r.model.clone(),
            fmt_lr(r.lr),
            last.map_or("-".into(), |e| fmt_loss(e.train_loss)),
            last.map_or("-".into(), |e| format!("{:.4}", e.train_acc)),
            fmt_acc(r.headline_acc()),
            fmt_acc(r.final_test_acc_precise.and(r.final_test_acc)),
            r.final_eval_train_loss.map_or("-".into(), fmt_loss),
            fmt_acc(r.final_eval_train_acc),
            r.final_test_loss.map_or("-".into(), fmt_loss),
            mean(|e| e.seconds, 2),
            mean(|e| e.samples_per_sec, 0),
            r.status.word().to_string(),
        ]);
    }
    t
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median, min and max of `values` (`None` when empty).
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(values.to_vec()), min, max))
}

/// Writes `metrics.json` (the records) and `metrics.csv` (one line per model and epoch).
pub fn write_metrics(dir: &RunDir, records: &[RunRecord]) -> Result<(), Error> {
    dir.write_json("metrics.json", &records)?;
    let mut csv = String::from(
        "model,epoch,train_loss,train_acc,test_acc,test_acc_precise,eval_train_loss,\
         eval_train_acc,test_loss,seconds,samples_per_sec\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for r in records {
        for e in &r.epochs {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{}",
                r.model,
                e.epoch,
                e.train_loss,
                e.train_acc,
                e.test_acc,
                opt(e.test_acc_precise),
                opt(e.eval_train_loss),
                opt(e.eval_train_acc),
                opt(e.test_loss),
                e.seconds,
                e.samples_per_sec
            );
        }
    }
    dir.write("metrics.csv", csv.as_bytes())
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

    #[test]
    fn table_rows_stay_aligned_for_huge_losses() {
        let row = |loss| EpochRow {
            epoch: 1,
            train_loss: loss,
            train_acc: 0.1,
            test_acc: 0.1,
            test_acc_precise: Some(0.2),
            test_loss: Some(loss),
            eval_train_acc: Some(0.3),
            eval_train_loss: Some(loss),
            seconds: 1.0,
            samples_per_sec: 1000.0,
        };
        let header = table_header().len();
        for loss in [0.5, 2.5, 9999.0, 1.4e7, 3.4e38, f64::NAN] {
            assert_eq!(table_row("lenet-bn", &row(loss)).len(), header, "{loss}");
        }
        assert_eq!(fmt_loss(1.4e7), "1.400e7");
    }

    #[test]
    fn records_written_before_the_eval_mode_measures_still_read() {
        let old = r#"{"model":"lenet-bn","lr":1.0,"status":{"state":"completed"},
            "epochs":[{"epoch":1,"train_loss":0.5,"train_acc":0.8,"test_acc":0.7,
            "seconds":1.0,"samples_per_sec":9.0}],"final_test_acc":0.7}"#;
        let r: RunRecord = serde_json::from_str(old).unwrap();
        let e = &r.epochs[0];
        assert_eq!(
            (e.test_loss, e.eval_train_acc, e.eval_train_loss),
            (None, None, None)
        );
        assert_eq!(r.final_eval_train_acc, None);
        // The gap falls back to the training-mode mean.
        assert!((e.gap() - 0.1).abs() < 1e-12);
    }
}
