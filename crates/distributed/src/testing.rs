//! Testing code written for K processes: [`run_group`] runs it on K threads with plain `cargo
//! test`, and [`Checks`] / [`run_checks`] run collective checks in test programs launched under
//! mpirun, where the job must fail if any check fails on any process.
//!
//! ```
//! use norma_distributed::{testing::Checks, SingleProcess};
//! let comm = SingleProcess;
//! let mut checks = Checks::new(&comm);
//! checks.check("one plus one", || if 1 + 1 == 2 { Ok(()) } else { Err("arithmetic".into()) });
//! assert_eq!(checks.finish()?, 0); // the number of failed checks over every process
//! # Ok::<(), norma_distributed::CommError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::single::check_root;
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
/// the communicator and exits: status 0 when every check passed on every process, 1 otherwise,
/// so that mpirun fails. The job is aborted if the counts cannot be added up.
///
/// `body` gets the communicator too, for layers that keep a handle; every handle must be
/// dropped when it returns, or MPI cannot be finalized (exiting without it makes mpirun fail
/// the job, which is reported here).
pub fn run_checks(
    comm: Rc<dyn Communicator>,
    body: impl FnOnce(&mut Checks<'_>, &Rc<dyn Communicator>),
) -> ! {
    let mut checks = Checks::new(comm.as_ref());
    body(&mut checks, &comm);
    let failed = match checks.finish() {
        Ok(failed) => failed,
        Err(e) => comm.abort(1, &e),
    };
    let handles = Rc::strong_count(&comm);
    if handles > 1 {
        eprintln!(
            "run_checks: {} handles of the communicator are still alive; MPI cannot be finalized",
            handles - 1
        );
    }
    // Finalize MPI before exiting: a process that exits without it makes mpirun fail the job.
    drop(comm);
    std::process::exit(i32::from(failed > 0 || handles > 1))
}

/// Runs `body` on `size` threads, each with a [`Communicator`] of rank 0..size over the others
/// (collectives through shared memory, sums in rank order: every thread gets the same bits),
/// and returns their results in rank order. For testing code written for K processes with
/// plain `cargo test`, no MPI needed; each thread builds its own model (models are not `Send`).
///
/// A thread that panics breaks the group: the others panic at their next collective instead of
/// waiting, and the panic is propagated.
///
/// ```
/// use norma_distributed::testing::run_group;
/// let sums = run_group(3, |comm| {
///     let mut v = [comm.rank() as f64];
///     comm.all_reduce_sum_f64(&mut v).unwrap();
///     v[0]
/// });
/// assert_eq!(sums, [3.0, 3.0, 3.0]);
/// ```
pub fn run_group<T: Send>(size: usize, body: impl Fn(Rc<dyn Communicator>) -> T + Sync) -> Vec<T> {
    let shared = Arc::new(Group {
        size,
        state: Mutex::new(GroupState::default()),
        turn: Condvar::new(),
    });
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let shared = shared.clone();
                let body = &body;
                scope.spawn(move || {
                    let guard = BreakOnPanic(shared.clone());
                    let out = body(Rc::new(GroupMember {
                        rank,
                        group: shared,
                    }));
                    std::mem::forget(guard);
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[derive(Default)]
struct GroupState {
    /// Each member's contribution to the current collective, by rank.
    slots: BTreeMap<usize, Vec<f64>>,
    arrived: usize,
    generation: u64,
    broken: bool,
}

struct Group {
    size: usize,
    state: Mutex<GroupState>,
    turn: Condvar,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every member has arrived at this barrier.
    fn wait<'a>(&'a self, mut state: MutexGuard<'a, GroupState>) -> MutexGuard<'a, GroupState> {
        let generation = state.generation;
        state.arrived += 1;
        if state.arrived == self.size {
            state.arrived = 0;
            state.generation += 1;
            self.turn.notify_all();
        }
        while state.generation == generation && !state.broken {
            let (next, timeout) = self
                .turn
                .wait_timeout(state, Duration::from_secs(60))
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            assert!(
                !timeout.timed_out() || state.generation != generation,
                "a member of the thread group did not arrive within 60 s"
            );
        }
        assert!(!state.broken, "another member of the thread group panicked");
        state
    }

    /// Every member's contribution, in rank order (collective).
    fn exchange(&self, rank: usize, contribution: Vec<f64>) -> Vec<Vec<f64>> {
        let mut state = self.lock();
        state.slots.insert(rank, contribution);
        let state = self.wait(state);
        let all: Vec<Vec<f64>> = state.slots.values().cloned().collect();
        // Nobody writes the next contribution before everyone has read this one.
        drop(self.wait(state));
        all
    }
}

/// Marks the group broken if its thread unwinds (forgotten on success).
struct BreakOnPanic(Arc<Group>);

impl Drop for BreakOnPanic {
    fn drop(&mut self) {
        self.0.lock().broken = true;
        self.0.turn.notify_all();
    }
}

/// One member of a [`run_group`].
struct GroupMember {
    rank: usize,
    group: Arc<Group>,
}

impl GroupMember {
    fn sum(&self, buf: &[f64]) -> Result<Vec<f64>, CommError> {
        let all = self.group.exchange(self.rank, buf.to_vec());
        if all.iter().any(|v| v.len() != buf.len()) {
            panic!("members of the thread group all-reduced buffers of different lengths");
        }
        Ok((0..buf.len())
            .map(|i| all.iter().map(|v| v[i]).sum())
            .collect())
    }

    fn root_values(&self, root: usize, buf: &[f64]) -> Result<Vec<f64>, CommError> {
        check_root(root, self.group.size)?;
        let all = self.group.exchange(self.rank, buf.to_vec());
        Ok(all[root].clone())
    }
}

impl Communicator for GroupMember {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        let sum = self.sum(buf)?;
        buf.copy_from_slice(&sum);
        Ok(())
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        let wide: Vec<f64> = buf.iter().map(|&v| f64::from(v)).collect();
        for (b, s) in buf.iter_mut().zip(self.sum(&wide)?) {
            *b = s as f32;
        }
        Ok(())
    }

    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), CommError> {
        let wide: Vec<f64> = buf.iter().map(|&v| f64::from(v)).collect();
        for (b, v) in buf.iter_mut().zip(self.root_values(root, &wide)?) {
            *b = v as f32;
        }
        Ok(())
    }

    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), CommError> {
        let values = self.root_values(root, buf)?;
        buf.copy_from_slice(&values);
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<(), CommError> {
        let wide: Vec<f64> = buf.iter().map(|&v| f64::from(v)).collect();
        for (b, v) in buf.iter_mut().zip(self.root_values(root, &wide)?) {
            *b = v as u8;
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.group.exchange(self.rank, Vec::new());
        Ok(())
    }

    fn abort(&self, code: i32, reason: &dyn fmt::Display) -> ! {
        eprintln!(
            "norma: thread {} of {} failed: {reason}",
            self.rank, self.group.size
        );
        std::process::exit(code)
    }

    fn describe(&self) -> String {
        format!(
            "a thread group, thread {} of {}",
            self.rank, self.group.size
        )
    }
}
