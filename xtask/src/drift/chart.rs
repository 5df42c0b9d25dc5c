//! The charts of `drift`, on the probe set: Ioffe & Szegedy's Figure 1 for the MLP, and the
//! percentiles of every activation's input of the three LeNets in eval and in training mode,
//! as grids a page wide.

use norma_layers::Summary;

use crate::drift::measure::median_path;
use crate::drift::{
    training_view_name, DriftArgs, ModelDrift, ProbedInput, LENETS, UNIT, UNIT_LAYER,
};
use crate::error::Error;
use crate::output::plot::{self, Figure, Grid, Line, Panel, Series, XTicks};
use crate::output::run_dir::RunDir;
use crate::steps::chart::{accuracy_panel, percentile_range, step_range};

fn find<'a>(models: &'a [ModelDrift], name: &str) -> Option<&'a ModelDrift> {
    models.iter().find(|m| m.model == name)
}

/// A model's two legend entries: its median (and test accuracy), solid, and its 15th and
/// 85th percentiles, dashed; no dots (a hundred points a line).
fn model_lines(label: &str, color: usize) -> [Line; 2] {
    [
        Line {
            markers: false,
            ..Line::solid(format!("{label}: median, test accuracy"), color)
        },
        Line::reference(format!("{label}: 15th and 85th percentiles"), color),
    ]
}

/// The three percentile lines of `records` (steps taken, summary): p15 and p85 on legend
/// entry `outer`, p50 on `median`.
fn three_lines(records: &[(usize, Summary)], median: usize, outer: usize) -> Vec<Series> {
    let line = |line, f: fn(&Summary) -> f64| Series {
        line,
        points: records.iter().map(|(s, m)| (*s as f64, f(m))).collect(),
    };
    vec![
        line(outer, |m| m.p15),
        line(median, |m| m.p50),
        line(outer, |m| m.p85),
    ]
}

/// A panel of [`three_lines`].
fn percentile_panel(
    title: String,
    y_label: String,
    steps: usize,
    y_range: std::ops::Range<f64>,
    series: Vec<Series>,
) -> Panel<std::ops::Range<f64>> {
    Panel {
        title,
        x_label: "training step".into(),
        y_label,
        x_range: step_range(steps),
        y_range,
        series,
        x_ticks: XTicks::Plain,
    }
}

/// The median shift from t₀ of each (input, legend entry), in units of the final spread.
fn median_path_panel(
    title: String,
    steps: usize,
    inputs: &[(&ProbedInput, usize)],
) -> Panel<std::ops::Range<f64>> {
    let series: Vec<Series> = inputs
        .iter()
        .map(|(input, line)| Series {
            line: *line,
            points: median_path(&input.records, steps),
        })
        .collect();
    let top = plot::finite_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1.abs())),
    );
    let top = (top * 1.1).max(0.1);
    percentile_panel(
        title,
        "(p50 − p50 at t₀) / final spread".into(),
        steps,
        -top..top,
        series,
    )
}

/// `drift-mlp.png` / `.svg`, 2 × 2: (a) test accuracy of both MLPs; (b, c) the 15th, 50th and
/// 85th percentiles of one last-hidden-layer sigmoid's input on the probe set, without and
/// with batch norm, on the same y axis; (d) its median's shift after warm-up.
pub fn mlp_chart(dir: &RunDir, args: &DriftArgs, models: &[ModelDrift]) -> Result<Figure, Error> {
    let (Some(plain), Some(bn)) = (find(models, "mlp"), find(models, "mlp-bn")) else {
        return Err(Error::Plot("the MLP runs are missing".into()));
    };
    let (Some(plain_unit), Some(bn_unit)) = (&plain.unit, &bn.unit) else {
        return Err(Error::Plot("the MLP runs have no probed unit".into()));
    };
    let lines: Vec<Line> = [model_lines("without BN", 0), model_lines("with BN", 1)].concat();
    let y = percentile_range(
        plain_unit
            .records
            .iter()
            .chain(&bn_unit.records)
            .map(|(_, s)| s),
    );
    let y_label = format!("input of {UNIT_LAYER}, unit {UNIT}");
    let panels = || {
        vec![
            accuracy_panel(
                "(a) Test accuracy",
                args.steps,
                &[(0, &plain.curve), (2, &bn.curve)],
            ),
            percentile_panel(
                "(b) Without BN".into(),
                y_label.clone(),
                args.steps,
                y.clone(),
                three_lines(&plain_unit.records, 0, 1),
            ),
            percentile_panel(
                "(c) With BN".into(),
                y_label.clone(),
                args.steps,
                y.clone(),
                three_lines(&bn_unit.records, 2, 3),
            ),
            median_path_panel(
                "(d) Median shift after warm-up".into(),
                args.steps,
                &[(plain_unit, 0), (bn_unit, 2)],
            ),
        ]
    };
    let caption = format!(
        "Ioffe & Szegedy's Figure 1 on this dataset, seed {}: (a) test accuracy of the \
         784-100-100-100-10 sigmoid MLP without and with batch norm; (b, c) the 15th, 50th and \
         85th percentiles of the input of sigmoid {UNIT} of the last hidden layer over the \
         probe set (the first test images, eval mode), every {} steps; (d) its median's shift \
         from the first probe after warm-up, in units of the final 15–85 spread.",
        args.seed, args.every
    );
    let grid = Grid {
        columns: 2,
        panel: (640, 440),
    };
    plot::render_grid(dir, "drift-mlp", &caption, &lines, grid, panels)
}

