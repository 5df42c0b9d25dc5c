//! The charts of `drift`: Ioffe & Szegedy's Figure 1 for the MLP, and the pre-activation
//! percentiles of every layer of LeNet and LeNet-BN.

use crate::drift::{DriftArgs, ModelDrift, UNIT, UNIT_LAYER};
use crate::error::Error;
use crate::output::plot::{self, Figure, Line, Panel};
use crate::output::run_dir::RunDir;
use crate::steps::chart::{accuracy_panel, percentile_range, percentile_series, step_range};

fn find<'a>(models: &'a [ModelDrift], name: &str) -> Option<&'a ModelDrift> {
    models.iter().find(|m| m.model == name)
}

/// `drift-mlp.png` / `.svg`: (a) test accuracy of both MLPs against steps; (b) and (c) the
/// 15th–85th percentile band and the median of one last-hidden-layer sigmoid's input, without
/// and with batch norm, on the same y axis.
pub fn mlp_chart(dir: &RunDir, args: &DriftArgs, models: &[ModelDrift]) -> Result<Figure, Error> {
    let (plain, bn) = match (find(models, "mlp"), find(models, "mlp-bn")) {
        (Some(p), Some(b)) => (p, b),
        _ => return Err(Error::Plot("the MLP runs are missing".into())),
    };
    // Hundreds of points per line by default: dots would hide the lines.
    let line = |label: &str, color| Line {
        markers: false,
        ..Line::solid(label, color)
    };
    let lines = [
        line("without BN: test accuracy / median", 0),
        Line::band("without BN: 15th-85th percentile", 0),
        line("with BN: test accuracy / median", 1),
        Line::band("with BN: 15th-85th percentile", 1),
    ];
    let y = percentile_range(plain.unit.iter().chain(&bn.unit).map(|(_, s)| s));
    let panels = || {
        let unit_panel = |title: &str, m: &ModelDrift, band: usize, median: usize| Panel {
            title: title.into(),
            x_label: "training step".into(),
            y_label: format!("input of {UNIT_LAYER}, unit {UNIT}"),
            x_range: step_range(args.steps),
            y_range: y.clone(),
            // The band first, so that it does not cover the median.
            series: percentile_series(&m.unit, band, median).into(),
            integer_x: false,
        };
        vec![
            accuracy_panel(
                "(a) Test accuracy",
                args.steps,
                &[(0, &plain.curve), (2, &bn.curve)],
            ),
            unit_panel("(b) Without BN", plain, 1, 0),
            unit_panel("(c) With BN", bn, 3, 2),
        ]
    };
    let caption = format!(
        "Ioffe & Szegedy's Figure 1 on this dataset: (a) test accuracy of the 784-100-100-100-10 \
         sigmoid MLP without and with batch norm; (b, c) the 15th, 50th and 85th percentiles \
         over each batch of the input of sigmoid {UNIT} of the last hidden layer, every {} steps.",
        args.every
    );
    plot::render(dir, "drift-mlp", &caption, &lines, panels)
}

/// `drift-lenet.png` / `.svg`: for each activation of LeNet, the percentile band and median of
/// its whole input in LeNet and in LeNet-BN.
pub fn lenet_chart(dir: &RunDir, args: &DriftArgs, models: &[ModelDrift]) -> Result<Figure, Error> {
    let (plain, bn) = match (find(models, "lenet"), find(models, "lenet-bn")) {
        (Some(p), Some(b)) => (p, b),
        _ => return Err(Error::Plot("the LeNet runs are missing".into())),
    };
    let lines = [
        Line::solid("LeNet: median", 0),
        Line::band("LeNet: 15th-85th percentile", 0),
        Line::solid("LeNet-BN: median", 1),
        Line::band("LeNet-BN: 15th-85th percentile", 1),
    ];
    let panels = || {
        plain
            .layers
            .iter()
            .map(|layer| {
                let other = bn.layers.iter().find(|l| l.layer == layer.layer);
                let all = layer
                    .records
                    .iter()
                    .chain(other.into_iter().flat_map(|l| &l.records));
                let mut series: Vec<_> = percentile_series(&layer.records, 1, 0).into();
                if let Some(o) = other {
                    series.extend(percentile_series(&o.records, 3, 2));
                }
                // Bands first, so that no band covers a median.
                series.sort_by_key(|s| !lines[s.line].fill);
                Panel {
                    title: format!("input of {}", layer.layer),
                    x_label: "training step".into(),
                    y_label: "pre-activation".into(),
                    x_range: step_range(args.lenet_steps),
                    y_range: percentile_range(all.map(|(_, s)| s)),
                    series,
                    integer_x: false,
                }
            })
            .collect()
    };
    let caption = format!(
        "The 15th, 50th and 85th percentiles of the input of each sigmoid of LeNet and LeNet-BN \
         (all units and positions of the batch; in LeNet-BN the output of the batch norm before \
         it), every {} steps.",
        args.every
    );
    plot::render(dir, "drift-lenet", &caption, &lines, panels)
}
