//! The charts of `affine`: test accuracy and training loss per epoch with and without γ and β
//! (median over seeds and min–max band), and the learned γ and β of every batch norm, one dot
//! per channel.

use crate::affine::tables::{configs, label, per_epoch, runs_of};
use crate::affine::{AffineArgs, AffineRun};
use crate::cli::choices::ActivationChoice;
use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series, XTicks};
use crate::output::report::EpochRow;
use crate::output::run_dir::RunDir;

/// `affine.png` / `.svg`: median test accuracy (precise BN) and training loss per epoch, one
/// color per configuration (solid with γ and β, dashed without), each with its min–max band
/// over seeds.
pub fn curves_chart(dir: &RunDir, args: &AffineArgs, runs: &[AffineRun]) -> Result<Figure, Error> {
    let configs = configs(args);
    let lines: Vec<Line> = configs
        .iter()
        .enumerate()
        .flat_map(|(k, &c)| {
            let median = if c.1 {
                Line::solid(format!("{}: median", label(c)), k)
            } else {
                Line::dashed(format!("{}: median", label(c)), k)
            };
            [median, Line::band(format!("{}: min-max", label(c)), k)]
        })
        .collect();
    let max_loss = plot::finite_max(
        runs.iter()
            .flat_map(|r| r.record.epochs.iter().map(|e| e.train_loss)),
    );
    // The two variants differ by a point or two: an axis from 0 would hide it.
    let accs: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.record.epochs.iter().map(|e| e.headline_acc()))
        .filter(|a| a.is_finite())
        .collect();
    let acc_range = {
        let r = y_range(accs.iter().copied(), accs.first().copied().unwrap_or(0.5));
        r.start.max(0.0)..r.end.min(1.0)
    };
    let x_range = 0.5..args.epochs as f64 + 0.5;
    let panels = || {
        let series = |f: fn(&EpochRow) -> f64| {
            let curves: Vec<_> = configs
                .iter()
                .map(|&c| per_epoch(runs, c, args.epochs, f))
                .collect();
            plot::median_bands(&curves)
        };
        vec![
            Panel {
                title: "Test accuracy (precise BN)".into(),
                x_label: "epoch".into(),
                y_label: "accuracy over seeds".into(),
                x_range: x_range.clone(),
                y_range: acc_range.clone(),
                series: series(|e| e.headline_acc()),
                x_ticks: XTicks::Integer,
            },
            Panel {
                title: "Training loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy over seeds".into(),
                x_range: x_range.clone(),
                y_range: 0.0..(max_loss * 1.1).max(0.1),
                series: series(|e| e.train_loss),
                x_ticks: XTicks::Integer,
            },
        ]
    };
    let caption = "LeNet-BN with its batch norms' learnable γ and β (solid) and without them \
                   (dashed, affine=False): test accuracy with precise statistics and training \
                   loss per epoch, the median over seeds and the min-max band.";
    plot::render(dir, "affine", caption, &lines, panels)
}

/// Where channel `c` of `channels` of batch norm `layer` (1-based) sits on the x axis: spread
/// over the middle 70% of the layer's unit-wide slot.
fn channel_x(layer: usize, c: usize, channels: usize) -> f64 {
    layer as f64 + 0.7 * ((c as f64 + 0.5) / channels as f64 - 0.5)
}

/// The activation whose γ and β the figure shows: sigmoid (d2l's model) when it ran.
fn shown_activation(args: &AffineArgs) -> ActivationChoice {
    args.activations
        .iter()
        .copied()
        .find(|a| *a == ActivationChoice::Sigmoid)
        .or(args.activations.first().copied())
        .unwrap_or(ActivationChoice::Sigmoid)
}

/// A y range holding `values` and `reference` with a margin.
fn y_range(values: impl Iterator<Item = f64>, reference: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((reference, reference), |(lo, hi), v| {
        if v.is_finite() {
            (lo.min(v), hi.max(v))
        } else {
            (lo, hi)
        }
    });
    let margin = ((hi - lo) * 0.05).max(0.05);
    lo - margin..hi + margin
}

/// `affine-gamma-beta.png` / `.svg`: the learned γ and β of each batch norm of the sigmoid
/// model with γ and β, one dot per channel and a color per seed, with the initial values (γ =
/// 1, β = 0) as reference lines.
pub fn gamma_beta_chart(
    dir: &RunDir,
    args: &AffineArgs,
    runs: &[AffineRun],
) -> Result<Figure, Error> {
    let activation = shown_activation(args);
    let cell = runs_of(runs, (activation, true));
    let mut lines: Vec<Line> = cell
        .iter()
        .enumerate()
        .map(|(k, r)| Line::points(format!("seed {}", r.seed), k))
        .collect();
    let reference = lines.len();
    lines.push(Line::reference("initial value (γ = 1, β = 0)", 7));
    let layers = cell.first().map_or(0, |r| r.layers.len());
    let x_range = 0.5..layers.max(1) as f64 + 0.5;
    let panels = || {
        let panel =
            |title: &str, init: f64, of: fn(&crate::affine::gamma_beta::LayerAffine) -> &[f32]| {
                let mut series: Vec<Series> = cell
                    .iter()
                    .enumerate()
                    .map(|(k, r)| Series {
                        line: k,
                        points: r
                            .layers
                            .iter()
                            .enumerate()
                            .flat_map(|(i, l)| {
                                let values = of(l);
                                values.iter().enumerate().map(move |(c, &v)| {
                                    (channel_x(i + 1, c, values.len()), f64::from(v))
                                })
                            })
                            .collect(),
                    })
                    .collect();
                let y = y_range(
                    series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
                    init,
                );
                series.insert(
                    0,
                    Series {
                        line: reference,
                        points: vec![(x_range.start, init), (x_range.end, init)],
                    },
                );
                Panel {
                    title: title.into(),
                    x_label: "batch norm bn1 … bn4 (one dot per channel)".into(),
                    y_label: title.into(),
                    x_range: x_range.clone(),
                    y_range: y,
                    series,
                    x_ticks: XTicks::Integer,
                }
            };
        vec![
            panel("scale γ", 1.0, |l| &l.gamma),
            panel("shift β", 0.0, |l| &l.beta),
        ]
    };
    let caption = format!(
        "The learned scale γ and shift β of each batch norm of the {} LeNet-BN after {} epochs \
         (bn1, bn2 after the convolutions, 6 and 16 channels; bn3, bn4 after the linear \
         layers, 120 and 84 features): one dot per channel, a color per seed; the dashed line \
         is where training started.",
        activation.activation().name(),
        args.epochs
    );
    plot::render(dir, "affine-gamma-beta", &caption, &lines, panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_stay_inside_their_layers_slot() {
        assert!((channel_x(1, 0, 6) - (1.0 - 0.35 + 0.7 / 12.0)).abs() < 1e-12);
        for c in 0..120 {
            let x = channel_x(3, c, 120);
            assert!(x > 2.65 && x < 3.35, "{x}");
        }
        let r = y_range([0.5, 2.0, f64::NAN].into_iter(), 1.0);
        assert!(r.start < 0.5 && r.end > 2.0, "{r:?}");
        let r = y_range(std::iter::empty(), 0.0);
        assert!(r.start < 0.0 && r.end > 0.0, "{r:?}");
    }
}
