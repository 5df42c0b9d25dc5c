//! `train-lenet` as one process of a data-parallel job of several (see
//! [`crate::run::data_parallel`]): process 0 prepares the run and sends the configuration and
//! every model's state to the others; then all train together
//! ([`crate::run::data_parallel::Replica`]), and process 0 alone prints and writes. A
//! single-process run never comes here.

use std::rc::Rc;

use norma_datasets::Dataset;
use norma_distributed::Communicator;

use crate::cli::choices::BnChoice;
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::run::data_parallel::{self, Fault, Job, Replica};
use crate::run::model_run::ModelRun;
use crate::run::setup;
use crate::train::progress::Progress;
use crate::train::{
    checkpoint, execute_on, prepare, train_and_report, ModelState, TrainArgs, TrainConfig,
};

/// `train-lenet` as one process of the job of `comm` (more than one process).
pub fn run_on(args: TrainArgs, comm: Rc<dyn Communicator>) -> Result<Option<Signal>, Error> {
    let root = comm.is_root();
    let mut prepared = root.then(|| prepare(&args, comm.size()));
    if let Some(Err(e)) = &prepared {
        // Said now: once the others learn that the run cannot start they exit, and the
        // launcher may stop this process before it returns to `main`.
        eprintln!("error: {e}");
        prepared = Some(Err(Error::Reported(e.to_string())));
    }
    let config_bytes = match &prepared {
        Some(Ok((config, _, _))) => Some(
            serde_json::to_vec(config)
                .map_err(|e| Error::Usage(format!("the configuration: {e}")))?,
        ),
        _ => None,
    };
    // Process 0 says whether it could start (and with which configuration).
    let shared = data_parallel::broadcast_blob(comm.as_ref(), config_bytes)?;
    let (config, dir, states) = match prepared {
        Some(prepared) => {
            let (config, dir, states) = prepared?;
            (config, Some(dir), states)
        }
        None => {
            let Some(bytes) = shared else {
                return Err(Error::StoppedByRoot);
            };
            let config: TrainConfig = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Usage(format!("the configuration sent by process 0: {e}")))?;
            setup::threads(config.threads)?;
            let states = config
                .runs
                .iter()
                .map(|spec| {
                    Ok(ModelState {
                        progress: Progress::fresh(spec),
                        run: ModelRun::fresh(spec.clone())?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            (config, None, states)
        }
    };
    let job = Job::new(comm, config.data_parallel);
    // From here on an error on one process leaves the others waiting: it ends the job.
    match share_and_train(&config, dir.as_ref(), states, &job) {
        Ok(stopped_by) => Ok(stopped_by),
        Err(Error::StoppedByRoot) => Err(Error::StoppedByRoot),
        Err(e) => job.comm().abort(1, &e),
    }
}

/// A data-parallel run after the configuration is agreed: every model's state from process 0,
/// batch norms synchronized (`--bn sync`), the data loaded on every process, then training.
fn share_and_train(
    config: &TrainConfig,
    dir: Option<&RunDir>,
    mut states: Vec<ModelState>,
    job: &Job,
) -> Result<Option<Signal>, Error> {
    let fault = Fault::from_env()?;
    for state in &mut states {
        let blob = match dir {
            Some(_) => Some(checkpoint::state_blob(&state.run, &state.progress)?),
            None => None,
        };
        let blob = data_parallel::broadcast_blob(job.comm().as_ref(), blob)?
            .ok_or_else(|| Error::Usage("process 0 sent no model state".into()))?;
        if dir.is_none() {
            state.progress = checkpoint::load_blob(&mut state.run, &blob)?;
        }
        if job.synchronizes() {
            state.run.synchronize(job.comm().clone());
        }
    }
    let loaded = load_data(config, job)?;
    let mut replica = Replica::new(job, fault);
    match (dir, loaded) {
        (Some(dir), Some(data)) => train_and_report(config, dir, &data, states, &mut replica),
        // Stopped while the data loaded: nothing was written.
        (Some(_), None) => Ok(signals::received().or(Some(Signal::Interrupt))),
        // The others train quietly: the same steps, nothing written or printed.
        (None, Some(data)) => Ok(execute_on(config, None, &data, states, &mut replica)?.stopped_by),
        (None, None) => Ok(signals::received()),
    }
}

/// The data, loaded on this process (quietly except on process 0); `None` when a signal
/// arrived meanwhile on any process of the job (collective).
fn load_data(config: &TrainConfig, job: &Job) -> Result<Option<Dataset>, Error> {
    signals::watch();
    let data = setup::load_data_reporting(
        config.dataset,
        config.data_dir.as_deref(),
        config.train_samples,
        job.is_root(),
    )?;
    let data = config.data_split(data)?;
    let mut stopped = [f64::from(u8::from(signals::received().is_some()))];
    job.comm().all_reduce_sum_f64(&mut stopped)?;
    if stopped[0] > 0.0 {
        if job.is_root() {
            let name = signals::received().map_or("a signal on another process", Signal::name);
            eprintln!("{name}: stopped before training");
        }
        return Ok(None);
    }
    // Every process checks the same numbers, so all stop here together.
    let train_len = data.train.len();
    for spec in &config.runs {
        let local_bn = job.bn() == BnChoice::Local && spec.model.has_batch_norm();
        if let Err(e) = data_parallel::check_shards(
            train_len,
            spec.batch_size,
            spec.last_batch(),
            job.size(),
            local_bn,
        ) {
            return Err(if job.is_root() {
                e
            } else {
                Error::StoppedByRoot
            });
        }
    }
    Ok(Some(data))
}
