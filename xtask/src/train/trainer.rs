//! The training loop of one model: epochs of steps from its [`Progress`] on, with a checkpoint
//! after every epoch, and a clean stop on a step limit, a divergence, or a signal.

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
/// then holds the last step taken).
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
    let reports = dir.is_some();
    let name = state.name();
    let ckpt = dir.map(|d| checkpoint::dir(d.path(), name));
    let ModelState { run, progress: p } = state;
    let spec = run.spec.clone();
    if p.finished(&spec) {
        return Ok(None);
    }
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
                p.record.status = Status::Interrupted {
                    epoch: p.epoch + 1,
                    step: p.step_in_epoch,
                };
                if let Some(ckpt) = &ckpt {
                    checkpoint::save(ckpt, run, p)?;
                }
                return Ok(Some(signal));
            }
            let n = batch.len() as u64;
            let start = Instant::now();
            strategy.before_step(p.global_step)?;
            let outcome = run.step_with(batch, strategy)?;
            p.epoch_seconds += start.elapsed().as_secs_f64();
            if let Some(cause) = outcome.diverged {
                bar.finish_and_clear();
                p.record.status = Status::Diverged {
                    epoch: p.epoch + 1,
                    step: p.step_in_epoch + 1,
                    loss: Some(f64::from(outcome.loss)).filter(|l| l.is_finite()),
                    last_finite_loss: p.last_finite_loss,
                };
                if reports {
                    eprintln!(
                        "{}",
                        divergence_message(name, &spec, outcome.loss, cause, p)
                    );
                }
                return finish(run, p, data, dir, strategy).map(|()| None);
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
                p.record.status = Status::StepLimit {
                    step: p.global_step,
                };
                return finish(run, p, data, dir, strategy).map(|()| None);
            }
        }
        bar.finish_and_clear();
        end_epoch(run, p, data, name, reports)?;
        if let Some(ckpt) = &ckpt {
            checkpoint::save(ckpt, run, p)?;
        }
    }
    p.record.status = Status::Completed;
    finish(run, p, data, dir, strategy).map(|()| None)
}

/// Closes the epoch in progress: evaluates (with the running statistics, and with precise
/// statistics if the spec asks for them), prints and records its row (`report`: process 0),
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
        seconds: p.epoch_seconds,
        samples_per_sec: p.seen as f64 / p.epoch_seconds.max(1e-9),
    };
    println!("{}", report::table_row(name, &row));
    p.record.epochs.push(row);
    eval.record_final(&mut p.record);
    Ok(())
}

/// Saves the final weights of a run that stopped for good — `<model>.safetensors` as training
/// left them, and `<model>-precise-bn.safetensors` with precise batch-norm statistics when the
/// run computes them — and its checkpoint. `strategy` first sees the final weights (a
/// data-parallel job checks that every process holds the same); then process 0 (the one with
/// `dir`) does the rest.
fn finish(
    run: &mut ModelRun,
    p: &mut Progress,
    data: &Dataset,
    dir: Option<&RunDir>,
    strategy: &mut dyn Strategy,
) -> Result<(), Error> {
    strategy.finish(&run.model)?;
    let Some(dir) = dir else {
        return Ok(());
    };
    let name = run.spec.model.name();
    // A completed run was just evaluated at the end of its last epoch; any other stop
    // happened after steps that no evaluation has seen yet. A diverged run keeps the weights
    // of its last good step, which may be too large to run in training mode without
    // overflowing: it is evaluated with its running statistics only, and gets no precise file.
    let diverged = matches!(p.record.status, Status::Diverged { .. });
    if p.record.status != Status::Completed {
        let eval = run.evaluate(data, !diverged)?;
        eval.record_final(&mut p.record);
        let precise = eval.test_acc_precise.map_or(String::new(), |a| {
            format!(", {a:.4} with precise BN statistics")
        });
        println!(
            "{name}: stopped ({}) after {} steps at epoch {}, step {}; test accuracy {:.4}{precise}",
            p.record.status.word(),
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
    checkpoint::save(&checkpoint::dir(dir.path(), name), run, p)
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
