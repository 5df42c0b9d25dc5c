//! The training loop of one model: epochs of steps from its [`Progress`] on, with a checkpoint
//! after every epoch, and a clean stop on a step limit, a divergence, or a signal.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use norma_datasets::Dataset;

use crate::cli::signals::Signal;
use crate::error::Error;
use crate::output::report::{self, EpochRow, Status};
use crate::output::run_dir::RunDir;
use crate::run::divergence;
use crate::run::model_run::ModelRun;
use crate::run::spec::RunSpec;
use crate::run::step::Strategy;
use crate::train::checkpoint;
use crate::train::progress::Progress;

/// One model and where its training stands.
pub struct ModelState {
    pub run: ModelRun,
    pub progress: Progress,
}

impl ModelState {
    /// The model's name (`lenet`, `lenet-bn`).
    pub fn name(&self) -> &'static str {
        self.run.spec.model.name()
    }
}

/// Trains `state` until its spec is done (or it diverges), writing checkpoints and the final
/// weights into `dir`. Returns the signal that stopped it early, if one did (the checkpoint
/// then holds the last step taken, or says that the final files are still to be written).
///
/// `strategy` takes the steps: alone, or as one process of a data-parallel job, where every
/// process calls this (the steps are collective); `dir` is process 0's (the only one that
/// writes, prints and evaluates) and `None` on the others.
pub fn train(
    state: &mut ModelState,
    data: &Dataset,
    dir: Option<&RunDir>,
    strategy: &mut dyn Strategy,
) -> Result<Option<Signal>, Error> {
    let ModelState { run, progress: p } = state;
    let spec = run.spec.clone();
    let ending = if p.finished(&spec) {
        match &p.record.status {
            // Resumed between the end of training and the last of its files.
            Status::Finishing { then } => (**then).clone(),
            status if status.is_final() => return Ok(None),
            // A checkpoint of the last step (the end of the last epoch), saved before the
            // final phase began.
            _ => p.ending_without_status(&spec),
        }
    } else {
        match train_steps(run, p, data, dir, strategy)? {
            Steps::Stopped(signal) => return Ok(Some(signal)),
            Steps::Ended(ending) => ending,
        }
    };
    finish(run, p, data, dir, strategy, ending)
}

/// How [`train_steps`] ended.
enum Steps {
    /// Training is over: all epochs done, the step limit reached, or diverged.
    Ended(Status),
    /// A signal stopped it; the checkpoint holds the last step taken.
    Stopped(Signal),
}

