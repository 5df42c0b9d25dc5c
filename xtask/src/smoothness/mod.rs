//! `cargo xtask smoothness`: Santurkar, Tsipras, Ilyas & Mądry (2018), *How Does Batch
//! Normalization Help Optimization?* — the loss landscape along the training trajectory
//! (their Figure 4) and "noisy" batch norm (their Section 2.1).
//!
//! - LeNet and LeNet-BN (sigmoid, batch 256) trained with SGD at the same `--lr` from the same
//!   seed for `--steps` steps. Before every K-th step, on the batch that step is about to
//!   train on, at the weights x with gradient g: the loss L(x − η·g), the gradient change
//!   ‖∇L(x) − ∇L(x − η·g)‖ and the effective β-smoothness max ‖Δ∇L‖/‖Δx‖ for η in
//!   [`ETA_FACTORS`] × lr ([`measures`], [`probe`]). The probes leave weights and batch-norm
//!   statistics exactly as they were, so the trajectory is that of a run without them.
//! - LeNet-BN with [`ShiftNoise`](norma_layers::ShiftNoise) after each batch norm (per channel
//!   and step: y = a·x + b, a ~ U(1, 3), b ~ U(−1, 1)), trained the same way: its test
//!   accuracy next to the other two.

pub mod chart;
pub mod measures;
pub mod probe;
pub mod tables;

use std::fmt::Write as _;

use norma_layers::models::{self, Activation, ModelKind};
use norma_layers::{set_noise_at_eval, NoiseAtEval, Sequential, ShiftNoiseConfig};
use norma_tensor::Rng;
use serde::Serialize;

use crate::experiment;

use crate::cli::args::CommonArgs;
use crate::cli::checks;
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::output::html::Page;
use crate::output::report::fmt_lr;
use crate::output::run_dir::RunDir;
use crate::run::spec::DEFAULT_BATCH_SIZE;
use crate::steps::{self, CurvePoint, Ending, StepRun};

/// Arguments of `smoothness`.
#[derive(Debug, clap::Args, Serialize)]
pub struct SmoothnessArgs {
    /// Training steps of each model (batch 256).
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Probe the landscape and measure the test accuracy every K steps.
    #[arg(long, default_value_t = 25)]
    pub every: usize,
    /// Learning rate of all three models (SGD) [default: 0.9, d2l's rate for LeNet].
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_LR)]
    pub lr: f64,
    /// Seed of the initial weights, the batch order and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// The learning rate unless `--lr` says otherwise: d2l's for sigmoid LeNet, at which LeNet-BN
/// trains too (its own default is 1.0), so both can share it as Santurkar et al. require.
pub const DEFAULT_LR: f64 = 0.9;

/// The step sizes probed, as multiples of the learning rate: the step training takes, and
/// two smaller and two larger ones (a factor of 2 apart).
pub const ETA_FACTORS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// One probe along the trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    /// Steps taken before it.
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub loss_min: f64,
    pub loss_max: f64,
    pub predictiveness_min: f64,
    pub predictiveness_max: f64,
    pub beta: f64,
    pub etas: Vec<f64>,
    pub losses: Vec<f64>,
    pub grad_changes: Vec<f64>,
}

impl ProbeRecord {
    fn new(step: usize, p: measures::GradientProbe) -> ProbeRecord {
        let (loss_min, loss_max) = p.loss_range();
        let (predictiveness_min, predictiveness_max) = p.predictiveness_range();
        ProbeRecord {
            step,
            loss: p.loss,
            grad_norm: p.grad_norm,
            loss_min,
            loss_max,
            predictiveness_min,
            predictiveness_max,
            beta: p.beta(),
            etas: p.etas,
            losses: p.losses,
            grad_changes: p.grad_changes,
        }
    }
}

/// One trained model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelTrajectory {
    /// `lenet`, `lenet-bn`, `lenet-bn-noisy`.
    pub model: String,
    pub curve: Vec<CurvePoint>,
    pub ending: Ending,
    /// Empty for the noisy model (not probed).
    pub probes: Vec<ProbeRecord>,
    /// The noisy model's test accuracy with the noise left out at test time
    /// ([`NoiseAtEval::Identity`]) at the points of `curve`, whose accuracy applies the noise's
    /// expectation; empty for the other models.
    pub noise_left_out: Vec<CurvePoint>,
}

