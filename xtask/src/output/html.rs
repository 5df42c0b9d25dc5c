//! `report.html`: one self-contained page per experiment run — the configuration, the tables
//! and the figures (inline SVG) — readable by opening the file in a browser, with no server and
//! no network: no script, no external style sheet, font or image.
//!
//! Every experiment builds a [`Page`] from blocks in reading order and writes it with
//! [`Page::write`] (atomically, through the run folder). All text given to a page is escaped;
//! figures come from [`crate::output::plot`], whose SVG escapes its own text, and are inlined
//! as they are (after a check that they are a single `<svg>` element).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::output::plot::Figure;
use crate::output::run_dir::RunDir;
use crate::output::table::Table;

/// The file every experiment writes into its run folder.
pub const REPORT: &str = "report.html";

/// One block of a page, in reading order.
#[derive(Debug, Clone)]
enum Block {
    Heading(String),
    Text(String),
    Pre(String),
    Table(Table),
    Figure(Figure),
    /// A figure that could not be drawn, and why.
    Missing {
        what: String,
        why: String,
    },
}

/// A report page under construction.
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    blocks: Vec<Block>,
}

impl Page {
    /// An empty page with this title.
    pub fn new(title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            blocks: Vec::new(),
        }
    }

    /// A section heading.
    pub fn heading(&mut self, text: impl Into<String>) -> &mut Page {
        self.blocks.push(Block::Heading(text.into()));
        self
    }

    /// A paragraph of plain text.
    pub fn text(&mut self, text: impl Into<String>) -> &mut Page {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    /// Preformatted text (the table a command printed, a command line).
    pub fn pre(&mut self, text: impl Into<String>) -> &mut Page {
        self.blocks.push(Block::Pre(text.into()));
        self
    }

    /// A table.
    pub fn table(&mut self, table: Table) -> &mut Page {
        self.blocks.push(Block::Table(table));
        self
    }

    /// A figure drawn by [`crate::output::plot`]; a figure that failed to draw is shown as a note
    /// naming `what` and the reason, so the page stays complete.
    pub fn figure(&mut self, what: &str, figure: Result<Figure, Error>) -> &mut Page {
        match figure {
            Ok(f) => self.blocks.push(Block::Figure(f)),
            Err(e) => {
                eprintln!("warning: {what} not drawn: {e}");
                self.blocks.push(Block::Missing {
                    what: what.to_string(),
                    why: e.to_string(),
                });
            }
        }
        self
    }

    /// The configuration section: the command line and every field of `config` (nested
    /// fields as `a.b`, list items as `a[0]`), one row each.
    pub fn config(&mut self, config: &impl Serialize) -> &mut Page {
        self.heading("Configuration");
        let value = serde_json::to_value(config).unwrap_or(Value::Null);
        if let Some(command) = value.get("command").and_then(Value::as_array) {
            let words: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
            self.pre(words.join(" "));
        }
        let mut table = Table::new(["setting", "value"]);
        let mut rows = Vec::new();
        flatten("", &value, &mut rows);
        for (key, v) in rows {
            if key != "command" && !key.starts_with("command[") {
                table.row([key, v]);
            }
        }
        self.table(table)
    }

    /// The complete HTML document.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(t) => {
                    let _ = writeln!(s, "<h2>{}</h2>", escape(t));
                }
                Block::Text(t) => {
                    let _ = writeln!(s, "<p>{}</p>", escape(t));
                }
                Block::Pre(t) => {
                    let _ = writeln!(s, "<pre>{}</pre>", escape(t));
                }
                Block::Table(t) => render_table(&mut s, t),
                Block::Figure(f) => render_figure(&mut s, f),
                Block::Missing { what, why } => {
                    let _ = writeln!(
                        s,
                        "<p class=\"missing\">{} was not drawn: {}</p>",
                        escape(what),
                        escape(why)
                    );
                }
            }
        }
        s.push_str("</body>\n</html>\n");
        s
    }

    /// Writes the page to `report.html` in `dir`, atomically.
    pub fn write(&self, dir: &RunDir) -> Result<(), Error> {
        dir.write(REPORT, self.render().as_bytes())
    }
}