/// The steps and epochs still to train, with a checkpoint after every epoch but the last
/// (whose checkpoint [`finish`] writes).
fn train_steps(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    dir: Option<&RunDir>,
    strategy: &mut dyn Strategy,
) -> Result<Steps, Error> {
    let reports = dir.is_some();
    let spec = run.spec.clone();
    let name = spec.model.name();
    let ckpt = dir.map(|d| checkpoint::dir(d.path(), name));
    p.record.status = Status::Running;
    while p.epoch < spec.epochs {
        let batches = spec.epoch_batches(data, p.epoch)?;
        let bar = if reports {
            progress_bar(name, p.epoch + 1, spec.epochs, batches.len())
        } else {
            ProgressBar::hidden()
        };
        bar.set_position(p.step_in_epoch as u64);
        for batch in batches.skip(p.step_in_epoch) {
            if let Some(signal) = strategy.stop() {
                bar.finish_and_clear();
                return stopped(run, p, ckpt.as_deref(), signal);
            }
            let n = batch.len() as u64;
            let start = Instant::now();
            strategy.before_step(p.global_step)?;
            let outcome = run.step_with(batch, strategy)?;
            p.epoch_seconds += start.elapsed().as_secs_f64();
            if let Some(cause) = outcome.diverged {
                bar.finish_and_clear();
                if reports {
                    eprintln!(
                        "{}",
                        divergence_message(name, &spec, outcome.loss, cause, p)
                    );
                }
                return Ok(Steps::Ended(Status::Diverged {
                    epoch: p.epoch + 1,
                    step: p.step_in_epoch + 1,
                    loss: Some(f64::from(outcome.loss)).filter(|l| l.is_finite()),
                    last_finite_loss: p.last_finite_loss,
                }));
            }
            let loss = f64::from(outcome.loss);
            p.last_finite_loss = Some(loss);
            p.record.max_batch_loss = p.record.max_batch_loss.max(loss);
            p.loss_sum += loss * n as f64;
            p.correct += outcome.correct as u64;
            p.seen += n;
            p.step_in_epoch += 1;
            p.global_step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4}  acc {:.4}  {:.0} samples/s",
                p.loss_sum / p.seen as f64,
                p.correct as f64 / p.seen as f64,
                p.seen as f64 / p.epoch_seconds.max(1e-9)
            ));
            if spec.steps.is_some_and(|s| p.global_step >= s) {
                // Stop mid-epoch without closing it, so that --resume continues this epoch.
                bar.finish_and_clear();
                return Ok(Steps::Ended(Status::StepLimit {
                    step: p.global_step,
                }));
            }
        }
        bar.finish_and_clear();
        match end_epoch(run, p, data, name, reports) {
            // Stopped in the epoch's evaluation: the checkpoint holds the epoch's last step,
            // and --resume evaluates it.
            Err(Error::Stopped(signal)) => return stopped(run, p, ckpt.as_deref(), signal),
            result => result?,
        }
        if let Some(ckpt) = ckpt.as_deref().filter(|_| p.epoch < spec.epochs) {
            checkpoint::save(ckpt, run, p)?;
        }
    }
    Ok(Steps::Ended(Status::Completed))
}

/// Records an interruption by `signal` at the step in progress, in the checkpoint `ckpt`
/// (process 0's).
fn stopped(
    run: &ModelRun,
    p: &mut Progress,
    ckpt: Option<&Path>,
    signal: Signal,
) -> Result<Steps, Error> {
    p.record.status = Status::Interrupted {
        epoch: p.epoch + 1,
        step: p.step_in_epoch,
    };
    if let Some(ckpt) = ckpt {
        checkpoint::save(ckpt, run, p)?;
    }
    Ok(Steps::Stopped(signal))
}

/// Closes the epoch in progress: evaluates (with the running statistics, and with precise
/// statistics if the spec asks for them; test loss and the fixed training subset with the
/// headline statistics, see [`crate::run::model_run::Evaluation`]), prints and records its row (`report`: process 0),
/// resets the counters.
fn end_epoch(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    name: &str,
    report: bool,
) -> Result<(), Error> {
    if report {
        record_epoch(run, p, data, name)?;
    }
    p.epoch += 1;
    p.step_in_epoch = 0;
    p.loss_sum = 0.0;
    p.correct = 0;
    p.seen = 0;
    p.epoch_seconds = 0.0;
    Ok(())
}

/// Evaluates the model and prints and records the row of the epoch in progress.
fn record_epoch(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    name: &str,
) -> Result<(), Error> {
    let eval = run.evaluate(data, true)?;
    let row = EpochRow {
        epoch: p.epoch + 1,
        train_loss: p.loss_sum / p.seen.max(1) as f64,
        train_acc: p.correct as f64 / p.seen.max(1) as f64,
        test_acc: eval.test_acc,
        test_acc_precise: eval.test_acc_precise,
        test_loss: Some(eval.test_loss),
        eval_train_acc: Some(eval.train_acc),
        eval_train_loss: Some(eval.train_loss),
        seconds: p.epoch_seconds,
        samples_per_sec: p.seen as f64 / p.epoch_seconds.max(1e-9),
    };
    println!("{}", report::table_row(name, &row));
    p.record.epochs.push(row);
    eval.record_final(&mut p.record);
    Ok(())
}

