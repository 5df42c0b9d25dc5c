//! The charts of `smoothness`: the three measures along the trajectory (Santurkar et al.'s
//! Figure 4) and the training loss, the same measures against the training loss (the
//! comparison at equal loss), and the test accuracy of noisy batch norm. The measures span
//! decades, so their axes are logarithmic; four panels are laid out two by two (1280 px wide).

use std::collections::BTreeMap;
use std::ops::Range;

use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::{BindKeyPoints, IntoLogRange, LogCoord};

use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series, XTicks};
use crate::output::run_dir::RunDir;
use crate::smoothness::summary::{self, Measures};
use crate::smoothness::{ModelTrajectory, ProbeRecord, SmoothnessArgs, NOISE_LEFT_OUT, NOISY};
use crate::steps::chart::{accuracy_panel, step_range};

/// The probed models, plain first.
fn probed(models: &[ModelTrajectory]) -> Vec<&ModelTrajectory> {
    models.iter().filter(|m| !m.probes.is_empty()).collect()
}

fn label(model: &str) -> &'static str {
    match model {
        "lenet" => "LeNet",
        "lenet-bn" => "LeNet-BN",
        _ => "LeNet-BN, noisy",
    }
}

/// The palette entry of the reference lines at the loss levels (grey).
const LEVEL_COLOR: usize = 7;

/// A range holding every finite positive value, with a margin, for a logarithmic axis.
fn log_bounds(values: impl IntoIterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.1..1.0;
    }
    let (lo, hi) = (lo / 1.25, hi * 1.25);
    // A flat series still needs some height.
    if hi / lo < 2.0 {
        return (lo / 1.5)..(hi * 1.5);
    }
    lo..hi
}

/// A logarithmic axis over `r` with ticks at [`log_ticks`] (plotters' own start at the
/// first power of ten, which leaves a range such as 0.2–0.9 without a label).
fn log_axis(r: Range<f64>) -> WithKeyPoints<LogCoord<f64>> {
    let ticks = log_ticks(&r);
    r.log_scale().with_key_points(ticks)
}

/// The values 1, 2 and 5 times a power of ten inside `r`, or 1 to 9 times one where those are
/// fewer than three.
fn log_ticks(r: &Range<f64>) -> Vec<f64> {
    let mut ticks = Vec::new();
    if !(r.start > 0.0 && r.start < r.end && r.end.is_finite()) {
        return ticks;
    }
    let decades = r.start.log10().floor() as i32..=r.end.log10().ceil() as i32;
    for mantissas in [
        &[1.0, 2.0, 5.0][..],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ] {
        ticks = decades
            .clone()
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| r.contains(t))
            .collect();
        if ticks.len() >= 3 {
            break;
        }
    }
    ticks
}

/// `(x, f(p))` for every probe with a finite positive value (a log axis has no place for the
/// others).
fn points(
    m: &ModelTrajectory,
    x: fn(&ProbeRecord) -> f64,
    f: fn(&ProbeRecord) -> f64,
) -> Vec<(f64, f64)> {
    m.probes
        .iter()
        .map(|p| (x(p), f(p)))
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && y > 0.0)
        .collect()
}

/// The probes of `m` grouped by training loss into bins a factor [`summary::BAND`]² wide (as
/// wide as a level's band): per bin, the median training loss and the median of `f`, in order
/// of the loss. One point per bin keeps a plateau's many probes from piling up.
fn binned(m: &ModelTrajectory, f: fn(&Measures) -> f64) -> Vec<(f64, f64)> {
    let width = (summary::BAND * summary::BAND).ln();
    let mut bins: BTreeMap<i64, Vec<Measures>> = BTreeMap::new();
    for p in m.probes.iter().filter(|p| p.train_loss > 0.0) {
        let bin = (p.train_loss.ln() / width).floor() as i64;
        bins.entry(bin).or_default().push(Measures::of(p));
    }
    bins.values()
        .map(|ms| {
            let med = Measures::median(ms);
            (med.train_loss, f(&med))
        })
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && y > 0.0)
        .collect()
}

fn step_of(p: &ProbeRecord) -> f64 {
    p.step as f64
}

/// The running training loss every `every` steps of `m`'s run.
fn loss_curve(m: &ModelTrajectory, every: usize) -> Vec<(f64, f64)> {
    (0..=m.batch_losses.len())
        .step_by(every.max(1))
        .map(|s| (s as f64, summary::running_loss(&m.batch_losses, s)))
        .filter(|&(_, l)| l.is_finite() && l > 0.0)
        .collect()
}

