//! The [`Communicator`] interface and its error type.

use std::fmt;

use thiserror::Error;

/// What a data-parallel job needs from its processes' transport: who this process is, sums of
/// buffers over every process, a broadcast from one process, and a way to stop the whole job.
///
/// Every method except [`Communicator::rank`], [`Communicator::size`],
/// [`Communicator::describe`] and [`Communicator::abort`] is **collective**: every process must
/// call it, in the same order, with buffers of the same length (and the same root). A process
/// that skips one leaves the others waiting; a process that fails must therefore either make
/// every process fail at the same call (see [`crate::CommError::PeerFailed`]) or
/// [`Communicator::abort`] the job.
///
/// Implementations are used from one thread (the one that created them); the kernels' rayon
/// threads never communicate.
pub trait Communicator {
    /// This process's index, `0..size`. Process 0 is the root: it holds the first shard of each
    /// batch, its values are the ones broadcast, and it alone writes files.
    fn rank(&self) -> usize;

    /// The number of processes K (1 for [`crate::SingleProcess`]).
    fn size(&self) -> usize;

    /// Replaces `buf` on every process with the element-wise sum of every process's `buf`.
    /// Every process receives the same values (checked bit for bit by the MPI tests; see
    /// [`crate::same_on_every_process`] for a check at run time).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError>;

    /// [`Communicator::all_reduce_sum_f64`] for f32 buffers (gradients).
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError>;

    /// Copies `buf` of process `root` into `buf` of every process.
    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), CommError>;

    /// [`Communicator::broadcast_f32`] for f64 buffers.
    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), CommError>;

    /// [`Communicator::broadcast_f32`] for bytes (a configuration, a file name).
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<(), CommError>;

    /// Returns once every process has called it.
    fn barrier(&self) -> Result<(), CommError>;

    /// Stops every process of the job: prints `reason` to stderr, naming this process, and
    /// terminates the job with exit status `code` (MPI_Abort: the launcher kills the other
    /// processes, including those waiting in a collective, within seconds). The way out for a
    /// process that fails while the others may be waiting for it.
    fn abort(&self, code: i32, reason: &dyn fmt::Display) -> !;

    /// One line for logs: the transport and this process's place, e.g.
    /// `MPI (Open MPI v4.1.4), process 1 of 3`.
    fn describe(&self) -> String;

    /// Whether this is process 0, the one that writes files.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// Why a communication did not happen, or why a collective step failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommError {
    /// MPI was asked for, but this build does not include it.
    #[error(
        "this build of norma has no MPI support: rebuild with the cargo feature `mpi` \
         (`--features mpi`; needs Open MPI: apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
    )]
    MpiNotBuilt,
    /// The process was started by an MPI launcher as one of several, but this build cannot
    /// talk to the others: each would train alone on the whole data set.
    #[error(
        "this process was started by mpirun as one of {size} processes, but this build of norma has \
         no MPI support: rebuild with the cargo feature `mpi` (`--features mpi`)"
    )]
    LaunchedWithoutMpi { size: usize },
    /// MPI can be initialized once per process.
    #[error("MPI is already initialized in this process (norma_distributed::mpi_world can be called once)")]
    AlreadyInitialized,
    /// A broadcast from a process that does not exist.
    #[error("broadcast root {root} is not a process of this job of {size}")]
    Root { root: usize, size: usize },
    /// A buffer longer than an MPI count (a C int) can describe.
    #[error("a buffer of {len} values is longer than MPI can send at once (2^31 - 1)")]
    TooLarge { len: usize },
    /// `failed` other processes failed before a collective step, so this one stops there too
    /// (its own inputs were fine). Every process gets an error from the same step.
    #[error("{failed} other process(es) failed in {step}; stopping this one at the same step")]
    PeerFailed { step: &'static str, failed: usize },
}
