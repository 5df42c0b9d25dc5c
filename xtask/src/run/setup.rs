//! Process-wide setup every command does before working: the thread pool and the dataset.

use std::path::Path;

use norma_datasets::{Dataset, LoadOptions};

use crate::cli::checks;
use crate::cli::choices::DatasetChoice;
use crate::error::Error;

/// Sizes the global rayon pool (`None`: one thread per core) and returns the thread count.
/// Every kernel splits its work independently of this number, so results do not depend on it.
pub fn threads(threads: Option<usize>) -> Result<usize, Error> {
    checks::threads(threads)?;
    // --threads, else RAYON_NUM_THREADS (checked by the same rule), else one per core.
    if let Some(n) = threads.or(checks::threads_from_env()?) {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(rayon::current_num_threads())
}

/// Loads the dataset (see norma-datasets for where it looks), optionally keeping only the first
/// `train_samples` training images (checked with [`checks::train_samples`] beforehand), and
/// says where it was found.
pub fn load_data(
    dataset: DatasetChoice,
    data_dir: Option<&Path>,
    train_samples: Option<usize>,
) -> Result<Dataset, Error> {
    load_data_reporting(dataset, data_dir, train_samples, true)
}

/// [`load_data`], saying where the data was found only if `report` (the other processes of a
/// data-parallel job load quietly).
pub fn load_data_reporting(
    dataset: DatasetChoice,
    data_dir: Option<&Path>,
    train_samples: Option<usize>,
    report: bool,
) -> Result<Dataset, Error> {
    checks::train_samples(train_samples)?;
    let mut data = LoadOptions::new(dataset.kind())
        .data_dir(data_dir.map(Path::to_path_buf))
        .load()?;
    if report {
        eprintln!(
            "{}: {} training and {} test images from {} ({})",
            dataset.kind().display_name(),
            data.train.len(),
            data.test.len(),
            data.location.dir.display(),
            data.location.origin
        );
    }
    if let Some(n) = train_samples {
        let drop = data.train.len().saturating_sub(n);
        if drop > 0 {
            let (head, _) = data.train.split_tail(drop)?;
            data.train = head;
        }
    }
    Ok(data)
}
