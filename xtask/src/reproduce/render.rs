//! The document of a reproduce folder: `docs/experiments.template.md` with every number,
//! table and figure taken from the results in the folder, so that none is typed by hand.
//!
//! The template is Markdown with directives in double braces, each on one line or inside one:
//!
//! - `{{value FILE POINTER}}`: the JSON value at `POINTER` (RFC 6901, `/0/final_test_acc`) in
//!   `FILE`; numbers with 4 decimals.
//! - `{{seeds FILE POINTER}}`: the same over the seeds, `FILE` holding `{seed}`: the median
//!   and the range, `0.8712 (0.8660–0.8741, 3 seeds)`.
//! - `{{table FILE [COLUMN...]}}`: a CSV file as a Markdown table, all its columns or the
//!   ones named (by their header, in the order given).
//! - `{{seeds-table FILE [COLUMN...]}}`: the CSV files `FILE` names with `{seed}` for each seed, of the
//!   same header and rows, as one table: a cell that differs over seeds reads
//!   `median (min–max)` if it is a number, else the seeds' values `a / b / c`; one that does
//!   not differ, its value (labels like the epoch or the lr).
//! - `{{figure FILE CAPTION}}`: an image of the folder, checked to exist.
//! - `{{commands SECTION}}`: the commands the section ran, from their `.done.json` markers,
//!   with their wall times and the machine, version and commit they ran on.
//! - `{{meta budgets}}`: the budgets (documented or `--quick`).
//! - `{{#section NAME}}` … `{{else}}` … `{{/section}}`: the first part only when that section
//!   ran, the optional second part only when it did not.
//!
//! `FILE` is relative to the results folder (a reproduce folder, or docs/experiments/ for the
//! published document); figures are linked through a prefix from where the document lies. A
//! directive that names a missing file, pointer or section is an error naming the template
//! line: a document is complete or not written. The rendering also returns every file it read
//! ([`Rendered::cited`]), which is what `--publish` copies into the repository.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::plan::{Section, SEEDS};
use super::Done;
use crate::error::Error;
use crate::output::files;

/// The template, compiled in so that the binary renders the document anywhere.
pub const TEMPLATE: &str = include_str!("../../../docs/experiments.template.md");

/// Renders [`TEMPLATE`] from the results in `dir` (the `sections` that ran) into
/// `dir/experiments.md`; returns its path.
pub fn render_document(dir: &Path, sections: &[Section], quick: bool) -> Result<PathBuf, Error> {
    let rendered = render(TEMPLATE, dir, sections, &Options { quick, link: "" })?;
    let path = dir.join("experiments.md");
    files::write_atomic(&path, rendered.text.as_bytes())?;
    Ok(path)
}

/// How a document is rendered.
pub struct Options<'a> {
    /// The results are from `--quick` budgets (said in `{{meta budgets}}`).
    pub quick: bool,
    /// Prefix of figure links: the results folder as seen from the document's folder.
    pub link: &'a str,
}

/// A rendered document and the result files it was made from.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    /// Every file a directive read or linked, relative to the results folder.
    pub cited: BTreeSet<String>,
}

/// `template` rendered from the results in `dir` (see the module docs).
pub fn render(
    template: &str,
    dir: &Path,
    sections: &[Section],
    options: &Options,
) -> Result<Rendered, Error> {
    let context = Context {
        dir,
        options,
        cited: RefCell::new(BTreeSet::new()),
    };
    let mut out = String::new();
    // Inside a section block: whether the lines at this point are kept.
    let mut keeping: Option<bool> = None;
    for (number, line) in template.lines().enumerate() {
        let fail = |e: String| Error::Usage(format!("template line {}: {e}", number + 1));
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("{{#section ")
            .and_then(|r| r.strip_suffix("}}"))
        {
            let section = Section::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| fail(format!("no section {name}")))?;
            keeping = Some(sections.contains(&section));
            continue;
        }
        match (trimmed, keeping) {
            ("{{else}}", Some(kept)) => {
                keeping = Some(!kept);
                continue;
            }
            ("{{/section}}", Some(_)) => {
                keeping = None;
                continue;
            }
            ("{{else}}" | "{{/section}}", None) => {
                return Err(fail(format!("{trimmed} outside a section")))
            }
            (_, Some(false)) => continue,
            _ => {}
        }
        let rendered = context.expand(line).map_err(fail)?;
        out.push_str(&rendered);
        out.push('\n');
    }
    Ok(Rendered {
        text: out,
        cited: context.cited.into_inner(),
    })
}