/// How the probe set went through the LeNets of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Eval mode: what inference sees (`drift-lenet`).
    Eval,
    /// Training mode: batch statistics of the probe set and noise drawn, as a training step
    /// sees its input (`drift-lenet-training`; plain LeNet's view is the same either way).
    Training,
}

/// `drift-lenet.png` / `.svg` (or `drift-lenet-training` for the training-mode `view`), three
/// columns: the first row the test accuracy of the three LeNets and the median shift of the
/// first and last activation's input; then one row per activation, one column per model,
/// with its percentiles on the probe set (the same y axis along a row).
pub fn lenet_chart(
    dir: &RunDir,
    args: &DriftArgs,
    models: &[ModelDrift],
    view: View,
) -> Result<Figure, Error> {
    let name = |n: &str| match view {
        View::Training if n != "lenet" => training_view_name(n),
        _ => n.to_string(),
    };
    let lenets: Vec<&ModelDrift> = LENETS
        .iter()
        .filter_map(|n| find(models, &name(n)))
        .collect();
    if lenets.len() != LENETS.len() {
        return Err(Error::Plot("the LeNet runs are missing".into()));
    }
    let lines: Vec<Line> = lenets
        .iter()
        .enumerate()
        .flat_map(|(i, m)| model_lines(&m.model, i))
        .collect();
    let steps = args.lenet_steps;
    let layers: Vec<&str> = lenets[0].layers.iter().map(|l| l.layer.as_str()).collect();
    let input = |m: &ModelDrift, layer: &str| m.layers.iter().find(|l| l.layer == layer).cloned();
    let panels = || {
        let curves: Vec<(usize, &[_])> = lenets
            .iter()
            .enumerate()
            .map(|(i, m)| (2 * i, m.curve.as_slice()))
            .collect();
        let mut out = vec![accuracy_panel("Test accuracy", steps, &curves)];
        for layer in [layers.first(), layers.last()].into_iter().flatten() {
            let inputs: Vec<(ProbedInput, usize)> = lenets
                .iter()
                .enumerate()
                .filter_map(|(i, m)| input(m, layer).map(|l| (l, 2 * i)))
                .collect();
            let refs: Vec<(&ProbedInput, usize)> = inputs.iter().map(|(l, i)| (l, *i)).collect();
            out.push(median_path_panel(
                format!("Median shift, input of {layer}"),
                steps,
                &refs,
            ));
        }
        for layer in &layers {
            let row: Vec<Option<ProbedInput>> = lenets.iter().map(|m| input(m, layer)).collect();
            let y = percentile_range(row.iter().flatten().flat_map(|l| &l.records).map(|r| &r.1));
            for (i, (m, l)) in lenets.iter().zip(&row).enumerate() {
                let series = l
                    .as_ref()
                    .map_or_else(Vec::new, |l| three_lines(&l.records, 2 * i, 2 * i + 1));
                out.push(percentile_panel(
                    format!("{}: input of {layer}", m.model),
                    "pre-activation".into(),
                    steps,
                    y.clone(),
                    series,
                ));
            }
        }
        out
    };
    let (mode, stem) = match view {
        View::Eval => ("eval mode", "drift-lenet"),
        View::Training => (
            "training mode: batch norm with the probe set's own statistics, the noise drawn \
             afresh at every probe",
            "drift-lenet-training",
        ),
    };
    let caption = format!(
        "Seed {}: the 15th, 50th and 85th percentiles of the input of each sigmoid of LeNet, \
         LeNet-BN and LeNet-BN with noise after each batch norm (all units and positions of \
         the probe set: the first test images, {mode}), every {} steps; the first row: test \
         accuracy, and the median shift of the first and last sigmoid's input from the first \
         probe after warm-up, in units of the final 15–85 spread.",
        args.seed, args.lenet_every
    );
    let grid = Grid {
        columns: 3,
        panel: (440, 300),
    };
    plot::render_grid(dir, stem, &caption, &lines, grid, panels)
}
