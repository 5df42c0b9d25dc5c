//! Training by steps rather than epochs, for the experiments that follow a model along its
//! trajectory (`drift`, `smoothness`, `depth`): any [`Sequential`] with SGD (plain by
//! default; [`StepRun::with_optimizer`] takes any [`SgdConfig`], e.g. momentum) on batches of a
//! fixed size, reshuffled every epoch from the seed and augmented if asked
//! ([`StepRun::with_augment`]), with the test accuracy measured every few steps. `train-lenet`'s loop ([`crate::train`]) is tied to
//! its two models, its checkpoints and its epochs; these runs are short, have no checkpoints,
//! and need a hook before each step ([`train`]). [`chart`] draws what such runs share: test
//! accuracy against steps and percentile bands.

pub mod chart;

use indicatif::{ProgressBar, ProgressStyle};
use norma_datasets::{Augment, Batch, Batches, Dataset, LastBatch, Order};
use norma_layers::{Module, Sequential};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::Rng;
use serde::Serialize;

use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::run::divergence;
use crate::run::model_run::{accuracy, predict};
use crate::run::step::forward_loss;

/// A model, its optimizer and where it stands in its stream of batches.
pub struct StepRun<'a> {
    pub model: Sequential,
    optimizer: Sgd,
    data: &'a Dataset,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    batches: Batches<'a>,
    /// Steps taken so far.
    pub step: usize,
    /// The batch loss of every step taken, in order (entry i: step i + 1, measured at the
    /// weights after i steps), for experiments that follow the training loss step by step.
    pub batch_losses: Vec<f32>,
    /// Applied to every training batch ([`StepRun::with_augment`]; none unless asked for).
    augment: Augment,
    /// The augmentation's draws, seeded from the run's seed: the same seed, the same images.
    augment_rng: Rng,
}

/// Mixed into the seed for each epoch's order ("STEPSORD"), so that the order differs from
/// the weights' draws of the same seed.
const ORDER_SALT: u64 = 0x5354_4550_534f_5244;
/// Mixed into the seed for the augmentation's draws ("AUGMENTS").
const AUGMENT_SEED: u64 = 0x4155_474d_454e_5453;

/// The order of epoch `epoch`: a permutation from the seed, distinct per epoch.
fn order(seed: u64, epoch: u64) -> Order {
    Order::Shuffled((seed ^ ORDER_SALT).wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

impl<'a> StepRun<'a> {
    /// `model` trained with SGD at `lr` on batches of `batch_size` training images of `data`,
    /// shuffled from `seed`. Every batch has exactly `batch_size` images (the images left over
    /// at the end of an epoch are skipped), so every step sees the same amount of data.
    ///
    /// Errors: a batch larger than the training set, or an invalid learning rate.
    pub fn new(
        model: Sequential,
        lr: f64,
        batch_size: usize,
        seed: u64,
        data: &'a Dataset,
    ) -> Result<StepRun<'a>, Error> {
        let config = SgdConfig {
            lr,
            ..SgdConfig::default()
        };
        StepRun::with_optimizer(model, config, batch_size, seed, data)
    }

    /// The seed the batches are shuffled from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// As [`StepRun::new`] with SGD configured by `config` (momentum, weight decay, ...).
    ///
    /// Errors: as [`StepRun::new`], or an invalid `config`.
    pub fn with_optimizer(
        model: Sequential,
        config: SgdConfig,
        batch_size: usize,
        seed: u64,
        data: &'a Dataset,
    ) -> Result<StepRun<'a>, Error> {
        if batch_size < 2 || batch_size > data.train.len() {
            return Err(Error::Usage(format!(
                "a batch of {batch_size} images needs between 2 and {} training images; use a \
                 larger --train-samples",
                data.train.len()
            )));
        }
        let optimizer = Sgd::new(model.parameters(), config)?;
        let batches = data
            .train
            .batches(batch_size, order(seed, 0), LastBatch::Drop)?;
        Ok(StepRun {
            model,
            optimizer,
            data,
            batch_size,
            seed,
            epoch: 0,
            batches,
            step: 0,
            batch_losses: Vec::new(),
            augment: Augment::NONE,
            augment_rng: Rng::seed_from_u64(seed ^ AUGMENT_SEED),
        })
    }

    /// Augments every training batch with `augment` (random crop with padding, horizontal
    /// flip), drawn from a generator seeded from the run's seed.
    pub fn with_augment(mut self, augment: Augment) -> StepRun<'a> {
        self.augment = augment;
        self
    }

    /// The batch the next step trains on (a new epoch's order when one runs out), augmented
    /// if asked for.
    pub fn next_batch(&mut self) -> Result<Batch, Error> {
        let mut batch = match self.batches.next() {
            Some(batch) => batch,
            None => {
                self.epoch += 1;
                self.batches = self.data.train.batches(
                    self.batch_size,
                    order(self.seed, self.epoch),
                    LastBatch::Drop,
                )?;
                // Cannot be empty: the training set holds at least one batch (checked in
                // `new`).
                self.batches
                    .next()
                    .ok_or_else(|| Error::Usage("the training set holds no full batch".into()))?
            }
        };
        self.augment
            .apply(&mut batch.images, &mut self.augment_rng)?;
        Ok(batch)
    }

    /// One SGD step on `batch` in training mode; returns the batch's mean cross-entropy
    /// before the update, or NaN when the step overflowed (batch statistics that came out
    /// infinite or NaN: see [`divergence::is_overflow`]; the step is then not taken).
    pub fn step(&mut self, batch: &Batch) -> Result<f32, Error> {
        let forward = match forward_loss(&mut self.model, batch.images.clone(), &batch.labels)
            .and_then(|f| {
                f.loss.backward()?;
                Ok(f)
            }) {
            Err(e) if divergence::is_overflow(&e) => return Ok(f32::NAN),
            forward => forward?,
        };
        self.optimizer.step()?;
        self.step += 1;
        self.batch_losses.push(forward.value);
        Ok(forward.value)
    }

    /// Accuracy on the whole test set, in eval mode (the model goes back to training mode at
    /// the next step).
    pub fn test_accuracy(&mut self) -> Result<f64, Error> {
        let predicted = predict(&mut self.model, &self.data.test)?;
        Ok(accuracy(&predicted, self.data.test.labels()))
    }
}

