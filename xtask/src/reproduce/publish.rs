//! The published document: docs/experiments.md and, beside it in docs/experiments/, the result
//! files it cites, so that anyone can check that every number in the document is what the
//! template renders from the committed results (`cargo xtask reproduce --check`, run by the
//! tests), and regenerate any section on their own machine.
//!
//! - `--publish <reproduce folder>`: for every section whose jobs all finished there at the
//!   documented budgets (the `.done.json` markers record the commands of today's plan), the
//!   files the document cites are copied into `docs/experiments/<section>/`, replacing that
//!   section's earlier results as a whole (the sections the folder did not run keep theirs);
//!   then the document is rendered from docs/experiments/.
//! - `--check`: renders the document from docs/experiments/ and compares it with
//!   docs/experiments.md; `--check --write` writes it instead (after editing the template).
//!   A file in docs/experiments/ that the document does not cite is an error too: the folder
//!   holds what the document shows, nothing stale.
//!
//! A section is published with its done markers, which record each job's wall time and the
//! machine, version and commit it ran on; sections published at different times say so.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::plan::Section;
use super::render::{self, Options, Rendered, TEMPLATE};
use super::{done_marker, Done, Manifest, MANIFEST};
use crate::error::Error;
use crate::output::files;

/// The results folder inside docs/.
const RESULTS: &str = "experiments";
/// The document inside docs/.
const DOCUMENT: &str = "experiments.md";

/// The repository's docs/ folder (the source tree xtask was built from).
pub fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
}

/// `--publish run`: see the module docs. Returns the document's path.
pub fn publish(run: &Path, docs: &Path) -> Result<PathBuf, Error> {
    publish_with(TEMPLATE, run, docs)
}

/// `--check` (or `--check --write`): see the module docs.
pub fn check(docs: &Path, write: bool) -> Result<(), Error> {
    check_with(TEMPLATE, docs, write)
}

fn publish_with(template: &str, run: &Path, docs: &Path) -> Result<PathBuf, Error> {
    let manifest: Manifest = files::read_json(&run.join(MANIFEST)).map_err(|_| {
        Error::Usage(format!(
            "--publish {}: no readable {MANIFEST} there (not a reproduce folder)",
            run.display()
        ))
    })?;
    if manifest.quick {
        return Err(Error::Usage(format!(
            "--publish {}: that folder ran with --quick, whose numbers mean nothing; publish a \
             run at the documented budgets",
            run.display()
        )));
    }
    let sections = finished_sections(run, true);
    if sections.is_empty() {
        return Err(Error::Usage(format!(
            "--publish {}: no section finished all its jobs there",
            run.display()
        )));
    }
    let rendered = render::render(template, run, &sections, &options(""))?;
    let results = docs.join(RESULTS);
    fs::create_dir_all(&results).map_err(files::io_error(&results))?;
    for section in &sections {
        replace_section(run, &results, *section, &rendered.cited)?;
        eprintln!("published {}", section.name());
    }
    let path = docs.join(DOCUMENT);
    let rendered = render_published(template, docs)?;
    files::write_atomic(&path, rendered.text.as_bytes())?;
    Ok(path)
}

fn check_with(template: &str, docs: &Path, write: bool) -> Result<(), Error> {
    let rendered = render_published(template, docs)?;
    let path = docs.join(DOCUMENT);
    let results = docs.join(RESULTS);
    let uncited: Vec<String> = relative_files(&results)?
        .into_iter()
        .filter(|f| !rendered.cited.contains(f))
        .collect();
    if !uncited.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds files the document does not cite (remove them): {}",
            results.display(),
            uncited.join(", ")
        )));
    }
    if write {
        return files::write_atomic(&path, rendered.text.as_bytes());
    }
    let committed = fs::read_to_string(&path).map_err(files::io_error(&path))?;
    if committed == rendered.text {
        return Ok(());
    }
    let differs = committed
        .lines()
        .zip(rendered.text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(committed.lines().count().min(rendered.text.lines().count()));
    let line = |text: &str| {
        text.lines()
            .nth(differs)
            .unwrap_or("(end of file)")
            .to_string()
    };
    Err(Error::Usage(format!(
        "{} is not what the template renders from {}: line {} is `{}`, the rendering has `{}` \
         (after editing the template: cargo xtask reproduce --check --write)",
        path.display(),
        results.display(),
        differs + 1,
        line(&committed),
        line(&rendered.text)
    )))
}

