//! `cargo xtask train-lenet`: the batch-norm experiment. Trains LeNet and/or LeNet-BN, prints a
//! row per epoch, and writes metrics, plots, weights, the config and resumable checkpoints to
//! the run folder.
//!
//! The order of work is what keeps a user's files safe: every option is checked, the output
//! folder claimed (or, for `--resume`, every model's checkpoint loaded) and any `--init` file
//! read before the dataset is loaded, and nothing is written before all of that succeeded.
//!
//! - [`args`]: the command line; [`config`]: `config.json`; [`resume`]: what `--resume` keeps
//!   and what it may change;
//! - [`progress`] and [`checkpoint`]: where a model stands, saved and restored;
//! - [`trainer`]: the loop over epochs and steps; [`distributed`]: the start of a
//!   data-parallel run (process 0 shares the run, every process trains);
//! - [`targets`]: epochs to a target accuracy and the train − test gap;
//! - [`curves`] and [`page`]: the run's chart and `report.html`.

pub mod args;
pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod distributed;
pub mod page;
pub mod progress;
pub mod resume;
pub mod targets;
pub mod trainer;

pub use args::TrainArgs;
pub use config::TrainConfig;
pub use trainer::ModelState;

use std::rc::Rc;

use norma_datasets::Dataset;
use norma_distributed::Communicator;

use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::output::html;
use crate::output::report::{self, RunRecord};
use crate::output::run_dir::RunDir;
use crate::run::data_parallel;
use crate::run::model_run::ModelRun;
use crate::run::setup;
use crate::run::step::{Alone, Strategy};
use crate::train::progress::Progress;

/// What [`execute`] did.
pub struct Outcome {
    /// Every model's record, in the configuration's order (also those not trained yet).
    pub records: Vec<RunRecord>,
    /// The signal that stopped training early, if any.
    pub stopped_by: Option<Signal>,
}

/// Runs `train-lenet`; returns the signal that interrupted it, if one did.
pub fn run(args: TrainArgs) -> Result<Option<Signal>, Error> {
    let comm = data_parallel::communicator(args.bn)?;
    run_on(args, comm)
    // The communicator's last handle is gone here: MPI is finalized before main returns.
}

/// `train-lenet` as one process of the job of `comm`: alone when it is the only one, else as
/// one process of a data-parallel job ([`distributed`]).
pub fn run_on(args: TrainArgs, comm: Rc<dyn Communicator>) -> Result<Option<Signal>, Error> {
    if comm.size() > 1 {
        return distributed::run_on(args, comm);
    }
    let (config, dir, states) = prepare(&args, 1)?;
    let Some(data) = load_data(&config)? else {
        // Stopped while the data loaded: nothing was written.
        return Ok(signals::received().or(Some(Signal::Interrupt)));
    };
    train_and_report(&config, &dir, &data, states, &mut Alone)
}

/// What process 0 prepares before anything is shared: the configuration, the claimed run
/// folder and every model's state.
type Prepared = (TrainConfig, RunDir, Vec<ModelState>);

/// Process 0's start in a job of `size` processes: checks the options, claims the run folder
/// (or reads the stored run for `--resume`) and builds every model from its seed, `--init` file
/// or checkpoint.
pub(crate) fn prepare(args: &TrainArgs, size: usize) -> Result<Prepared, Error> {
    match &args.resume {
        Some(path) => {
            let dir = RunDir::existing("--resume", path)?;
            let mut config = resume::resumed(path, args)?;
            config.data_parallel =
                data_parallel::settle(Some(config.data_parallel), args.bn, size)?;
            setup::threads(config.threads)?;
            let states = load_states(&config, &dir)?;
            Ok((config, dir, states))
        }
        None => {
            let mut config = config::from_args(args)?;
            config.data_parallel = data_parallel::settle(None, args.bn, size)?;
            let dir = RunDir::create(args.common.out.as_deref(), "train-lenet-")?;
            setup::threads(config.threads)?;
            let states = new_states(&config)?;
            Ok((config, dir, states))
        }
    }
}