/// The final phase of a run whose training ended as `ending` says: `strategy` first sees the
/// final weights (a data-parallel job checks that every process holds the same); then process
/// 0 (the one with `dir`) evaluates a run that stopped between two epochs, saves the final
/// weights — `<model>.safetensors` as training left them, and `<model>-precise-bn.safetensors`
/// with precise batch-norm statistics when the run computes them — and the checkpoint that
/// records the ending.
///
/// A checkpoint in state [`Status::Finishing`] is saved first: if the phase is stopped by a
/// signal (the signal is returned), killed, or fails (a full disk), `--resume` starts over
/// from there and writes what is missing.
fn finish(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    dir: Option<&RunDir>,
    strategy: &mut dyn Strategy,
    ending: Status,
) -> Result<Option<Signal>, Error> {
    strategy.finish(&run.model)?;
    let Some(dir) = dir else {
        p.record.status = ending;
        return Ok(None);
    };
    let ckpt = checkpoint::dir(dir.path(), run.spec.model.name());
    p.record.status = Status::Finishing {
        then: Box::new(ending.clone()),
    };
    checkpoint::save(&ckpt, run, p)?;
    match final_files(run, p, data, dir, &ending) {
        Err(Error::Stopped(signal)) => return Ok(Some(signal)),
        result => result?,
    }
    p.record.status = ending;
    checkpoint::save(&ckpt, run, p)?;
    Ok(None)
}

/// The evaluation and the weight files of [`finish`].
fn final_files(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    dir: &RunDir,
    ending: &Status,
) -> Result<(), Error> {
    let name = run.spec.model.name();
    // A completed run was just evaluated at the end of its last epoch; any other stop
    // happened after steps that no evaluation has seen yet. A diverged run keeps the weights
    // of its last good step, which may be too large to run in training mode without
    // overflowing: it is evaluated with its running statistics only, and gets no precise file.
    let diverged = matches!(ending, Status::Diverged { .. });
    if *ending != Status::Completed {
        let eval = run.evaluate(data, !diverged)?;
        eval.record_final(&mut p.record);
        let precise = eval.test_acc_precise.map_or(String::new(), |a| {
            format!(", {a:.4} with precise BN statistics")
        });
        println!(
            "{name}: stopped ({}) after {} steps at epoch {}, step {}; test accuracy {:.4}{precise}",
            ending.word(),
            p.global_step,
            p.epoch + 1,
            p.step_in_epoch,
            eval.test_acc
        );
    }
    dir.write(
        &format!("{name}.safetensors"),
        &checkpoint::model_bytes(run)?,
    )?;
    if !diverged {
        if let Some(bytes) = run.precise_state_bytes(data)? {
            dir.write(&format!("{name}-precise-bn.safetensors"), &bytes)?;
        }
    }
    Ok(())
}

/// The line that explains a divergence of model `name` at batch loss `loss`.
fn divergence_message(
    name: &str,
    spec: &RunSpec,
    loss: f32,
    cause: divergence::Cause,
    p: &Progress,
) -> String {
    let advice = if spec.model.is_normalized() {
        format!("Lower --lr (now {})", report::fmt_lr(spec.lr))
    } else {
        format!(
            "Lower --lr (now {}) or use batch norm (--model lenet-bn)",
            report::fmt_lr(spec.lr)
        )
    };
    let what = match cause {
        divergence::Cause::Loss => format!(
            "the batch loss reached {} (diverged: above {} or not finite)",
            report::fmt_loss(f64::from(loss)),
            divergence::DIVERGED_LOSS
        ),
        divergence::Cause::State => format!(
            "weights or batch-norm statistics overflowed to infinity or NaN (batch loss {})",
            report::fmt_loss(f64::from(loss))
        ),
    };
    format!(
        "{name}: {what} at epoch {}, step {}; last good loss {}; the run stopped with the weights of the step before. {advice}.",
        p.epoch + 1,
        p.step_in_epoch + 1,
        p.last_finite_loss.map_or("none".into(), report::fmt_loss),
    )
}

fn progress_bar(name: &str, epoch: usize, epochs: usize, batches: usize) -> ProgressBar {
    let bar = ProgressBar::new(batches as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{name} epoch {epoch}/{epochs}"));
    bar
}
