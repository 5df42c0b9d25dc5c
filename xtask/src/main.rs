//! `cargo xtask <command>`: norma's experiments.
//!
//! - `train-lenet`: LeNet vs LeNet-BN on Fashion-MNIST (the brief's experiment)
//! - `lr-sweep`: final test accuracy of both models across learning rates and seeds
//! - `eval`: accuracy, per-class accuracy and confusion matrix of saved weights
//! - `placement`: LeNet-BN with batch norm before or after the activations
//! - `affine`: LeNet-BN with and without batch norm's learnable γ and β
//! - `eval-mode`: what happens when a trained LeNet-BN predicts in training mode
//! - `batch-size`: test accuracy against batch size with no, batch, group and layer norm
//! - `drift`: how the distribution of a layer's input moves during training, with and
//!   without batch norm (Ioffe & Szegedy's Figure 1)
//! - `smoothness`: how smooth the loss is along the gradient, with and without batch norm, and
//!   "noisy" batch norm (Santurkar et al. 2018)
//! - `depth`: plain nets and ResNets of depth 8 to 32 with and without batch norm
//! - `bench`: training throughput of a full step, both models
//!
//! The experiments (`train/`, `sweep`, `placement/`, `affine/`, `eval_mode/`, `batch_size/`, `drift/`,
//! `smoothness/`, `depth/`, `eval`, `bench`, and what several share: [`experiment`], [`steps`]) stand on
//! three floors, each importing only those below it: [`run`] (one model's training run, its
//! step alone or data-parallel), [`cli`] (arguments, choices, checks, signals) and [`output`]
//! (run folder, files, HTML, plots, tables, records).
//!
//! Errors are one line on stderr and exit status 1 (2 for unparsable arguments); nothing
//! panics on user input. A training command stopped by SIGINT or SIGTERM exits with 130 or 143
//! after saving its checkpoints (see [`cli::signals`]).

mod affine;
mod batch_size;
mod bench;
mod cli;
mod depth;
mod drift;
mod error;
mod eval;
mod eval_mode;
mod experiment;
mod output;
mod placement;
mod reproduce;
mod run;
mod smoothness;
mod steps;
mod sweep;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use error::Error;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "norma's experiments", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train LeNet and LeNet-BN on Fashion-MNIST and compare them (the brief's experiment).
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step, saves a checkpoint, prints the
    /// --resume command and exits with status 130 (SIGINT) or 143 (SIGTERM); a second signal
    /// quits at once. A batch loss that is not finite or above 100 stops a model as diverged.
    TrainLenet(train::TrainArgs),
    /// Final test accuracy of both models over a range of learning rates and seeds.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; the runs finished so far stay in the sweep folder.
    LrSweep(sweep::SweepArgs),
    /// Test accuracy, per-class accuracy and confusion matrix of saved weights.
    Eval(eval::EvalArgs),
    /// LeNet-BN with batch norm before vs after the activations (sigmoid and ReLU): final and
    /// per-epoch test accuracy over seeds.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; the runs finished so far stay in the output folder.
    Placement(placement::PlacementArgs),
    /// LeNet-BN with its batch norms' learnable γ and β and without them (affine=False), with
    /// sigmoid and ReLU: final and per-epoch test accuracy over seeds, and the learned γ and β.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; the runs finished so far stay in the output folder.
    Affine(affine::AffineArgs),
    /// The brief's train/eval warning: a trained LeNet-BN predicting the test set in eval mode
    /// and in training mode with test batches of 1 to 1000 images, and how often an image's
    /// class changes with the other images in its batch.
    EvalMode(eval_mode::EvalModeArgs),
    /// Test accuracy against batch size (1 to 256) for LeNet with no, batch, group and layer
    /// norm, trained on the same samples with a learning rate scaled from batch 256.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; the runs finished so far stay in the output folder.
    BatchSize(batch_size::BatchSizeArgs),
    /// Internal covariate shift measured (Ioffe & Szegedy's Figure 1): the sigmoid MLP with and
    /// without batch norm, and LeNet/LeNet-BN, with the percentiles of the activations' inputs
    /// over training.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; nothing but config.json is written.
    Drift(drift::DriftArgs),
    /// Loss-landscape smoothness along the training trajectory of LeNet and LeNet-BN (Santurkar
    /// et al. 2018, Figure 4), and the test accuracy of "noisy" batch norm.
    ///
    /// Ctrl-C (SIGINT) or SIGTERM stops after the current step and exits with status 130 or
    /// 143; nothing but config.json is written.
    Smoothness(smoothness::SmoothnessArgs),
    /// Batch norm at depth: plain nets of depth 8, 20 and 32 without and with batch norm and
    /// the ResNets with it, SGD with momentum, 3 seeds; test error and training loss against
    /// steps, and the stage inputs of the deepest plain nets.
    ///
    /// The default (120 steps of batch 64 on 10,000 training images, 1,000 test images, 3
    /// seeds) takes about 12 minutes on 2 cores; a full-data run of 10 epochs (9,370 steps,
    /// the whole test set every epoch) about 13 hours. Ctrl-C (SIGINT) or SIGTERM
    /// stops after the current step and exits with status 130 or 143; nothing but config.json
    /// is written.
    Depth(depth::DepthArgs),
    /// Training throughput (samples/s) of a full step for both models.
    Bench(bench::BenchArgs),
    /// Every experiment behind docs/experiments.md with the documented budgets and seeds, then
    /// the document itself from its template and those results (docs/experiments.template.md).
    ///
    /// Prints progress and the time left; Ctrl-C (SIGINT) or SIGTERM stops the job in progress
    /// and exits with status 130 or 143, and --resume skips the jobs that finished. --quick
    /// runs the same pipeline on tiny budgets; --only runs some sections.
    Reproduce(reproduce::ReproduceArgs),
}

