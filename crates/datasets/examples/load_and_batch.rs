//! Loads Fashion-MNIST with `norma-datasets` alone and walks a few shuffled training batches.
//!
//! ```sh
//! # Looks in NORMA_DATA_DIR, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist, then
//! # downloads into ./data/fashion-mnist:
//! cargo run --release -p norma-datasets --example load_and_batch
//! # Only the directory given (it must hold the four files, .gz or extracted):
//! cargo run --release -p norma-datasets --example load_and_batch -- /path/to/fashion-mnist
//! ```
//!
//! When the data cannot be found, it prints one line saying where it looked and how to get
//! the data, and exits with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use norma_datasets::{DatasetError, FashionMnist};

/// Samples per training batch (d2l.ai's LeNet setting).
const BATCH_SIZE: usize = 256;
/// Training batches printed.
const SHOWN_BATCHES: usize = 3;
/// Labels printed per batch.
const SHOWN_LABELS: usize = 6;

fn main() -> ExitCode {
    let arg = std::env::args_os().nth(1);
    if arg.as_ref().is_some_and(|a| a == "-h" || a == "--help") {
        println!("usage: load_and_batch [DATA_DIR]");
        return ExitCode::SUCCESS;
    }
    match run(arg.map(PathBuf::from)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(data_dir: Option<PathBuf>) -> Result<(), DatasetError> {
    // Hold out the last 5,000 training images for validation.
    let data = FashionMnist::options()
        .data_dir(data_dir)
        .validation(5_000)
        .load()?;
    println!("Fashion-MNIST from {}", data.location);
    println!(
        "train {:?}, validation {:?}, test {:?}",
        data.train.images().shape(),
        data.validation.as_ref().map(|v| v.images().shape()),
        data.test.images().shape()
    );

    // One seed per epoch gives a new order each epoch, the same on every run and machine.
    let epoch = 0;
    let batches = data.train.train_batches(BATCH_SIZE, epoch)?;
    println!(
        "epoch {epoch}: {} shuffled batches of {BATCH_SIZE}",
        batches.len()
    );
    for (i, batch) in batches.take(SHOWN_BATCHES).enumerate() {
        let first = &batch.labels[..batch.len().min(SHOWN_LABELS)];
        let names: Vec<&str> = first.iter().map(|&l| data.class_names()[l]).collect();
        println!(
            "  batch {i}: images {:?}, labels {first:?}... ({}, ...)",
            batch.images.shape(),
            names.join(", ")
        );
    }
    Ok(())
}