/// `smoothness.png` / `.svg`: (a) the range of L(x − ηg) over η, (b) the range of the
/// gradient change over η, both as shaded min–max bands, (c) the effective β-smoothness and
/// (d) the running training loss of all three models with the compared levels, against steps.
pub fn smoothness_chart(
    dir: &RunDir,
    args: &SmoothnessArgs,
    models: &[ModelTrajectory],
) -> Result<Figure, Error> {
    let probed = probed(models);
    // Entries 2i (band) and 2i + 1 (line) belong to probed model i; then the noisy model's
    // line and the levels.
    let mut lines: Vec<Line> = probed
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            [
                Line::band(format!("{}: min–max over η", label(&m.model)), i),
                Line::solid(label(&m.model), i),
            ]
        })
        .collect();
    let noisy = models.iter().find(|m| m.model == NOISY);
    let noisy_line = lines.len();
    lines.push(Line::dashed(label(NOISY), probed.len()));
    let level_line = lines.len();
    lines.push(Line::reference(
        "training-loss levels compared",
        LEVEL_COLOR,
    ));
    let bands = |lo: fn(&ProbeRecord) -> f64, hi: fn(&ProbeRecord) -> f64| -> Vec<Series> {
        probed
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                line: 2 * i,
                points: plot::band(&points(m, step_of, lo), &points(m, step_of, hi)),
            })
            .collect()
    };
    let bounds = |fs: &[fn(&ProbeRecord) -> f64]| {
        log_bounds(
            probed
                .iter()
                .flat_map(|m| m.probes.iter().flat_map(|p| fs.iter().map(move |f| f(p)))),
        )
    };
    let x_range = step_range(args.steps);
    let losses: Vec<(usize, Vec<(f64, f64)>)> = probed
        .iter()
        .enumerate()
        .map(|(i, m)| (2 * i + 1, loss_curve(m, args.every)))
        .chain(noisy.map(|m| (noisy_line, loss_curve(m, args.every))))
        .collect();
    let loss_range = log_bounds(losses.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)));
    let panels = || {
        let mut loss_series: Vec<Series> = losses
            .iter()
            .map(|(line, c)| Series {
                line: *line,
                points: c.clone(),
            })
            .collect();
        loss_series.extend(summary::LEVELS.iter().map(|&l| Series {
            line: level_line,
            points: vec![(x_range.start, l), (x_range.end, l)],
        }));
        vec![
            Panel {
                title: "(a) Loss landscape".into(),
                x_label: "training step".into(),
                y_label: "L(x − η·g), min–max over η (nats)".into(),
                x_range: x_range.clone(),
                y_range: log_axis(bounds(&[|p| p.loss_min, |p| p.loss_max])),
                series: bands(|p| p.loss_min, |p| p.loss_max),
                x_ticks: XTicks::Plain,
            },
            Panel {
                title: "(b) Gradient predictiveness".into(),
                x_label: "training step".into(),
                y_label: "‖∇L(x) − ∇L(x − η·g)‖, min–max over η".into(),
                x_range: x_range.clone(),
                y_range: log_axis(bounds(&[
                    |p| p.predictiveness_min,
                    |p| p.predictiveness_max,
                ])),
                series: bands(|p| p.predictiveness_min, |p| p.predictiveness_max),
                x_ticks: XTicks::Plain,
            },
            Panel {
                title: "(c) Effective β-smoothness".into(),
                x_label: "training step".into(),
                y_label: "max over η of ‖Δ∇L‖ / ‖Δx‖".into(),
                x_range: x_range.clone(),
                y_range: log_axis(bounds(&[|p| p.beta])),
                series: probed
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Series {
                        line: 2 * i + 1,
                        points: points(m, step_of, |p| p.beta),
                    })
                    .collect(),
                x_ticks: XTicks::Plain,
            },
            Panel {
                title: "(d) Training loss".into(),
                x_label: "training step".into(),
                y_label: format!("mean batch loss, {} steps (nats)", summary::WINDOW),
                x_range: x_range.clone(),
                y_range: log_axis(loss_range.clone()),
                series: loss_series,
                x_ticks: XTicks::Plain,
            },
        ]
    };
    let caption = format!(
        "Santurkar et al.'s Figure 4 for LeNet on this dataset: every {} steps, at the weights x \
         with gradient g of the batch about to be trained on, (a) the range of the loss \
         L(x − η·g) and (b) of the gradient change ‖∇L(x) − ∇L(x − η·g)‖ over the {} probed \
         step sizes η, (c) the largest ‖Δ∇L‖/‖Δx‖ over them; (d) the training loss (mean batch \
         loss of the {} steps around each point) and the levels at which the measures are \
         compared. Logarithmic y axes.",
        args.every,
        super::ETA_FACTORS.len(),
        summary::WINDOW
    );
    plot::render_grid(
        dir,
        "smoothness",
        &caption,
        &lines,
        plot::Grid::columns(2),
        panels,
    )
}

