//! `cargo xtask eval-mode`: the brief's warning "switch between train() and eval(), or
//! predictions go wrong", measured on a trained LeNet-BN (`--weights`, or one trained first
//! into `model/` of the output folder).
//!
//! - Eval mode, with the statistics stored in the weights and with precise statistics
//!   recomputed from training batches (see [`crate::run::precise`]): the test accuracy, the same
//!   whatever the batch size and the other images in the batch.
//! - Training mode (the mistake): the test set cut into batches of 1, 2, 8, 64 and 1000
//!   images, in several random orders, each batch normalized with its own statistics. A batch
//!   of one image fails: its 24×24 values per convolution channel would do for BatchNorm2d,
//!   but the BatchNorm1d layers see one value per channel.
//! - How often an image's class depends on the company it is predicted in (differs between
//!   the orders), and how often it differs from its eval-mode class when predicted alone.

pub mod chart;
pub mod measure;
pub mod page;

use std::path::PathBuf;

use norma_datasets::Order;
use norma_layers::{checkpoint, Mode, Sequential};
use norma_tensor::Rng;
use serde::Serialize;

use crate::cli::args::{CommonArgs, PreciseArgs};
use crate::cli::checks;
use crate::cli::choices::{build_model, ActivationChoice, PlacementChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment::{self, Session};
use crate::output::files;
use crate::output::html::Page;
use crate::run::model_run::{accuracy, predict};
use crate::run::precise;
use crate::run::spec::RunSpec;
use norma_layers::models::ModelKind;

use measure::BatchOutcome;

/// Arguments of `eval-mode`.
#[derive(Debug, clap::Args, Serialize)]
pub struct EvalModeArgs {
    /// Trained LeNet-BN weights and buffers (safetensors), e.g.
    /// runs/train-lenet-TIMESTAMP/lenet-bn.safetensors [default: train one first, see
    /// --epochs].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Without --weights: epochs to train LeNet-BN for first (d2l's recipe, into model/ of the
    /// output folder) [default: 5].
    #[arg(long, conflicts_with = "weights")]
    pub epochs: Option<usize>,
    /// Activation of the model.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    /// Where the model's batch norms sit (a checkpoint does not say).
    #[arg(long, value_enum, default_value = "before")]
    pub placement: PlacementChoice,
    /// Seed of the model trained without --weights, of the batches precise statistics are
    /// computed from, and of the random orders of the test set.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Test batch sizes to predict with in training mode.
    #[arg(long, num_args = 1.., default_values_t = [1, 2, 8, 64, 1000])]
    pub batch_sizes: Vec<usize>,
    /// Random orders of the test set per batch size: each puts every image among other images
    /// (1 to 1000; each is a pass over the test set in each mode).
    #[arg(long, default_value_t = 5)]
    pub orders: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub precise: PreciseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Epochs trained when neither `--weights` nor `--epochs` is given.
pub const DEFAULT_EPOCHS: usize = 5;

/// The most `--orders`: each order is one pass over the test set per batch size and mode, and
/// keeps its 10,000 predictions for the comparison (80 kB), so 1000 orders are about an hour
/// at the default batch sizes and 80 MB.
const MAX_ORDERS: u64 = 1000;

/// Both test sets of norma's datasets hold this many images.
const TEST_IMAGES: usize = 10_000;

/// Checks every option and path before anything is created or loaded.
fn check(args: &EvalModeArgs) -> Result<(), Error> {
    if let Some(w) = &args.weights {
        files::check_input_file("--weights", w)?;
    }
    if let Some(e) = args.epochs {
        checks::at_least_one("--epochs", e as u64)?;
    }
    for (i, &b) in args.batch_sizes.iter().enumerate() {
        if !(1..=TEST_IMAGES).contains(&b) {
            return Err(Error::Usage(format!(
                "every --batch-sizes value must be between 1 and {TEST_IMAGES} (the test set), got {b}"
            )));
        }
        if args.batch_sizes[..i].contains(&b) {
            return Err(Error::Usage(format!(
                "--batch-sizes lists {b} more than once"
            )));
        }
    }
    checks::count_between("--orders", args.orders as u64, 1, MAX_ORDERS)?;
    args.common.check()?;
    Ok(())
}

/// The experiment's results (`eval-mode.json`).
#[derive(Debug, Serialize)]
pub struct Results {
    /// Eval-mode test accuracy with the statistics stored in the weights.
    pub eval_stored: f64,
    /// Eval-mode test accuracy with precise statistics, and the batches they came from.
    pub eval_precise: Option<(f64, usize)>,
    /// Eval mode at every batch size: the class never depends on the company.
    pub eval: Vec<BatchOutcome>,
    /// Training mode at every batch size.
    pub train: Vec<BatchOutcome>,
    /// Training mode at every batch size with the test set sorted by class
    /// ([`Order::ByClass`]): batches of one class, as a stream of data can arrive.
    pub train_by_class: Vec<BatchOutcome>,
    /// Eval mode after the test set went through training mode in batches of each size
    /// (shuffled) without the running statistics being put back, as PyTorch leaves them.
    pub overwritten: Vec<Overwritten>,
    /// The same after a training-mode pass over the test set sorted by class: the moving
    /// averages end dominated by the last classes' statistics (momentum 0.1 per batch).
    pub overwritten_by_class: Vec<Overwritten>,
}

/// The eval-mode accuracy once a training-mode pass over the test set in batches of
/// `batch_size` has overwritten the running statistics.
#[derive(Debug, Serialize)]
pub struct Overwritten {
    pub batch_size: usize,
    pub eval_accuracy: Option<f64>,
    /// Why the training-mode pass failed (batches of one image).
    pub error: Option<String>,
}

/// Runs `eval-mode`; returns the signal that interrupted its training, if one did.
pub fn run(args: EvalModeArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let mut model = new_model(&args)?;
    if let Some(w) = &args.weights {
        // Fails now, before any folder or data, on a file that is not LeNet-BN's.
        checkpoint::load(&model, w)?;
    }
    let Some(session) = experiment::start("eval-mode", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let spec = RunSpec {
        placement: args.placement,
        precise_bn: args.precise.precise_bn,
        ..RunSpec::recipe(
            ModelKind::LenetBn,
            args.activation,
            args.seed,
            args.epochs.unwrap_or(DEFAULT_EPOCHS),
        )
    };
    if args.weights.is_none() {
        eprintln!(
            "\n== training LeNet-BN for {} epochs into model/",
            spec.epochs
        );
        if let Err(signal) = session.train(&session.dir, "model", vec![spec.clone()])? {
            return Ok(Some(signal));
        }
        checkpoint::load(&model, &session.dir.file("model/lenet-bn.safetensors"))?;
    }
    eprintln!("\n== predicting the test set in eval and training mode");
    let results = match measure_all(&mut model, &session, &spec, &args) {
        Err(Error::Stopped(signal)) => {
            let model = match &args.weights {
                Some(_) => String::new(),
                None => format!(
                    " (the trained model is kept: --weights {} skips training next time)",
                    session.dir.file("model/lenet-bn.safetensors").display()
                ),
            };
            eprintln!(
                "eval-mode stopped by {} while predicting; it writes its results at the end, so \
                 none were written{model}",
                signal.name()
            );
            return Ok(Some(signal));
        }
        results => results?,
    };
    session.dir.write_json("eval-mode.json", &results)?;
    page::write_csv(&session.dir, &results)?;
    let table = page::table(&results, &args);
    let failures = page::failures(&results);
    println!("\n{}{failures}", table.text());
    let mut report = Page::new("eval-mode: predicting in training mode");
    report.text(page::describe(&args));
    report.table(table);
    if !failures.is_empty() {
        report.pre(failures);
    }
    report.figure("the eval-mode chart", chart::chart(&session.dir, &results));
    session.finish(report, &args)?;
    Ok(None)
}

/// LeNet-BN with the chosen activation and placement (its weights come from a file or from
/// training).
fn new_model(args: &EvalModeArgs) -> Result<Sequential, Error> {
    Ok(build_model(
        ModelKind::LenetBn,
        args.activation,
        args.placement,
        &mut Rng::seed_from_u64(args.seed),
    )?)
}

/// Every measurement ([`Error::Stopped`] when a signal stopped them). The eval-mode reference (each image
/// alone) uses precise statistics when they are computed, else the stored ones.
fn measure_all(
    model: &mut Sequential,
    session: &Session,
    spec: &RunSpec,
    args: &EvalModeArgs,
) -> Result<Results, Error> {
    let data = &session.data;
    let test = &data.test;
    let labels = test.labels();
    let eval_stored = accuracy(&predict(model, test)?, labels);
    let mut eval_precise = None;
    if let Some(batches) = precise::batches(spec, data)? {
        // Nothing trains any more: the model keeps the precise statistics from here on.
        let used = precise::recompute(model, batches, spec.precise_bn)?;
        eval_precise = Some((accuracy(&predict(model, test)?, labels), used));
    }
    let alone = measure::predict_batched(model, test, 1, Order::Sequential, Mode::Eval)?;
    let mut results = Results {
        eval_stored,
        eval_precise,
        eval: Vec::new(),
        train: Vec::new(),
        train_by_class: Vec::new(),
        overwritten: Vec::new(),
        overwritten_by_class: Vec::new(),
    };
    for &b in &args.batch_sizes {
        for (mode, by_class, what, out) in [
            (Mode::Eval, false, "eval mode", &mut results.eval),
            (Mode::Train, false, "training mode", &mut results.train),
            (
                Mode::Train,
                true,
                "training mode, sorted by class",
                &mut results.train_by_class,
            ),
        ] {
            let outcome = measure::at_batch_size(
                model,
                test,
                b,
                args.orders,
                measure::TestOrder {
                    seed: args.seed,
                    by_class,
                },
                mode,
                &alone,
            )?;
            eprintln!(
                "{what}, batches of {b}: {}",
                outcome
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("accuracy {:.4}", outcome.mean_accuracy()))
            );
            out.push(outcome);
        }
        let first = measure::order_seed(args.seed, 0);
        for (order, what, out) in [
            (Order::Shuffled(first), "", &mut results.overwritten),
            (
                Order::ByClass(first),
                " sorted by class",
                &mut results.overwritten_by_class,
            ),
        ] {
            let outcome = overwritten(model, test, b, order)?;
            if let Some(acc) = outcome.eval_accuracy {
                eprintln!(
                    "eval mode after a training-mode pass{what} in batches of {b}: accuracy {acc:.4}"
                );
            }
            out.push(outcome);
        }
    }
    Ok(results)
}

/// Eval mode's accuracy on `test` once a training-mode pass in batches of `batch` in `order`
/// has overwritten the running statistics (the model is put back afterwards); a pass that
/// cannot run (batches of one image) is recorded with its error.
fn overwritten(
    model: &mut Sequential,
    test: &norma_datasets::Split,
    batch: usize,
    order: Order,
) -> Result<Overwritten, Error> {
    Ok(
        match measure::eval_after_training_pass(model, test, batch, order) {
            Ok(classes) => Overwritten {
                batch_size: batch,
                eval_accuracy: Some(accuracy(&classes, test.labels())),
                error: None,
            },
            Err(e @ (Error::Layer(_) | Error::Autograd(_))) => Overwritten {
                batch_size: batch,
                eval_accuracy: None,
                error: Some(e.to_string()),
            },
            Err(e) => return Err(e),
        },
    )
}
