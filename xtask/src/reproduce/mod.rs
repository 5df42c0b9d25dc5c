//! `cargo xtask reproduce`: runs every experiment behind docs/experiments.md ([`plan`]) with
//! the documented budgets and seeds, each as its own xtask command in
//! `<out>/<section>/<job>/`, then renders the document from its template and those results
//! ([`render`]) into `<out>/experiments.md`.
//!
//! - **Progress**: one line per job with the elapsed time and an estimate of the time left.
//! - **Resuming**: a job that exited 0 leaves `<job>.done.json` beside its folder; `--resume
//!   <out>` skips those and starts the others again from scratch (their folders, this run's
//!   own, are removed first: an experiment cannot continue half-way). Ctrl-C or SIGTERM stops
//!   the job in progress and exits with 130 or 143.
//! - `--quick` runs the same pipeline on tiny budgets (CI checks it end to end);
//!   `--only <section>` runs some sections alone.
//! - `--publish <folder>` copies the results the document cites of every section that
//!   finished there into docs/experiments/ and renders docs/experiments.md from them;
//!   `--check` tells whether docs/experiments.md is what the template renders from
//!   docs/experiments/ ([`publish`]).

pub mod plan;
pub mod publish;
pub mod render;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::args::DataArgs;
use crate::cli::checks;
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::output::files;
use crate::output::run_dir::RunDir;
use plan::{Job, Section};

/// Arguments of `reproduce`.
#[derive(Debug, clap::Args, Serialize)]
pub struct ReproduceArgs {
    /// Tiny budgets: the same commands on a few hundred images (minutes, not hours).
    #[arg(long)]
    pub quick: bool,
    /// Copy the results of a finished reproduce folder's sections into docs/experiments/ and
    /// render docs/experiments.md from them (runs nothing).
    #[arg(long, conflicts_with_all = ["quick", "out", "resume", "check"])]
    pub publish: Option<PathBuf>,
    /// Check that docs/experiments.md is what the template renders from docs/experiments/
    /// (runs nothing; fails naming the first line that differs).
    #[arg(long, conflicts_with_all = ["quick", "out", "resume"])]
    pub check: bool,
    /// With --check: write the rendering instead of comparing (after editing the template).
    #[arg(long, requires = "check")]
    pub write: bool,
    /// Run these sections only [default: all].
    #[arg(long, value_enum, num_args = 1..)]
    pub only: Vec<Section>,
    /// Output folder; must be new or empty [default: runs/reproduce-TIMESTAMP].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue a reproduce folder: skips the jobs that finished, reruns the others.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Worker threads of each job [default: one per core]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
}

/// `reproduce.json`: what a reproduce folder was started with (a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub quick: bool,
    norma_version: String,
    command: Vec<String>,
}

/// `<job>.done.json`: a job that finished, and where it ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    command: Vec<String>,
    seconds: f64,
    /// The CPU's model name, the core count and the norma version and git commit of the
    /// tree the job ran from (`+changes` when it had uncommitted changes).
    #[serde(default)]
    machine: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    commit: String,
}

impl Done {
    fn new(command: Vec<String>, seconds: f64) -> Done {
        Done {
            command,
            seconds,
            machine: machine(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: commit(),
        }
    }

    /// `AMD EPYC (2 cores), norma 0.1.0 at 1a2b3c4d5e6f`.
    fn origin(&self) -> String {
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "(not recorded)".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "{}, norma {} at commit {}",
            or_unknown(&self.machine),
            or_unknown(&self.version),
            or_unknown(&self.commit)
        )
    }
}

/// The CPU's model name (`lscpu`'s "Model name", from /proc/cpuinfo) and the number of cores.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model} ({cores} cores)")
}

/// The git commit of the source tree this binary was built from, as it is now: `git` in the
/// workspace, `+changes` appended when tracked files differ from the commit; empty without git.
fn commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{head}+changes"),
            _ => head,
        },
        None => String::new(),
    }
}

pub const MANIFEST: &str = "reproduce.json";

