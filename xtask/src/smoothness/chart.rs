//! The charts of `smoothness`: the three measures along the trajectory (Santurkar et al.'s
//! Figure 4) and the test accuracy of noisy batch norm.

use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel, Series};
use crate::output::run_dir::RunDir;
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

/// `smoothness.png` / `.svg`: (a) the range of L(x − ηg) over η, (b) the range of the
/// gradient change over η, both as shaded min–max bands, and (c) the effective β-smoothness,
/// against steps, one color per model.
pub fn smoothness_chart(
    dir: &RunDir,
    args: &SmoothnessArgs,
    models: &[ModelTrajectory],
) -> Result<Figure, Error> {
    let probed = probed(models);
    // Entries 2i (band) and 2i + 1 (line) belong to model i.
    let lines: Vec<Line> = probed
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            [
                Line::band(format!("{}: range over η", label(&m.model)), i),
                Line::solid(format!("{}: β", label(&m.model)), i),
            ]
        })
        .collect();
    let bands = |lo: fn(&ProbeRecord) -> f64, hi: fn(&ProbeRecord) -> f64| -> Vec<Series> {
        probed
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let at = |f: fn(&ProbeRecord) -> f64| -> Vec<(f64, f64)> {
                    m.probes.iter().map(|p| (p.step as f64, f(p))).collect()
                };
                Series {
                    line: 2 * i,
                    points: plot::band(&at(lo), &at(hi)),
                }
            })
            .collect()
    };
    let top = |f: fn(&ProbeRecord) -> f64| {
        plot::finite_max(probed.iter().flat_map(|m| m.probes.iter().map(f))).max(1e-6) * 1.05
    };
    let panels = || {
        vec![
            Panel {
                title: "(a) Loss landscape".into(),
                x_label: "training step".into(),
                y_label: "L(x − η·g), min–max over η".into(),
                x_range: step_range(args.steps),
                y_range: 0.0..top(|p| p.loss_max),
                series: bands(|p| p.loss_min, |p| p.loss_max),
                integer_x: false,
            },
            Panel {
                title: "(b) Gradient predictiveness".into(),
                x_label: "training step".into(),
                y_label: "‖∇L(x) − ∇L(x − η·g)‖, min–max over η".into(),
                x_range: step_range(args.steps),
                y_range: 0.0..top(|p| p.predictiveness_max),
                series: bands(|p| p.predictiveness_min, |p| p.predictiveness_max),
                integer_x: false,
            },
            Panel {
                title: "(c) Effective β-smoothness".into(),
                x_label: "training step".into(),
                y_label: "max over η of ‖Δ∇L‖ / ‖Δx‖".into(),
                x_range: step_range(args.steps),
                y_range: 0.0..top(|p| p.beta),
                series: probed
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Series {
                        line: 2 * i + 1,
                        points: m
                            .probes
                            .iter()
                            .filter(|p| p.beta.is_finite())
                            .map(|p| (p.step as f64, p.beta))
                            .collect(),
                    })
                    .collect(),
                integer_x: false,
            },
        ]
    };
    let caption = format!(
        "Santurkar et al.'s Figure 4 for LeNet on this dataset: every {} steps, at the weights x \
         with gradient g of the batch about to be trained on, (a) the range of the loss \
         L(x − η·g) and (b) of the gradient change ‖∇L(x) − ∇L(x − η·g)‖ over the probed step \
         sizes η, (c) the largest ‖Δ∇L‖/‖Δx‖ over them.",
        args.every
    );
    plot::render(dir, "smoothness", &caption, &lines, panels)
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