/// One point of a training curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Steps taken.
    pub step: usize,
    pub test_acc: f64,
    /// Mean training loss of the steps since the previous point (`None` at step 0).
    pub train_loss: Option<f64>,
}

/// How a run of [`train`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// All steps taken.
    Completed,
    /// A batch loss, a weight or a batch-norm statistic that was not finite (the run
    /// diverged): training stopped there (the curve ends before it).
    NonFiniteLoss { step: usize },
}

/// Trains `run` for `steps` steps, measuring the test accuracy at step 0, every `eval_every`
/// steps and at the end, with a progress bar labelled `label`. Before every step `s` with
/// s mod `hook_every` = 0 (s = 0, `hook_every`, ...), `hook` sees the run and the batch step
/// s + 1 is about to train on. Returns the curve and how it ended, or the signal that stopped
/// it.
pub fn train(
    run: &mut StepRun,
    steps: usize,
    eval_every: usize,
    label: &str,
    hook_every: usize,
    mut hook: impl FnMut(&mut StepRun, &Batch) -> Result<(), Error>,
) -> Result<Result<(Vec<CurvePoint>, Ending), Signal>, Error> {
    let bar = progress_bar(label, steps);
    let mut curve = vec![CurvePoint {
        step: run.step,
        test_acc: run.test_accuracy()?,
        train_loss: None,
    }];
    let (mut loss_sum, mut losses) = (0.0f64, 0usize);
    let mut ending = Ending::Completed;
    while run.step < steps {
        if let Some(signal) = signals::received() {
            bar.finish_and_clear();
            eprintln!("{label}: stopped by {} at step {}", signal.name(), run.step);
            return Ok(Err(signal));
        }
        let batch = run.next_batch()?;
        if hook_every > 0 && run.step.is_multiple_of(hook_every) {
            hook(run, &batch)?;
        }
        let loss = run.step(&batch)?;
        // Weights or running statistics that overflowed end the run as a non-finite loss
        // does (the test accuracy could not even be measured in eval mode).
        if !loss.is_finite() || divergence::overflowed(&run.model) {
            ending = Ending::NonFiniteLoss { step: run.step };
            break;
        }
        loss_sum += f64::from(loss);
        losses += 1;
        bar.inc(1);
        if run.step.is_multiple_of(eval_every) || run.step == steps {
            let point = CurvePoint {
                step: run.step,
                test_acc: run.test_accuracy()?,
                train_loss: Some(loss_sum / losses.max(1) as f64),
            };
            bar.set_message(format!(
                "loss {:.4}  test acc {:.4}",
                point.train_loss.unwrap_or(f64::NAN),
                point.test_acc
            ));
            curve.push(point);
            (loss_sum, losses) = (0.0, 0);
        }
    }
    bar.finish_and_clear();
    if let Some(last) = curve.last() {
        eprintln!(
            "{label}: {} steps, test accuracy {:.4}{}",
            run.step,
            last.test_acc,
            match ending {
                Ending::Completed => String::new(),
                Ending::NonFiniteLoss { step } =>
                    format!(" (stopped: diverged at step {step}: loss, weights or batch-norm statistics not finite)"),
            }
        );
    }
    Ok(Ok((curve, ending)))
}