/// Plain, readable, printable; no external resources.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:2em auto;max-width:1400px;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:0.8em 0;font-variant-numeric:tabular-nums}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}\
figcaption{color:#555;font-size:0.9em}.missing{color:#a00}";

fn render_table(s: &mut String, t: &Table) {
    s.push_str("<table>\n<thead><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{}</td>", escape(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
}

fn render_figure(s: &mut String, f: &Figure) {
    s.push_str("<figure>\n");
    match inline_svg(&f.svg) {
        Some(svg) => s.push_str(svg),
        None => {
            let _ = write!(s, "<p class=\"missing\">not a single SVG element</p>");
        }
    }
    let _ = writeln!(
        s,
        "\n<figcaption>{} (also {}.png and {}.svg in this folder).</figcaption>\n</figure>",
        escape(f.caption.trim_end_matches('.')),
        escape(&f.stem),
        escape(&f.stem)
    );
}

/// The `<svg>…</svg>` element of an SVG document (an XML declaration or comment before it is
/// dropped), or `None` if the text is not one SVG element.
fn inline_svg(svg: &str) -> Option<&str> {
    let start = svg.find("<svg")?;
    let end = svg.rfind("</svg>")? + "</svg>".len();
    let body = &svg[start..end];
    // Nothing that would run or fetch anything.
    let lower = body.to_ascii_lowercase();
    if lower.contains("<script") || lower.contains("href=\"http") || lower.contains("<foreign") {
        return None;
    }
    Some(body)
}

/// `text` with the five HTML-special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every leaf of `value` as (`dotted.key[i]`, text), in document order.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::Array(_) => out.push((prefix.to_string(), "none".into())),
        Value::Null => out.push((prefix.to_string(), "none".into())),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> Figure {
        Figure {
            stem: "curves".into(),
            caption: "Loss & accuracy".into(),
            svg: "<?xml version=\"1.0\"?>\n<svg width=\"10\" height=\"10\" \
                  xmlns=\"http://www.w3.org/2000/svg\"><text>a &lt; b</text></svg>\n"
                .into(),
        }
    }

    #[test]
    fn a_page_is_complete_html_with_the_figure_inlined_and_text_escaped() {
        let mut page = Page::new("Run <1> & \"2\"");
        page.text("accuracy < 0.5 & loss > 2")
            .figure("the curves", Ok(figure()));
        let mut t = Table::new(["model", "acc"]);
        t.row(["<lenet>", "0.9"]);
        page.table(t);
        let html = page.render();
        assert!(html.starts_with("<!DOCTYPE html>\n<html"), "{html}");
        assert!(html.ends_with("</body>\n</html>\n"));
        assert!(html.contains("<title>Run &lt;1&gt; &amp; &quot;2&quot;</title>"));
        assert!(html.contains("<p>accuracy &lt; 0.5 &amp; loss &gt; 2</p>"));
        assert!(html.contains("<td>&lt;lenet&gt;</td>"));
        // The SVG element itself, without its XML declaration, inside a figure.
        assert!(html.contains("<figure>\n<svg width=\"10\""), "{html}");
        assert!(!html.contains("<?xml"));
        assert!(html.contains("<text>a &lt; b</text></svg>"));
        assert!(html.contains("Loss &amp; accuracy"));
        // Nothing is fetched from anywhere.
        for external in ["<script", "<link", "src=", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        assert_eq!(
            html.matches("<table>").count(),
            html.matches("</table>").count()
        );
    }

    #[test]
    fn a_figure_that_failed_is_a_note_and_a_script_is_never_inlined() {
        let mut page = Page::new("t");
        page.figure("the chart", Err(Error::Plot("no font".into())));
        let mut bad = figure();
        bad.svg = "<svg><script>alert(1)</script></svg>".into();
        page.figure("bad", Ok(bad));
        let html = page.render();
        assert!(
            html.contains("the chart was not drawn: plot: no font"),
            "{html}"
        );
        assert!(!html.contains("alert"), "{html}");
    }

    #[test]
    fn the_configuration_lists_every_field() {
        let config = serde_json::json!({
            "command": ["cargo", "xtask", "placement", "--seeds", "3"],
            "seeds": [0, 1],
            "out": null,
            "data": {"dataset": "fashion-mnist"}
        });
        let mut page = Page::new("t");
        page.config(&config);
        let html = page.render();
        assert!(
            html.contains("<pre>cargo xtask placement --seeds 3</pre>"),
            "{html}"
        );
        for row in [
            "<td>seeds[1]</td><td>1</td>",
            "<td>out</td><td>none</td>",
            "<td>data.dataset</td><td>fashion-mnist</td>",
        ] {
            assert!(html.contains(row), "{row} in {html}");
        }
        assert!(!html.contains("<td>command"), "{html}");
    }
}
