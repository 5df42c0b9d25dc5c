//! Process-wide setup every command does before working: the thread pool and the dataset
//! (and, for runs that tune on held-out data, the validation split evaluated in place of the
//! test set).

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

/// `data` for a run that is tuned without the test set: the last `count` training images (of
/// those in use, after `--train-samples`) are held out as a validation split and become the
/// split every evaluation reads, in place of the test set, which is dropped so that nothing
/// downstream can measure on it. The training set keeps the images before them (the same as
/// norma-datasets' `validation(count)` on the full set).
pub fn evaluate_on_validation(mut data: Dataset, count: usize) -> Result<Dataset, Error> {
    check_validation(count, data.train.len())?;
    let (train, validation) = data.train.split_tail(count)?;
    data.train = train;
    data.test = validation;
    data.validation = None;
    Ok(data)
}

/// Checks that a validation split of `count` images leaves training images out of
/// `train_len`.
pub fn check_validation(count: usize, train_len: usize) -> Result<(), Error> {
    checks::at_least_one("--validation", count as u64)?;
    if count >= train_len {
        return Err(Error::Usage(format!(
            "--validation {count} leaves no training image ({train_len} in all); hold out fewer"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::tiny_data;

    #[test]
    fn the_validation_split_is_the_tail_of_the_training_set_and_replaces_the_test_set() {
        let data = tiny_data(50, 30);
        let train_labels = data.train.labels().to_vec();
        let held = evaluate_on_validation(data.clone(), 12).unwrap();
        assert_eq!(held.train.len(), 38);
        assert_eq!(held.train.labels(), &train_labels[..38]);
        // Evaluation reads the last 12 training images; the test set is gone.
        assert_eq!(held.test.len(), 12);
        assert_eq!(held.test.labels(), &train_labels[38..]);
        assert_eq!(
            held.test.images().as_slice(),
            &data.train.images().as_slice()[38 * 784..]
        );
        assert!(held.validation.is_none());
        for bad in [0, 50, 51] {
            assert!(evaluate_on_validation(data.clone(), bad).is_err(), "{bad}");
        }
    }
}
