//! Charts with plotters, each written as PNG and SVG: the training curves of `train-lenet`
//! (loss and test accuracy per epoch, both models on shared axes) and the `lr-sweep` chart
//! (final test accuracy against learning rate, log x axis, a line per model).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::RunRecord;
use crate::Error;

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

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart panel.
pub struct Panel<X> {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: X,
    pub y_range: std::ops::Range<f64>,
    pub series: Vec<Series>,
    /// Label only whole numbers on the x axis (epochs).
    pub integer_x: bool,
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw_panel<DB, X>(area: &DrawingArea<DB, Shift>, panel: Panel<X>) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(panel.x_range, panel.y_range)
        .map_err(err)?;
    let integer = |v: &f64| {
        if v.fract().abs() < 1e-9 {
            format!("{v:.0}")
        } else {
            String::new()
        }
    };
    let plain = |v: &f64| format!("{v}");
    let x_format: &dyn Fn(&f64) -> String = if panel.integer_x { &integer } else { &plain };
    chart
        .configure_mesh()
        .x_label_formatter(x_format)
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for (i, s) in panel.series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(3);
        chart
            .draw_series(LineSeries::new(s.points.clone(), style))
            .map_err(err)?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .draw_series(
                s.points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .position(panel.legend)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_all<DB, X>(root: DrawingArea<DB, Shift>, panels: Vec<Panel<X>>) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = panels.len().max(1);
    for (area, panel) in root.split_evenly((1, n)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Draws the panels side by side into `<stem>.png` and `<stem>.svg`.
fn render<X>(stem: &Path, make_panels: impl Fn() -> Vec<Panel<X>>) -> Result<(), Error>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    ensure_font()?;
    let size = (640 * make_panels().len().max(1) as u32, 480);
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    let failed = |path: &Path, e: String| Error::Plot(format!("{}: {e}", path.display()));
    draw_all(
        BitMapBackend::new(&png, size).into_drawing_area(),
        make_panels(),
    )
    .map_err(|e| failed(&png, e))?;
    draw_all(
        SVGBackend::new(&svg, size).into_drawing_area(),
        make_panels(),
    )
    .map_err(|e| failed(&svg, e))?;
    Ok(())
}

/// `curves.png` / `curves.svg`: training loss and test accuracy per epoch for every model.
pub fn training_curves(dir: &Path, records: &[RunRecord]) -> Result<(), Error> {
    let epochs = records.iter().map(|r| r.epochs.len()).max().unwrap_or(0);
    if epochs == 0 {
        return Ok(());
    }
    let max_loss = records
        .iter()
        .flat_map(|r| r.epochs.iter().map(|e| e.train_loss))
        .filter(|l| l.is_finite())
        .fold(0.0f64, f64::max);
    let x_range = 0.5..epochs as f64 + 0.5;
    let panels = || {
        let series = |f: fn(&crate::report::EpochRow) -> f64| {
            records
                .iter()
                .map(|r| Series {
                    label: format!("{} (lr {})", r.model, r.lr),
                    points: r.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect(),
                })
                .collect()
        };
        vec![
            Panel {
                title: "Training loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy (train mode)".into(),
                x_range: x_range.clone(),
                y_range: 0.0..(max_loss * 1.1).max(0.1),
                series: series(|e| e.train_loss),
                integer_x: true,
                legend: SeriesLabelPosition::UpperRight,
            },
            Panel {
                title: "Test accuracy".into(),
                x_label: "epoch".into(),
                y_label: "accuracy (eval mode)".into(),
                x_range: x_range.clone(),
                y_range: 0.0..1.0,
                series: series(|e| e.test_acc),
                integer_x: true,
                legend: SeriesLabelPosition::LowerRight,
            },
        ]
    };
    render(&dir.join("curves"), panels)
}

/// `sweep.png` / `sweep.svg`: final test accuracy against learning rate, one line per model
/// through the median over seeds.
pub fn sweep_chart(
    dir: &Path,
    lrs: &[f64],
    lines: &[(String, Vec<(f64, f64)>)],
) -> Result<(), Error> {
    let lo = lrs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = lrs.iter().copied().fold(0.0f64, f64::max);
    if !(lo > 0.0 && hi >= lo) {
        return Ok(());
    }
    let panels = || {
        vec![Panel {
            title: "Final test accuracy vs learning rate".into(),
            x_label: "learning rate (log scale)".into(),
            y_label: "test accuracy (median over seeds)".into(),
            x_range: (lo / 1.5..hi * 1.5).log_scale(),
            y_range: 0.0..1.0,
            series: lines
                .iter()
                .map(|(label, points)| Series {
                    label: label.clone(),
                    points: points.clone(),
                })
                .collect(),
            integer_x: false,
            legend: SeriesLabelPosition::LowerLeft,
        }]
    };
    render(&dir.join("sweep"), panels)
}
