//! `cargo xtask depth`: the brief's claim at depth — does batch norm make deep networks
//! trainable, and do shortcuts?
//!
//! For each depth of `--depths` (6n + 2; default 8, 20, 32) three of
//! [`norma_layers::models`]' CIFAR-style networks on 1×28×28 images, trained for `--steps`
//! steps of SGD with momentum on the same batches from each seed of `--seed`/`--seeds`
//! (default 3 seeds): the plain chain without normalization (`plain<d>-none`), the same with
//! batch norm after every convolution (`plain<d>-batch`) and He et al.'s ResNet with batch norm
//! (`resnet<d>-batch`). Recorded per model and seed: the test accuracy every `--every` steps
//! on the first `--test-samples` test images, the mean training loss between those points,
//! and whether the run diverged (a loss, weight or batch-norm statistic that was not finite:
//! [`steps::train`] stops it there). For the first seed, the percentiles of each stage's
//! input ([`ActivationStats`] on `layer2`, `layer3` and `fc`) of the deepest plain
//! nets without and with batch norm, every `--every` steps — the `drift` measures at depth.
//! For every seed, Santurkar et al.'s smoothness measures of the same two nets along their
//! trajectories ([`smoothness`]).
//! Training images can be augmented (`--crop-padding`, `--flip`; off by default).
//!
//! The default budget (10,000 training images, 1,000 test images, batch 64, 120 steps with
//! an evaluation every 30, 3 seeds; 9 models per seed) fits a coffee break on 2 cores: 5½
//! minutes measured on an idle 2-core AMD EPYC (docs/experiments.md records the run). 120 steps are under one epoch of the 10,000 images, so
//! `--train-samples` hardly changes the cost; the steps do. A full-data run — 10 epochs of
//! all 60,000 images at batch 64 (`--train-samples 60000 --steps 9370 --every 937
//! --test-samples 10000`) — costs 3 seeds × 5.6 × (9,370 × 0.28 s + 10 × 14 s) ≈ 13 hours
//! on 2 cores.
//!
//! Outputs: `depth.json` (everything), `depth.csv` (final test accuracy per model: median,
//! min and max over seeds), `curves.csv` (every curve point), `depth-error` and `depth-loss`
//! (test error and training loss against steps, median and min–max band over seeds, one
//! panel per depth), `depth-drift` (stage inputs of the deepest plain nets),
//! `smoothness.csv` and `report.html`.

pub mod chart;
pub mod smoothness;
pub mod tables;

use norma_datasets::{Augment, Dataset, IMAGE_SIDE};
use norma_layers::models::{blocks_per_stage, DeepNet};
use norma_layers::{ActivationStats, NormKind};
use norma_optim::SgdConfig;
use norma_tensor::Rng;
use serde::Serialize;