/// The test accuracy of `run`'s model with its noise left out at test time; the model keeps
/// the noise's expectation for every other evaluation.
fn accuracy_without_noise(run: &mut StepRun) -> Result<CurvePoint, Error> {
    set_noise_at_eval(&mut run.model, NoiseAtEval::Identity);
    let acc = run.test_accuracy();
    set_noise_at_eval(&mut run.model, NoiseAtEval::Expectation);
    Ok(CurvePoint {
        step: run.step,
        test_acc: acc?,
        train_loss: None,
    })
}

impl ModelTrajectory {
    pub fn final_acc(&self) -> Option<f64> {
        self.curve.last().map(|p| p.test_acc)
    }
}

/// The noisy model's name.
pub const NOISY: &str = "lenet-bn-noisy";

/// The noisy model tested with its noise left out, in accuracy.csv and the chart.
pub const NOISE_LEFT_OUT: &str = "lenet-bn-noisy, noise left out at test";

/// Checks every option before anything is created or loaded.
fn check(args: &SmoothnessArgs) -> Result<(), Error> {
    steps::check_steps(args.steps, "--every", args.every)?;
    checks::learning_rate("--lr", args.lr)?;
    if let Some(eta) = ETA_FACTORS
        .iter()
        .map(|f| f * args.lr)
        .find(|e| !e.is_finite())
    {
        return Err(Error::Usage(format!(
            "--lr {} gives a probe step of {eta}; use a smaller --lr",
            fmt_lr(args.lr)
        )));
    }
    let train = args.common.check()?;
    checks::one_batch(train, DEFAULT_BATCH_SIZE)
}

