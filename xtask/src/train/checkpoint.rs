//! Resumable checkpoints: `checkpoint/<model>/` in the run folder holds the model's weights
//! and buffers (`model.safetensors`), the optimizer state (`optimizer.safetensors`) and the
//! [`Progress`] (`progress.json`), which must always belong together.
//!
//! A new checkpoint is written complete into `<model>.new/` (progress last), then swapped in:
//! the old folder is renamed to `<model>.old/`, the new one to `<model>/`, and the old one is
//! removed. If the process dies between the two renames, `<model>/` is missing and `<model>.new/`
//! is complete, and [`load`] takes it from there: no moment exists at which the run has no
//! valid checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use norma_layers::checkpoint as weights;
use norma_optim::OptimizerState;

use crate::error::Error;
use crate::output::files::{self, io_error};
use crate::output::report::Status;
use crate::run::data_parallel;
use crate::run::model_run::ModelRun;
use crate::train::progress::Progress;

const PROGRESS: &str = "progress.json";
const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";

/// The checkpoint folder of model `name` in run folder `run_dir`.
pub fn dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("checkpoint").join(name)
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// The folder holding the current checkpoint in `dir`, if any (see the module docs).
fn current(dir: &Path) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    let fresh = sibling(dir, ".new");
    fresh.join(PROGRESS).is_file().then_some(fresh)
}

/// Whether a checkpoint exists in `dir`.
pub fn exists(dir: &Path) -> bool {
    current(dir).is_some()
}

/// The model's state dict as safetensors bytes (the format of `<model>.safetensors`).
pub fn model_bytes(run: &ModelRun) -> Result<Vec<u8>, Error> {
    crate::run::model_run::state_bytes(&run.model)
}

/// Writes weights, optimizer state and progress into `dir`, replacing the previous
/// checkpoint only once the new one is complete.
pub fn save(dir: &Path, run: &ModelRun, progress: &Progress) -> Result<(), Error> {
    let fresh = sibling(dir, ".new");
    let old = sibling(dir, ".old");
    // Leftovers of a save that was cut short; the checkpoint in `dir` (or a complete
    // `.new` when `dir` is missing) is taken over first so that nothing valid is deleted.
    if !dir.is_dir() && fresh.join(PROGRESS).is_file() {
        fs::rename(&fresh, dir).map_err(io_error(dir))?;
    }
    let _ = fs::remove_dir_all(&fresh);
    let _ = fs::remove_dir_all(&old);
    fs::create_dir_all(&fresh).map_err(io_error(&fresh))?;
    files::write_atomic(&fresh.join(MODEL), &model_bytes(run)?)?;
    files::write_atomic(&fresh.join(OPTIMIZER), &optimizer_bytes(run)?)?;
    files::write_json(&fresh.join(PROGRESS), progress)?;
    if dir.is_dir() {
        fs::rename(dir, &old).map_err(io_error(dir))?;
    }
    fs::rename(&fresh, dir).map_err(io_error(dir))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Restores model, optimizer and progress from the checkpoint in `dir`; a missing or broken
/// checkpoint is an error naming the file. A diverged model is finished for good: only its
/// progress is read, since its weights may hold the non-finite values it diverged to.
pub fn load(dir: &Path, run: &mut ModelRun) -> Result<Progress, Error> {
    let Some(from) = current(dir) else {
        return Err(Error::Usage(format!(
            "no checkpoint in {} (the run cannot be continued; start a new one)",
            dir.display()
        )));
    };
    let progress: Progress = files::read_json(&from.join(PROGRESS))?;
    if progress.record.model != run.spec.model.name() {
        return Err(Error::Usage(format!(
            "{}: holds model {}, not {}",
            from.join(PROGRESS).display(),
            progress.record.model,
            run.spec.model.name()
        )));
    }
    if matches!(progress.record.status, Status::Diverged { .. }) {
        return Ok(progress);
    }
    weights::load(&run.model, &from.join(MODEL))?;
    let opt_path = from.join(OPTIMIZER);
    // Adam keeps two tensors per parameter and a step count: three times the model's own
    // checkpoint bound covers every optimizer's state.
    let limit = 3 * weights::max_file_len(&weights::state_dict(&run.model));
    let bytes = files::read_limited(&opt_path, limit)?;
    load_optimizer(run, &bytes, &opt_path)?;
    Ok(progress)
}

/// The optimizer state as safetensors bytes (the format of `optimizer.safetensors`).
fn optimizer_bytes(run: &ModelRun) -> Result<Vec<u8>, Error> {
    let state = run.optimizer.state();
    state.to_bytes().map_err(|e| Error::Optim(e.into()))
}

/// Restores the optimizer state from `bytes` (`opt_path` names them in errors).
fn load_optimizer(run: &mut ModelRun, bytes: &[u8], opt_path: &Path) -> Result<(), Error> {
    let state = OptimizerState::from_bytes(bytes)
        .map_err(|e| Error::Usage(format!("{}: {e}", opt_path.display())))?;
    run.optimizer
        .load_state(&state)
        .map_err(|e| Error::Usage(format!("{}: {e}", opt_path.display())))
}

/// A model's whole training state — weights and buffers, optimizer state, progress — as one
/// byte string: what process 0 of a data-parallel job sends the others at the start.
pub fn state_blob(run: &ModelRun, progress: &Progress) -> Result<Vec<u8>, Error> {
    let progress = serde_json::to_vec(progress)
        .map_err(|e| Error::Usage(format!("the progress of {}: {e}", run.spec.model.name())))?;
    Ok(data_parallel::pack(&[
        &model_bytes(run)?,
        &optimizer_bytes(run)?,
        &progress,
    ]))
}

/// Restores what [`state_blob`] made into `run`; returns the progress.
pub fn load_blob(run: &mut ModelRun, blob: &[u8]) -> Result<Progress, Error> {
    let what = Path::new("the state sent by process 0");
    let [model, optimizer, progress] = <[Vec<u8>; 3]>::try_from(data_parallel::unpack(blob)?)
        .map_err(|_| Error::Usage(format!("{}: not 3 parts", what.display())))?;
    weights::load_bytes(&run.model, &model, what)?;
    load_optimizer(run, &optimizer, what)?;
    serde_json::from_slice(&progress).map_err(|e| Error::Usage(format!("{}: {e}", what.display())))
}