/// Watches for signals and loads the data, reporting where it came from; `None` when a signal
/// arrived meanwhile.
fn load_data(config: &TrainConfig) -> Result<Option<Dataset>, Error> {
    signals::watch();
    let data = setup::load_data_reporting(
        config.dataset,
        config.data_dir.as_deref(),
        config.train_samples,
        true,
    )?;
    let data = config.data_split(data)?;
    if let Some(signal) = signals::received() {
        eprintln!("{}: stopped before training", signal.name());
        return Ok(None);
    }
    Ok(Some(data))
}

/// Training on process 0 (or alone), with everything printed and written.
pub(crate) fn train_and_report(
    config: &TrainConfig,
    dir: &RunDir,
    data: &Dataset,
    states: Vec<ModelState>,
    strategy: &mut dyn Strategy,
) -> Result<Option<Signal>, Error> {
    eprintln!(
        "writing to {} ({} threads{})",
        dir.path().display(),
        rayon::current_num_threads(),
        strategy
            .describe()
            .map_or(String::new(), |job| format!(" per process; {job}"))
    );
    let outcome = execute_on(config, Some(dir), data, states, strategy)?;
    println!("\n{}", report::summary(&outcome.records).text());
    if let Some(note) = report::accuracy_note(&outcome.records) {
        println!("{note}");
    }
    println!("{}", report::eval_train_note());
    let to_target = targets::epochs_to_target(&outcome.records);
    println!("\nepochs to a test accuracy:\n{}", to_target.text());
    dir.write("targets.csv", to_target.csv().as_bytes())?;
    println!(
        "train - test accuracy gap per epoch (both eval mode, train on the fixed training subset; precise BN where measured):\n{}",
        targets::gap_table(&outcome.records).text()
    );
    let launcher = strategy.launcher();
    match outcome.stopped_by {
        Some(signal) => eprintln!(
            "interrupted by {}; checkpoints are in {}. Resume with:\n  {launcher} train-lenet --resume {}",
            signal.name(),
            dir.file("checkpoint").display(),
            dir.path().display()
        ),
        None => eprintln!(
            "results in {} (open {} in a browser)",
            dir.path().display(),
            dir.file(html::REPORT).display()
        ),
    }
    Ok(outcome.stopped_by)
}

/// Every model of a new run, built from its seed or `--init` file (which fails fast on a file
/// that does not fit the model).
pub fn new_states(config: &TrainConfig) -> Result<Vec<ModelState>, Error> {
    config
        .runs
        .iter()
        .map(|spec| {
            Ok(ModelState {
                progress: Progress::fresh(spec),
                run: ModelRun::new(spec.clone())?,
            })
        })
        .collect()
}

/// Every model of a stored run, restored from its checkpoint; fails, before anything is
/// written, if any checkpoint is missing or broken or the new limits are already passed.
fn load_states(config: &TrainConfig, dir: &RunDir) -> Result<Vec<ModelState>, Error> {
    let mut states = Vec::new();
    for spec in &config.runs {
        // The weights come from the checkpoint: an --init file is not needed any more.
        let mut run = ModelRun::fresh(spec.clone())?;
        let name = spec.model.name();
        let progress = checkpoint::load(&checkpoint::dir(dir.path(), name), &mut run)?;
        progress.check_reachable(spec)?;
        states.push(ModelState { run, progress });
    }
    Ok(states)
}

/// Trains every model of `config` from `states` on `data`, writing all outputs into `dir`;
/// stops early (after saving checkpoints) on SIGINT or SIGTERM. One process.
pub fn execute(
    config: &TrainConfig,
    dir: &RunDir,
    data: &Dataset,
    states: Vec<ModelState>,
) -> Result<Outcome, Error> {
    execute_on(config, Some(dir), data, states, &mut Alone)
}

