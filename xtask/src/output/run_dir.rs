//! The output folder of an experiment run, shared by every command that writes results.
//!
//! [`RunDir::create`] is called before the dataset is loaded or anything is trained, so that a
//! bad `--out` is reported at once. It takes
//!
//! - `--out DIR`: DIR must not exist (it is created, with its parents) or be an empty
//!   directory. Anything else — a file, a folder with files in it (another run, or anything a
//!   user keeps there) — is refused with one line naming it: xtask never writes into a folder
//!   that was not handed to this run. A stored run is continued with `--resume`, never by
//!   pointing `--out` at it.
//! - no `--out`: a new folder `runs/<prefix><timestamp>`, created with `create_dir` (which fails
//!   if the name is taken, even by a process that took it a microsecond earlier); a taken name
//!   gets `-2`, `-3`, ... appended, so two runs started in the same second get two folders.
//!
//! Every file is written through [`crate::output::files::write_via`] (temporary file + rename). The
//! folders this run created (the run folder, and `runs/` or the parents of `--out` if they were
//! missing) are removed again when the `RunDir` is dropped while they are still empty, i.e.
//! when the run failed before writing anything.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Error;
use crate::output::files::{self, io_error};

/// Where default run folders go, relative to the working directory.
pub const RUNS_DIR: &str = "runs";

/// How many `-N` suffixes to try before giving up on a default name.
const MAX_SUFFIX: u32 = 10_000;

/// An output folder owned by this run.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// The folders this run created, outermost first (removed again while empty).
    created: Vec<PathBuf>,
    /// The folder's lock, held while the run uses it (see [`RunDir::locked`]).
    lock: Option<fs::File>,
}

impl RunDir {
    /// The folder given by `--out` (new or empty), or a new `runs/<prefix><timestamp>`.
    pub fn create(out: Option<&Path>, prefix: &str) -> Result<RunDir, Error> {
        match out {
            Some(path) => Self::claim(path),
            None => {
                let (path, created) =
                    create_unique(Path::new(RUNS_DIR), &format!("{prefix}{}", timestamp()))?;
                RunDir::new(path, created).locked("run folder")
            }
        }
    }