/// The document rendered from docs/experiments/, its figures linked from docs/.
fn render_published(template: &str, docs: &Path) -> Result<Rendered, Error> {
    let results = docs.join(RESULTS);
    let sections = finished_sections(&results, false);
    render::render(
        template,
        &results,
        &sections,
        &options(&format!("{RESULTS}/")),
    )
}

fn options(link: &str) -> Options<'_> {
    Options { quick: false, link }
}

/// The sections of `dir` whose jobs (at the documented budgets) all have done markers that
/// record today's plan's command; with `say`, those that ran another command are named.
fn finished_sections(dir: &Path, say: bool) -> Vec<Section> {
    Section::ALL
        .into_iter()
        .filter(|section| {
            section.jobs(false).iter().all(|job| {
                let marker = done_marker(&dir.join(section.name()).join(&job.name));
                let planned = [&["cargo".to_string(), "xtask".into()], &job.args[..]].concat();
                match files::read_json::<Done>(&marker) {
                    Ok(done) if done.command == planned => true,
                    Ok(done) => {
                        if say {
                            eprintln!(
                                "{}/{} ran `{}`, not today's `{}`: the section is not published",
                                section.name(),
                                job.name,
                                done.command.join(" "),
                                planned.join(" ")
                            );
                        }
                        false
                    }
                    Err(_) => false,
                }
            })
        })
        .collect()
}

/// Replaces `results/<section>/` with the files of `run/<section>/` that `cited` names and
/// the section's done markers: copied into a staging folder first, then swapped in by two
/// renames, so that a failure leaves the earlier results as they were.
fn replace_section(
    run: &Path,
    results: &Path,
    section: Section,
    cited: &BTreeSet<String>,
) -> Result<(), Error> {
    let name = section.name();
    let staging = results.join(format!(".staging-{name}"));
    let old = results.join(format!(".old-{name}"));
    for leftover in [&staging, &old] {
        if leftover.exists() {
            fs::remove_dir_all(leftover).map_err(files::io_error(leftover))?;
        }
    }
    let markers = section
        .jobs(false)
        .into_iter()
        .map(|job| format!("{name}/{}.done.json", job.name));
    let prefix = format!("{name}/");
    let wanted: BTreeSet<String> = cited
        .iter()
        .filter(|f| f.starts_with(&prefix))
        .cloned()
        .chain(markers)
        .collect();
    for file in &wanted {
        let to = staging.join(&file[prefix.len()..]);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(files::io_error(parent))?;
        }
        let from = run.join(file);
        fs::copy(&from, &to).map_err(files::io_error(&from))?;
    }
    let target = results.join(name);
    if target.exists() {
        fs::rename(&target, &old).map_err(files::io_error(&target))?;
    }
    fs::rename(&staging, &target).map_err(files::io_error(&staging))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(files::io_error(&old))?;
    }
    Ok(())
}

