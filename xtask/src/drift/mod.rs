//! `cargo xtask drift`: "internal covariate shift" measured — Ioffe & Szegedy (2015), Section
//! 4.1 and Figure 1 — and Santurkar et al.'s (2018) noisy batch norm measured the same way.
//!
//! - Their MLP (784-100-100-100-10, sigmoid, weights from N(0, σ²) with a small σ, biases 0,
//!   batch 60, SGD) with and without a BatchNorm1d after each hidden linear layer, trained for
//!   `--steps` steps on the same batches from the same seed.
//! - LeNet, LeNet-BN and LeNet-BN with noise after each batch norm (`smoothness`'s models;
//!   sigmoid, batch 256, lr 0.9, 1.0 and 1.0) for `--lenet-steps` steps.
//!
//! Every K steps ([`probe`]): the 15th, 50th and 85th percentiles of each activation's input
//! on a fixed probe set (the first 1000 test images) in eval mode — for the MLPs also of one
//! unit of the last hidden layer, the paper's Figure 1 — and the test accuracy. How far each
//! distribution moved after warm-up, in units of its final spread, is [`measure`]'s drift.
//! The probes do not change the training trajectory.

pub mod chart;
pub mod measure;
pub mod probe;
pub mod results;
pub mod tables;

use std::fmt::Write as _;

use norma_layers::models::{self, ModelKind};
use norma_layers::{Module, Sequential, Summary};
use norma_tensor::Rng;
use serde::Serialize;

use crate::cli::args::CommonArgs;
use crate::cli::checks;
use crate::cli::choices::{default_lr, OptimizerChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::fmt_lr;
use crate::run::spec::DEFAULT_BATCH_SIZE;
use crate::smoothness::{self, NOISE, NOISY};
use crate::steps::{self, Ending, StepRun};

use probe::Probe;
pub use results::{LayerDrift, ModelDrift, ProbedInput};

/// Arguments of `drift`.
#[derive(Debug, clap::Args, Serialize)]
pub struct DriftArgs {
    /// Training steps of the two MLPs (batch 60; the paper: 50,000).
    #[arg(long, default_value_t = 50_000)]
    pub steps: usize,
    /// Training steps of the three LeNets (batch 256; 0 skips them).
    #[arg(long, default_value_t = 3_000)]
    pub lenet_steps: usize,
    /// Probe the MLPs and measure their test accuracy every K steps.
    #[arg(long, default_value_t = 500)]
    pub every: usize,
    /// Probe the LeNets and measure their test accuracy every K steps.
    #[arg(long, default_value_t = 100)]
    pub lenet_every: usize,
    /// Learning rate of the MLPs (SGD). The paper gives none; 0.5 is the smallest rate of a
    /// pilot (0.1, 0.5, 1, 2; 3000 steps) within a point of the MLP without BN's best (see
    /// docs/experiments.md).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_MLP_LR)]
    pub lr: f64,
    /// Standard deviation of the MLPs' initial weights ("small random Gaussian values").
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_INIT_STD)]
    pub init_std: f32,
    /// Seed of the initial weights, the batch order and the noise (the same for every model).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// The MLPs' learning rate unless `--lr` says otherwise.
pub const DEFAULT_MLP_LR: f64 = 0.5;
/// The MLPs' initial weight spread unless `--init-std` says otherwise.
pub const DEFAULT_INIT_STD: f32 = 0.1;
/// Ioffe & Szegedy's batch size for the MLP.
pub const MLP_BATCH: usize = 60;
/// Hidden layer sizes of the MLP.
pub const MLP_HIDDEN: [usize; 3] = [100, 100, 100];
/// The sigmoid whose input figure (b)/(c) follows: the last hidden layer's.
pub const UNIT_LAYER: &str = "act3";
/// Which of its 100 inputs (any one is "typical"; the first, fixed in advance).
pub const UNIT: usize = 0;
/// Appended to a model's name for its training-mode view ([`Probe::measure_training_view`]).
pub const TRAINING_VIEW: &str = "-train-mode";
/// Mixed into the seed for the noise the training-mode probes draw ("PROBENOI").
const PROBE_NOISE_SEED: u64 = 0x5052_4f42_454e_4f49;

