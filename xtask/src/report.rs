//! Per-epoch metrics, run outcomes, and how they are written (`metrics.json`, `metrics.csv`)
//! and printed (one table row per epoch, a final comparison).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::run_dir::RunDir;
use crate::Error;

/// One epoch of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training samples, in train mode.
    pub train_loss: f64,
    /// Fraction of the epoch's training samples predicted right, in train mode.
    pub train_acc: f64,
    /// Test accuracy after the epoch, in eval mode.
    pub test_acc: f64,
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
    /// A diverged batch loss (see [`crate::divergence`]) stopped the run.
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
        }
    }
}

/// Everything recorded about one model's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub model: String,
    pub lr: f64,
    pub status: Status,
    pub epochs: Vec<EpochRow>,
    /// Test accuracy of the final weights (after the last step taken).
    pub final_test_acc: Option<f64>,
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

/// The header of the per-epoch table.
pub fn table_header() -> String {
    format!(
        "{:<9} {:>5} {:>10} {:>9} {:>8} {:>8} {:>10}",
        "model", "epoch", "train loss", "train acc", "test acc", "seconds", "samples/s"
    )
}

/// One row of the per-epoch table.
pub fn table_row(model: &str, row: &EpochRow) -> String {
    format!(
        "{:<9} {:>5} {:>10} {:>9.4} {:>8.4} {:>8.2} {:>10.0}",
        model,
        row.epoch,
        fmt_loss(row.train_loss),
        row.train_acc,
        row.test_acc,
        row.seconds,
        row.samples_per_sec
    )
}

/// The final side-by-side comparison of the models of a run.
pub fn summary(records: &[RunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<9} {:>6} {:>11} {:>10} {:>9} {:>9} {:>10}  status",
        "model", "lr", "train loss", "train acc", "test acc", "s/epoch", "samples/s"
    );
    for r in records {
        let last = r.epochs.last();
        let mean = |f: fn(&EpochRow) -> f64, digits: usize| {
            if r.epochs.is_empty() {
                return "-".to_string();
            }
            let m = r.epochs.iter().map(f).sum::<f64>() / r.epochs.len() as f64;
            format!("{m:.digits$}")
        };
        let _ = writeln!(
            s,
            "{:<9} {:>6} {:>11} {:>10} {:>9} {:>9} {:>10}  {}",
            r.model,
            fmt_lr(r.lr),
            last.map_or("-".into(), |e| fmt_loss(e.train_loss)),
            last.map_or("-".into(), |e| format!("{:.4}", e.train_acc)),
            r.final_test_acc.map_or("-".into(), |a| format!("{a:.4}")),
            mean(|e| e.seconds, 2),
            mean(|e| e.samples_per_sec, 0),
            r.status.word()
        );
    }
    s
}

/// Writes `metrics.json` (the records) and `metrics.csv` (one line per model and epoch).
pub fn write_metrics(dir: &RunDir, records: &[RunRecord]) -> Result<(), Error> {
    dir.write_json("metrics.json", &records)?;
    let mut csv =
        String::from("model,epoch,train_loss,train_acc,test_acc,seconds,samples_per_sec\n");
    for r in records {
        for e in &r.epochs {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{}",
                r.model,
                e.epoch,
                e.train_loss,
                e.train_acc,
                e.test_acc,
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
    fn table_rows_stay_aligned_for_huge_losses() {
        let row = |loss| EpochRow {
            epoch: 1,
            train_loss: loss,
            train_acc: 0.1,
            test_acc: 0.1,
            seconds: 1.0,
            samples_per_sec: 1000.0,
        };
        let header = table_header().len();
        for loss in [0.5, 2.5, 9999.0, 1.4e7, 3.4e38, f64::NAN] {
            assert_eq!(table_row("lenet-bn", &row(loss)).len(), header, "{loss}");
        }
        assert_eq!(fmt_loss(1.4e7), "1.400e7");
    }
}