/// `smoothness-at-loss.png` / `.svg`: the measures of LeNet and LeNet-BN against the running
/// training loss (medians over the probes of each bin of loss, [`binned`]), with the
/// compared levels marked: (a) loss range,
/// (b) largest gradient change, (c) effective β, (d) gradient norm.
pub fn at_loss_chart(dir: &RunDir, models: &[ModelTrajectory]) -> Result<Figure, Error> {
    let probed = probed(models);
    let mut lines: Vec<Line> = probed
        .iter()
        .enumerate()
        .map(|(i, m)| Line::solid(label(&m.model), i))
        .collect();
    let level_line = lines.len();
    lines.push(Line::reference(
        "training-loss levels compared",
        LEVEL_COLOR,
    ));
    let loss_of = |p: &ProbeRecord| p.train_loss;
    let x = log_bounds(
        probed
            .iter()
            .flat_map(|m| m.probes.iter().map(loss_of))
            .chain(summary::LEVELS),
    );
    let panel = |title: &str, y_label: &str, f: fn(&Measures) -> f64| {
        let mut series: Vec<Series> = probed
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                line: i,
                points: binned(m, f),
            })
            .collect();
        let y = log_bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        series.extend(summary::LEVELS.iter().map(|&l| Series {
            line: level_line,
            points: vec![(l, y.start), (l, y.end)],
        }));
        Panel {
            title: title.into(),
            x_label: format!("training loss, mean of {} steps (nats)", summary::WINDOW),
            y_label: y_label.into(),
            x_range: log_axis(x.clone()),
            y_range: log_axis(y.clone()),
            series,
            x_ticks: XTicks::Plain,
        }
    };
    let panels = || {
        vec![
            panel(
                "(a) Loss range",
                "max − min over η of L(x − η·g) (nats)",
                |m| m.loss_range,
            ),
            panel(
                "(b) Gradient predictiveness",
                "max over η of ‖∇L(x) − ∇L(x − η·g)‖",
                |m| m.gradient_change,
            ),
            panel(
                "(c) Effective β-smoothness",
                "max over η of ‖Δ∇L‖ / ‖Δx‖",
                |m| m.beta,
            ),
            panel("(d) Gradient norm", "‖∇L(x)‖", |m| m.grad_norm),
        ]
    };
    let caption = format!(
        "The measures against the training loss (mean batch loss of the {} steps around each \
         probe; training runs from right to left), so that LeNet and LeNet-BN are compared \
         where their losses are equal: each point the medians over the probes in a bin of \
         training loss a factor {:.2} wide; grey: the levels of the table. Logarithmic axes.",
        summary::WINDOW,
        summary::BAND * summary::BAND
    );
    plot::render_grid(
        dir,
        "smoothness-at-loss",
        &caption,
        &lines,
        plot::Grid::columns(2),
        panels,
    )
}

/// `noisy-bn.png` / `.svg`: test accuracy against steps of LeNet, LeNet-BN and noisy LeNet-BN.
pub fn noisy_chart(
    dir: &RunDir,
    args: &SmoothnessArgs,
    models: &[ModelTrajectory],
) -> Result<Figure, Error> {
    let mut lines: Vec<Line> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.model == NOISY {
                Line::dashed(label(&m.model), i)
            } else {
                Line::solid(label(&m.model), i)
            }
        })
        .collect();
    let left_out = models.iter().find(|m| !m.noise_left_out.is_empty());
    if left_out.is_some() {
        lines.push(Line::dashed(NOISE_LEFT_OUT, models.len()));
    }
    let panels = || {
        let mut curves: Vec<(usize, &[crate::steps::CurvePoint])> = models
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.curve.as_slice()))
            .collect();
        if let Some(m) = left_out {
            curves.push((models.len(), m.noise_left_out.as_slice()));
        }
        vec![accuracy_panel("Test accuracy", args.steps, &curves)]
    };
    let caption = "Test accuracy of LeNet, LeNet-BN and LeNet-BN with noise after each batch norm \
                   (a random scale and shift per channel, new at every step; tested with the \
                   noise's expectation, and once more with it left out), same lr and seed.";
    plot::render(dir, "noisy-bn", caption, &lines, panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_label_ranges_that_hold_no_power_of_ten() {
        let tidy = |v: Vec<f64>| -> Vec<String> { v.iter().map(|t| format!("{t:.3}")).collect() };
        assert_eq!(
            tidy(log_ticks(&(0.15..3.0))),
            ["0.200", "0.500", "1.000", "2.000"]
        );
        // 0.21–0.9 holds neither 1 nor 0.1, nor three of 0.2, 0.5: the finer ticks.
        assert_eq!(
            tidy(log_ticks(&(0.21..0.65))),
            ["0.300", "0.400", "0.500", "0.600"]
        );
        assert_eq!(log_ticks(&(0.0..1.0)), Vec::<f64>::new());
    }
}
