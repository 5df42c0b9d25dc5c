//! What `batch-size` writes besides the report: every cell (`batch-size.json`, `.csv`), the
//! accuracy table (`summary.csv`), the best column at each batch size (`remedies.csv`) and the
//! fine-tuning (`fine-tune.json`, `.csv`).

use std::fmt::Write as _;

use crate::batch_size::fine_tune::FineTuneRun;
use crate::batch_size::{tables, BatchSizeArgs, BatchSizeRun};
use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::output::table::Table;

/// The tables written, for the report and the terminal.
pub struct Summary {
    pub accuracy: Table,
    pub remedies: Table,
    /// `None` when nothing was fine-tuned.
    pub fine_tune: Option<Table>,
}

/// Writes every file of the experiment's results into `dir`; returns their tables.
pub fn write(
    dir: &RunDir,
    args: &BatchSizeArgs,
    runs: &[BatchSizeRun],
    fine_tunes: &[FineTuneRun],
) -> Result<Summary, Error> {
    dir.write_json("batch-size.json", &runs)?;
    dir.write("batch-size.csv", cells_csv(runs).as_bytes())?;
    let accuracy = tables::accuracy_table(args, runs);
    dir.write("summary.csv", accuracy.csv().as_bytes())?;
    let remedies = tables::remedies_table(args, runs);
    dir.write("remedies.csv", remedies.csv().as_bytes())?;
    let fine_tune = if fine_tunes.is_empty() {
        None
    } else {
        dir.write_json("fine-tune.json", &fine_tunes)?;
        let table = tables::fine_tune_table(fine_tunes);
        dir.write("fine-tune.csv", table.csv().as_bytes())?;
        Some(table)
    };
    Ok(Summary {
        accuracy,
        remedies,
        fine_tune,
    })
}

/// One line per cell.
fn cells_csv(runs: &[BatchSizeRun]) -> String {
    let mut csv = String::from(
        "norm,model,batch_size,seed,lr,steps_per_epoch,final_test_acc,final_test_acc_moving_avg,final_test_acc_example_weighted,example_weight,outcome,reason,max_batch_loss,train_seconds\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}",
            r.norm.norm_name(),
            r.model,
            r.batch_size,
            r.seed,
            r.lr,
            r.steps_per_epoch,
            opt(r.final_test_acc),
            opt(r.final_test_acc_moving_avg),
            opt(r.final_test_acc_example_weighted),
            opt(r.example_weight),
            r.outcome,
            r.reason
                .as_deref()
                .map_or(String::new(), |s| format!("\"{}\"", s.replace('"', "\"\""))),
            opt(r.max_batch_loss),
            r.train_seconds
        );
    }
    csv
}