/// [`execute`] with `strategy`: in a data-parallel job every process trains, process 0 (the one
/// with `dir`) writes and prints; the records are process 0's.
pub(crate) fn execute_on(
    config: &TrainConfig,
    dir: Option<&RunDir>,
    data: &Dataset,
    mut states: Vec<ModelState>,
    strategy: &mut dyn Strategy,
) -> Result<Outcome, Error> {
    if let Some(dir) = dir {
        let mut config = config.clone();
        config.note_data_source(data);
        dir.write_json("config.json", &config)?;
        for state in &states {
            // A new run has a checkpoint from the start: `--resume` never has to guess.
            let ckpt = checkpoint::dir(dir.path(), state.name());
            if !checkpoint::exists(&ckpt) {
                checkpoint::save(&ckpt, &state.run, &state.progress)?;
            }
        }
        println!("{}", report::table_header());
    }
    let mut stopped_by = None;
    for i in 0..states.len() {
        stopped_by = trainer::train(&mut states[i], data, dir, strategy)?;
        if let Some(dir) = dir {
            let records: Vec<RunRecord> =
                states.iter().map(|s| s.progress.record.clone()).collect();
            report::write_metrics(dir, &records)?;
        }
        if stopped_by.is_some() {
            break;
        }
    }
    let records: Vec<RunRecord> = states.into_iter().map(|s| s.progress.record).collect();
    if let Some(dir) = dir {
        let curves = curves::training_curves(dir, &records).transpose();
        page::page(config, &records, curves).write(dir)?;
    }
    Ok(Outcome {
        records,
        stopped_by,
    })
}

#[cfg(test)]
mod tests {
    //! Data-parallel `train-lenet` on threads standing in for processes
    //! (`norma_distributed::testing::run_group`), so that plain `cargo test` checks the
    //! sharding, the weighted loss, the one gradient all-reduce, the state sent by process 0
    //! and synchronized batch norm; `tests/data_parallel.rs` runs the same under mpirun.

    use std::path::Path;

    use norma_distributed::testing::run_group;
    use norma_distributed::SingleProcess;
    use norma_layers::checkpoint::{self as weights, StateValue};

    use super::*;
    use crate::cli::args::CommonArgs;
    use crate::cli::choices::BnChoice;
    use crate::cli::choices::Models;

    /// 20 steps of LeNet-BN in file order, batch `batch`, on the first `samples` images.
    fn args(out: &Path, batch: usize, samples: usize, bn: Option<BnChoice>) -> TrainArgs {
        TrainArgs {
            model: Some(Models::ALL[1]),
            common: CommonArgs {
                train_samples: Some(samples),
                out: Some(out.to_path_buf()),
                ..CommonArgs::default()
            },
            batch_size: Some(batch),
            steps: Some(20),
            no_shuffle: true,
            precise_bn: Some(0),
            bn,
            ..TrainArgs::default()
        }
    }

    /// Every value of the saved weights, running statistics and counters, by tensor.
    fn saved(run: &Path) -> Vec<(String, Vec<f32>)> {
        saved_file(&run.join("lenet-bn.safetensors"))
    }

    fn saved_file(path: &Path) -> Vec<(String, Vec<f32>)> {
        let bytes = std::fs::read(path).unwrap();
        weights::from_bytes(&bytes)
            .unwrap()
            .into_iter()
            .map(|(name, v)| match v {
                StateValue::F32(t) => (name, t.as_slice().to_vec()),
                StateValue::I64(c) => (name, vec![c as f32]),
                _ => unreachable!("LeNet-BN has f32 tensors and i64 counters"),
            })
            .collect()
    }

    /// The largest per-tensor max |a − b| / max(max |b|, 1): relative for tensors with values
    /// of 1 or more, absolute for smaller ones (see `tests/data_parallel.rs` for why).
    fn difference(a: &Path, b: &Path) -> f32 {
        difference_of(saved(a), saved(b))
    }

