//! Charts with plotters, each written as PNG and SVG (atomically, through the run folder) and
//! returned as a [`Figure`] whose SVG text `report.html` inlines. [`render`] draws any number
//! of panels side by side ([`render_grid`]: in a grid) with one legend in a strip below them,
//! where it never covers data.
//! Each experiment builds its charts from [`Panel`]s and [`Line`]s in its own module.

use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::Error;
use crate::output::run_dir::RunDir;

/// Where to look for a TrueType font (plotters needs one to lay out text).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers the first font found (or `$NORMA_FONT`) as plotters' "sans-serif", once.
fn ensure_font() -> Result<(), Error> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var("NORMA_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps a 'static reference to the font for the whole process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{path} is not a usable TrueType font"));
            }
        }
        Err(format!(
            "no TrueType font found (looked in {}); install fonts-dejavu-core or set NORMA_FONT",
            FONT_PATHS.join(", ")
        ))
    })
    .clone()
    .map_err(Error::Plot)
}

/// A chart as written: `<stem>.png` and `<stem>.svg` in the run folder, and the SVG text for
/// `report.html`.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name without extension.
    pub stem: String,
    /// One sentence saying what the figure shows (the caption in `report.html`).
    pub caption: String,
    /// The SVG document.
    pub svg: String,
}

/// How one kind of line is drawn, and its legend label. A figure has one list of them; each
/// series names its entry, so the same model looks the same in every panel and one legend
/// serves them all.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    /// Index into the palette.
    pub color: usize,
    pub dashed: bool,
    /// Draw a dot at every point (off for reference lines such as a constant level).
    pub markers: bool,
    /// Join the points with a line (off for a scatter of points, see [`Line::points`]).
    pub joined: bool,
    /// A shaded area rather than a line: its series' points are the outline of a polygon
    /// (see [`band`]), filled in a light shade of the color.
    pub fill: bool,
}

impl Line {
    /// A solid line with dots, in palette color `color`.
    pub fn solid(label: impl Into<String>, color: usize) -> Line {
        Line {
            label: label.into(),
            color,
            dashed: false,
            markers: true,
            joined: true,
            fill: false,
        }
    }

    /// A dashed line with dots.
    pub fn dashed(label: impl Into<String>, color: usize) -> Line {
        Line {
            dashed: true,
            ..Line::solid(label, color)
        }
    }

    /// A dashed line without dots (a reference level).
    pub fn reference(label: impl Into<String>, color: usize) -> Line {
        Line {
            markers: false,
            ..Line::dashed(label, color)
        }
    }

    /// Dots only, not joined (values without an order, such as one per channel).
    pub fn points(label: impl Into<String>, color: usize) -> Line {
        Line {
            joined: false,
            ..Line::solid(label, color)
        }
    }

    /// A shaded range (a min–max band); its series' points come from [`band`].
    pub fn band(label: impl Into<String>, color: usize) -> Line {
        Line {
            markers: false,
            fill: true,
            ..Line::solid(label, color)
        }
    }
}

/// The outline of the area between `lower` and `upper` (points at the same x, in order): along
/// the lower edge, then back along the upper one. Points with a value that is not finite are
/// left out of both edges.
pub fn band(lower: &[(f64, f64)], upper: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let pairs: Vec<((f64, f64), (f64, f64))> = lower
        .iter()
        .zip(upper)
        .filter(|(l, u)| l.1.is_finite() && u.1.is_finite())
        .map(|(l, u)| (*l, *u))
        .collect();
    pairs
        .iter()
        .map(|(l, _)| *l)
        .chain(pairs.iter().rev().map(|(_, u)| *u))
        .collect()
}

/// A curve over seeds: `(x, (median, min, max))` points.
pub type SpreadCurve = Vec<(f64, (f64, f64, f64))>;

