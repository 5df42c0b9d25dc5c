//! Data-parallel `train-lenet` over MPI (see docs/distributed.md for how to run it).
//!
//! Started by `mpirun -np K` from a build with the cargo feature `mpi`, K copies of xtask form
//! one job ([`communicator`]); started without mpirun, an MPI build is a job of one process, and
//! a build without the feature always is (then `--bn` is an error naming the feature).
//!
//! How a job of K processes trains (norma-distributed's data-parallel conventions):
//!
//! - **Start.** Process 0 alone reads and writes files: it checks the options, claims the run
//!   folder (or reads `--resume`'s checkpoints, or the `--init` file) and sends the
//!   configuration, then every model's weights, buffers, optimizer state and progress to the
//!   others ([`broadcast_blob`]), which start from exactly that state. So `--init` and the run
//!   folder need to exist on process 0's machine only; the dataset is loaded by every process
//!   (the same files on every machine).
//! - **A step.** `--batch-size` is the global batch N: every process draws the same batches in
//!   the seed's order and takes its contiguous shard (`norma_distributed::shard`: n_r samples,
//!   the first N mod K processes one more). Process r back-propagates (n_r/N)·L_r, L_r the mean
//!   loss over its shard; the parameter gradients, flattened into one buffer together with the
//!   weighted loss, the correct count and a stop flag, are summed in **one** all-reduce
//!   ([`Replica`]). The sum is the gradient of the
//!   global batch's mean loss, on every process bit for bit, so every process takes the same
//!   optimizer step and the replicas never drift apart (checked at the end of every run).
//! - **Batch norm.** `--bn sync` (the default) makes every batch norm synchronized
//!   (`norma_layers::convert_sync_batch_norm`): statistics over the global batch, which makes
//!   K processes train as one process does on the same batches. `--bn local` keeps per-process
//!   statistics (each shard is normalized with its own, as plain data parallelism does), which
//!   changes the training; the running statistics then differ between processes and those of
//!   process 0 are the ones evaluated and saved.
//! - **Evaluation** (test accuracy, precise BN statistics) runs on process 0 alone, on a plain
//!   copy of the model (no synchronized layer, so nothing waits for the others): the same
//!   computation as in a single-process run. The other processes go on to the next step and
//!   wait there.
//! - **Output.** Only process 0 prints, and writes metrics, plots, report, weights and
//!   checkpoints. `--resume` works as for one process; a run trained with `--bn local` must be
//!   resumed with the same process count (its statistics depend on it), a synchronized one
//!   with any.
//! - **Faults.** Once the job has started, an error on any process aborts the whole job
//!   (`Communicator::abort`: the message names the process, and mpirun ends the others within
//!   seconds); a panic does the same, and a killed process makes mpirun end the job. A signal
//!   (SIGINT, SIGTERM) seen by any process stops every process after the same step (it rides
//!   in the gradient all-reduce), with a checkpoint.

use std::rc::Rc;

use crate::cli::choices::BnChoice;
use norma_datasets::{Batch, LastBatch};
use norma_distributed::{CommError, Communicator, SingleProcess};
use norma_layers::{Module, Sequential};
use norma_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::run::divergence;
use crate::run::step::{Forward, Strategy};

/// How a run is spread over processes (`data_parallel` in `config.json`; absent for one
/// process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataParallel {
    pub processes: usize,
    pub bn: BnChoice,
}

/// The communicator of this process's job: MPI's world with the feature `mpi` (one process
/// when started without mpirun), [`SingleProcess`] without it. `bn` is `--bn`: without the
/// feature it is an error naming the feature, as is a start by mpirun as one of several.
pub fn communicator(bn: Option<BnChoice>) -> Result<Rc<dyn Communicator>, Error> {
    if cfg!(not(feature = "mpi")) && bn.is_some() {
        return Err(Error::Usage(format!("--bn: {}", CommError::MpiNotBuilt)));
    }
    match norma_distributed::mpi_world() {
        Ok(comm) => Ok(comm),
        Err(CommError::MpiNotBuilt) => Ok(Rc::new(SingleProcess)),
        Err(e) => Err(e.into()),
    }
}

