//! `cargo xtask eval-mode`: the brief's warning "switch between train() and eval(), or
//! predictions go wrong", measured on a trained LeNet-BN (`--weights`, or one trained first
//! into `model/` of the output folder).
//!
//! - Eval mode, with the statistics stored in the weights and with precise statistics
//!   recomputed from training batches (see [`crate::precise`]): the test accuracy, the same
//!   whatever the batch size and the other images in the batch.
//! - Training mode (the mistake): the test set cut into batches of 1, 2, 8, 64 and 1000
//!   images, in several random orders, each batch normalized with its own statistics. A batch
//!   of one image fails: its 24×24 values per convolution channel would do for BatchNorm2d,
//!   but the BatchNorm1d layers see one value per channel.
//! - How often an image's class depends on the company it is predicted in (differs between
//!   the orders), and how often it differs from its eval-mode class when predicted alone.

pub mod measure;

use std::fmt::Write as _;
use std::path::PathBuf;

use norma_datasets::Order;
use norma_layers::{checkpoint, recompute_batch_norm_stats, Mode, Sequential};
use norma_tensor::Rng;
use plotters::prelude::IntoLogRange;
use serde::Serialize;

use crate::choices::{build_model, ActivationChoice, ModelChoice, PlacementChoice};
use crate::experiment::{self, CommonArgs, PreciseArgs, Session};
use crate::html::Page;
use crate::model_run::{accuracy, predict, RunSpec};
use crate::plot::{self, Figure, Line, Panel, Series};
use crate::run_dir::RunDir;
use crate::signals::{self, Signal};
use crate::table::Table;
use crate::{checks, files, precise, Error};

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
    /// Random orders of the test set per batch size: each puts every image among other images.
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
const DEFAULT_EPOCHS: usize = 5;

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
    checks::at_least_one("--orders", args.orders as u64)?;
    args.common.check()?;
    Ok(())
}

