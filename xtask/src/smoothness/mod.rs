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
//! - The two models do not reach the same loss at the same step, so the measures are also
//!   compared at equal training loss ([`summary`]): at each of [`summary::LEVELS`], over the
//!   probes whose running training loss is near it.
//! - LeNet-BN with [`ShiftNoise`](norma_layers::ShiftNoise) after each batch norm (per channel
//!   and step: y = a·x + b, a ~ U(1, 3), b ~ U(−1, 1)), trained the same way: its test
//!   accuracy next to the other two.

pub mod chart;
pub mod measures;
pub mod probe;
pub mod results;
pub mod summary;
pub mod tables;

use std::f64::consts::{FRAC_1_SQRT_2, SQRT_2};
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
use crate::run::spec::DEFAULT_BATCH_SIZE;
use crate::steps::{self, CurvePoint, Ending, StepRun};

/// Arguments of `smoothness`.
#[derive(Debug, clap::Args, Serialize)]
pub struct SmoothnessArgs {
    /// Training steps of each model (batch 256).
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Probe the landscape every K steps.
    #[arg(long, default_value_t = 25)]
    pub every: usize,
    /// Measure the test accuracy every K steps (and at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
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

/// The step sizes probed, as multiples of the learning rate: ¼ to 4 times the step training
/// takes, a factor √2 apart.
pub const ETA_FACTORS: [f64; 9] = [
    0.25,
    FRAC_1_SQRT_2 / 2.0,
    0.5,
    FRAC_1_SQRT_2,
    1.0,
    SQRT_2,
    2.0,
    2.0 * SQRT_2,
    4.0,
];

/// One probe along the trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    /// Steps taken before it.
    pub step: usize,
    /// The mean batch loss of the steps around it ([`summary::running_loss`]).
    pub train_loss: f64,
    /// L(x) on the probe's batch.
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
    pub fn new(step: usize, p: measures::GradientProbe) -> ProbeRecord {
        let (loss_min, loss_max) = p.loss_range();
        let (predictiveness_min, predictiveness_max) = p.predictiveness_range();
        ProbeRecord {
            step,
            // Known once the steps after the probe are taken.
            train_loss: f64::NAN,
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
    /// The batch loss of every step ([`StepRun::batch_losses`]).
    pub batch_losses: Vec<f32>,
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

    /// The headline numbers of the run ([`summary`]).
    pub fn summary(&self) -> summary::ModelSummary {
        let measures: Vec<summary::Measures> =
            self.probes.iter().map(summary::Measures::of).collect();
        summary::ModelSummary {
            final_test_acc: self.final_acc(),
            final_train_loss: summary::final_loss(&self.batch_losses),
            final_test_acc_noise_left_out: self.noise_left_out.last().map(|p| p.test_acc),
            median: (!measures.is_empty()).then(|| summary::Measures::median(&measures)),
        }
    }
}

/// The noisy model's name.
pub const NOISY: &str = "lenet-bn-noisy";

/// The noisy model tested with its noise left out, in accuracy.csv and the chart.
pub const NOISE_LEFT_OUT: &str = "lenet-bn-noisy, noise left out at test";

/// Checks every option before anything is created or loaded.
fn check(args: &SmoothnessArgs) -> Result<(), Error> {
    steps::check_steps(args.steps, "--every", args.every)?;
    checks::at_least_one("--eval-every", args.eval_every as u64)?;
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
        // The probes every `--every` steps; the noisy model's second accuracy where the
        // curve's is measured.
        let hook_every = if probed { args.every } else { args.eval_every };
        let outcome = steps::train(
            &mut run,
            args.steps,
            args.eval_every,
            name,
            hook_every,
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
        for p in &mut probes {
            p.train_loss = summary::running_loss(&run.batch_losses, p.step);
        }
        models.push(ModelTrajectory {
            model: name.to_string(),
            curve,
            ending,
            probes,
            batch_losses: std::mem::take(&mut run.batch_losses),
            noise_left_out,
        });
    }
    let results = results::results(&models);
    results::write(&session.dir, &results)?;
    let table = tables::smoothness_table(&results);
    let at_loss = tables::at_loss_table(&results);
    println!("\n{}\n{}", table.text(), at_loss.text());
    let mut page = Page::new("smoothness: the loss landscape with and without batch norm");
    page.text(describe(&args));
    page.table(table);
    page.figure(
        "the smoothness chart",
        chart::smoothness_chart(&session.dir, &args, &models),
    );
    page.heading("At equal training loss");
    page.text(format!(
        "At the same step LeNet-BN's training loss is lower than LeNet's, and a lower loss \
         alone may flatten the landscape. Here each probe's training loss is the mean batch \
         loss of the {} steps around it, and the models are compared where both have the same \
         one: at each level, the medians over the probes whose training loss is within a \
         factor {} of it (or the nearest probe, 'probes' 0). The ratio is LeNet-BN's measure \
         over LeNet's: below 1, LeNet-BN's landscape is smoother by that measure.",
        summary::WINDOW,
        summary::BAND
    ));
    page.table(at_loss);
    page.figure(
        "the measures against the training loss",
        chart::at_loss_chart(&session.dir, &models),
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
         from seed {} for {} steps, tested every {} steps. Every {} steps, before the step and on the batch it is \
         about to train on, with batch norm in training mode: the loss L(x − η·g) along the \
         gradient g for η in",
        fmt_lr(args.lr),
        args.seed,
        args.steps,
        args.eval_every,
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
        " (¼ to 4 times the learning rate, a factor √2 apart); the gradient change ‖∇L(x) − ∇L(x − η·g)‖; and the \
         effective β-smoothness max ‖∇L(x) − ∇L(x − η·g)‖ / ‖η·g‖. The probes restore the \
         weights and batch-norm statistics, so the trajectory is the one of a run without them.",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_noise_is_the_library_default() {
        assert_eq!(NOISE, ShiftNoiseConfig::default());
    }
}
