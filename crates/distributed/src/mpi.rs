//! The communicator over MPI (Open MPI through rsmpi), behind the cargo feature `mpi`.

use std::fmt;

use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use crate::single::check_root;
use crate::{CommError, Communicator};

/// MPI_COMM_WORLD of an initialized MPI. Dropping it finalizes MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    library: String,
    /// Declared last: finalizes MPI after the communicator above is gone.
    _universe: Universe,
}

impl Mpi {
    /// Initializes MPI (singleton initialization without mpirun) for a process whose other
    /// threads never call MPI (`MPI_THREAD_FUNNELED`), and makes a panic abort the job.
    pub(crate) fn init() -> Result<Mpi, CommError> {
        let (universe, _provided) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or(CommError::AlreadyInitialized)?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        install_panic_abort(rank, size);
        let library = mpi::environment::library_version()
            .ok()
            .and_then(|v| {
                v.lines()
                    .next()
                    .map(|l| l.trim().trim_end_matches(',').to_string())
            })
            .unwrap_or_else(|| "unknown MPI".to_string());
        Ok(Mpi {
            world,
            rank,
            size,
            library,
            _universe: universe,
        })
    }

    fn all_reduce_sum<T: Equivalence + Copy>(&self, buf: &mut [T]) -> Result<(), CommError> {
        check_len(buf.len())?;
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }

    fn broadcast<T: Equivalence>(&self, root: usize, buf: &mut [T]) -> Result<(), CommError> {
        check_root(root, self.size)?;
        check_len(buf.len())?;
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }
}

/// MPI counts are C ints.
fn check_len(len: usize) -> Result<(), CommError> {
    if len <= i32::MAX as usize {
        Ok(())
    } else {
        Err(CommError::TooLarge { len })
    }
}

/// After the usual panic message, aborts the MPI job: a process that unwinds and finalizes
/// MPI would leave the others waiting in their next collective forever.
fn install_panic_abort(rank: usize, size: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
            eprintln!("norma: process {rank} of {size} panicked; aborting all {size} processes");
            SimpleCommunicator::world().abort(101);
        }
    }));
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.all_reduce_sum(buf)
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.all_reduce_sum(buf)
    }

    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), CommError> {
        self.broadcast(root, buf)
    }

    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), CommError> {
        self.broadcast(root, buf)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<(), CommError> {
        self.broadcast(root, buf)
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.world.barrier();
        Ok(())
    }

    fn abort(&self, code: i32, reason: &dyn fmt::Display) -> ! {
        eprintln!(
            "norma: process {} of {} failed: {reason}; aborting all {} processes",
            self.rank, self.size, self.size
        );
        self.world.abort(code)
    }

    fn describe(&self) -> String {
        format!(
            "MPI ({}), process {} of {}",
            self.library, self.rank, self.size
        )
    }
}
