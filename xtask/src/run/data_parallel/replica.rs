//! A process's part of a data-parallel job as the training [`Strategy`] ([`Replica`]), and
//! the fault drill it carries ([`Fault`]). See the module above for how a job trains.

use norma_datasets::Batch;
use norma_distributed::Communicator;
use norma_layers::{Module, Sequential};
use norma_tensor::Tensor;

use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::run::data_parallel::Job;
use crate::run::divergence;
use crate::run::step::{Forward, Strategy};

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
        // A signal stops the job at a step all processes agree on, never inside process 0's
        // evaluation (the others would wait for it at the next step).
        signals::stop_only_at_steps();
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
    /// An overflow on one process ends the job (as every error after the start does): with
    /// local batch norm the others may not overflow and would wait for this one.
    fn overflow_is_divergence(&self) -> bool {
        false
    }

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
        let binary = crate::cli::command_line::program();
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

/// This process's shard of a global batch, and the global batch's size.
fn shard_of(batch: Batch, comm: &dyn Communicator) -> Result<(Batch, usize), Error> {
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