/// Runs `reproduce`; returns the signal that interrupted it, if one did.
pub fn run(args: ReproduceArgs) -> Result<Option<Signal>, Error> {
    if let Some(folder) = &args.publish {
        let written = publish::publish(folder, &publish::docs_dir())?;
        eprintln!("published; the document is {}", written.display());
        return Ok(None);
    }
    if args.check {
        publish::check(&publish::docs_dir(), args.write)?;
        return Ok(None);
    }
    checks::threads(args.threads)?;
    let data_dir = args.data.absolute_data_dir()?;
    let manifest = Manifest {
        quick: args.quick,
        norma_version: env!("CARGO_PKG_VERSION").into(),
        command: crate::cli::command_line::recorded(),
    };
    let dir = match &args.resume {
        Some(path) => {
            let dir = RunDir::existing("--resume", path)?;
            let stored: Manifest = files::read_json(&dir.file(MANIFEST)).map_err(|_| {
                Error::Usage(format!(
                    "--resume {}: no readable {MANIFEST} there (not a reproduce folder)",
                    path.display()
                ))
            })?;
            if stored.quick != args.quick {
                return Err(Error::Usage(format!(
                    "--resume {}: the folder was started {} --quick; give the same",
                    path.display(),
                    if stored.quick { "with" } else { "without" }
                )));
            }
            dir
        }
        None => {
            let dir = RunDir::create(args.out.as_deref(), "reproduce-")?;
            dir.write_json(MANIFEST, &manifest)?;
            dir
        }
    };
    signals::watch();
    let sections = if args.only.is_empty() {
        Section::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let jobs: Vec<(Section, Job)> = sections
        .iter()
        .flat_map(|&s| s.jobs(args.quick).into_iter().map(move |j| (s, j)))
        .collect();
    let mut extra: Vec<String> = Vec::new();
    if let Some(threads) = args.threads {
        extra.extend(["--threads".into(), threads.to_string()]);
    }
    if let Some(dataset) = args.data.dataset {
        extra.extend(["--dataset".into(), crate::cli::choices::flag_value(dataset)]);
    }
    if let Some(data) = &data_dir {
        extra.extend(["--data-dir".into(), data.display().to_string()]);
    }
    eprintln!(
        "reproducing {} into {} ({} jobs{})",
        sections
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        dir.path().display(),
        jobs.len(),
        if args.quick { ", quick budgets" } else { "" }
    );
    let mut clock = Clock::new(&jobs);
    for (i, (section, job)) in jobs.iter().enumerate() {
        let folder = dir.path().join(section.name()).join(&job.name);
        let marker = done_marker(&folder);
        if marker.is_file() {
            clock.skipped(job);
            continue;
        }
        eprintln!(
            "[{}/{}] {}/{}: cargo xtask {}  ({})",
            i + 1,
            jobs.len(),
            section.name(),
            job.name,
            job.args.join(" "),
            clock.status()
        );
        let started = Instant::now();
        match run_job(&folder, job, &extra)? {
            Some(signal) => {
                eprintln!(
                    "interrupted by {}; finished jobs are kept. Resume with:\n  cargo xtask reproduce{} --resume {}",
                    signal.name(),
                    if args.quick { " --quick" } else { "" },
                    dir.path().display()
                );
                return Ok(Some(signal));
            }
            None => {
                let seconds = started.elapsed().as_secs_f64();
                let command = [&["cargo".to_string(), "xtask".into()], &job.args[..]].concat();
                files::write_json(&marker, &Done::new(command, seconds))?;
                clock.finished(job, seconds);
            }
        }
    }
    let written = render::render_document(dir.path(), &sections, args.quick)?;
    eprintln!(
        "all jobs done in {}; the document is {}",
        fmt_duration(clock.elapsed()),
        written.display()
    );
    Ok(None)
}

/// `<section>/<job>.done.json` for the job folder `folder`.
pub fn done_marker(folder: &Path) -> PathBuf {
    let mut name = folder.file_name().unwrap_or_default().to_os_string();
    name.push(".done.json");
    folder.with_file_name(name)
}

/// Runs one job as a child process into `folder` (removed first if an earlier attempt left
/// it: it is this run's own), its output in `<folder>.log`. Returns the signal that stopped
/// it; a job that fails is an error naming its log.
fn run_job(folder: &Path, job: &Job, extra: &[String]) -> Result<Option<Signal>, Error> {
    if folder.exists() {
        std::fs::remove_dir_all(folder).map_err(files::io_error(folder))?;
    }
    let parent = folder.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(files::io_error(parent))?;
    let log_path = folder.with_extension("log");
    let log = std::fs::File::create(&log_path).map_err(files::io_error(&log_path))?;
    let program = std::env::current_exe().map_err(files::io_error(Path::new("xtask")))?;
    let mut child = Command::new(program)
        .args(&job.args)
        .args(extra)
        .arg("--out")
        .arg(folder)
        .stdout(log.try_clone().map_err(files::io_error(&log_path))?)
        .stderr(log)
        .spawn()
        .map_err(files::io_error(Path::new("xtask")))?;
    let mut forwarded = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(files::io_error(&log_path))? {
            break status;
        }
        // A signal sent to this process alone (a terminal's Ctrl-C reaches both) is passed on,
        // once, so that the job stops cleanly too.
        if let (Some(signal), false) = (signals::received(), forwarded) {
            forwarded = true;
            forward(&child, signal);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Some(signal) = signals::received() {
        return Ok(Some(signal));
    }
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Usage(format!(
            "cargo xtask {} failed ({status}): {last} (the whole output is in {})",
            job.args.join(" "),
            log_path.display()
        )));
    }
    Ok(None)
}

