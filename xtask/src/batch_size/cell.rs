//! One cell of `batch-size`: a normalization at a batch size for one seed — its training run
//! ([`spec`]), the refusal of batch norm on batches of one ([`cannot_train`]), the run itself
//! and the accuracies it is measured by ([`run_cell`]).

use norma_datasets::{Dataset, LastBatch, Order};
use norma_kernels::KernelError;
use norma_layers::models::ModelKind;
use norma_layers::{set_example_weight, LayerError};

use crate::batch_size::{example_weight, BatchSizeArgs, BatchSizeRun, CANNOT_TRAIN};
use crate::cli::signals::Signal;
use crate::error::Error;
use crate::experiment::Session;
use crate::output::run_dir::RunDir;
use crate::run::divergence;
use crate::run::model_run::{accuracy, ModelRun};
use crate::run::spec::RunSpec;

/// The training run of one cell, on `data`: the model's recipe at this batch size and seed,
/// the learning rate by the rule, precise statistics from `--precise-bn-images` images; for
/// Batch Renormalization its schedule compressed into the cell's steps, for ghost batch norm
/// `--ghost-batch` samples per ghost batch.
pub fn spec(
    args: &BatchSizeArgs,
    model: ModelKind,
    batch_size: usize,
    seed: u64,
    data: &Dataset,
) -> Result<RunSpec, Error> {
    let base = RunSpec::recipe(model, args.activation, seed, args.epochs);
    let mut spec = RunSpec {
        lr: args.lr_rule.lr(base.lr, batch_size),
        batch_size,
        precise_bn: args.precise_bn_images.div_ceil(batch_size),
        ..base
    };
    // (At batch 1 renorm cannot train and has no batches to count: see [`cannot_train`].)
    if model == ModelKind::LenetBrn && batch_size > 1 {
        let steps = spec.epoch_batches(data, 0)?.len() * args.epochs;
        spec.renorm_steps = Some(steps as u64);
    }
    if model == ModelKind::LenetGbn {
        spec.ghost_batch = Some(args.ghost_batch);
    }
    Ok(spec)
}

/// Whether a cell is run at all: ghost batch norm only at batch sizes above its ghost batch
/// size (at or below it, it is batch norm bit for bit).
pub fn is_run(args: &BatchSizeArgs, model: ModelKind, batch_size: usize) -> bool {
    model != ModelKind::LenetGbn || batch_size > args.ghost_batch
}

/// Whether a model cannot train at this batch size: batch norm on batches of one image. Then
/// one real training step on the first training image alone gives the error, in full and in
/// short; `None` when the model can train.
fn cannot_train(spec: &RunSpec, data: &Dataset) -> Result<Option<(String, String)>, Error> {
    if !(spec.batch_size == 1 && spec.model.has_batch_norm()) {
        return Ok(None);
    }
    let mut run = ModelRun::new(spec.clone())?;
    let Some(batch) = data
        .train
        .batches(1, Order::Sequential, LastBatch::Keep)?
        .next()
    else {
        return Err(Error::Usage("the training set is empty".into()));
    };
    match run.step(batch) {
        Ok(_) => Err(Error::Usage(format!(
            "{} trained on a batch of one image; batch norm should have refused it",
            spec.model.name()
        ))),
        Err(e) => Ok(Some((reason(&e), e.to_string()))),
    }
}

/// The short form of the error a model returned for a batch it cannot train on: `one value
/// per channel` for batch norm's, else the error itself.
pub fn reason(e: &Error) -> String {
    match e {
        Error::Layer(LayerError::Kernel(KernelError::SingleValuePerChannel { .. })) => {
            "one value per channel".into()
        }
        other => other.to_string(),
    }
}

/// Trains the cell `spec` in `runs/<name>/` (or records why it cannot train) and measures it;
/// the signal that stopped it, if one did.
pub fn run_cell(
    session: &Session,
    runs_dir: &RunDir,
    name: &str,
    spec: &RunSpec,
) -> Result<Result<BatchSizeRun, Signal>, Error> {
    let data = &session.data;
    let cell = BatchSizeRun {
        norm: spec.model,
        model: spec.model.name(),
        batch_size: spec.batch_size,
        seed: spec.seed,
        lr: spec.lr,
        steps_per_epoch: 0,
        final_test_acc: None,
        final_test_acc_moving_avg: None,
        final_test_acc_example_weighted: None,
        example_weight: None,
        outcome: CANNOT_TRAIN,
        reason: None,
        error: None,
        max_batch_loss: None,
        train_seconds: 0.0,
    };
    if let Some((reason, error)) = cannot_train(spec, data)? {
        eprintln!("{name}: {CANNOT_TRAIN}: {error}");
        return Ok(Ok(BatchSizeRun {
            reason: Some(reason),
            error: Some(error),
            ..cell
        }));
    }
    let steps_per_epoch = spec.epoch_batches(data, 0)?.len();
    let record = match session.train(runs_dir, name, vec![spec.clone()])? {
        Ok(mut records) => records.remove(0),
        Err(signal) => return Ok(Err(signal)),
    };
    let alpha = example_weight(spec.batch_size).filter(|_| spec.model == ModelKind::LenetBn);
    let weighted = match alpha {
        Some(a) => {
            let weights = runs_dir
                .path()
                .join(name)
                .join(format!("{}.safetensors", spec.model.name()));
            Some(example_weighted_acc(spec, &weights, a, data)?)
        }
        None => None,
    };
    Ok(Ok(BatchSizeRun {
        steps_per_epoch,
        final_test_acc: record.headline_acc(),
        final_test_acc_moving_avg: record.final_test_acc_precise.and(record.final_test_acc),
        final_test_acc_example_weighted: weighted,
        example_weight: alpha,
        outcome: divergence::outcome(&record),
        max_batch_loss: Some(record.max_batch_loss),
        train_seconds: record.epochs.iter().map(|e| e.seconds).sum(),
        ..cell
    }))
}

/// The test accuracy of the trained weights `weights` of `spec`'s model with every batch norm's
/// example weight set to `alpha` (the moving averages mixed with each example's statistics).
fn example_weighted_acc(
    spec: &RunSpec,
    weights: &std::path::Path,
    alpha: f64,
    data: &Dataset,
) -> Result<f64, Error> {
    let mut run = ModelRun::new(RunSpec {
        init: Some(weights.to_path_buf()),
        ..spec.clone()
    })?;
    set_example_weight(&mut run.model, alpha)?;
    Ok(accuracy(&run.predict(&data.test)?, data.test.labels()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norms_error_is_named_in_short_and_others_in_full() {
        let single = Error::Layer(LayerError::Kernel(KernelError::SingleValuePerChannel {
            shape: vec![1, 120],
        }));
        assert_eq!(reason(&single), "one value per channel");
        let other = Error::Layer(LayerError::Kernel(KernelError::TooFewValues { count: 1 }));
        assert_eq!(reason(&other), other.to_string());
    }
}