/// The series of curves given as [`SpreadCurve`]s, e.g. a measure over
/// seeds: curve k's median on legend line 2k and its min–max band on line 2k + 1, every band
/// before every median so that no band covers a median line.
pub fn median_bands(curves: &[SpreadCurve]) -> Vec<Series> {
    let at = |curve: &[(f64, (f64, f64, f64))], f: fn(&(f64, f64, f64)) -> f64| {
        curve.iter().map(|(x, m)| (*x, f(m))).collect::<Vec<_>>()
    };
    let bands = curves.iter().enumerate().map(|(k, c)| Series {
        line: 2 * k + 1,
        points: band(&at(c, |m| m.1), &at(c, |m| m.2)),
    });
    let medians = curves.iter().enumerate().map(|(k, c)| Series {
        line: 2 * k,
        points: at(c, |m| m.0),
    });
    bands.chain(medians).collect()
}

/// How opaque a band's fill is.
const BAND_OPACITY: f64 = 0.25;

/// One line of a panel: the legend entry it belongs to, and its points.
#[derive(Debug, Clone)]
pub struct Series {
    pub line: usize,
    pub points: Vec<(f64, f64)>,
}

/// One chart panel: `X` and `Y` are plotters' ranges (`a..b`, or `(a..b).log_scale()` for a
/// logarithmic axis).
pub struct Panel<X, Y = std::ops::Range<f64>> {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: X,
    pub y_range: Y,
    pub series: Vec<Series>,
    /// How the x axis is labelled.
    pub x_ticks: XTicks,
}

/// The labels of a panel's x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XTicks {
    /// Each tick's value.
    Plain,
    /// Whole numbers only (epochs).
    Integer,
    /// An axis of −log₂ v, labelled with v at the whole powers of two: v decreasing to the right
    /// on a logarithmic scale (Wu & He's batch-size axis), which plotters' log ranges cannot
    /// reverse.
    DecreasingPowersOfTwo,
}

impl XTicks {
    /// The label of the tick at `v`; empty for a tick that gets none.
    fn label(self, v: f64) -> String {
        let whole = v.fract().abs() < 1e-9;
        match self {
            XTicks::Plain => tick_label(v),
            XTicks::Integer if whole => format!("{v:.0}"),
            XTicks::DecreasingPowersOfTwo if whole => tick_label((-v).exp2()),
            _ => String::new(),
        }
    }
}

/// Tableau's ten colors: distinct, and readable by most color-blind readers.
const COLORS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

fn line_style(line: &Line) -> ShapeStyle {
    ShapeStyle::from(&color(line.color)).stroke_width(3)
}

/// Width of a panel and height of the panels' row, in pixels.
const PANEL_SIZE: (u32, u32) = (640, 480);
/// Height of one row of the legend strip below the panels.
const LEGEND_ROW: u32 = 30;
const LEGEND_FONT: u32 = 18;
/// Dash length and gap of dashed lines, in pixels.
const DASH: (u32, u32) = (10, 6);

fn draw_panel<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: Panel<X, Y>,
    lines: &[Line],
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(panel.x_range, panel.y_range)
        .map_err(err)?;
    let x_ticks = panel.x_ticks;
    let x_format = |v: &f64| x_ticks.label(*v);
    let y_format = |v: &f64| <Y::CoordDescType as ValueFormatter<f64>>::format(&tidy(*v));
    chart
        .configure_mesh()
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for s in panel.series {
        let Some(line) = lines.get(s.line) else {
            return Err(format!("series of unknown legend entry {}", s.line));
        };
        let style = line_style(line);
        if line.fill {
            let shade = color(line.color).mix(BAND_OPACITY).filled();
            chart
                .draw_series(std::iter::once(Polygon::new(s.points, shade)))
                .map_err(err)?;
            continue;
        }
        if !line.joined {
            // Dots only: drawn below.
        } else if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(
                    s.points.clone(),
                    DASH.0,
                    DASH.1,
                    style,
                ))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(s.points.clone(), style))
                .map_err(err)?;
        }
        if line.markers {
            chart
                .draw_series(
                    s.points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, color(line.color).filled())),
                )
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Lays the legend entries out left to right, wrapping to new rows: the top-left corner of
/// each entry relative to the strip, and the number of rows.
fn legend_layout(widths: &[u32], strip_width: u32) -> (Vec<(i32, i32)>, u32) {
    let (margin, sample, gap) = (24, 44, 28);
    let mut at = Vec::with_capacity(widths.len());
    let (mut x, mut row) = (margin, 0u32);
    for &w in widths {
        let entry = sample + w;
        if x > margin && x + entry + margin > strip_width {
            x = margin;
            row += 1;
        }
        at.push((x as i32, (row * LEGEND_ROW) as i32));
        x += entry + gap;
    }
    (at, row + 1)
}