#[cfg(unix)]
fn forward(child: &std::process::Child, signal: Signal) {
    let number = match signal {
        Signal::Interrupt => libc::SIGINT,
        Signal::Terminate => libc::SIGTERM,
    };
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid; it touches no memory.
        unsafe { libc::kill(pid, number) };
    }
}

#[cfg(not(unix))]
fn forward(_child: &std::process::Child, _signal: Signal) {}

/// Elapsed time and the estimate of what is left.
struct Clock {
    start: Instant,
    /// Estimated seconds of the jobs not done yet.
    left: f64,
    /// Estimated and real seconds of the jobs run so far.
    estimated_done: f64,
    real_done: f64,
}

impl Clock {
    fn new(jobs: &[(Section, Job)]) -> Clock {
        Clock {
            start: Instant::now(),
            left: jobs.iter().map(|(_, j)| j.seconds).sum(),
            estimated_done: 0.0,
            real_done: 0.0,
        }
    }

    fn skipped(&mut self, job: &Job) {
        self.left -= job.seconds;
    }

    fn finished(&mut self, job: &Job, seconds: f64) {
        self.left -= job.seconds;
        self.estimated_done += job.seconds;
        self.real_done += seconds;
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// "12m elapsed, about 1h40m left": the estimates scaled by how the finished jobs did.
    fn status(&self) -> String {
        let scale = if self.estimated_done > 0.0 {
            self.real_done / self.estimated_done
        } else {
            1.0
        };
        let left = Duration::from_secs_f64((self.left * scale).max(0.0));
        format!(
            "{} elapsed, about {} left",
            fmt_duration(self.elapsed()),
            fmt_duration(left)
        )
    }
}

/// `1h05m`, `3m20s`, `12s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(fmt_duration(Duration::from_secs(12)), "12s");
        assert_eq!(fmt_duration(Duration::from_secs(200)), "3m20s");
        assert_eq!(fmt_duration(Duration::from_secs(3900)), "1h05m");
    }

    #[test]
    fn the_estimate_follows_the_jobs_that_finished() {
        let job = |s| Job {
            name: "j".into(),
            args: vec![],
            seconds: s,
        };
        let jobs = vec![(Section::Train, job(10.0)), (Section::Train, job(10.0))];
        let mut clock = Clock::new(&jobs);
        assert!(
            clock.status().ends_with("about 20s left"),
            "{}",
            clock.status()
        );
        // The first took twice its estimate: so will the second, probably.
        clock.finished(&jobs[0].1, 20.0);
        assert!(
            clock.status().ends_with("about 20s left"),
            "{}",
            clock.status()
        );
        clock.skipped(&jobs[1].1);
        assert!(
            clock.status().ends_with("about 0s left"),
            "{}",
            clock.status()
        );
    }

    #[test]
    fn a_done_marker_sits_beside_its_job_folder() {
        assert_eq!(
            done_marker(Path::new("/r/train/seed0")),
            Path::new("/r/train/seed0.done.json")
        );
    }
}