use crate::cli::args::{seed_range, CommonArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::OptimizerChoice;
use crate::cli::signals::{self, Signal};
use crate::drift::LayerDrift;
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::fmt_lr;
use crate::smoothness::probe;
use crate::smoothness::summary::{running_loss, WINDOW};
use crate::smoothness::{ProbeRecord, ETA_FACTORS};
use crate::steps::{self, CurvePoint, Ending, StepRun};

/// Depths unless `--depths` says otherwise.
pub const DEFAULT_DEPTHS: [usize; 3] = [8, 20, 32];
/// Training steps unless `--steps` says otherwise: with 3 seeds 5½ minutes on 2 idle cores.
/// Measured there (shared with other work): ResNet-32 and the plain-32 nets at batch 64 take
/// about 0.28 s per training step, an evaluation of 1,000 test images about 1.4 s; a net's
/// cost grows with its depth, so the nine nets of a seed (depths 8, 20, 32) cost 5.6 times a
/// depth-32 net: 5.6 × (120 × 0.28 s + 5 × 1.4 s) ≈ 230 s per seed.
pub const DEFAULT_STEPS: usize = 120;
/// Evaluations every K steps unless `--every` says otherwise.
pub const DEFAULT_EVERY: usize = 30;
/// Training images unless `--train-samples` says otherwise.
pub const DEFAULT_TRAIN_SAMPLES: usize = 10_000;
/// Test images each evaluation runs on unless `--test-samples` says otherwise.
pub const DEFAULT_TEST_SAMPLES: usize = 1_000;
/// He et al.'s CIFAR recipe scaled linearly to batch 64: lr 0.1 at batch 128, momentum 0.9.
pub const DEFAULT_LR: f64 = 0.05;
pub const DEFAULT_MOMENTUM: f64 = 0.9;
pub const DEFAULT_BATCH: usize = 64;
/// The inputs whose percentiles are recorded: those of the second and third stages and of the
/// classifier (after pooling).
pub const OBSERVED: [&str; 3] = ["layer2", "layer3", "fc"];

/// Arguments of `depth`.
#[derive(Debug, clap::Args, Serialize)]
pub struct DepthArgs {
    /// Depths of the networks, each 6n + 2 (space- or comma-separated).
    #[arg(long, num_args = 1.., value_delimiter = ',', default_values_t = DEFAULT_DEPTHS)]
    pub depths: Vec<usize>,
    /// Training steps of every model (batch --batch-size).
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Measure the test accuracy (and record the stage inputs) every K steps.
    #[arg(long, default_value_t = DEFAULT_EVERY)]
    pub every: usize,
    /// Learning rate (SGD with momentum).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_LR)]
    pub lr: f64,
    /// Momentum of SGD, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_MOMENTUM)]
    pub momentum: f64,
    /// Images per training batch.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Evaluate on the first N test images only (every evaluation costs a forward pass over
    /// them).
    #[arg(long, default_value_t = DEFAULT_TEST_SAMPLES)]
    pub test_samples: usize,
    /// Training-time augmentation: pad each training image with P zero pixels on each side
    /// and crop it back to 28×28 at a random offset (He et al. pad 4 on CIFAR's 32×32); 0:
    /// no crop.
    #[arg(long, default_value_t = 0)]
    pub crop_padding: usize,
    /// Training-time augmentation: flip each training image left to right with probability
    /// ½.
    #[arg(long)]
    pub flip: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub seeds: SeedArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// One model at one seed.
#[derive(Debug, Clone, Serialize)]
pub struct DepthRun {
    /// `plain32-none`, `resnet8-batch`, ...
    pub model: String,
    pub depth: usize,
    pub seed: u64,
    pub curve: Vec<CurvePoint>,
    pub ending: Ending,
    /// The stage inputs (first seed, deepest plain nets only; empty otherwise).
    pub layers: Vec<LayerDrift>,
    /// Santurkar et al.'s smoothness probes every `--every` steps (deepest plain nets, every
    /// seed; empty otherwise): [`smoothness`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeRecord>,
}

impl DepthRun {
    pub fn final_acc(&self) -> Option<f64> {
        self.curve.last().map(|p| p.test_acc)
    }
}

/// The three networks of a depth, in table order.
pub fn nets(depth: usize) -> [DeepNet; 3] {
    let net = |residual, norm| DeepNet {
        residual,
        depth,
        norm,
    };
    [
        net(false, NormKind::None),
        net(false, NormKind::Batch),
        net(true, NormKind::Batch),
    ]
}

/// Checks every option before anything is created or loaded.
fn check(args: &DepthArgs) -> Result<(), Error> {
    if args.depths.is_empty() {
        return Err(Error::Usage("--depths needs at least one depth".into()));
    }
    for (i, &d) in args.depths.iter().enumerate() {
        if blocks_per_stage(d).is_err() {
            return Err(Error::Usage(format!(
                "--depths {d} is not of the form 6n + 2 (8, 14, 20, 26, 32, ...)"
            )));
        }
        if args.depths[..i].contains(&d) {
            return Err(Error::Usage(format!("--depths lists {d} more than once")));
        }
    }
    steps::check_steps(args.steps, "--every", args.every)?;
    checks::learning_rate("--lr", args.lr)?;
    checks::momentum(Some(args.momentum), OptimizerChoice::Sgd)?;
    checks::at_least_one("--test-samples", args.test_samples as u64)?;
    // Augment's own rule, said in the option's terms.
    if augment(args).check(IMAGE_SIDE, IMAGE_SIDE).is_err() {
        return Err(Error::Usage(format!(
            "--crop-padding {} is larger than the {IMAGE_SIDE}×{IMAGE_SIDE} images; use at most \
             {IMAGE_SIDE} (He et al. pad 4 on 32×32)",
            args.crop_padding
        )));
    }
    args.seeds.check()?;
    let train = args.common.check()?;
    if args.batch_size < 2 {
        return Err(Error::Usage(format!(
            "--batch-size {} cannot train batch norm (one image per batch); use at least 2",
            args.batch_size
        )));
    }
    checks::one_batch(train, args.batch_size)
}

/// Runs `depth`; returns the signal that interrupted it, if one did.
pub fn run(mut args: DepthArgs) -> Result<Option<Signal>, Error> {
    args.common.train_samples = args.common.train_samples.or(Some(DEFAULT_TRAIN_SAMPLES));
    check(&args)?;
    let Some(mut session) = experiment::start("depth", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    session.data.test = first(session.data.test.clone(), args.test_samples)?;
    let probed = smoothness::probed_models(&args);
    let seeds = args.seeds.list();
    let plans: Vec<(u64, DeepNet)> = seeds
        .iter()
        .flat_map(|&s| {
            args.depths
                .iter()
                .flat_map(move |&d| nets(d).map(|n| (s, n)))
        })
        .collect();
    let mut runs = Vec::new();
    for (i, &(seed, net)) in plans.iter().enumerate() {
        eprintln!(
            "\n== {}/{}: {} seed {seed}, {} steps",
            i + 1,
            plans.len(),
            net.name(),
            args.steps
        );
        // The deepest plain nets: their stage inputs on the first seed, their smoothness on
        // every seed.
        let deepest_plain = probed.contains(&net.name());
        let watch = Watch {
            stage_inputs: deepest_plain && seed == seeds[0],
            smoothness: deepest_plain,
        };
        match train_one(&args, &session.data, net, seed, watch)? {
            Ok(r) => runs.push(r),
            Err(signal) => return Ok(Some(signal)),
        }
    }
    tables::write_results(&session.dir, &args, &runs)?;
    smoothness::write_csv(&session.dir, &args, &runs)?;
    let table = tables::final_table(&args, &runs);
    let smooth = smoothness::table(&args, &runs);
    println!("\nfinal test accuracy over seeds:\n{}", table.text());
    println!(
        "smoothness of the deepest plain nets (median over probes; median (min–max) over \
         seeds):\n{}",
        smooth.text()
    );
    let mut page = Page::new("depth: batch norm and shortcuts in deep networks");
    page.text(describe(&args));
    page.heading("Final test accuracy").table(table);
    page.figure(
        "the test error chart",
        chart::curves_chart(&session.dir, &args, &runs, chart::Measure::TestError),
    );
    page.figure(
        "the training loss chart",
        chart::curves_chart(&session.dir, &args, &runs, chart::Measure::TrainLoss),
    );
    page.heading("Smoothness of the deepest plain nets");
    page.text(smoothness_text(&args));
    page.table(smooth);
    page.heading("Stage inputs of the deepest plain nets");
    page.figure(
        "the stage input chart",
        chart::drift_chart(&session.dir, &args, &runs),
    );
    session.finish(page, &args)?;
    Ok(None)
}

/// The first `n` images of `split` (all of them if it holds fewer).
fn first(split: norma_datasets::Split, n: usize) -> Result<norma_datasets::Split, Error> {
    let len = split.len();
    if n >= len {
        return Ok(split);
    }
    Ok(split.split_tail(len - n)?.0)
}

/// What a run records besides its curve.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// The percentiles of the [`OBSERVED`] stage inputs every `--every` steps.
    stage_inputs: bool,
    /// The [`smoothness`] probes every `--every` steps.
    smoothness: bool,
}

/// Trains one network from `seed` (weights and batch order), recording what `watch` asks.
fn train_one(
    args: &DepthArgs,
    data: &Dataset,
    net: DeepNet,
    seed: u64,
    watch: Watch,
) -> Result<Result<DepthRun, Signal>, Error> {
    let mut model = net.build(&mut Rng::seed_from_u64(seed))?;
    let names: Vec<String> = OBSERVED.iter().map(|s| s.to_string()).collect();
    let stats = watch
        .stage_inputs
        .then(|| ActivationStats::attach(&mut model, &names, args.every))
        .transpose()?;
    let config = SgdConfig {
        lr: args.lr,
        momentum: args.momentum,
        ..SgdConfig::default()
    };
    let mut run = StepRun::with_optimizer(model, config, args.batch_size, seed, data)?
        .with_augment(augment(args));
    let label = format!("{} seed {seed}", net.name());
    let etas = smoothness::etas(args.lr);
    let mut probes = Vec::new();
    let hook_every = if watch.smoothness { args.every } else { 0 };
    let outcome = steps::train(
        &mut run,
        args.steps,
        args.every,
        &label,
        hook_every,
        |run, batch| {
            let p = probe::probe_model(&mut run.model, batch, &etas)?;
            probes.push(ProbeRecord::new(run.step, p));
            Ok(())
        },
    )?;
    let (curve, ending) = match outcome {
        Ok(done) => done,
        Err(signal) => return Ok(Err(signal)),
    };
    for p in &mut probes {
        p.train_loss = running_loss(&run.batch_losses, p.step);
    }
    run.model.clear_observers();
    let layers = stats.map_or_else(Vec::new, |s| LayerDrift::group(s.borrow().records()));
    Ok(Ok(DepthRun {
        model: net.name(),
        depth: net.depth,
        seed,
        curve,
        ending,
        layers,
        probes,
    }))
}

/// What the smoothness table shows, for the page.
fn smoothness_text(args: &DepthArgs) -> String {
    format!(
        "Santurkar et al.'s measures on the deepest plain nets, every seed: every {} steps, \
         before the step and on its batch, with batch norm in training mode, the loss \
         L(x − η·g) along the gradient g for η from {} to {} (¼ to 4 times the learning \
         rate), the loss range (max − min over η), the largest gradient change \
         ‖∇L(x) − ∇L(x − η·g)‖ and the effective β-smoothness (max ‖Δ∇L‖ / ‖η·g‖); 'train \
         loss' is the mean batch loss of the {} steps around each probe. Each run's median \
         over its probes, then median (min–max) over seeds. The probes put weights and \
         statistics back, so the trajectories are those without them. Smaller is smoother; a \
         net that does not learn has a flat landscape for that reason alone, so read the \
         measures with the training loss beside them.",
        args.every,
        fmt_lr(smoothness::etas(args.lr)[0]),
        fmt_lr(smoothness::etas(args.lr)[ETA_FACTORS.len() - 1]),
        WINDOW
    )
}

/// The training-time augmentation `args` ask for.
fn augment(args: &DepthArgs) -> Augment {
    Augment {
        crop_padding: args.crop_padding,
        horizontal_flip: args.flip,
    }
}

/// The page's opening paragraph.
fn describe(args: &DepthArgs) -> String {
    let augment = match (args.crop_padding, args.flip) {
        (0, false) => "no augmentation".to_string(),
        (0, true) => "training images flipped left to right at random".to_string(),
        (p, flip) => format!(
            "training images padded by {p} pixels and cropped back at random{}",
            if flip {
                ", and flipped left to right at random"
            } else {
                ""
            }
        ),
    };
    format!(
        "He et al.'s CIFAR-style networks on 1×28×28 images (widths 16, 32, 64; depth 6n + 2 \
         counts the convolutions and the classifier) at depths {}: plain without \
         normalization, plain with batch norm after every convolution, and the ResNet with \
         batch norm. ReLU, SGD at lr {} with momentum {}, batch {}, {} steps on {} training \
         images ({augment}), the same batches and initial draws per seed; seeds {}. Test \
         accuracy on the first {} test images every {} steps.",
        args.depths
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        fmt_lr(args.lr),
        args.momentum,
        args.batch_size,
        args.steps,
        args.common.train_samples.unwrap_or(DEFAULT_TRAIN_SAMPLES),
        seed_range(&args.seeds.list()),
        args.test_samples,
        args.every,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_has_a_plain_pair_and_a_resnet() {
        let names: Vec<String> = nets(20).iter().map(DeepNet::name).collect();
        assert_eq!(names, ["plain20-none", "plain20-batch", "resnet20-batch"]);
    }

    #[test]
    fn the_test_subset_is_the_first_images() {
        let data = crate::steps::tests::tiny_data(4, 10);
        let labels = data.test.labels().to_vec();
        let head = first(data.test, 3).unwrap();
        assert_eq!(head.labels(), &labels[..3]);
        let all = first(head, 5).unwrap();
        assert_eq!(all.len(), 3);
    }
}