/// Checks every option before anything is created or loaded.
fn check(args: &DriftArgs) -> Result<(), Error> {
    steps::check_steps(args.steps, "--every", args.every)?;
    checks::at_least_one("--lenet-every", args.lenet_every as u64)?;
    checks::learning_rate("--lr", args.lr)?;
    if !(args.init_std > 0.0 && args.init_std.is_finite()) {
        return Err(Error::Usage(format!(
            "--init-std must be a positive finite number, got {}",
            args.init_std
        )));
    }
    let train = args.common.check()?;
    let batch = if args.lenet_steps > 0 {
        DEFAULT_BATCH_SIZE
    } else {
        MLP_BATCH
    };
    checks::one_batch(train, batch)
}

/// Runs `drift`; returns the signal that interrupted it, if one did.
pub fn run(args: DriftArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("drift", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let probe = Probe::new(&session.data.test)?;
    let mut models = Vec::new();
    let plans = plans(&args);
    let total = plans.len();
    for (i, plan) in plans.into_iter().enumerate() {
        eprintln!(
            "\n== {}/{total}: {} for {} steps, probed every {}",
            i + 1,
            plan.name,
            plan.steps,
            plan.every
        );
        let model = build(args.seed, args.init_std, plan.name)?;
        let mut run = StepRun::new(model, plan.lr, plan.batch_size, args.seed, &session.data)?;
        match train_one(&mut run, &probe, &plan)? {
            Ok(m) => models.extend(m),
            Err(signal) => return Ok(Some(signal)),
        }
    }
    results::write_results(&session.dir, probe.len(), &models)?;
    let accuracy = tables::accuracy_table(&models);
    let drift = tables::drift_table(&models);
    println!("\ntest accuracy:\n{}", accuracy.text());
    println!(
        "drift on the probe set (p15 / p50 / p85 after warm-up and at the end):\n{}",
        drift.text()
    );
    let mut page = Page::new("drift: internal covariate shift, measured");
    page.text(describe(&args, probe.len()));
    page.heading("Test accuracy").table(accuracy);
    page.heading("Drift").text(measure_text()).table(drift);
    page.figure(
        "the MLP chart",
        chart::mlp_chart(&session.dir, &args, &models),
    );
    if args.lenet_steps > 0 {
        for (what, view) in [
            ("the LeNet chart", chart::View::Eval),
            ("the LeNet chart in training mode", chart::View::Training),
        ] {
            page.figure(what, chart::lenet_chart(&session.dir, &args, &models, view));
        }
    }
    session.finish(page, &args)?;
    Ok(None)
}

/// One model to train.
pub struct Plan {
    pub name: &'static str,
    pub steps: usize,
    pub every: usize,
    pub lr: f64,
    pub batch_size: usize,
}

/// The LeNets of `drift`, in order.
pub const LENETS: [&str; 3] = ["lenet", "lenet-bn", NOISY];

fn plans(args: &DriftArgs) -> Vec<Plan> {
    let mlp = |name| Plan {
        name,
        steps: args.steps,
        every: args.every,
        lr: args.lr,
        batch_size: MLP_BATCH,
    };
    let mut out = vec![mlp("mlp"), mlp("mlp-bn")];
    if args.lenet_steps > 0 {
        for name in LENETS {
            // The noisy model trains with LeNet-BN's recipe: only the noise differs.
            let kind = if name == "lenet" {
                ModelKind::Lenet
            } else {
                ModelKind::LenetBn
            };
            out.push(Plan {
                name,
                steps: args.lenet_steps,
                every: args.lenet_every,
                lr: default_lr(kind, OptimizerChoice::Sgd),
                batch_size: DEFAULT_BATCH_SIZE,
            });
        }
    }
    out
}

/// The model `name` from `seed` (the LeNets as `smoothness` builds them).
fn build(seed: u64, init_std: f32, name: &str) -> Result<Sequential, Error> {
    let rng = &mut Rng::seed_from_u64(seed);
    Ok(match name {
        "mlp" => models::mlp(&MLP_HIDDEN, false, init_std, rng)?,
        "mlp-bn" => models::mlp(&MLP_HIDDEN, true, init_std, rng)?,
        _ => smoothness::build(name, seed)?,
    })
}

/// Trains `run` for `plan`, probing it before every K-th step and at the end: the model in
/// eval mode and, if it has batch norm, also in training mode (recorded as a second model
/// named by [`training_view_name`]).
pub fn train_one(
    run: &mut StepRun,
    probe: &Probe,
    plan: &Plan,
) -> Result<Result<Vec<ModelDrift>, Signal>, Error> {
    let unit = plan.name.starts_with("mlp").then_some((UNIT_LAYER, UNIT));
    // Batch norm keeps buffers (its running statistics); without them the training-mode view
    // is the eval-mode one.
    let training_view = !run.model.named_buffers().is_empty();
    let mut noise = Rng::seed_from_u64(run.seed() ^ PROBE_NOISE_SEED);
    let mut probes: Vec<(usize, probe::Measurement)> = Vec::new();
    let mut training_probes: Vec<(usize, probe::Measurement)> = Vec::new();
    let mut measure = |run: &mut StepRun| -> Result<(), Error> {
        probes.push((run.step, probe.measure(&mut run.model, unit)?));
        if training_view {
            let m = probe.measure_training_view(&mut run.model, unit, &mut noise)?;
            training_probes.push((run.step, m));
        }
        Ok(())
    };
    let outcome = steps::train(
        run,
        plan.steps,
        plan.every,
        plan.name,
        plan.every,
        |run, _| measure(run),
    )?;
    let (curve, ending) = match outcome {
        Ok(done) => done,
        Err(signal) => return Ok(Err(signal)),
    };
    // The hooks run before steps, so the end of a completed run is probed here.
    if ending == Ending::Completed {
        measure(run)?;
    }
    let final_test_acc = curve.last().map(|p| p.test_acc);
    let model = |name: String, probes: &[(usize, probe::Measurement)]| {
        let (unit, layers) = probed_inputs(probes, unit, plan.steps);
        ModelDrift {
            model: name,
            lr: plan.lr,
            batch_size: plan.batch_size,
            steps: plan.steps,
            final_test_acc,
            curve: curve.clone(),
            ending,
            unit,
            drift: ModelDrift::summary(&layers),
            layers,
        }
    };
    let mut out = vec![model(plan.name.to_string(), &probes)];
    if training_view {
        out.push(model(training_view_name(plan.name), &training_probes));
    }
    Ok(Ok(out))
}

/// The name under which the training-mode view of model `name` is recorded.
pub fn training_view_name(name: &str) -> String {
    format!("{name}{TRAINING_VIEW}")
}

/// The probed unit (if one was followed) and every activation's whole input, in the order
/// they first appear, with their drift over a run of `steps` steps.
fn probed_inputs(
    probes: &[(usize, probe::Measurement)],
    unit: Option<(&str, usize)>,
    steps: usize,
) -> (Option<ProbedInput>, Vec<ProbedInput>) {
    let unit_records: Vec<(usize, Summary)> = probes
        .iter()
        .filter_map(|(step, m)| m.unit.map(|s| (*step, s)))
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for (_, m) in probes {
        for (name, _) in &m.layers {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let layers = names
        .iter()
        .map(|name| {
            let records = probes
                .iter()
                .filter_map(|(step, m)| {
                    m.layers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, s)| (*step, *s))
                })
                .collect();
            ProbedInput::new(name, None, records, steps)
        })
        .collect();
    let unit = unit.map(|(layer, u)| ProbedInput::new(layer, Some(u), unit_records, steps));
    (unit, layers)
}

/// The drift measure, in words, for the page.
fn measure_text() -> String {
    format!(
        "With s = p85 − p15 (the 15–85 spread on the probe set), t₀ the first probe at or \
         after {:.0} % of the steps and T the last: median shift = |p50(T) − p50(t₀)| / s(T), \
         spread change = |s(T) − s(t₀)| / s(T). 0: the distribution stayed put after warm-up; \
         1: it moved by as much as its final spread. A model's row 'mean' averages its \
         activations' whole inputs.",
        measure::WARMUP_FRACTION * 100.0
    )
}

/// The page's opening paragraph.
fn describe(args: &DriftArgs, probe_images: usize) -> String {
    let mut s = format!(
        "Ioffe & Szegedy's MLP (784-100-100-100-10, sigmoid, initial weights from N(0, {}²), \
         biases 0, SGD at lr {}, batch {MLP_BATCH}) without and with batch norm before each \
         sigmoid, {} steps each from seed {} (same initial weights of the linear layers and \
         same batches), probed every {} steps. The probe: the first {probe_images} test images \
         through the model in eval mode (running statistics, as at inference), the 15th, 50th \
         and 85th percentiles of the input of sigmoid {UNIT} of the last hidden layer (the \
         paper's Figure 1) and of each activation's whole input.",
        args.init_std,
        fmt_lr(args.lr),
        args.steps,
        args.seed,
        args.every
    );
    if args.lenet_steps > 0 {
        let _ = write!(
            s,
            " LeNet, LeNet-BN and LeNet-BN with noise after each batch norm (Santurkar et al.'s \
             noisy batch norm: per channel and step y = a·x + b, a ~ U({}, {}), b ~ U(−{}, {}); \
             in eval mode its expectation y = {}·x), sigmoid, batch {DEFAULT_BATCH_SIZE}, lr {}, \
             {} and {}, {} steps each, probed every {} steps: the same percentiles of each \
             activation's whole input (all units and positions of the probe images). Models \
             with batch norm are probed a second time in training mode, recorded as \
             '<model>{TRAINING_VIEW}': each batch norm normalizes the probe set with its own \
             statistics (restored afterwards) and the noise is drawn afresh at every probe \
             (from the probe's generator, so training's noise is untouched) — the input as a \
             training step sees it, Santurkar et al.'s view.",
            NOISE.min_scale,
            NOISE.max_scale,
            NOISE.max_shift,
            NOISE.max_shift,
            0.5 * (NOISE.min_scale + NOISE.max_scale),
            fmt_lr(default_lr(ModelKind::Lenet, OptimizerChoice::Sgd)),
            fmt_lr(default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd)),
            fmt_lr(default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd)),
            args.lenet_steps,
            args.lenet_every
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::tiny_data;

    /// Every parameter and buffer of `model`, as bits.
    fn state(model: &Sequential) -> Vec<(String, Vec<u32>)> {
        let params = model.named_parameters().into_iter().map(|(n, p)| {
            (
                n,
                p.value().as_slice().iter().map(|v| v.to_bits()).collect(),
            )
        });
        let buffers = model.named_buffers().into_iter().map(|(n, b)| {
            let bits = match b {
                norma_layers::Buffer::F32(t) => {
                    t.get().as_slice().iter().map(|v| v.to_bits()).collect()
                }
                norma_layers::Buffer::I64(c) => vec![c.get() as u32],
            };
            (n, bits)
        });
        params.chain(buffers).collect()
    }

    #[test]
    fn probing_leaves_the_trajectory_bitwise_unchanged() {
        let data = tiny_data(40, 16);
        let probe = Probe::new(&data.test).unwrap();
        for name in ["mlp-bn", "lenet-bn", NOISY] {
            let plan = Plan {
                name,
                steps: 7,
                every: 2,
                lr: 0.5,
                batch_size: 8,
            };
            let new_run = || {
                let model = build(3, 0.1, name).unwrap();
                StepRun::new(model, plan.lr, plan.batch_size, 3, &data).unwrap()
            };
            let mut probed = new_run();
            let views = train_one(&mut probed, &probe, &plan).unwrap().unwrap();
            // Batch norm's models have a training-mode view too.
            let names: Vec<&str> = views.iter().map(|m| m.model.as_str()).collect();
            assert_eq!(
                names,
                [name.to_string(), training_view_name(name)],
                "{name}"
            );
            let m = &views[0];
            let mut plain = new_run();
            let (curve, _) = steps::train(&mut plain, 7, 2, name, 0, |_, _| Ok(()))
                .unwrap()
                .unwrap();
            assert_eq!(m.curve, curve, "{name}");
            assert_eq!(state(&probed.model), state(&plain.model), "{name}");
            // Probes at steps 0, 2, 4, 6 and at the end.
            let steps: Vec<usize> = m.layers[0].records.iter().map(|r| r.0).collect();
            assert_eq!(steps, [0, 2, 4, 6, 7], "{name}");
            assert_eq!(m.layers[0].records[0].1.count % 16, 0, "{name}");
            assert_eq!(m.unit.is_some(), name == "mlp-bn");
            // The training view probes the same steps and sees other inputs: batch statistics
            // of the probe set instead of running ones (and, noisy, the noise).
            let training = &views[1];
            assert_eq!(training.curve, m.curve, "{name}");
            for (eval, train) in m.layers.iter().zip(&training.layers) {
                assert_eq!(eval.layer, train.layer);
                let steps = |l: &ProbedInput| l.records.iter().map(|r| r.0).collect::<Vec<_>>();
                assert_eq!(steps(eval), steps(train));
            }
            assert_ne!(
                m.layers[0].records, training.layers[0].records,
                "{name}: the views differ"
            );
        }
        // Without batch norm there is only the one view.
        let plan = Plan {
            name: "lenet",
            steps: 2,
            every: 1,
            lr: 0.5,
            batch_size: 8,
        };
        let mut run = StepRun::new(build(3, 0.1, "lenet").unwrap(), 0.5, 8, 3, &data).unwrap();
        let views = train_one(&mut run, &probe, &plan).unwrap().unwrap();
        assert_eq!(views.len(), 1);
    }
}
