//! `cargo xtask bench`: samples per second of one full training step (forward, cross-entropy,
//! backward, SGD update) for each model, median over many steps after a warm-up, on a rotating
//! set of real Fashion-MNIST batches (the same protocol as PyTorch's timing in
//! `scripts/bench_vs_pytorch.py`, see docs/performance.md). `--net resnet20-batch` (any
//! [`DeepNet`]) times a deep network instead, with SGD and momentum as `depth` trains it.
//!
//! It also prints the process's peak resident memory while the steps ran (Linux's VmHWM, reset
//! once the batches are ready and the dataset they came from is freed), which the script
//! compares with what the same steps add to a PyTorch process.

use std::time::Instant;

use norma_datasets::Batch;
use norma_tensor::{Rng, Tensor};

use norma_layers::models::{DeepNet, ModelKind};
use norma_layers::Module;
use norma_optim::{Optimizer, Sgd, SgdConfig};

use crate::cli::choices::{ActivationChoice, Models};

use crate::cli::args::DataArgs;
use crate::cli::checks;
use crate::error::Error;
use crate::run::model_run::ModelRun;
use crate::run::setup;
use crate::run::spec::RunSpec;
use crate::run::step::forward_loss;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which model(s) to time.
    #[arg(long, value_parser = Models::parser(), default_value = "both")]
    pub model: Models,
    /// A deep network to time instead (`resnet20-batch`, `plain20-batch`, ...: 6n + 2 layers
    /// and a normalization), with SGD at --lr and momentum 0.9.
    #[arg(long, conflicts_with = "model")]
    pub net: Option<DeepNet>,
    /// Learning rate of --net (He et al.'s 0.1 at batch 128).
    #[arg(long, requires = "net", default_value_t = 0.1)]
    pub lr: f64,
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
    match args.net {
        // Batch norm needs 2 samples per batch; the others 1.
        Some(_) => checks::count_between(
            "--batch-size",
            args.batch_size as u64,
            2,
            checks::full_train_size() as u64,
        )?,
        None => checks::batch_size(
            args.batch_size,
            &args.model.models(),
            checks::full_train_size(),
        )?,
    }
    checks::learning_rate("--lr", args.lr)?;
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
        "{:<14} {:>12} {:>10} {:>10} {:>11}",
        "model", "median ms", "p10 ms", "p90 ms", "samples/s"
    );
    let peak_known = memory::reset_peak();
    // The steps run on a worker of rayon's pool, which takes part in every parallel loop, as
    // PyTorch's main thread does in its own: called from outside the pool, each of the ~40
    // parallel loops of a step would hand its work to the pool and put the caller to sleep
    // until it is done.
    match args.net {
        Some(net) => {
            let times = rayon::scope(|_| time_net(net, &args, &batches))?;
            print_times(&net.name(), args.batch_size, times);
        }
        None => {
            for model in args.model.models() {
                let times = rayon::scope(|_| time_steps(model, &args, &batches))?;
                print_times(model.name(), args.batch_size, times);
            }
        }
    }
    match memory::peak_mib().filter(|_| peak_known) {
        Some(mib) => println!("peak resident memory while stepping: {mib:.1} MiB"),
        None => println!("peak resident memory while stepping: unknown (no /proc on this system)"),
    }
    Ok(())
}

/// One line of the table: median, 10th and 90th percentile of `times` (ms), samples/s.
fn print_times(name: &str, batch_size: usize, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let median = at(0.5);
    println!(
        "{:<14} {:>12.3} {:>10.3} {:>10.3} {:>11.0}",
        name,
        median,
        at(0.1),
        at(0.9),
        batch_size as f64 / (median / 1e3)
    );
}

/// Wall time of each timed step of `net` (ms): the network from seed 0, SGD at `--lr` with
/// momentum 0.9, forward, mean cross-entropy, backward, update, on the fixed batches.
fn time_net(net: DeepNet, args: &BenchArgs, batches: &[Batch]) -> Result<Vec<f64>, Error> {
    let mut model = net.build(&mut Rng::seed_from_u64(0))?;
    let config = SgdConfig {
        lr: args.lr,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let mut optimizer = Sgd::new(model.parameters(), config)?;
    model.train();
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let batch = &batches[i % batches.len()];
        let start = Instant::now();
        let forward = forward_loss(&mut model, batch.images.clone(), &batch.labels)?;
        forward.loss.backward()?;
        optimizer.step()?;
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// The process's peak resident memory, from Linux's `/proc/self`.
mod memory {
    /// Resets the peak to the current resident size (`5` to `/proc/self/clear_refs`); false
    /// where that is not possible.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// VmHWM of `/proc/self/status`, in MiB.
    pub fn peak_mib() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
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
