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
//!   ([`Replica`], in [`replica`]). The sum is the gradient of the
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

use norma_datasets::LastBatch;
use norma_distributed::{CommError, Communicator, SingleProcess};
use serde::{Deserialize, Serialize};

use crate::cli::choices::BnChoice;
use crate::error::Error;

mod replica;

pub use replica::{Fault, Replica};

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