    /// `--out path`: creates it, or accepts it if it is an empty directory.
    fn claim(path: &Path) -> Result<RunDir, Error> {
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err(Error::Usage("--out needs a folder name".into()));
        }
        match fs::metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut created = create_parents(path).map_err(|(dir, e)| {
                    Error::Usage(format!(
                        "--out {shown}: cannot create {}: {e}",
                        dir.display()
                    ))
                })?;
                match fs::create_dir(path) {
                    Ok(()) => {
                        created.push(path.to_path_buf());
                        RunDir::new(path.to_path_buf(), created).locked("--out")
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        Err(Error::Usage(match fs::read_link(path) {
                            Ok(target) => format!(
                                "--out {shown} is a link to {}, which does not exist; give a \
                                 new or empty folder (or create {0} first)",
                                target.display()
                            ),
                            // Created by someone else since we looked: not ours.
                            Err(_) => {
                                format!("--out {shown} exists already; give a new or empty folder")
                            }
                        }))
                    }
                    Err(e) => Err(Error::Usage(format!(
                        "--out {shown}: cannot create it: {e}"
                    ))),
                }
            }
            Err(e) => Err(Error::Usage(format!("--out {shown}: {e}"))),
            Ok(meta) if !meta.is_dir() => Err(Error::Usage(format!(
                "--out {shown} exists and is not a directory; give a new or empty folder"
            ))),
            Ok(_) => {
                let mut entries = fs::read_dir(path)
                    .map_err(|e| Error::Usage(format!("--out {shown}: cannot read it: {e}")))?;
                if entries.next().is_some() {
                    let hint = held_run_hint(path);
                    return Err(Error::Usage(format!(
                        "--out {shown} is not empty; give a new or empty folder{hint}"
                    )));
                }
                // An empty folder this process cannot write into fails here, not once the
                // data has loaded (a probe file, removed at once).
                drop(
                    norma_io::AtomicFile::create(&path.join("config.json")).map_err(|e| {
                        Error::Usage(format!(
                        "--out {shown}: cannot write into it ({}); give a folder you can write to",
                        files::write_refusal(&e)
                    ))
                    })?,
                );
                let dir = RunDir::new(path.to_path_buf(), Vec::new()).locked("--out")?;
                // Another run may have claimed the folder between the look and the lock.
                if fs::read_dir(path).map_or(true, |mut e| e.next().is_some()) {
                    return Err(Error::Usage(format!(
                        "--out {shown} is not empty any more; give a new or empty folder"
                    )));
                }
                Ok(dir)
            }
        }
    }

    /// The folder of a stored run given by `flag` (`--resume`), to continue writing in it.
    pub fn existing(flag: &str, path: &Path) -> Result<RunDir, Error> {
        if !path.is_dir() {
            let what = if path.exists() {
                "not a directory (give the run's folder)"
            } else {
                "no such directory"
            };
            return Err(Error::Usage(format!("{flag} {}: {what}", path.display())));
        }
        RunDir::new(path.to_path_buf(), Vec::new()).locked(flag)
    }

    /// A new subfolder `name` of this run (e.g. one run of a sweep), created exclusively.
    pub fn subdir(&self, name: &str) -> Result<RunDir, Error> {
        let path = self.path.join(name);
        fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(RunDir::new(path.clone(), vec![path]))
    }

    fn new(path: PathBuf, created: Vec<PathBuf>) -> RunDir {
        RunDir {
            path,
            created,
            lock: None,
        }
    }

    /// Takes an exclusive lock on the folder for as long as this `RunDir` lives (the system
    /// releases it when the process ends, however it ends), so that two runs — say the same
    /// `--resume` in two terminals — never write into one folder together. `flag` names the
    /// folder in the error.
    fn locked(mut self, flag: &str) -> Result<RunDir, Error> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let shown = self.path.display();
            let handle = fs::File::open(&self.path)
                .map_err(|e| Error::Usage(format!("{flag} {shown}: cannot open it: {e}")))?;
            // SAFETY: flock on a descriptor we own; it does not touch memory.
            if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(Error::Usage(format!(
                    "{flag} {shown}: another xtask run is using this folder right now"
                )));
            }
            self.lock = Some(handle);
        }
        Ok(self)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `bytes` to `name`, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        files::write_atomic(&self.file(name), bytes)
    }

    /// Writes `value` as JSON to `name`, atomically.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<(), Error> {
        files::write_json(&self.file(name), value)
    }

    /// Writes `name` through `produce`, which writes to the temporary path it is given (for
    /// writers that need a path, such as plotters), then renames it into place.
    pub fn write_via(
        &self,
        name: &str,
        produce: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<(), Error> {
        files::write_via(&self.file(name), produce)
    }
}

