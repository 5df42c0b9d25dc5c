//! `cargo xtask <command>`: norma's experiments.
//!
//! - `train-lenet`: LeNet vs LeNet-BN on Fashion-MNIST (the brief's experiment)
//! - `lr-sweep`: final test accuracy of both models across learning rates and seeds
//! - `eval`: accuracy, per-class accuracy and confusion matrix of saved weights
//! - `bench`: training throughput of a full step, both models
//!
//! Errors are one line on stderr and a non-zero exit status; nothing panics on user input.

mod bench;
mod common;
mod eval;
mod plot;
mod report;
mod sweep;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Everything that can stop a command, each with the input it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or combination of arguments.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Data(#[from] norma_datasets::DatasetError),
    #[error(transparent)]
    Layer(#[from] norma_layers::LayerError),
    #[error(transparent)]
    Autograd(#[from] norma_autograd::AutogradError),
    #[error(transparent)]
    Optim(#[from] norma_optim::OptimError),
    #[error(transparent)]
    Checkpoint(#[from] norma_layers::checkpoint::CheckpointError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plot: {0}")]
    Plot(String),
}

impl From<norma_tensor::TensorError> for Error {
    fn from(e: norma_tensor::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

#[derive(Parser)]
#[command(name = "cargo xtask", about = "norma's experiments", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train LeNet and LeNet-BN on Fashion-MNIST and compare them (the brief's experiment).
    TrainLenet(train::TrainArgs),
    /// Final test accuracy of both models over a range of learning rates and seeds.
    LrSweep(sweep::SweepArgs),
    /// Test accuracy, per-class accuracy and confusion matrix of saved weights.
    Eval(eval::EvalArgs),
    /// Training throughput (samples/s) of a full step for both models.
    Bench(bench::BenchArgs),
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

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match Cli::try_parse() {
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
    let result = match cli.command {
        Command::TrainLenet(args) => train::run(args),
        Command::LrSweep(args) => sweep::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The current UTC time as `YYYYMMDD-HHMMSS`, for default output folders.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