/// The legend's entries and where each goes in the strip.
struct Legend<'a> {
    lines: &'a [Line],
    positions: Vec<(i32, i32)>,
}

/// The legend, in its own strip below the panels, where it can never cover data.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &Legend,
) -> Result<(), String> {
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    for (line, &(x, y)) in legend.lines.iter().zip(&legend.positions) {
        let mid = y + LEGEND_ROW as i32 / 2;
        let sample = vec![(x, mid), (x + 34, mid)];
        if line.fill {
            let shade = color(line.color).mix(BAND_OPACITY).filled();
            area.draw(&Rectangle::new([(x, mid - 8), (x + 34, mid + 8)], shade))
                .map_err(e)?;
        } else if !line.joined {
            // Its dot alone, below.
        } else if line.dashed {
            area.draw(&DashedPathElement::new(
                sample,
                DASH.0,
                DASH.1,
                line_style(line),
            ))
            .map_err(e)?;
        } else {
            area.draw(&PathElement::new(sample, line_style(line)))
                .map_err(e)?;
        }
        if line.markers {
            area.draw(&Circle::new((x + 17, mid), 4, color(line.color).filled()))
                .map_err(e)?;
        }
        let style = font
            .clone()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(line.label.clone(), (x + 44, mid), style))
            .map_err(e)?;
    }
    Ok(())
}

fn draw_all<DB, X, Y>(
    root: DrawingArea<DB, Shift>,
    panels: Vec<Panel<X, Y>>,
    grid: Grid,
    legend: &Legend,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let rows = grid.rows(panels.len());
    let (charts, strip) = root.split_vertically(grid.panel.1 * rows as u32);
    let cells = charts.split_evenly((rows, grid.columns.max(1)));
    for (area, panel) in cells.iter().zip(panels) {
        draw_panel(area, panel, legend.lines)?;
    }
    draw_legend(&strip, legend)?;
    root.present().map_err(|e| e.to_string())
}

/// How [`render_grid`] lays panels out: `columns` a row, rows filled left to right, each
/// panel `panel` pixels (width, height).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub columns: usize,
    pub panel: (u32, u32),
}

impl Grid {
    /// All `n` panels side by side at the default panel size.
    pub fn row(n: usize) -> Grid {
        Grid {
            columns: n.max(1),
            panel: PANEL_SIZE,
        }
    }

    /// `columns` panels a row at the default panel size (four panels as two rows of two).
    pub fn columns(columns: usize) -> Grid {
        Grid {
            columns: columns.max(1),
            panel: PANEL_SIZE,
        }
    }

    /// Rows needed for `n` panels.
    pub fn rows(self, n: usize) -> usize {
        n.max(1).div_ceil(self.columns.max(1))
    }
}

/// Draws the panels side by side, with the legend of `lines` below them, into `<stem>.png`
/// and `<stem>.svg` in `dir` (each written atomically), and returns the figure.
pub fn render<X, Y>(
    dir: &RunDir,
    stem: &str,
    caption: &str,
    lines: &[Line],
    make_panels: impl Fn() -> Vec<Panel<X, Y>>,
) -> Result<Figure, Error>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let grid = Grid::row(make_panels().len());
    render_grid(dir, stem, caption, lines, grid, make_panels)
}

