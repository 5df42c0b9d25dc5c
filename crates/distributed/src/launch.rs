//! Getting the communicator of the job this process belongs to.

use std::rc::Rc;

use crate::{CommError, Communicator};

/// How many processes the MPI launcher that started this process (mpirun of Open MPI, or a
/// launcher speaking PMI such as MPICH's) says the job has; `None` when no launcher started it.
/// Read from the environment, so it works in builds without MPI.
pub fn launcher_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
}

/// The communicator of every process of this MPI job (MPI_COMM_WORLD).
///
/// - Under `mpirun -np K`: K processes, this one's rank among them.
/// - Started without mpirun: a job of one process (MPI's singleton initialization).
/// - In a build without the cargo feature `mpi`: [`CommError::MpiNotBuilt`], or
///   [`CommError::LaunchedWithoutMpi`] when mpirun started several copies of this build (each
///   would otherwise train alone).
///
/// MPI is finalized when the last handle is dropped. It can be initialized once per process: a
/// second call is [`CommError::AlreadyInitialized`]. With MPI, a panic in any thread aborts the
/// whole job (see [`crate::Communicator::abort`]) instead of leaving the other processes
/// waiting for this one.
pub fn mpi_world() -> Result<Rc<dyn Communicator>, CommError> {
    #[cfg(feature = "mpi")]
    {
        Ok(Rc::new(crate::mpi::Mpi::init()?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        Err(match launcher_size() {
            Some(size) if size > 1 => CommError::LaunchedWithoutMpi { size },
            _ => CommError::MpiNotBuilt,
        })
    }
}
