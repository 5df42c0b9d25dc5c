//! `cargo xtask bench`: samples per second of one full training step (forward, cross-entropy,
//! backward, SGD update) for each model, median over many steps after a warm-up, on a rotating
//! set of real Fashion-MNIST batches (the same protocol as PyTorch's timing in
//! `scripts/bench_vs_pytorch.py`, see docs/performance.md).

use std::time::Instant;

use norma_datasets::Batch;
use norma_tensor::{Rng, Tensor};

use norma_layers::models::ModelKind;

use crate::cli::choices::{ActivationChoice, Models};

use crate::cli::args::DataArgs;
use crate::cli::checks;
use crate::error::Error;
use crate::run::model_run::ModelRun;
use crate::run::setup;
use crate::run::spec::RunSpec;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which model(s) to time.
    #[arg(long, value_parser = Models::parser(), default_value = "both")]
    pub model: Models,
    /// Samples per step, at most the training set (2 or more for lenet-bn).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Timed steps per model, 1 to 100000.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Untimed steps first, 0 to 100000.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Worker threads, at most 8 per core [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Time on random images instead of the dataset (none needed).
    #[arg(long)]
    pub synthetic: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// The largest `--steps` and `--warmup`.
const MAX_STEPS: u64 = 100_000;

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<(), Error> {
    checks::batch_size(
        args.batch_size,
        &args.model.models(),
        checks::full_train_size(),
    )?;
    // Bounded so that the times fit in memory and a run ends (100,000 LeNet steps: ~10 min).
    checks::at_least_one("--steps", args.steps as u64)?;
    checks::count_between("--steps", args.steps as u64, 1, MAX_STEPS)?;
    checks::count_between("--warmup", args.warmup as u64, 0, MAX_STEPS)?;
    let threads = setup::threads(args.threads)?;
    let batches = fixed_batches(&args)?;
    println!(
        "batch {}, {} timed steps after {} warm-up, {threads} threads",
        args.batch_size, args.steps, args.warmup
    );
    println!(
        "{:<9} {:>12} {:>10} {:>10} {:>11}",
        "model", "median ms", "p10 ms", "p90 ms", "samples/s"
    );
    for model in args.model.models() {
        // The steps run on a worker of rayon's pool, which takes part in every parallel loop,
        // as PyTorch's main thread does in its own: called from outside the pool, each of the
        // ~40 parallel loops of a step would hand its work to the pool and put the caller to
        // sleep until it is done.
        let mut times = rayon::scope(|_| time_steps(model, &args, &batches))?;
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let median = at(0.5);
        println!(
            "{:<9} {:>12.3} {:>10.3} {:>10.3} {:>11.0}",
            model.name(),
            median,
            at(0.1),
            at(0.9),
            args.batch_size as f64 / (median / 1e3)
        );
    }
    Ok(())
}

/// Wall time of each timed step of `kind` (ms), on the fixed batches.
fn time_steps(model: ModelKind, args: &BenchArgs, batches: &[Batch]) -> Result<Vec<f64>, Error> {
    let mut run = ModelRun::new(RunSpec {
        batch_size: args.batch_size,
        shuffle: false,
        precise_bn: 0,
        ..RunSpec::recipe(model, ActivationChoice::Sigmoid, 0, 1)
    })?;
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let batch = batches[i % batches.len()].clone();
        let start = Instant::now();
        run.step(batch)?;
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// 16 batches to rotate through: the first training images, or random ones.
fn fixed_batches(args: &BenchArgs) -> Result<Vec<Batch>, Error> {
    let count = 16;
    if args.synthetic {
        let mut rng = Rng::seed_from_u64(0);
        return Ok((0..count)
            .map(|_| Batch {
                images: Tensor::rand_uniform(&[args.batch_size, 1, 28, 28], 0.0, 1.0, &mut rng),
                labels: (0..args.batch_size).map(|_| rng.below(10)).collect(),
            })
            .collect());
    }
    let data = setup::load_data(args.data.dataset(), args.data.data_dir.as_deref(), None)?;
    Ok(data
        .train
        .eval_batches(args.batch_size)?
        .take(count)
        .collect())
}