/// The experiment's results (`eval-mode.json`).
#[derive(Debug, Serialize)]
struct Results {
    /// Eval-mode test accuracy with the statistics stored in the weights.
    eval_stored: f64,
    /// Eval-mode test accuracy with precise statistics, and the batches they came from.
    eval_precise: Option<(f64, usize)>,
    /// Eval mode at every batch size: the class never depends on the company.
    eval: Vec<BatchOutcome>,
    /// Training mode at every batch size.
    train: Vec<BatchOutcome>,
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
    session.write_config("eval-mode", &args)?;
    let spec = RunSpec {
        placement: args.placement,
        precise_bn: args.precise.precise_bn,
        ..RunSpec::recipe(
            ModelChoice::LenetBn,
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
    let Some(results) = measure_all(&mut model, &session, &spec, &args)? else {
        return Ok(signals::received());
    };
    session.dir.write_json("eval-mode.json", &results)?;
    write_csv(&session.dir, &results)?;
    let table = table(&results, &args);
    let failures = failures(&results);
    println!("\n{}{failures}", table.text());
    let mut page = Page::new("eval-mode: predicting in training mode");
    page.text(describe(&args));
    page.table(table);
    if !failures.is_empty() {
        page.pre(failures);
    }
    page.figure("the eval-mode chart", chart(&session.dir, &results));
    session.finish(page, "eval-mode", &args)?;
    Ok(None)
}

/// LeNet-BN with the chosen activation and placement (its weights come from a file or from
/// training).
fn new_model(args: &EvalModeArgs) -> Result<Sequential, Error> {
    Ok(build_model(
        ModelChoice::LenetBn,
        args.activation,
        args.placement,
        &mut Rng::seed_from_u64(args.seed),
    )?)
}

/// Every measurement (`None` when a signal stopped them). The eval-mode reference (each image
/// alone) uses precise statistics when they are computed, else the stored ones.
fn measure_all(
    model: &mut Sequential,
    session: &Session,
    spec: &RunSpec,
    args: &EvalModeArgs,
) -> Result<Option<Results>, Error> {
    let data = &session.data;
    let test = &data.test;
    let labels = test.labels();
    let eval_stored = accuracy(&predict(model, test)?, labels);
    let mut eval_precise = None;
    if let Some(batches) = precise::batches(spec, data)? {
        // Nothing trains any more: the model keeps the precise statistics from here on.
        let report = recompute_batch_norm_stats(model, batches.map(|b| b.images), spec.precise_bn)?;
        eval_precise = Some((accuracy(&predict(model, test)?, labels), report.batches));
    }
    let alone = measure::predict_batched(model, test, 1, Order::Sequential, Mode::Eval)?;
    let mut results = Results {
        eval_stored,
        eval_precise,
        eval: Vec::new(),
        train: Vec::new(),
    };
    for &b in &args.batch_sizes {
        for (mode, out) in [
            (Mode::Eval, &mut results.eval),
            (Mode::Train, &mut results.train),
        ] {
            if let Some(signal) = signals::received() {
                eprintln!("stopped by {}; no results written", signal.name());
                return Ok(None);
            }
            let outcome =
                measure::at_batch_size(model, test, b, args.orders, args.seed, mode, &alone)?;
            eprintln!(
                "{} mode, batches of {b}: {}",
                if mode == Mode::Eval {
                    "eval"
                } else {
                    "training"
                },
                outcome
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("accuracy {:.4}", outcome.mean_accuracy()))
            );
            out.push(outcome);
        }
    }
    Ok(Some(results))
}

fn percent(f: f64) -> String {
    format!("{:.1} %", 100.0 * f)
}

/// Rows: eval mode (stored and precise statistics, any batch size), then training mode per
/// batch size.
fn table(r: &Results, args: &EvalModeArgs) -> Table {
    let mut t = Table::new([
        "mode",
        "statistics",
        "test batch size",
        "test accuracy (mean over orders)",
        "lowest-highest",
        "class depends on the company",
        "class differs from eval mode alone",
    ]);
    let sizes = args
        .batch_sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let eval_varies = r
        .eval
        .iter()
        .map(|o| o.depends_on_company)
        .fold(0.0f64, f64::max);
    let eval_differs = r
        .eval
        .iter()
        .map(|o| o.differs_from_alone)
        .fold(0.0f64, f64::max);
    t.row([
        "eval".to_string(),
        "stored in the weights".into(),
        "any".into(),
        format!("{:.4}", r.eval_stored),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    let (reference, acc) = match r.eval_precise {
        Some((acc, k)) => (format!("precise ({k} training batches)"), acc),
        None => ("stored in the weights".to_string(), r.eval_stored),
    };
    t.row([
        "eval".to_string(),
        reference,
        format!("each of {sizes}"),
        format!("{acc:.4}"),
        "-".into(),
        percent(eval_varies),
        percent(eval_differs),
    ]);
    for o in &r.train {
        let mut row = vec![
            "training".to_string(),
            "each batch's own".into(),
            o.batch_size.to_string(),
        ];
        match &o.error {
            Some(_) => row.extend([
                "fails (see below)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
            None => {
                let (lo, hi) = o.range();
                row.extend([
                    format!("{:.4}", o.mean_accuracy()),
                    format!("{lo:.4}-{hi:.4}"),
                    percent(o.depends_on_company),
                    percent(o.differs_from_alone),
                ]);
            }
        }
        t.row(row);
    }
    t
}

/// Why training mode failed at some batch sizes, one line each.
fn failures(r: &Results) -> String {
    r.train
        .iter()
        .filter_map(|o| {
            let e = o.error.as_ref()?;
            Some(format!(
                "training mode with batches of {}: {e}\n",
                o.batch_size
            ))
        })
        .collect()
}

/// The page's introduction.
fn describe(args: &EvalModeArgs) -> String {
    let model = match &args.weights {
        Some(w) => format!("LeNet-BN with the weights of {}", w.display()),
        None => format!(
            "LeNet-BN trained for {} epochs (seed {}, d2l's recipe; its run is in model/)",
            args.epochs.unwrap_or(DEFAULT_EPOCHS),
            args.seed
        ),
    };
    format!(
        "{model}, predicting the 10,000 test images. Eval mode normalizes with fixed statistics, \
         so an image's class never depends on the other images in its batch. Training mode \
         (forgetting model.eval()) normalizes each batch with its own mean and variance: the \
         test set is cut into batches of each size in {} random orders, and an image's class \
         can change with the images it shares a batch with. 'Class depends on the company': \
         images whose class is not the same in all orders; 'differs from eval mode alone': \
         predictions that differ from the image's class when it is predicted alone in eval \
         mode with the reference statistics of the second row.",
        args.orders
    )
}

/// `eval-mode.csv`: one line per mode and batch size.
fn write_csv(dir: &RunDir, r: &Results) -> Result<(), Error> {
    let mut csv = String::from(
        "mode,batch_size,mean_accuracy,lowest,highest,depends_on_company,differs_from_alone,error\n",
    );
    for (mode, outcomes) in [("eval", &r.eval), ("train", &r.train)] {
        for o in outcomes {
            let (lo, hi) = o.range();
            let num = |v: f64| {
                if o.error.is_some() {
                    String::new()
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(
                csv,
                "{mode},{},{},{},{},{},{},{}",
                o.batch_size,
                num(o.mean_accuracy()),
                num(lo),
                num(hi),
                num(o.depends_on_company),
                num(o.differs_from_alone),
                o.error.as_deref().unwrap_or("").replace([',', '\n'], ";")
            );
        }
    }
    dir.write("eval-mode.csv", csv.as_bytes())
}

/// `eval-mode.png` / `.svg`: accuracy against test batch size in training mode, with the
/// eval-mode accuracies as levels; and how often the class depends on the company.
fn chart(dir: &RunDir, r: &Results) -> Result<Figure, Error> {
    let ok: Vec<&BatchOutcome> = r.train.iter().filter(|o| o.error.is_none()).collect();
    let sizes: Vec<f64> = r
        .train
        .iter()
        .map(|o| o.batch_size as f64)
        .chain(r.eval.iter().map(|o| o.batch_size as f64))
        .collect();
    let lo = sizes.iter().copied().fold(f64::INFINITY, f64::min).min(1.0);
    let hi = sizes.iter().copied().fold(1.0f64, f64::max).max(2.0);
    // The eval-mode measurements at every batch size used the reference statistics: precise
    // ones when computed.
    let mut lines = vec![
        Line::solid("training mode (mean over orders)", 0),
        Line::reference("eval mode, stored statistics", 1),
    ];
    if r.eval_precise.is_some() {
        lines.push(Line::reference("eval mode, precise statistics", 2));
    }
    let reference = lines.len() - 1;
    let level = |y: f64| vec![(lo, y), (hi, y)];
    let panels = || {
        let train = |f: fn(&BatchOutcome) -> f64| Series {
            line: 0,
            points: ok.iter().map(|o| (o.batch_size as f64, f(o))).collect(),
        };
        let mut accuracy = vec![
            train(BatchOutcome::mean_accuracy),
            Series {
                line: 1,
                points: level(r.eval_stored),
            },
        ];
        if let Some((acc, _)) = r.eval_precise {
            accuracy.push(Series {
                line: 2,
                points: level(acc),
            });
        }
        let company = vec![
            train(|o| o.depends_on_company),
            Series {
                line: reference,
                points: r
                    .eval
                    .iter()
                    .map(|o| (o.batch_size as f64, o.depends_on_company))
                    .collect(),
            },
        ];
        let top = plot::finite_max(ok.iter().map(|o| o.depends_on_company)).max(0.1) * 1.1;
        vec![
            Panel {
                title: "Test accuracy".into(),
                x_label: "test batch size (log scale)".into(),
                y_label: "accuracy".into(),
                x_range: (lo / 1.3..hi * 1.3).log_scale(),
                y_range: 0.0..1.0,
                series: accuracy,
                integer_x: false,
            },
            Panel {
                title: "Images whose class depends on the company".into(),
                x_label: "test batch size (log scale)".into(),
                y_label: "fraction of test images".into(),
                x_range: (lo / 1.3..hi * 1.3).log_scale(),
                y_range: 0.0..top,
                series: company,
                integer_x: false,
            },
        ]
    };
    let failed: Vec<String> = r
        .train
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.batch_size.to_string())
        .collect();
    let mut caption = "LeNet-BN predicting the test set in training mode, in batches of each \
                       size (each batch normalized with its own statistics), against eval mode; \
                       right: the fraction of test images whose class changes with the random \
                       order, i.e. with the other images in the batch."
        .to_string();
    if !failed.is_empty() {
        let _ = write!(
            caption,
            " Training mode failed with batches of {} (no point drawn).",
            failed.join(", ")
        );
    }
    plot::render(dir, "eval-mode", &caption, &lines, panels)
}
