//! The measurements of `eval-mode`: the test set cut into batches of a given size in random
//! orders and predicted in eval or training mode, and how the predictions of one image change
//! with the images it shares a batch with.

use norma_autograd::{no_grad, Var};
use norma_datasets::{LastBatch, Order, Split};
use norma_layers::{Mode, Module, Sequential};
use serde::Serialize;

use crate::cli::signals;
use crate::error::Error;
use crate::run::model_run::{accuracy, predict};
use crate::run::snapshot::Snapshot;

/// Mixed into `--seed` for the orders of the test set ("EVALMODE").
const ORDER_SALT: u64 = 0x4556_414c_4d4f_4445;

/// The seed of random order `r` of the test set.
pub fn order_seed(seed: u64, r: usize) -> u64 {
    seed ^ ORDER_SALT ^ (r as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Predicted class of every image of `split` (by index) when the split is cut into batches
/// of `batch` images in `order` and each batch goes through `model` in `mode`, without
/// recording a graph. A last batch of a single image joins the one before it (for `batch` ≥
/// 2), so that only `batch` = 1 ever puts one image alone through training mode. In training
/// mode batch norm updates its running statistics; they are put back afterwards, and the model
/// is left in eval mode.
pub fn predict_batched(
    model: &mut Sequential,
    split: &Split,
    batch: usize,
    order: Order,
    mode: Mode,
) -> Result<Vec<usize>, Error> {
    let before = Snapshot::take(model);
    let result = pass(model, split, batch, order, mode);
    model.eval();
    before.restore(model)?;
    result
}

/// What PyTorch leaves after a test set predicted in training mode: the running statistics
/// overwritten by the test batches (momentum 0.1 per batch). The test set goes through in
/// batches of `batch` in `order`, then predicted in eval mode with the statistics that pass
/// left (the classes are returned); the model is put back as it was.
pub fn eval_after_training_pass(
    model: &mut Sequential,
    split: &Split,
    batch: usize,
    order: Order,
) -> Result<Vec<usize>, Error> {
    let before = Snapshot::take(model);
    let result = pass(model, split, batch, order, Mode::Train).and_then(|_| predict(model, split));
    model.eval();
    before.restore(model)?;
    result
}

/// The classes of [`predict_batched`], leaving the model's buffers as the pass made them.
fn pass(
    model: &mut Sequential,
    split: &Split,
    batch: usize,
    order: Order,
    mode: Mode,
) -> Result<Vec<usize>, Error> {
    let last = if batch == 1 {
        LastBatch::Keep
    } else {
        LastBatch::MergeSingle
    };
    let batches = split.batches(batch, order, last)?;
    let visiting: Vec<usize> = batches.order().to_vec();
    model.set_mode(mode);
    let mut predicted = vec![0; split.len()];
    let mut at = 0;
    for b in batches {
        let n = b.len();
        // A signal stops the pass between two batches (and the command, with Error::Stopped).
        signals::check()?;
        let logits = no_grad(|| model.forward(&Var::constant(b.images)))?;
        let classes = logits.value().argmax_rows()?;
        for (&image, class) in visiting[at..at + n].iter().zip(classes) {
            predicted[image] = class;
        }
        at += n;
    }
    Ok(predicted)
}

/// The random orders of the test set at one batch size: the r-th is drawn from
/// [`order_seed`]`(seed, r)`, shuffled or sorted by class ([`Order::ByClass`]).
#[derive(Debug, Clone, Copy)]
pub struct TestOrder {
    pub seed: u64,
    pub by_class: bool,
}

impl TestOrder {
    fn nth(self, r: usize) -> Order {
        let seed = order_seed(self.seed, r);
        if self.by_class {
            Order::ByClass(seed)
        } else {
            Order::Shuffled(seed)
        }
    }
}

/// What happened at one batch size in one mode, over several random orders of the test set.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    pub batch_size: usize,
    /// Test accuracy in each order.
    pub accuracies: Vec<f64>,
    /// Fraction of images whose predicted class is not the same in every order (it depends
    /// on the images it shares a batch with).
    pub depends_on_company: f64,
    /// Fraction of (image, order) pairs whose class differs from the reference prediction of
    /// the image alone in eval mode.
    pub differs_from_alone: f64,
    /// Why the forward pass failed, if it did (then the numbers above are empty or zero).
    pub error: Option<String>,
}

impl BatchOutcome {
    /// The mean accuracy over orders (NaN when it failed).
    pub fn mean_accuracy(&self) -> f64 {
        if self.accuracies.is_empty() {
            return f64::NAN;
        }
        self.accuracies.iter().sum::<f64>() / self.accuracies.len() as f64
    }

    /// Smallest and largest accuracy over orders.
    pub fn range(&self) -> (f64, f64) {
        self.accuracies
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                (lo.min(a), hi.max(a))
            })
    }
}