/// Every file under `dir`, as a `/`-separated path relative to it (none if it does not exist).
fn relative_files(dir: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let folder = dir.join(&relative);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(files::io_error(&folder)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(files::io_error(&folder))?;
            let path = relative.join(entry.file_name());
            if entry
                .file_type()
                .map_err(files::io_error(&folder))?
                .is_dir()
            {
                stack.push(path);
            } else {
                let parts: Vec<String> = path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "# doc\n{{#section drift}}\n{{commands drift}}\n\
         {{seeds drift/seed{seed}/m.json /acc}}\n{{figure drift/seed0/f.svg F}}\n\
         {{else}}\ndrift not published\n{{/section}}\n";

    /// A reproduce folder in which drift finished (every job, today's commands).
    fn run_folder(acc: f64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        files::write_json(
            &run.join(MANIFEST),
            &Manifest {
                quick: false,
                norma_version: "0".into(),
                command: vec![],
            },
        )
        .unwrap();
        for job in Section::Drift.jobs(false) {
            let folder = run.join("drift").join(&job.name);
            fs::create_dir_all(&folder).unwrap();
            fs::write(folder.join("m.json"), format!(r#"{{"acc": {acc}}}"#)).unwrap();
            fs::write(folder.join("f.svg"), "<svg/>").unwrap();
            fs::write(folder.join("big.safetensors"), "weights").unwrap();
            let command = [&["cargo".to_string(), "xtask".into()], &job.args[..]].concat();
            files::write_json(&done_marker(&folder), &Done::new(command, 61.0)).unwrap();
        }
        dir
    }

    #[test]
    fn publishing_copies_what_the_document_cites_and_check_holds_it_to_that() {
        let docs = tempfile::tempdir().unwrap();
        let d = docs.path();
        // Nothing published yet: the document says so, and checks against that.
        check_with(TEMPLATE, d, true).unwrap();
        assert_eq!(
            fs::read_to_string(d.join(DOCUMENT)).unwrap(),
            "# doc\ndrift not published\n"
        );
        let run = run_folder(0.5);
        publish_with(TEMPLATE, run.path(), d).unwrap();
        let doc = fs::read_to_string(d.join(DOCUMENT)).unwrap();
        assert!(doc.contains("0.5000 (0.5000–0.5000, 3 seeds)"), "{doc}");
        assert!(doc.contains("](experiments/drift/seed0/f.svg)"), "{doc}");
        assert!(doc.contains("# 1m01s"), "{doc}");
        assert!(doc.contains("cores), norma"), "{doc}");
        // Only what is cited (and the markers) was copied: no weights.
        assert!(d.join("experiments/drift/seed2/m.json").is_file());
        assert!(d.join("experiments/drift/seed0.done.json").is_file());
        assert!(!d.join("experiments/drift/seed0/big.safetensors").exists());
        check_with(TEMPLATE, d, false).unwrap();

        // A hand-edited number fails the check, naming the line.
        fs::write(d.join(DOCUMENT), doc.replace("0.5000 (", "0.9000 (")).unwrap();
        let e = check_with(TEMPLATE, d, false).unwrap_err().to_string();
        assert!(e.contains("is `0.9000 (0.5000"), "{e}");
        // So does a stale file nobody cites.
        check_with(TEMPLATE, d, true).unwrap();
        fs::write(d.join("experiments/drift/old.csv"), "x").unwrap();
        let e = check_with(TEMPLATE, d, false).unwrap_err().to_string();
        assert!(e.contains("drift/old.csv"), "{e}");
        fs::remove_file(d.join("experiments/drift/old.csv")).unwrap();

        // A later run replaces the section as a whole.
        let again = run_folder(0.75);
        publish_with(TEMPLATE, again.path(), d).unwrap();
        let doc = fs::read_to_string(d.join(DOCUMENT)).unwrap();
        assert!(doc.contains("0.7500 (0.7500–0.7500, 3 seeds)"), "{doc}");
        assert!(!d.join(".staging-drift").exists() && !d.join("experiments/.old-drift").exists());
    }

    #[test]
    fn quick_runs_unfinished_sections_and_other_commands_are_not_published() {
        let docs = tempfile::tempdir().unwrap();
        let run = run_folder(0.5);
        let manifest = run.path().join(MANIFEST);
        let mut quick: Manifest = files::read_json(&manifest).unwrap();
        quick.quick = true;
        files::write_json(&manifest, &quick).unwrap();
        let e = publish_with(TEMPLATE, run.path(), docs.path()).unwrap_err();
        assert!(e.to_string().contains("--quick"), "{e}");

        let run = run_folder(0.5);
        let marker = done_marker(&run.path().join("drift/seed1"));
        files::write_json(
            &marker,
            &Done::new(vec!["cargo".into(), "xtask".into()], 1.0),
        )
        .unwrap();
        let e = publish_with(TEMPLATE, run.path(), docs.path()).unwrap_err();
        assert!(e.to_string().contains("no section finished"), "{e}");
        assert!(!docs.path().join("experiments/drift").exists());
    }
}