    fn difference_of(a: Vec<(String, Vec<f32>)>, b: Vec<(String, Vec<f32>)>) -> f32 {
        let mut worst = 0.0f32;
        for ((name, x), (other, y)) in a.iter().zip(&b) {
            assert_eq!(name, other);
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = x
                .iter()
                .zip(y)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            let d = diff / scale.max(1.0);
            worst = worst.max(if d.is_nan() { f32::INFINITY } else { d });
        }
        worst
    }

    fn have_data() -> bool {
        let present = Path::new(norma_datasets::DEBIAN_FASHION_MNIST_DIR)
            .join("train-images-idx3-ubyte.gz")
            .is_file();
        assert!(
            present || std::env::var("NORMA_REQUIRE_DATA").as_deref() != Ok("1"),
            "NORMA_REQUIRE_DATA=1 but Fashion-MNIST is not installed"
        );
        present
    }

    /// Trains on `size` threads; the run folder is thread 0's.
    fn on_threads(size: usize, args: impl Fn() -> TrainArgs + Sync) {
        let results = run_group(size, |comm| run_on(args(), comm).map_err(|e| e.to_string()));
        for (rank, r) in results.into_iter().enumerate() {
            assert_eq!(r, Ok(None), "thread {rank}");
        }
    }

    #[test]
    fn threads_with_synchronized_batch_norm_train_as_one_process() {
        if !have_data() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| tmp.path().join(name);
        // With precise statistics from 5 batches, computed by thread 0 alone.
        let precise = |out: &Path| TrainArgs {
            precise_bn: Some(5),
            ..args(out, 256, 5120, None)
        };
        run_on(precise(&dir("one")), Rc::new(SingleProcess)).unwrap();
        on_threads(2, || precise(&dir("sync2")));
        let d = difference(&dir("sync2"), &dir("one"));
        assert!(d <= 1e-5, "2 threads, --bn sync: {d:e}");
        let file = |run: &str| saved_file(&dir(run).join("lenet-bn-precise-bn.safetensors"));
        let d = difference_of(file("sync2"), file("one"));
        // Recomputed by thread 0 from weights that differ by up to 1e-5, through four layers of
        // activations: the variances carry that difference about twice over.
        assert!(d <= 2e-5, "2 threads, --bn sync, precise statistics: {d:e}");
        assert!(
            difference_of(file("one"), saved(&dir("one"))) > 1e-3,
            "the precise statistics are not the running ones"
        );
        on_threads(2, || args(&dir("local2"), 256, 5120, Some(BnChoice::Local)));
        let d = difference(&dir("local2"), &dir("one"));
        assert!(d > 1e-3, "2 threads, --bn local should differ: {d:e}");
        // 250 over 3: shards of 84, 83, 83.
        run_on(
            args(&dir("one250"), 250, 5000, None),
            Rc::new(SingleProcess),
        )
        .unwrap();
        on_threads(3, || args(&dir("sync3"), 250, 5000, None));
        let d = difference(&dir("sync3"), &dir("one250"));
        assert!(d <= 1e-5, "3 threads, batch 250, --bn sync: {d:e}");
        // Only thread 0 wrote: nothing but the five run folders.
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["local2", "one", "one250", "sync2", "sync3"]);
    }

    #[test]
    fn a_process_zero_that_cannot_start_stops_the_others_quietly() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("taken"), "a user's file").unwrap();
        let results = run_group(2, |comm| {
            run_on(args(tmp.path(), 256, 5120, None), comm).map_err(|e| e.to_string())
        });
        assert!(
            results[0].as_ref().unwrap_err().contains("is not empty"),
            "{results:?}"
        );
        assert_eq!(results[1], Err(Error::StoppedByRoot.to_string()));
    }
}
