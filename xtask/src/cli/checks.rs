//! Checks of command-line values shared by the commands, each failing with one line that
//! names the flag and the value. They run before any data is loaded or anything is written.

use norma_layers::models::ModelKind;

use crate::cli::choices::{ActivationChoice, OptimizerChoice};
use crate::error::Error;
use crate::output::report::fmt_lr;
use norma_datasets::DataFile;

/// At most this many worker threads per available core. More only adds contention (results
/// never depend on the count), and creating tens of thousands of threads takes minutes.
pub const THREADS_PER_CORE: usize = 8;

/// The training set size of both datasets (validated when they load).
pub fn full_train_size() -> usize {
    DataFile::TrainImages.expected_count()
}

/// `--threads`: between 1 and [`THREADS_PER_CORE`] × the available cores.
pub fn threads(threads: Option<usize>) -> Result<(), Error> {
    match threads {
        Some(n) => thread_count("--threads", n),
        None => Ok(()),
    }
}

/// The environment variable rayon reads when no count is given.
pub const THREADS_ENV: &str = "RAYON_NUM_THREADS";

/// The thread count `RAYON_NUM_THREADS` asks for, checked like `--threads` (one rule whatever
/// sets the count): `None` when unset, empty or 0 (rayon's "one per core").
pub fn threads_from_env() -> Result<Option<usize>, Error> {
    let Some(value) = std::env::var_os(THREADS_ENV) else {
        return Ok(None);
    };
    let text = value.to_str().map(str::trim).unwrap_or("\u{fffd}");
    if text.is_empty() {
        return Ok(None);
    }
    let n: usize = text.parse().map_err(|_| {
        Error::Usage(format!(
            "{THREADS_ENV} must be a whole number of threads, got '{}'",
            value.to_string_lossy()
        ))
    })?;
    if n == 0 {
        return Ok(None);
    }
    thread_count(THREADS_ENV, n)?;
    Ok(Some(n))
}

fn thread_count(flag: &str, n: usize) -> Result<(), Error> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max = THREADS_PER_CORE * cores;
    if n == 0 || n > max {
        return Err(Error::Usage(format!(
            "{flag} must be between 1 and {max} ({THREADS_PER_CORE} per core, {cores} cores here), got {n}"
        )));
    }
    Ok(())
}

/// A learning rate given by `flag`: positive and finite as an f32 (the parameters' type), so
/// that it neither overflows to infinity nor rounds to zero.
pub fn learning_rate(flag: &str, lr: f64) -> Result<(), Error> {
    let min = f64::from(f32::MIN_POSITIVE);
    let max = f64::from(f32::MAX);
    if !(min..=max).contains(&lr) {
        return Err(Error::Usage(format!(
            "{flag} must be a positive number that f32 parameters can hold ({min:.1e} to {max:.1e}), got {}",
            fmt_lr(lr)
        )));
    }
    Ok(())
}

/// `--activations` (given as `flag`): each activation once.
pub fn distinct_activations(flag: &str, activations: &[ActivationChoice]) -> Result<(), Error> {
    for (i, a) in activations.iter().enumerate() {
        if activations[..i].contains(a) {
            return Err(Error::Usage(format!(
                "{flag} lists {} more than once",
                a.activation().name()
            )));
        }
    }
    Ok(())
}

/// `--lrs` (given as `flag`): every value a [`learning_rate`], each once — training runs in
/// f32, so two values with one f32 are one rate.
pub fn distinct_learning_rates(flag: &str, lrs: &[f64]) -> Result<(), Error> {
    for (i, &lr) in lrs.iter().enumerate() {
        learning_rate(&format!("every {flag} value"), lr)?;
        if let Some(&same) = lrs[..i].iter().find(|&&l| l as f32 == lr as f32) {
            let also = if same == lr {
                String::new()
            } else {
                format!(" ({} and {} are the same f32)", fmt_lr(same), fmt_lr(lr))
            };
            return Err(Error::Usage(format!(
                "{flag} lists {} more than once{also}; give each learning rate once (--seeds sets the repeats)",
                fmt_lr(lr)
            )));
        }
    }
    Ok(())
}

/// `--momentum`: SGD only, in [0, 1) also after rounding to f32.
pub fn momentum(momentum: Option<f64>, optimizer: OptimizerChoice) -> Result<(), Error> {
    let Some(m) = momentum else { return Ok(()) };
    if optimizer != OptimizerChoice::Sgd {
        return Err(Error::Usage(
            "--momentum applies to --optimizer sgd only (Adam keeps its own moment estimates)"
                .into(),
        ));
    }
    if !((0.0..1.0).contains(&m) && (m as f32) < 1.0) {
        return Err(Error::Usage(format!(
            "--momentum must be in [0, 1), got {m}"
        )));
    }
    Ok(())
}