/// What the directives read from, and the files they cited so far.
struct Context<'a> {
    dir: &'a Path,
    options: &'a Options<'a>,
    cited: RefCell<BTreeSet<String>>,
}

impl Context<'_> {
    /// `line` with each of its directives replaced.
    fn expand(&self, line: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or("a {{ without }}")?;
            out.push_str(&self.directive(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The path of the result file `file`, recorded as cited.
    fn cite(&self, file: &str) -> Result<PathBuf, String> {
        if Path::new(file).is_absolute() || file.split('/').any(|c| c == "..") {
            return Err(format!(
                "{file}: result files are named inside the results folder"
            ));
        }
        self.cited.borrow_mut().insert(file.to_string());
        Ok(self.dir.join(file))
    }

    fn directive(&self, text: &str) -> Result<String, String> {
        let mut words = text.split_whitespace();
        let kind = words.next().unwrap_or("");
        let mut arg = || {
            words
                .next()
                .ok_or(format!("{{{{{text}}}}} lacks an argument"))
        };
        match kind {
            "value" => {
                let (file, pointer) = (arg()?, arg()?);
                Ok(fmt_value(&self.lookup(file, pointer)?))
            }
            "seeds" => {
                let (file, pointer) = (arg()?, arg()?);
                self.over_seeds(file, pointer)
            }
            "table" => {
                let file = arg()?;
                let columns: Vec<&str> = words.collect();
                let rows = csv_rows(&self.cite(file)?, &columns)?;
                table_text(&rows, file)
            }
            "seeds-table" => {
                let file = arg()?;
                let columns: Vec<&str> = words.collect();
                self.seeds_table(file, &columns)
            }
            "figure" => {
                let file = arg()?;
                let caption: Vec<&str> = words.collect();
                if !self.cite(file)?.is_file() {
                    return Err(format!("no figure {file}"));
                }
                Ok(format!(
                    "![{}]({}{file})",
                    caption.join(" "),
                    self.options.link
                ))
            }
            "commands" => self.commands(arg()?),
            "meta" => match arg()? {
                "budgets" => Ok(if self.options.quick {
                    "tiny (`--quick`: a pipeline check; these numbers mean nothing)".into()
                } else {
                    "the documented".into()
                }),
                other => Err(format!("no meta {other}")),
            },
            other => Err(format!("unknown directive {other:?}")),
        }
    }

    /// The value at `pointer` in the JSON file `file`.
    fn lookup(&self, file: &str, pointer: &str) -> Result<Value, String> {
        let json: Value = files::read_json(&self.cite(file)?).map_err(|e| e.to_string())?;
        json.pointer(pointer)
            .cloned()
            .ok_or_else(|| format!("{file} has nothing at {pointer}"))
    }

    /// The median and range over [`SEEDS`] of a number (see the module docs).
    fn over_seeds(&self, pattern: &str, pointer: &str) -> Result<String, String> {
        if !pattern.contains("{seed}") {
            return Err(format!("{pattern} does not hold {{seed}}"));
        }
        let mut values = Vec::new();
        for seed in SEEDS {
            let file = pattern.replace("{seed}", &seed.to_string());
            let v = self.lookup(&file, pointer)?;
            values.push(
                v.as_f64()
                    .ok_or(format!("{file} {pointer} is not a number: {v}"))?,
            );
        }
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        Ok(format!(
            "{median:.4} ({:.4}–{:.4}, {} seeds)",
            values[0],
            values[values.len() - 1],
            values.len()
        ))
    }

    /// The tables of every seed as one (see the module docs).
    fn seeds_table(&self, pattern: &str, columns: &[&str]) -> Result<String, String> {
        if !pattern.contains("{seed}") {
            return Err(format!("{pattern} does not hold {{seed}}"));
        }
        let mut tables = Vec::new();
        for seed in SEEDS {
            let file = pattern.replace("{seed}", &seed.to_string());
            let rows = csv_rows(&self.cite(&file)?, columns)?;
            tables.push((file, rows));
        }
        let (first_file, first) = &tables[0];
        for (file, rows) in &tables[1..] {
            if rows.len() != first.len() || rows.first() != first.first() {
                return Err(format!(
                    "{file} has not the header and rows of {first_file}"
                ));
            }
        }
        let mut merged = Vec::new();
        for (r, row) in first.iter().enumerate() {
            let mut cells = Vec::new();
            for (c, cell) in row.iter().enumerate() {
                let column: Vec<&str> = tables
                    .iter()
                    .map(|(_, rows)| rows[r].get(c).map_or("", String::as_str))
                    .collect();
                cells.push(if r == 0 || column.iter().all(|v| v == cell) {
                    cell.clone()
                } else {
                    spread(&column).unwrap_or_else(|| column.join(" / "))
                });
            }
            merged.push(cells);
        }
        table_text(&merged, pattern)
    }

    /// The commands section `name` ran, one per line with its wall time, from the done
    /// markers, then the machines, versions and commits they ran on.
    fn commands(&self, name: &str) -> Result<String, String> {
        let section = self.dir.join(name);
        let mut markers: Vec<String> = std::fs::read_dir(&section)
            .map_err(|e| format!("{}: {e}", section.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".done.json"))
            .collect();
        markers.sort();
        let mut out = String::new();
        let mut origins = BTreeSet::new();
        for marker in markers {
            let done: Done = files::read_json(&self.cite(&format!("{name}/{marker}"))?)
                .map_err(|e| e.to_string())?;
            let _ = writeln!(
                out,
                "    {}    # {}",
                done.command.join(" "),
                super::fmt_duration(std::time::Duration::from_secs_f64(done.seconds.max(0.0)))
            );
            origins.insert(done.origin());
        }
        let origins: Vec<String> = origins.into_iter().collect();
        let _ = write!(out, "\n(Wall times of the run on {}.)", origins.join("; "));
        Ok(out)
    }
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `median (min–max)` of numbers given as text; `None` if one is not a number.
fn spread(values: &[&str]) -> Option<String> {
    let mut numbers = values
        .iter()
        .map(|v| v.parse::<f64>().ok())
        .collect::<Option<Vec<f64>>>()?;
    numbers.sort_by(f64::total_cmp);
    // As the CSV has them, cut to 4 decimals.
    let short = |v: f64| match format!("{v}") {
        text if text.split('.').nth(1).is_some_and(|d| d.len() > 4) => format!("{v:.4}"),
        text => text,
    };
    Some(format!(
        "{} ({}–{})",
        short(numbers[numbers.len() / 2]),
        short(numbers[0]),
        short(numbers[numbers.len() - 1])
    ))
}

/// The rows of a CSV file (no quoting: xtask's CSV cells hold no commas), with only the
/// `columns` named (all if none is).
fn csv_rows(path: &Path, columns: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let header = rows.first().ok_or(format!("{} is empty", path.display()))?;
    if columns.is_empty() {
        return Ok(rows);
    }
    let picked = columns
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h == c)
                .ok_or(format!("{} has no column {c}", path.display()))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    Ok(rows
        .iter()
        .map(|row| {
            picked
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect())
}

/// Rows (the first the header) as a Markdown table; long decimals are cut to 4.
fn table_text(rows: &[Vec<String>], name: &str) -> Result<String, String> {
    let (header, body) = rows.split_first().ok_or(format!("{name} is empty"))?;
    let mut out = format!(
        "| {} |\n|{}",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in body {
        let cells: Vec<String> = row
            .iter()
            .map(|c| match c.parse::<f64>() {
                Ok(v) if c.contains('.') && c.len() > 6 => format!("{v:.4}"),
                _ => c.to_string(),
            })
            .collect();
        let _ = write!(out, "\n| {} |", cells.join(" | "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Options = Options {
        quick: true,
        link: "",
    };

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("train")).unwrap();
        for (seed, acc) in SEEDS.iter().zip([0.87, 0.85, 0.9]) {
            let file = dir.path().join(format!("train/seed{seed}.json"));
            std::fs::write(file, format!(r#"[{{"acc": {acc}, "name": "lenet-bn"}}]"#)).unwrap();
        }
        std::fs::write(dir.path().join("t.csv"), "lr,acc\n0.1,0.123456789\n1,x\n").unwrap();
        for (seed, acc) in SEEDS.iter().zip(["0.5", "0.25", "0.75"]) {
            let file = dir.path().join(format!("train/t{seed}.csv"));
            let reached = if *seed == 1 { "not reached" } else { "3" };
            std::fs::write(
                file,
                format!("epoch,acc,model,at\n1,{acc},lenet,{reached}\n"),
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn directives_take_their_values_from_the_results() {
        let dir = folder();
        let d = dir.path();
        let template = "a {{value train/seed0.json /0/acc}} b {{value train/seed0.json /0/name}}\n\
                        {{seeds train/seed{seed}.json /0/acc}}\n{{table t.csv}}\n\
                        {{seeds-table train/t{seed}.csv}}\n{{table t.csv acc}}";
        let text = render(template, d, &Section::ALL, &QUICK).unwrap().text;
        assert!(text.starts_with("a 0.8700 b lenet-bn\n"), "{text}");
        assert!(text.contains("0.8700 (0.8500–0.9000, 3 seeds)"), "{text}");
        assert!(
            text.contains("| lr | acc |\n|---|---|\n| 0.1 | 0.1235 |\n| 1 | x |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| epoch | acc | model | at |\n|---|---|---|---|\n\
                 | 1 | 0.5 (0.25–0.75) | lenet | 3 / not reached / 3 |"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("| acc |\n|---|\n| 0.1235 |\n| x |\n"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_value_file_or_directive_names_the_template_line() {
        let dir = folder();
        for (template, expected) in [
            (
                "ok\n{{value train/seed0.json /0/missing}}",
                "template line 2: train/seed0.json has nothing at /0/missing",
            ),
            ("{{value nowhere.json /0}}", "nowhere.json"),
            ("{{figure img.svg A figure}}", "no figure img.svg"),
            ("{{bogus}}", "unknown directive \"bogus\""),
            ("{{value}}", "lacks an argument"),
            ("{{value a", "a {{ without }}"),
            ("{{#section nothing}}", "no section nothing"),
            ("{{else}}", "{{else}} outside a section"),
            ("{{table t.csv nope}}", "has no column nope"),
            ("{{value ../x.json /a}}", "inside the results folder"),
        ] {
            let e = render(template, dir.path(), &Section::ALL, &QUICK)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{template}: {e}");
        }
    }

    #[test]
    fn sections_that_did_not_run_are_left_out() {
        let dir = folder();
        let template = "top\n{{#section drift}}\n{{value missing.json /x}}\n{{else}}\nnot run\n\
                        {{/section}}\nend";
        let text = render(template, dir.path(), &[Section::Train], &QUICK)
            .unwrap()
            .text;
        assert_eq!(text, "top\nnot run\nend\n");
    }
}
