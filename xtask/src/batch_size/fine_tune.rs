//! Fine-tuning a trained LeNet-BN at a tiny batch, the way detection models do (torchvision's
//! `FrozenBatchNorm2d`): with its batch norms live — batch statistics of `--fine-tune-batch`
//! samples in training, the moving averages updated from them — or frozen, every batch norm
//! fixed at the statistics and affine it was trained to ([`norma_layers::freeze_batch_norm`]).
//!
//! The trained model is the seed's LeNet-BN cell at the largest batch size of the list, with
//! its precise statistics (`lenet-bn-precise-bn.safetensors`; the moving averages when
//! `--precise-bn-images 0`); both fine-tunings start from those weights and statistics, see
//! the same batches in the same order for `--fine-tune-epochs` epochs, at the learning rate
//! the rule gives batch norm at the fine-tuning batch size. Each is a `train-lenet` run of its
//! own in `runs/` (`--init` the trained weights, `--freeze-bn` for the frozen one).

use serde::Serialize;

use norma_layers::models::ModelKind;

use crate::batch_size::{cell, BatchSizeArgs, BatchSizeRun};
use crate::cli::signals::Signal;
use crate::error::Error;
use crate::experiment::Session;
use crate::output::run_dir::RunDir;
use crate::run::divergence;
use crate::run::spec::RunSpec;

/// One seed's fine-tuning: where it started, and where each way of fine-tuning ended.
#[derive(Debug, Clone, Serialize)]
pub struct FineTuneRun {
    pub seed: u64,
    /// The batch size the trained model was trained at.
    pub trained_batch: usize,
    /// The fine-tuning batch size.
    pub batch_size: usize,
    pub lr: f64,
    pub epochs: usize,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// The trained model's test accuracy before fine-tuning (the cell's headline accuracy).
    pub before_acc: Option<f64>,
    /// Live batch norm after fine-tuning, with precise statistics recomputed at the
    /// fine-tuning batch size (the moving averages when none are measured).
    pub live_acc: Option<f64>,
    /// Live batch norm after fine-tuning, with the moving averages it kept.
    pub live_acc_moving_avg: Option<f64>,
    /// `ok`, `stalled` or `diverged` ([`divergence::outcome`]).
    pub live_outcome: &'static str,
    /// Frozen batch norm after fine-tuning.
    pub frozen_acc: Option<f64>,
    pub frozen_outcome: &'static str,
}

/// Whether the experiment fine-tunes: with `--fine-tune-epochs` above 0 and batch norm among
/// the normalizations.
pub fn is_run(args: &BatchSizeArgs) -> bool {
    args.fine_tune_epochs > 0 && args.norms.contains(&ModelKind::LenetBn)
}

/// Fine-tunes the trained model of `source` (the seed's LeNet-BN cell at the largest batch
/// size, trained in `runs/<source_name>/`) both ways; `None` when that cell has no weights to
/// start from (it could not train or diverged). Returns the signal that stopped it, if one did.
pub fn fine_tune(
    session: &Session,
    args: &BatchSizeArgs,
    runs_dir: &RunDir,
    source: &BatchSizeRun,
    source_name: &str,
) -> Result<Result<Option<FineTuneRun>, Signal>, Error> {
    if source.outcome != "ok" && source.outcome != "stalled" {
        return Ok(Ok(None));
    }
    let file = if args.precise_bn_images > 0 {
        "lenet-bn-precise-bn.safetensors"
    } else {
        "lenet-bn.safetensors"
    };
    let weights = runs_dir.path().join(source_name).join(file);
    let seed = source.seed;
    let b = args.fine_tune_batch;
    let live = RunSpec {
        epochs: args.fine_tune_epochs,
        init: Some(weights),
        ..cell::spec(args, ModelKind::LenetBn, b, seed, &session.data)?
    };
    let frozen = RunSpec {
        freeze_bn: true,
        ..live.clone()
    };
    let train = |way: &str, spec: RunSpec| {
        let name = format!("lenet-bn-b{}-{way}-b{b}-seed{seed}", source.batch_size);
        eprintln!("\n== fine-tuning: {name} (lr {})", spec.lr);
        Ok::<_, Error>(
            session
                .train(runs_dir, &name, vec![spec])?
                .map(|mut records| records.remove(0)),
        )
    };
    let live_record = match train("finetune", live.clone())? {
        Ok(record) => record,
        Err(signal) => return Ok(Err(signal)),
    };
    let frozen_record = match train("frozen", frozen)? {
        Ok(record) => record,
        Err(signal) => return Ok(Err(signal)),
    };
    Ok(Ok(Some(FineTuneRun {
        seed,
        trained_batch: source.batch_size,
        batch_size: b,
        lr: live.lr,
        epochs: args.fine_tune_epochs,
        steps_per_epoch: live.epoch_batches(&session.data, 0)?.len(),
        before_acc: source.final_test_acc,
        live_acc: live_record.headline_acc(),
        live_acc_moving_avg: live_record.final_test_acc,
        live_outcome: divergence::outcome(&live_record),
        frozen_acc: frozen_record.headline_acc(),
        frozen_outcome: divergence::outcome(&frozen_record),
    })))
}