impl Drop for RunDir {
    /// Removes the folders this run created, innermost first, as long as they are empty
    /// (`remove_dir` fails on anything else).
    fn drop(&mut self) {
        self.lock = None;
        for dir in self.created.iter().rev() {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// What the refusal of a non-empty `--out` adds when the folder holds a run: a `train-lenet`
/// run can be continued with `--resume`; the other experiments (whose `config.json` names
/// them) cannot.
fn held_run_hint(path: &Path) -> String {
    let shown = path.display();
    let config = path.join("config.json");
    if !config.is_file() {
        return String::new();
    }
    let experiment = files::read_json::<serde_json::Value>(&config)
        .ok()
        .and_then(|v| v.get("experiment")?.as_str().map(str::to_string));
    match experiment {
        Some(name) => format!(" (it holds a {name} run)"),
        None => format!(" (it holds a run: continue it with --resume {shown})"),
    }
}

/// Creates the missing ancestors of `path`, outermost first, and returns those it created;
/// on failure, the folder that could not be created and why.
fn create_parents(path: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let missing: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !a.exists())
        .collect();
    let mut created = Vec::new();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => created.push(dir.to_path_buf()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err((dir.to_path_buf(), e)),
        }
    }
    Ok(created)
}

/// Creates `parent/stem`, or `parent/stem-2`, `-3`, ... if taken (and `parent` if missing);
/// returns it and the folders created, outermost first.
fn create_unique(parent: &Path, stem: &str) -> Result<(PathBuf, Vec<PathBuf>), Error> {
    let mut created = Vec::new();
    let mut parent_missing = 0;
    let mut n = 1;
    while n <= MAX_SUFFIX {
        let path = match n {
            1 => parent.join(stem),
            _ => parent.join(format!("{stem}-{n}")),
        };
        match fs::create_dir(&path) {
            Ok(()) => {
                created.push(path.clone());
                return Ok((path, created));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            // `parent` is missing: not made yet, or just removed again by a run that failed.
            Err(e) if e.kind() == ErrorKind::NotFound && parent_missing < 3 => {
                parent_missing += 1;
                created.extend(create_parents(&path).map_err(|(dir, e)| {
                    Error::Usage(format!("cannot create the folder {}: {e}", dir.display()))
                })?);
            }
            Err(e) => {
                return Err(Error::Usage(format!(
                    "cannot create the run folder {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Err(Error::Usage(format!(
        "{}: {MAX_SUFFIX} folders named {stem}-N exist already; pass --out",
        parent.display()
    )))
}

/// The current UTC time as `YYYYMMDD-HHMMSS`, for default output folders.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(r: Result<RunDir, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn out_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/b/run");
        let dir = RunDir::create(Some(&new), "").unwrap();
        assert!(new.is_dir());
        dir.write("x.txt", b"1").unwrap();
        drop(dir);
        let err = usage(RunDir::create(Some(&new), ""));
        assert!(err.contains("is not empty") && err.contains("run"), "{err}");
        assert_eq!(fs::read_to_string(new.join("x.txt")).unwrap(), "1");

        fs::write(new.join("config.json"), "{}").unwrap();
        assert!(usage(RunDir::create(Some(&new), "")).contains("--resume"));
        fs::write(new.join("config.json"), r#"{"experiment": "placement"}"#).unwrap();
        let err = usage(RunDir::create(Some(&new), ""));
        assert!(
            err.contains("it holds a placement run") && !err.contains("--resume"),
            "{err}"
        );

        let file = tmp.path().join("file");
        fs::write(&file, "mine").unwrap();
        assert!(usage(RunDir::create(Some(&file), "")).contains("is not a directory"));
        assert_eq!(fs::read_to_string(&file).unwrap(), "mine");

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        drop(RunDir::create(Some(&empty), "").unwrap());
        assert!(empty.is_dir(), "a folder the user made is never removed");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_in_use_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(Some(&tmp.path().join("run")), "").unwrap();
        run.write("config.json", b"{}").unwrap();
        let err = RunDir::existing("--resume", run.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another xtask run is using this folder"),
            "{err}"
        );
        let path = run.path().to_path_buf();
        drop(run);
        RunDir::existing("--resume", &path).unwrap();
    }

    #[test]
    fn unused_folders_this_run_created_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/run");
        drop(RunDir::create(Some(&path), "").unwrap());
        assert!(!tmp.path().join("a").exists());
        // A parent that holds something else stays.
        let dir = RunDir::create(Some(&path), "").unwrap();
        fs::write(tmp.path().join("a/keep"), "").unwrap();
        drop(dir);
        assert!(!path.exists() && tmp.path().join("a/keep").exists());
    }

    #[test]
    fn concurrent_runs_with_the_same_stamp_get_different_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().to_path_buf();
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| create_unique(&parent, "20260101-000000").unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8, "{names:?}");
        assert!(names.contains(&"20260101-000000".to_string()));
        assert!(names.contains(&"20260101-000000-8".to_string()));
    }

    #[test]
    fn timestamps_are_sortable_dates() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(&t[8..9], "-");
        assert!(t[..8]
            .chars()
            .chain(t[9..].chars())
            .all(|c| c.is_ascii_digit()));
    }
}