/// The processes of a run and how they treat batch norm.
#[derive(Clone)]
pub struct Job {
    comm: Rc<dyn Communicator>,
    bn: BnChoice,
}

impl Job {
    /// A job over `comm` with the configuration's batch-norm choice (sync when not
    /// data-parallel).
    pub fn new(comm: Rc<dyn Communicator>, parallel: Option<DataParallel>) -> Job {
        Job {
            comm,
            bn: parallel.map_or(BnChoice::Sync, |p| p.bn),
        }
    }

    pub fn comm(&self) -> &Rc<dyn Communicator> {
        &self.comm
    }

    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Process 0: the one that prints and writes.
    pub fn is_root(&self) -> bool {
        self.comm.is_root()
    }

    /// More than one process.
    pub fn is_parallel(&self) -> bool {
        self.size() > 1
    }

    pub fn bn(&self) -> BnChoice {
        self.bn
    }

    /// Whether the models' batch norms are to be synchronized.
    pub fn synchronizes(&self) -> bool {
        self.is_parallel() && self.bn == BnChoice::Sync
    }

    /// One line for the log: `data-parallel over 2 processes (MPI (...)), --bn sync`.
    pub fn describe(&self) -> String {
        format!(
            "data-parallel over {} processes ({}), --bn {}",
            self.size(),
            self.comm.describe(),
            self.bn.name()
        )
    }
}

/// The `data_parallel` entry of a configuration for a job of `size` processes: `stored` is
/// that of the run being resumed (`None` for a new run or one trained on one process), `bn`
/// the `--bn` given. Refuses a resume that would change the experiment: another `--bn`, or a
/// run with per-process statistics continued on another number of processes.
pub fn settle(
    stored: Option<Option<DataParallel>>,
    bn: Option<BnChoice>,
    size: usize,
) -> Result<Option<DataParallel>, Error> {
    let bn = match stored {
        None => bn.unwrap_or(BnChoice::Sync),
        Some(stored) => {
            // One process computes what synchronized batch norm does.
            let was = stored.map_or(BnChoice::Sync, |s| s.bn);
            if let Some(given) = bn.filter(|&b| b != was) {
                return Err(Error::Usage(format!(
                    "--resume: a stored run keeps its configuration; leave out or match --bn {} \
                     (stored: {})",
                    given.name(),
                    was.name()
                )));
            }
            if let Some(s) = stored.filter(|s| s.bn == BnChoice::Local && s.processes != size) {
                return Err(Error::Usage(format!(
                    "--resume: this run trained with --bn local on {} processes (batch-norm \
                     statistics per shard of the batch), and this job has {size}; resume it with \
                     mpirun -np {}",
                    s.processes, s.processes
                )));
            }
            was
        }
    };
    Ok((size > 1).then_some(DataParallel {
        processes: size,
        bn,
    }))
}