/// `--train-samples`: between 2 and the training set size; returns the training set size
/// that will be used.
pub fn train_samples(train_samples: Option<usize>) -> Result<usize, Error> {
    let full = full_train_size();
    match train_samples {
        None => Ok(full),
        Some(n) if (2..=full).contains(&n) => Ok(n),
        Some(n) => Err(Error::Usage(format!(
            "--train-samples must be between 2 and {full}, got {n}"
        ))),
    }
}

/// `--batch-size` for training `models` on `train_len` images: at least 1, at least 2 with batch
/// norm (one value per channel has no variance), and at most the training set.
pub fn batch_size(batch: usize, models: &[ModelKind], train_len: usize) -> Result<(), Error> {
    if batch == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if batch == 1 {
        if let Some(bn) = models.iter().find(|m| m.has_batch_norm()) {
            return Err(Error::Usage(format!(
                "--batch-size 1 cannot train batch norm ({}: one value per channel has no variance); use 2 or more, or --model lenet",
                bn.name()
            )));
        }
    }
    if batch > train_len {
        return Err(Error::Usage(format!(
            "--batch-size {batch} is larger than the training set ({train_len} images); use at most {train_len}"
        )));
    }
    Ok(())
}

/// `--train-samples` for commands that train with a fixed batch: at least one batch.
pub fn one_batch(train_len: usize, batch: usize) -> Result<(), Error> {
    if train_len < batch {
        return Err(Error::Usage(format!(
            "--train-samples {train_len} is smaller than a batch ({batch} images); use at least {batch}"
        )));
    }
    Ok(())
}

/// A count given by `flag` that must be at least 1.
pub fn at_least_one(flag: &str, value: u64) -> Result<(), Error> {
    if value == 0 {
        return Err(Error::Usage(format!("{flag} must be at least 1")));
    }
    Ok(())
}

/// A count given by `flag`: from `min` to `max` (the bound its `--help` states).
pub fn count_between(flag: &str, value: u64, min: u64, max: u64) -> Result<(), Error> {
    if !(min..=max).contains(&value) {
        return Err(Error::Usage(format!(
            "{flag} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rates_must_fit_f32() {
        for ok in [1e-30, 0.1, 10.0, 3e38] {
            learning_rate("--lr", ok).unwrap();
        }
        for bad in [0.0, -1.0, 1e39, 1e-46, f64::NAN, f64::INFINITY] {
            let err = learning_rate("--lr", bad).unwrap_err().to_string();
            assert!(err.starts_with("--lr must be a positive number"), "{err}");
        }
    }

    #[test]
    fn batch_sizes_fit_the_models_and_the_data() {
        use ModelKind::{Lenet, LenetBn, LenetGn};
        batch_size(1, &[Lenet, LenetGn], 100).unwrap();
        batch_size(1, &[Lenet], 100).unwrap();
        batch_size(100, &[Lenet, LenetBn], 100).unwrap();
        let err = |b, k: &[ModelKind]| batch_size(b, k, 100).unwrap_err().to_string();
        assert!(err(1, &[Lenet, LenetBn]).contains("lenet-bn"));
        assert!(err(0, &[Lenet]).contains("at least 1"));
        assert!(err(101, &[Lenet])
            .contains("--batch-size 101 is larger than the training set (100 images)"));
    }

    #[test]
    fn momentum_is_for_sgd_and_below_one_in_f32() {
        momentum(Some(0.9), OptimizerChoice::Sgd).unwrap();
        momentum(None, OptimizerChoice::Adam).unwrap();
        assert!(momentum(Some(0.9), OptimizerChoice::Adam).is_err());
        assert!(momentum(Some(0.999_999_999_9), OptimizerChoice::Sgd).is_err());
        assert!(momentum(Some(-0.1), OptimizerChoice::Sgd).is_err());
    }

    #[test]
    fn threads_are_bounded() {
        threads(Some(1)).unwrap();
        threads(None).unwrap();
        assert!(threads(Some(0)).is_err());
        let err = threads(Some(10_000)).unwrap_err().to_string();
        assert!(err.contains("--threads must be between 1 and"), "{err}");
    }
}