/// Keeps freed tensor memory in the process for the next step instead of returning it to the
/// kernel: glibc would otherwise mmap each large tensor afresh and page-fault it in, about a
/// tenth of a training step.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Lets a closed stdout (`cargo xtask eval | head`) end the process quietly, as it does for
/// other command-line tools, instead of panicking in `println!`.
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    quiet_broken_pipe();
    let args = match cli::command_line::utf8_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    // RAYON_NUM_THREADS sets the thread count where --threads does not: the same bound holds.
    if let Err(e) = cli::checks::threads_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if !matches!(cli.command, Command::TrainLenet(_)) {
        if let Some(size) = norma_distributed::launcher_size().filter(|&k| k > 1) {
            eprintln!(
                "error: only train-lenet runs data-parallel; start this command without mpirun \
                 (it was started as one of {size} processes)"
            );
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::TrainLenet(args) => train::run(args),
        Command::LrSweep(args) => sweep::run(args),
        Command::Eval(args) => eval::run(args).map(|()| None),
        Command::Placement(args) => placement::run(args),
        Command::Affine(args) => affine::run(args),
        Command::EvalMode(args) => eval_mode::run(args),
        Command::BatchSize(args) => batch_size::run(args),
        Command::Drift(args) => drift::run(args),
        Command::Smoothness(args) => smoothness::run(args),
        Command::Depth(args) => depth::run(args),
        Command::Bench(args) => bench::run(args).map(|()| None),
        Command::Reproduce(args) => reproduce::run(args),
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(signal)) => ExitCode::from(signal.exit_code()),
        // Process 0 of the data-parallel job has said why.
        Err(Error::StoppedByRoot | Error::Reported(_)) => ExitCode::FAILURE,
        Err(e @ Error::Stopped(signal)) => {
            eprintln!("{e}");
            ExitCode::from(signal.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_defaults_to_the_documented_run() {
        let Command::BatchSize(a) = parse(&["batch-size"]) else {
            unreachable!()
        };
        assert_eq!(a.batch_sizes, batch_size::DEFAULT_BATCH_SIZES);
        assert_eq!(a.norms, norma_layers::models::ModelKind::ALL);
        assert_eq!(a.ghost_batch, norma_layers::models::DEFAULT_GHOST_BATCH);
        assert_eq!((a.fine_tune_batch, a.fine_tune_epochs), (2, 1));
        assert_eq!(a.common.train_samples, None);
        assert_eq!(a.epochs, batch_size::DEFAULT_EPOCHS);
        let Command::BatchSize(a) = parse(&["batch-size", "--batch-sizes", "2,4", "8"]) else {
            unreachable!()
        };
        assert_eq!(a.batch_sizes, [2, 4, 8]);
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn each_experiment_has_its_own_default_number_of_seeds() {
        match parse(&["placement"]) {
            Command::Placement(a) => assert_eq!(a.seeds.list(), [0]),
            _ => unreachable!(),
        }
        match parse(&["affine"]) {
            Command::Affine(a) => assert_eq!(a.seeds.list(), [0, 1, 2]),
            _ => unreachable!(),
        }
        match parse(&["lr-sweep"]) {
            Command::LrSweep(a) => assert_eq!(a.seeds.list(), [0, 1, 2]),
            _ => unreachable!(),
        }
        match parse(&["batch-size"]) {
            Command::BatchSize(a) => assert_eq!(a.seeds.list(), [0]),
            _ => unreachable!(),
        }
        match parse(&["placement", "--seed", "4", "--seeds", "2"]) {
            Command::Placement(a) => assert_eq!(a.seeds.list(), [4, 5]),
            _ => unreachable!(),
        }
    }
}