/// Runs `smoothness`; returns the signal that interrupted it, if one did.
pub fn run(args: SmoothnessArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("smoothness", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let etas: Vec<f64> = ETA_FACTORS.iter().map(|f| f * args.lr).collect();
    let mut models = Vec::new();
    let names = ["lenet", "lenet-bn", NOISY];
    for (i, name) in names.into_iter().enumerate() {
        let probed = name != NOISY;
        eprintln!(
            "\n== {}/{}: {name} for {} steps{}",
            i + 1,
            names.len(),
            args.steps,
            if probed { ", probed every K steps" } else { "" }
        );
        let mut run = StepRun::new(
            build(name, args.seed)?,
            args.lr,
            DEFAULT_BATCH_SIZE,
            args.seed,
            &session.data,
        )?;
        let mut probes = Vec::new();
        let mut noise_left_out = Vec::new();
        let outcome = steps::train(
            &mut run,
            args.steps,
            args.every,
            name,
            args.every,
            |run, batch| {
                if probed {
                    let p = probe::probe_model(&mut run.model, batch, &etas)?;
                    probes.push(ProbeRecord::new(run.step, p));
                } else {
                    noise_left_out.push(accuracy_without_noise(run)?);
                }
                Ok(())
            },
        )?;
        let (curve, ending) = match outcome {
            Ok(done) => done,
            Err(signal) => return Ok(Some(signal)),
        };
        // The last point, where it falls between two hooks (a diverged run has none).
        let last = noise_left_out.last().map(|p| p.step);
        if !probed && ending == Ending::Completed && last != Some(run.step) {
            noise_left_out.push(accuracy_without_noise(&mut run)?);
        }
        models.push(ModelTrajectory {
            model: name.to_string(),
            curve,
            ending,
            probes,
            noise_left_out,
        });
    }
    write_results(&session.dir, &models)?;
    let table = tables::smoothness_table(&models);
    println!("\n{}", table.text());
    let mut page = Page::new("smoothness: the loss landscape with and without batch norm");
    page.text(describe(&args));
    page.table(table);
    page.figure(
        "the smoothness chart",
        chart::smoothness_chart(&session.dir, &args, &models),
    );
    page.heading("Noisy batch norm");
    page.text(format!(
        "LeNet-BN with noise after each batch norm: per channel and training step, \
         y = a·x + b with a ~ U({}, {}) and b ~ U(−{}, {}), drawn afresh every step. At test \
         time the noise is replaced by its expectation (y = E[a]·x: the input the next layer saw \
         on average in training); the line 'noise left out' tests with y = x, which halves that \
         input on average and so measures the mismatch along with the noise. Trained at the \
         same lr from the same seed.",
        NOISE.min_scale, NOISE.max_scale, NOISE.max_shift, NOISE.max_shift
    ));
    page.figure(
        "the noisy-BN chart",
        chart::noisy_chart(&session.dir, &args, &models),
    );
    session.finish(page, &args)?;
    Ok(None)
}

/// The noise of the noisy model (norma's default, [`ShiftNoiseConfig::default`]).
pub const NOISE: ShiftNoiseConfig = ShiftNoiseConfig {
    min_scale: 1.0,
    max_scale: 3.0,
    max_shift: 1.0,
};

/// The model `name` (`lenet`, `lenet-bn` or [`NOISY`]) from `seed`: the same linear and
/// convolution weights for all three (`drift` builds its LeNets here too).
pub fn build(name: &str, seed: u64) -> Result<Sequential, Error> {
    let rng = &mut Rng::seed_from_u64(seed);
    Ok(match name {
        "lenet" => ModelKind::Lenet.build(Activation::Sigmoid, rng)?,
        "lenet-bn" => ModelKind::LenetBn.build(Activation::Sigmoid, rng)?,
        _ => models::lenet_bn_noisy(Activation::Sigmoid, NOISE, rng)?,
    })
}

/// The page's opening paragraph.
fn describe(args: &SmoothnessArgs) -> String {
    let mut s = format!(
        "LeNet and LeNet-BN (sigmoid, batch {DEFAULT_BATCH_SIZE}) trained with SGD at lr {} \
         from seed {} for {} steps. Every {} steps, before the step and on the batch it is \
         about to train on, with batch norm in training mode: the loss L(x − η·g) along the \
         gradient g for η in",
        fmt_lr(args.lr),
        args.seed,
        args.steps,
        args.every
    );
    for (i, f) in ETA_FACTORS.iter().enumerate() {
        let _ = write!(
            s,
            "{} {}",
            if i == 0 { "" } else { "," },
            fmt_lr(f * args.lr)
        );
    }
    s.push_str(
        " (¼ to 4 times the learning rate); the gradient change ‖∇L(x) − ∇L(x − η·g)‖; and the \
         effective β-smoothness max ‖∇L(x) − ∇L(x − η·g)‖ / ‖η·g‖. The probes restore the \
         weights and batch-norm statistics, so the trajectory is the one of a run without them.",
    );
    s
}

/// `smoothness.json` (everything), `smoothness.csv` (one line per probe) and `accuracy.csv`.
fn write_results(dir: &RunDir, models: &[ModelTrajectory]) -> Result<(), Error> {
    dir.write_json("smoothness.json", &models)?;
    let mut csv = String::from(
        "model,step,loss,grad_norm,loss_min,loss_max,predictiveness_min,predictiveness_max,beta\n",
    );
    for m in models {
        for p in &m.probes {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{}",
                m.model,
                p.step,
                p.loss,
                p.grad_norm,
                p.loss_min,
                p.loss_max,
                p.predictiveness_min,
                p.predictiveness_max,
                p.beta
            );
        }
    }
    dir.write("smoothness.csv", csv.as_bytes())?;
    let mut curves: Vec<(&str, &[CurvePoint])> = models
        .iter()
        .map(|m| (m.model.as_str(), m.curve.as_slice()))
        .collect();
    for m in models.iter().filter(|m| !m.noise_left_out.is_empty()) {
        curves.push((NOISE_LEFT_OUT, m.noise_left_out.as_slice()));
    }
    steps::write_curves(dir, "accuracy", &curves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_noise_is_the_library_default() {
        assert_eq!(NOISE, ShiftNoiseConfig::default());
    }
}