/// As [`render`], with the panels laid out in `grid` (a figure of many panels stays the width
/// of a page).
pub fn render_grid<X, Y>(
    dir: &RunDir,
    stem: &str,
    caption: &str,
    lines: &[Line],
    grid: Grid,
    make_panels: impl Fn() -> Vec<Panel<X, Y>>,
) -> Result<Figure, Error>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    ensure_font()?;
    let rows = grid.rows(make_panels().len()) as u32;
    let width = grid.panel.0 * grid.columns.max(1) as u32;
    // The legend's rows, measured with the font the backends will use.
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let widths: Vec<u32> = lines
        .iter()
        .map(|l| font.box_size(&l.label).map_or(200, |(w, _)| w))
        .collect();
    let (positions, legend_rows) = legend_layout(&widths, width);
    let legend = Legend { lines, positions };
    let size = (width, grid.panel.1 * rows + legend_rows * LEGEND_ROW + 12);
    let failed = |name: &str, e: String| Error::Plot(format!("{}: {e}", dir.file(name).display()));
    let png = format!("{stem}.png");
    dir.write_via(&png, |tmp| {
        draw_all(
            BitMapBackend::new(tmp, size).into_drawing_area(),
            make_panels(),
            grid,
            &legend,
        )
        .map_err(|e| failed(&png, e))
    })?;
    let svg_name = format!("{stem}.svg");
    let mut svg = String::new();
    draw_all(
        SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        make_panels(),
        grid,
        &legend,
    )
    .map_err(|e| failed(&svg_name, e))?;
    dir.write(&svg_name, svg.as_bytes())?;
    Ok(Figure {
        stem: stem.to_string(),
        caption: caption.to_string(),
        svg,
    })
}

/// `v` rounded to 6 significant digits, so that a tick computed as 0.30000000000000004 (as
/// logarithmic axes produce) is labelled 0.3; round ticks are unchanged, and −0 is 0.
fn tidy(v: f64) -> f64 {
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    if rounded == 0.0 {
        0.0
    } else {
        rounded
    }
}

/// A tick label without floating-point noise (see [`tidy`]).
fn tick_label(v: f64) -> String {
    format!("{}", tidy(v))
}

/// The largest finite value of `values` (0 if none), for a y range.
pub fn finite_max(values: impl IntoIterator<Item = f64>) -> f64 {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_band_runs_along_the_lower_edge_and_back_along_the_upper() {
        let lower = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0)];
        let upper = [(0.0, 3.0), (1.0, 4.0), (2.0, 5.0)];
        assert_eq!(
            band(&lower, &upper),
            [(0.0, 1.0), (2.0, 2.0), (2.0, 5.0), (0.0, 3.0)]
        );
    }

    #[test]
    fn a_grid_holds_its_panels_in_whole_rows() {
        let grid = Grid {
            columns: 3,
            panel: (440, 300),
        };
        assert_eq!((grid.rows(15), grid.rows(13), grid.rows(1)), (5, 5, 1));
        assert_eq!(grid.rows(0), 1);
        assert_eq!(Grid::row(4).rows(4), 1);
    }

    #[test]
    fn x_ticks_label_whole_numbers_and_decreasing_powers_of_two() {
        assert_eq!(XTicks::Integer.label(3.0), "3");
        assert_eq!(XTicks::Integer.label(2.5), "");
        assert_eq!(XTicks::DecreasingPowersOfTwo.label(-8.0), "256");
        assert_eq!(XTicks::DecreasingPowersOfTwo.label(0.0), "1");
        assert_eq!(XTicks::DecreasingPowersOfTwo.label(-0.5), "");
        assert_eq!(XTicks::Plain.label(0.25), "0.25");
    }

    #[test]
    fn tick_labels_drop_floating_point_noise() {
        assert_eq!(tick_label(0.1 * 3.0), "0.3");
        assert_eq!(tick_label(2400.0), "2400");
        assert_eq!(tick_label(0.03), "0.03");
        assert_eq!(tick_label(-0.0), "0");
        assert_eq!(tick_label(1.5), "1.5");
    }

    #[test]
    fn legend_entries_wrap_inside_the_strip() {
        let (at, rows) = legend_layout(&[100, 100], 640);
        assert_eq!(rows, 1);
        assert!(at[1].0 > at[0].0 + 100);
        let (at, rows) = legend_layout(&[300, 300, 300], 640);
        assert_eq!(rows, 3);
        assert!(at.iter().all(|&(x, _)| x == 24));
    }
}