/// Sends process 0's `blob` to every process (collective): the length (or a failure mark when
/// process 0 has `None`), then the bytes. Returns the bytes, or `None` when process 0 had none
/// to send.
pub fn broadcast_blob(
    comm: &dyn Communicator,
    blob: Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, Error> {
    if comm.size() > 1 {
        let mut len = [blob.as_ref().map_or(-1.0, |b| b.len() as f64)];
        comm.broadcast_f64(0, &mut len)?;
        if len[0] < 0.0 {
            return Ok(None);
        }
        let mut bytes = blob.unwrap_or_else(|| vec![0; len[0] as usize]);
        comm.broadcast_bytes(0, &mut bytes)?;
        return Ok(Some(bytes));
    }
    Ok(blob)
}

/// Byte strings joined with their lengths, and split again ([`unpack`]).
pub fn pack(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The byte strings of [`pack`]; an error for bytes it did not make.
pub fn unpack(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let broken = || Error::Usage("the state sent by process 0 is truncated".into());
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<8>().ok_or_else(broken)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| broken())?;
        if rest.len() < len {
            return Err(broken());
        }
        parts.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(parts)
}

/// This process's shard of a global batch, and the global batch's size.
pub fn shard_of(batch: Batch, comm: &dyn Communicator) -> Result<(Batch, usize), Error> {
    let n = batch.labels.len();
    let range = norma_distributed::shard(n, comm.rank(), comm.size());
    let images = &batch.images;
    let per: usize = images.shape().iter().skip(1).product();
    let mut shape = images.shape().to_vec();
    shape[0] = range.len();
    let values = images.as_slice()[range.start * per..range.end * per].to_vec();
    Ok((
        Batch {
            images: Tensor::from_vec(&shape, values)?,
            labels: batch.labels[range].to_vec(),
        },
        n,
    ))
}

/// Refuses batches whose shards would be too small for a job of `size` processes: every
/// process needs a sample of every batch, and two with `--bn local` on a model with batch norm
/// (batch norm cannot normalize one sample). `train_len` is the training set's size.
pub fn check_shards(
    train_len: usize,
    batch_size: usize,
    last: LastBatch,
    size: usize,
    local_bn: bool,
) -> Result<(), Error> {
    if size < 2 {
        return Ok(());
    }
    let full = train_len / batch_size;
    let rest = train_len % batch_size;
    // The smallest batch of an epoch (a last batch of one sample joins the one before it
    // under MergeSingle).
    let smallest = match (full, rest) {
        (0, r) => r,
        (_, 0) => batch_size,
        (_, 1) if last == LastBatch::MergeSingle => batch_size,
        (_, r) => r,
    };
    let need = if local_bn { 2 } else { 1 };
    if smallest / size < need {
        let which = if smallest == batch_size {
            format!("--batch-size {batch_size}")
        } else {
            format!(
                "the last batch of an epoch ({smallest} samples: {train_len} training samples in \
                 batches of {batch_size})"
            )
        };
        let why = if local_bn {
            "at least 2 samples per process (--bn local normalizes each shard alone)"
        } else {
            "at least 1 sample per process"
        };
        return Err(Error::Usage(format!(
            "{which} cannot be split over {size} processes: data-parallel training needs {why}; \
             use a larger batch, fewer processes{}",
            if smallest == batch_size {
                ""
            } else {
                ", or another --train-samples"
            }
        )));
    }
    Ok(())
}

/// A fault for the fault drill, injected on one process: `NORMA_FAULT=RANK:STEP:MODE` makes
/// process RANK, before its global step STEP (0-based) of a data-parallel run, `panic`, die of
/// SIGKILL (`kill`), or fail with an error (`error`). Read once when a data-parallel job starts
/// ([`Fault::from_env`]); single-process runs never look at it; a malformed value is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    rank: usize,
    step: u64,
    mode: FaultMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultMode {
    Panic,
    Kill,
    Error,
}

impl Fault {
    /// The fault `NORMA_FAULT` asks for; `None` when it is unset.
    pub fn from_env() -> Result<Option<Fault>, Error> {
        match std::env::var("NORMA_FAULT") {
            Ok(spec) => Fault::parse(&spec).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn parse(spec: &str) -> Result<Fault, Error> {
        let bad = || {
            Error::Usage(format!(
                "NORMA_FAULT={spec}: expected RANK:STEP:MODE, MODE one of panic, kill, error"
            ))
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let [rank, step, mode] = parts[..] else {
            return Err(bad());
        };
        let mode = match mode {
            "panic" => FaultMode::Panic,
            "kill" => FaultMode::Kill,
            "error" => FaultMode::Error,
            _ => return Err(bad()),
        };
        Ok(Fault {
            rank: rank.parse().map_err(|_| bad())?,
            step: step.parse().map_err(|_| bad())?,
            mode,
        })
    }

    /// Strikes if this is process `rank` before global step `step`.
    fn strike(self, rank: usize, step: u64) -> Result<(), Error> {
        if rank != self.rank || step != self.step {
            return Ok(());
        }
        match self.mode {
            FaultMode::Panic => panic!("NORMA_FAULT: a panic injected at step {step}"),
            FaultMode::Kill => {
                #[cfg(unix)]
                // SAFETY: kill(2) on this process; it does not touch memory.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                std::process::abort()
            }
            FaultMode::Error => Err(Error::Usage(format!(
                "NORMA_FAULT: an error injected at step {step}"
            ))),
        }
    }
}

/// This process's part of a data-parallel job as the training [`Strategy`]
/// ([`crate::run::model_run::ModelRun::step_with`]): its shard of the global batch forward and
/// backward with its loss weighted by its share of the batch, then ONE all-reduce of the flat
/// buffer [every parameter gradient, weighted loss, correct count, stop flag], whose sum is the
/// gradient of the global batch's mean loss; then the optimizer step, identical on every
/// process. Whether the step diverged is decided on the global loss (and, with per-process
/// batch-norm statistics, on every process's buffers: one more all-reduce of one value), so
/// every process undoes it or none does. A signal on any process rides in the all-reduce and
/// stops every process after the same step.
pub struct Replica<'a> {
    job: &'a Job,
    fault: Option<Fault>,
    /// This process's share of the global batch of the step in progress.
    weight: f32,
    /// Whether this process had a signal before the step in progress.
    stop_wish: bool,
    /// Whether a process had a signal at the last step (agreed by all).
    stop_agreed: bool,
}

impl<'a> Replica<'a> {
    /// The strategy of this process of `job`, with the fault drill's `fault`.
    pub fn new(job: &'a Job, fault: Option<Fault>) -> Replica<'a> {
        Replica {
            job,
            fault,
            weight: 1.0,
            stop_wish: false,
            stop_agreed: false,
        }
    }
}

impl Strategy for Replica<'_> {
    fn shard(&mut self, batch: Batch) -> Result<Batch, Error> {
        let (shard, global) = shard_of(batch, self.job.comm().as_ref())?;
        self.weight = shard.labels.len() as f32 / global as f32;
        Ok(shard)
    }

    fn backward(
        &mut self,
        model: &Sequential,
        forward: Forward,
        labels: &[usize],
    ) -> Result<(f32, usize), Error> {
        let weight = self.weight;
        let correct = forward.correct(labels)?;
        // Always backward: synchronized batch norm communicates in it, and whether the step
        // diverged is known only from the global loss.
        forward.loss.mul_scalar(weight).backward()?;
        let params = model.parameters();
        let total: usize = params.iter().map(|p| p.len()).sum();
        let mut flat = Vec::with_capacity(total + 3);
        for p in &params {
            match p.grad() {
                Some(g) => flat.extend_from_slice(g.as_slice()),
                None => flat.resize(flat.len() + p.len(), 0.0),
            }
        }
        flat.extend([
            forward.value * weight,
            correct as f32,
            f32::from(u8::from(self.stop_wish)),
        ]);
        self.job.comm().all_reduce_sum_f32(&mut flat)?;
        let (loss, correct, stop_any) = (flat[total], flat[total + 1], flat[total + 2]);
        self.stop_agreed = stop_any > 0.0;
        if !divergence::diverged(loss) {
            let mut offset = 0;
            for p in &params {
                let len = p.len();
                if p.requires_grad() {
                    p.set_grad(Tensor::from_vec(
                        &p.shape(),
                        flat[offset..offset + len].to_vec(),
                    )?)?;
                }
                offset += len;
            }
        }
        Ok((loss, correct as usize))
    }

    fn overflowed(&mut self, model: &Sequential) -> Result<bool, Error> {
        let mut overflowed = [f64::from(u8::from(divergence::overflowed(model)))];
        if !self.job.synchronizes() {
            // Per-process running statistics: one process's may overflow alone.
            self.job.comm().all_reduce_sum_f64(&mut overflowed)?;
        }
        Ok(overflowed[0] > 0.0)
    }

    fn stop(&self) -> Option<Signal> {
        self.stop_agreed
            .then(|| signals::received().unwrap_or(Signal::Interrupt))
    }

    fn before_step(&mut self, step: u64) -> Result<(), Error> {
        if let Some(fault) = self.fault {
            fault.strike(self.job.comm().rank(), step)?;
        }
        self.stop_wish = signals::received().is_some();
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(self.job.describe())
    }

    /// Under mpirun the binary is started directly (cargo xtask would build without `mpi`).
    fn launcher(&self) -> String {
        let binary = std::env::args().next().unwrap_or_else(|| "xtask".into());
        format!("mpirun -np {} {binary}", self.job.size())
    }

    /// Checks that every process ends with the same weights (collective).
    fn finish(&mut self, model: &Sequential) -> Result<(), Error> {
        let weights: Vec<f32> = model
            .parameters()
            .iter()
            .flat_map(|p| p.value().as_slice().to_vec())
            .collect();
        if !norma_distributed::same_on_every_process(self.job.comm().as_ref(), &weights)? {
            return Err(Error::Usage(
                "the processes of the job ended with different weights (a bug: please report it)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_parts_come_back_and_truncation_is_an_error() {
        let packed = pack(&[b"abc", b"", b"de"]);
        assert_eq!(
            unpack(&packed).unwrap(),
            [b"abc".to_vec(), vec![], b"de".to_vec()]
        );
        assert!(unpack(&packed[..packed.len() - 1]).is_err());
        assert!(unpack(&packed[..5]).is_err());
    }

    #[test]
    fn shards_must_hold_a_sample_or_two_with_local_batch_norm() {
        check_shards(1000, 256, LastBatch::MergeSingle, 3, true).unwrap();
        // 1000 = 3·256 + 232; 232 / 3 = 77 per process.
        let err = check_shards(1000, 256, LastBatch::MergeSingle, 300, false).unwrap_err();
        assert!(
            err.to_string().contains("the last batch of an epoch (232"),
            "{err}"
        );
        let err = check_shards(1000, 5, LastBatch::MergeSingle, 3, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("--batch-size 5 cannot be split over 3"),
            "{err}"
        );
        check_shards(1000, 5, LastBatch::MergeSingle, 3, false).unwrap();
        // 1001 = 4·250 + 1: the single sample joins the last batch (251).
        check_shards(1001, 250, LastBatch::MergeSingle, 125, true).unwrap();
        check_shards(10, 256, LastBatch::MergeSingle, 1, true).unwrap();
    }

    #[test]
    fn a_resume_keeps_the_batch_norm_and_local_statistics_keep_the_process_count() {
        let local2 = Some(DataParallel {
            processes: 2,
            bn: BnChoice::Local,
        });
        // New runs.
        assert_eq!(settle(None, None, 1).unwrap(), None);
        assert_eq!(
            settle(None, Some(BnChoice::Local), 2).unwrap(),
            local2,
            "a new run records its processes and --bn"
        );
        // A synchronized or single-process run continues on any number of processes.
        assert_eq!(
            settle(Some(None), None, 3).unwrap().unwrap().bn,
            BnChoice::Sync
        );
        assert_eq!(settle(Some(None), Some(BnChoice::Sync), 1).unwrap(), None);
        let err = settle(Some(None), Some(BnChoice::Local), 2).unwrap_err();
        assert!(
            err.to_string().contains("--bn local (stored: sync)"),
            "{err}"
        );
        // Local statistics depend on the process count.
        assert_eq!(settle(Some(local2), None, 2).unwrap(), local2);
        let err = settle(Some(local2), None, 3).unwrap_err();
        assert!(err.to_string().contains("mpirun -np 2"), "{err}");
    }
}