/// Predicts the test set in batches of `batch_size`, in `orders` random orders of kind
/// `order`, in `mode`, and compares with `alone` (each image's eval-mode class when predicted alone). A
/// forward pass that fails is recorded in the outcome, not returned as an error: a batch of
/// one image in training mode is one of the things this experiment shows.
pub fn at_batch_size(
    model: &mut Sequential,
    split: &Split,
    batch_size: usize,
    orders: usize,
    order: TestOrder,
    mode: Mode,
    alone: &[usize],
) -> Result<BatchOutcome, Error> {
    let labels = split.labels();
    let mut outcome = BatchOutcome {
        batch_size,
        accuracies: Vec::new(),
        depends_on_company: 0.0,
        differs_from_alone: 0.0,
        error: None,
    };
    let mut runs: Vec<Vec<usize>> = Vec::with_capacity(orders);
    for r in 0..orders {
        let order = order.nth(r);
        match predict_batched(model, split, batch_size, order, mode) {
            Ok(p) => runs.push(p),
            Err(e @ (Error::Layer(_) | Error::Autograd(_))) => {
                outcome.error = Some(e.to_string());
                return Ok(outcome);
            }
            Err(e) => return Err(e),
        }
    }
    outcome.accuracies = runs.iter().map(|p| accuracy(p, labels)).collect();
    let n = split.len().max(1) as f64;
    let varying = (0..split.len())
        .filter(|&i| runs.iter().any(|p| p[i] != runs[0][i]))
        .count();
    outcome.depends_on_company = varying as f64 / n;
    let differing: usize = runs
        .iter()
        .map(|p| p.iter().zip(alone).filter(|(a, b)| a != b).count())
        .sum();
    outcome.differs_from_alone = differing as f64 / (n * runs.len().max(1) as f64);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use norma_layers::models::{lenet_bn, Activation};
    use norma_tensor::{Rng, Tensor};

    /// A fresh LeNet-BN whose running statistics fit 30 random images (so that eval mode
    /// gives them different classes), and the images.
    fn setup() -> (Sequential, Split) {
        let mut rng = Rng::seed_from_u64(2);
        let mut model = lenet_bn(Activation::Relu, &mut rng).unwrap();
        let images = Tensor::rand_uniform(&[30, 1, 28, 28], 0.0, 1.0, &mut rng);
        let split = Split::new(images, (0..30).map(|i| i % 10).collect()).unwrap();
        let batches = split
            .batches(10, Order::Sequential, LastBatch::Keep)
            .unwrap();
        norma_layers::recompute_batch_norm_stats(&mut model, batches.map(|b| b.images), 3).unwrap();
        (model, split)
    }

    const SHUFFLED: TestOrder = TestOrder {
        seed: 0,
        by_class: false,
    };

    #[test]
    fn eval_mode_ignores_the_company_and_training_mode_does_not() {
        let (mut model, split) = setup();
        let state = |m: &Sequential| crate::run::model_run::state_bytes(m).unwrap();
        let before = state(&model);
        let alone = predict_batched(&mut model, &split, 1, Order::Sequential, Mode::Eval).unwrap();
        let eval = at_batch_size(&mut model, &split, 4, 3, SHUFFLED, Mode::Eval, &alone).unwrap();
        assert_eq!(eval.depends_on_company, 0.0);
        assert_eq!(eval.differs_from_alone, 0.0);
        assert_eq!(eval.accuracies.len(), 3);
        let train = at_batch_size(&mut model, &split, 4, 3, SHUFFLED, Mode::Train, &alone).unwrap();
        assert!(train.error.is_none());
        assert!(train.differs_from_alone > 0.0, "{train:?}");
        assert_eq!(state(&model), before, "the running statistics are put back");
        // One image alone in training mode: BatchNorm1d has one value per channel.
        let one = at_batch_size(&mut model, &split, 1, 2, SHUFFLED, Mode::Train, &alone).unwrap();
        let err = one
            .error
            .clone()
            .expect("a batch of one fails in training mode");
        assert!(err.contains("value per channel"), "{err}");
        assert!(one.accuracies.is_empty() && one.mean_accuracy().is_nan());
        assert_eq!(state(&model), before);
    }

    #[test]
    fn a_training_pass_overwrites_the_statistics_eval_mode_then_uses() {
        let (mut model, split) = setup();
        let state = |m: &Sequential| crate::run::model_run::state_bytes(m).unwrap();
        let before = state(&model);
        let clean = predict_batched(&mut model, &split, 30, Order::Sequential, Mode::Eval).unwrap();
        // Batches of one class each: the statistics the pass leaves are those of the last
        // classes, far from the ones the model was given.
        let sorted = eval_after_training_pass(&mut model, &split, 3, Order::ByClass(1)).unwrap();
        assert_ne!(
            sorted, clean,
            "the overwritten statistics change the predictions"
        );
        assert_eq!(state(&model), before, "and the model is put back");
        let by_class = at_batch_size(
            &mut model,
            &split,
            3,
            2,
            TestOrder {
                seed: 0,
                by_class: true,
            },
            Mode::Train,
            &[0; 30],
        )
        .unwrap();
        assert!(by_class.error.is_none());
        assert_eq!(state(&model), before);
    }

    #[test]
    fn predictions_land_on_their_images_in_any_order_and_batching() {
        let (mut model, split) = setup();
        let alone = predict_batched(&mut model, &split, 1, Order::Sequential, Mode::Eval).unwrap();
        assert!(
            alone.iter().any(|&c| c != alone[0]),
            "a test that can fail: {alone:?}"
        );
        // 30 images in batches of 7: 7, 7, 7, 9 (the single last image joins the batch before);
        // in eval mode each image gets its own class back wherever it sat.
        let p = predict_batched(&mut model, &split, 7, Order::Shuffled(5), Mode::Eval).unwrap();
        assert_eq!(p, alone);
        assert_ne!(order_seed(0, 0), order_seed(0, 1));
    }
}
