//! A runner for test programs launched under mpirun, where every process runs the same checks
//! (they communicate, so they are collective) and the job must fail if any check fails on any
//! process.
//!
//! ```
//! use norma_distributed::{testing::Checks, SingleProcess};
//! let comm = SingleProcess;
//! let mut checks = Checks::new(&comm);
//! checks.check("one plus one", || if 1 + 1 == 2 { Ok(()) } else { Err("arithmetic".into()) });
//! assert_eq!(checks.finish()?, 0); // the number of failed checks over every process
//! # Ok::<(), norma_distributed::CommError>(())
//! ```

use std::rc::Rc;

use crate::{CommError, Communicator};

/// Counts the checks of one process and adds the counts up over the job.
pub struct Checks<'a> {
    comm: &'a dyn Communicator,
    passed: usize,
    failed: usize,
}

impl<'a> Checks<'a> {
    /// No checks run yet.
    pub fn new(comm: &'a dyn Communicator) -> Checks<'a> {
        Checks {
            comm,
            passed: 0,
            failed: 0,
        }
    }

    /// The communicator the checks run over.
    pub fn comm(&self) -> &'a dyn Communicator {
        self.comm
    }

    /// Runs one check; a failure is printed with the process's rank. Every process must run
    /// the same checks in the same order (they may communicate).
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        match f() {
            Ok(()) => self.passed += 1,
            Err(why) => {
                self.failed += 1;
                eprintln!(
                    "FAILED on process {} of {}: {name}: {why}",
                    self.comm.rank(),
                    self.comm.size()
                );
            }
        }
    }

    /// Adds the counts over every process (collective); process 0 prints
    /// `mpi: N passed, M failed` (the counts over every process). Returns the number of failed checks over
    /// every process, the same on each.
    pub fn finish(self) -> Result<usize, CommError> {
        let mut counts = [self.passed as f64, self.failed as f64];
        self.comm.all_reduce_sum_f64(&mut counts)?;
        if self.comm.is_root() {
            println!("checks run on each of {} processes", self.comm.size());
            println!(
                "mpi: {} passed, {} failed",
                counts[0] as usize, counts[1] as usize
            );
        }
        Ok(counts[1] as usize)
    }
}

/// Runs `body` on a fresh [`Checks`] over `comm`, adds the results up over the job, finalizes
/// the communicator (dropping it) and exits: status 0 when every check passed on every process,
/// 1 otherwise, so that mpirun fails. The job is aborted if the counts cannot be added up.
pub fn run_checks(comm: Rc<dyn Communicator>, body: impl FnOnce(&mut Checks<'_>)) -> ! {
    let mut checks = Checks::new(comm.as_ref());
    body(&mut checks);
    let failed = match checks.finish() {
        Ok(failed) => failed,
        Err(e) => comm.abort(1, &e),
    };
    // Finalize MPI before exiting: a process that exits without it makes mpirun fail the job.
    drop(comm);
    std::process::exit(i32::from(failed > 0))
}