fn progress_bar(label: &str, steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

/// Writes `<stem>.csv` with one line per curve point of each named run:
/// `model,step,test_acc,train_loss`.
pub fn write_curves(
    dir: &crate::output::run_dir::RunDir,
    stem: &str,
    runs: &[(&str, &[CurvePoint])],
) -> Result<(), Error> {
    use std::fmt::Write as _;
    let mut csv = String::from("model,step,test_acc,train_loss\n");
    for (name, curve) in runs {
        for p in *curve {
            let loss = p.train_loss.map_or(String::new(), |l| l.to_string());
            let _ = writeln!(csv, "{name},{},{},{loss}", p.step, p.test_acc);
        }
    }
    dir.write(&format!("{stem}.csv"), csv.as_bytes())
}

/// Checks `--steps` and an every-K option (`flag`) of a stepwise experiment.
pub fn check_steps(steps: usize, every_flag: &str, every: usize) -> Result<(), Error> {
    crate::cli::checks::at_least_one("--steps", steps as u64)?;
    crate::cli::checks::at_least_one(every_flag, every as u64)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use norma_datasets::{DataLocation, DatasetKind, Origin, Split};
    use norma_tensor::{Rng, Tensor};

    /// A small random dataset of 28×28 images (for unit tests without the real data).
    pub fn tiny_data(train: usize, test: usize) -> Dataset {
        let mut rng = Rng::seed_from_u64(9);
        let split = |n: usize, rng: &mut Rng| {
            Split::new(
                Tensor::rand_uniform(&[n, 1, 28, 28], 0.0, 1.0, rng),
                (0..n).map(|i| i % 10).collect(),
            )
            .unwrap()
        };
        Dataset {
            kind: DatasetKind::FashionMnist,
            train: split(train, &mut rng),
            validation: None,
            test: split(test, &mut rng),
            location: DataLocation {
                dir: std::path::PathBuf::from("memory"),
                origin: Origin::Argument,
                files: Default::default(),
                cache_dir: None,
                decompressed: 0,
                downloaded: 0,
            },
        }
    }

    #[test]
    fn augmentation_changes_the_images_not_the_batches_and_follows_the_seed() {
        let data = tiny_data(25, 10);
        let run = |augment, seed| {
            let model =
                norma_layers::models::mlp(&[8], false, 0.1, &mut Rng::seed_from_u64(0)).unwrap();
            let mut run = StepRun::new(model, 0.1, 10, seed, &data)
                .unwrap()
                .with_augment(augment);
            (0..3)
                .map(|_| run.next_batch().unwrap())
                .collect::<Vec<_>>()
        };
        let crop = Augment {
            crop_padding: 2,
            horizontal_flip: true,
        };
        let (plain, augmented) = (run(Augment::NONE, 3), run(crop, 3));
        for (p, a) in plain.iter().zip(&augmented) {
            assert_eq!(p.labels, a.labels, "the same images in the same order");
            assert_ne!(p.images, a.images);
        }
        assert_eq!(run(crop, 3), augmented, "the same seed, the same images");
        // Another seed: other batches, so other images anyway; the labels tell.
        assert_ne!(run(crop, 4)[0].labels, augmented[0].labels);
    }

    #[test]
    fn epochs_roll_over_with_full_batches_and_a_new_order() {
        let data = tiny_data(25, 10);
        let mut rng = Rng::seed_from_u64(0);
        let model = norma_layers::models::mlp(&[8], false, 0.1, &mut rng).unwrap();
        let mut run = StepRun::new(model, 0.1, 10, 3, &data).unwrap();
        let firsts: Vec<Vec<usize>> = (0..6).map(|_| run.next_batch().unwrap().labels).collect();
        assert!(firsts.iter().all(|b| b.len() == 10));
        // Two full batches per epoch; epoch 1 is in another order than epoch 0.
        assert_ne!(firsts[0..2], firsts[2..4]);
        let big = StepRun::new(
            norma_layers::models::mlp(&[8], false, 0.1, &mut rng).unwrap(),
            0.1,
            26,
            0,
            &data,
        );
        assert!(big
            .err()
            .unwrap()
            .to_string()
            .contains("25 training images"));
    }
}
