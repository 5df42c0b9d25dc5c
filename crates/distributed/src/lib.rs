//! # norma-distributed
//!
//! The transport of data-parallel training, behind a small interface: every process holds the
//! model, takes a shard of each batch, and the processes add up what must be global (batch-norm
//! statistics in `norma_layers`' synchronized batch norm, gradients in the training loop).
//!
//! | item | what |
//! | --- | --- |
//! | [`Communicator`] | rank/size, all-reduce (sum) of f32/f64 buffers, broadcast, barrier, abort |
//! | [`SingleProcess`] | the job of one process: every collective leaves buffers as they are |
//! | [`mpi_world`] | MPI_COMM_WORLD over Open MPI (rsmpi), with the cargo feature `mpi` |
//! | [`shard`], [`global_count`], [`same_on_every_process`] | splitting a batch, counting, checking replicas |
//! | [`testing::run_group`] | K threads standing in for K processes, for tests without MPI |
//! | [`testing::Checks`] | collective checks for test programs run under mpirun |
//!
//! Layers and training loops depend on [`Communicator`] only, so this crate needs no MPI
//! library unless the feature `mpi` (off by default) is enabled. Without it, [`mpi_world`] is
//! a one-line error naming the feature ([`CommError::MpiNotBuilt`]).
//!
//! ## Data-parallel conventions
//!
//! A global batch of N samples is split into contiguous shards ([`shard`]; shard r has n_r
//! samples, the first processes one more when K does not divide N). The loss of the global
//! batch is the mean over its samples, `L = (1/N) Σ_i ℓ_i`; process r computes the mean over
//! its shard, `L_r = (1/n_r) Σ_{i∈r} ℓ_i`, so that `L = Σ_r (n_r/N)·L_r`. The gradient of L is
//! obtained by
//!
//! 1. back-propagating `(n_r/N)·L_r` on process r (N from [`global_count`]), then
//! 2. one [`Communicator::all_reduce_sum_f32`] of all parameter gradients, flattened into one
//!    buffer (a **sum**, not a mean: the weights are already in the losses).
//!
//! Scaling the loss, not the gradients, matters with synchronized batch norm: its backward
//! adds up output gradients of every process, which must all be gradients of the same L. With
//! equal shards it is PyTorch's DDP average. Initial weights are broadcast from process 0;
//! only process 0 writes files.
//!
//! ## Faults
//!
//! A collective waits for every process, so a process that stops early leaves the others
//! waiting. The rules:
//!
//! - An error on one process that the others cannot see: call [`Communicator::abort`], which
//!   prints the reason with the process's rank and ends the whole job (MPI_Abort; Open MPI's
//!   mpirun kills the others within a second or two, even inside a collective).
//! - A panic on any thread aborts the job the same way (a hook installed by [`mpi_world`]).
//! - A process that is killed or exits without finalizing MPI: mpirun ends the job, and fails
//!   it. So a process that succeeds must return from `main` (dropping every handle of the
//!   communicator finalizes MPI) rather than call `std::process::exit`.
//! - Layers that can check before communicating (synchronized batch norm) exchange a failure
//!   flag with their sums, so every process gets an error at the same step
//!   ([`CommError::PeerFailed`]) instead of waiting.
//!
//! Started without mpirun, an MPI build runs as a job of one process (singleton init; the MPI
//! tests are run that way too).
//!
//! ## Running the MPI tests
//!
//! `cargo test --workspace` runs every test in one process and skips the MPI ones (they need
//! the feature and a launcher). With Open MPI installed (`apt-get install openmpi-bin
//! libopenmpi-dev libclang-dev`), cargo's runner launches them under mpirun, K = 2 and 3:
//!
//! ```text
//! export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="mpirun --allow-run-as-root --oversubscribe -np 3"
//! cargo test --release -p norma-distributed --features mpi --test mpi_collectives
//! cargo test --release -p norma-layers --features mpi --test sync_batch_norm_mpi
//! ```
//!
//! Each process runs the same checks (they are collective), failures are counted over all
//! processes, process 0 prints `N passed, M failed`, and every process exits with status 1 if
//! any check failed anywhere, which makes mpirun fail. The fault drill (`examples/mpi_fault.rs`)
//! shows that a failing, panicking or crashing process ends a job of waiting processes within
//! seconds; `.ci/run` runs both.
//!
//! ```
//! use norma_distributed::{Communicator, SingleProcess};
//! let comm = SingleProcess;
//! let mut grads = vec![0.5f32, -1.0];
//! comm.all_reduce_sum_f32(&mut grads)?; // the sum over one process
//! assert_eq!(grads, [0.5, -1.0]);
//! assert_eq!((comm.rank(), comm.size()), (0, 1));
//! # Ok::<(), norma_distributed::CommError>(())
//! ```

mod communicator;
mod launch;
#[cfg(feature = "mpi")]
mod mpi;
mod shard;
mod single;
pub mod testing;

pub use communicator::{CommError, Communicator};
pub use launch::{launcher_size, mpi_world};
pub use shard::{global_count, same_on_every_process, shard};
pub use single::SingleProcess;
