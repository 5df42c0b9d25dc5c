//! `cargo xtask drift`: "internal covariate shift" measured — Ioffe & Szegedy (2015), Section
//! 4.1 and Figure 1.
//!
//! - Their MLP (784-100-100-100-10, sigmoid, weights from N(0, σ²) with a small σ, biases 0,
//!   batch 60, SGD) with and without a BatchNorm1d after each hidden linear layer, trained for
//!   `--steps` steps on the same batches from the same seed: the test accuracy every K steps,
//!   and the 15th/50th/85th percentiles over the batch of the input of one sigmoid of the last
//!   hidden layer (unit [`UNIT`] of `act3`) — without BN, the distribution moves as the layers
//!   below learn; with BN it should stay put. Every hidden layer's whole input is summarized
//!   too.
//! - LeNet and LeNet-BN (d2l's recipe: sigmoid, batch 256, lr 0.9 and 1.0) for `--lenet-steps`
//!   steps: the same percentiles of each activation's whole input (all units and positions of
//!   the batch) every K steps — for LeNet-BN the output of each batch norm.
//!
//! The statistics come from [`norma_layers::ActivationStats`] and a [`UnitStats`] observer
//! attached to the models: the training loop does not know about them.

pub mod chart;
pub mod tables;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use norma_layers::models::{self, Activation, ModelKind};
use norma_layers::{ActivationRecord, ActivationStats, InputObserver, Sequential, Summary};
use norma_tensor::{Rng, Tensor};
use serde::Serialize;

use crate::cli::args::CommonArgs;
use crate::cli::checks;
use crate::cli::choices::{default_lr, OptimizerChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::fmt_lr;
use crate::output::run_dir::RunDir;
use crate::run::spec::DEFAULT_BATCH_SIZE;
use crate::steps::{self, CurvePoint, Ending, StepRun};

/// Arguments of `drift`.
#[derive(Debug, clap::Args, Serialize)]
pub struct DriftArgs {
    /// Training steps of the two MLPs (batch 60; the paper: 50,000).
    #[arg(long, default_value_t = 10_000)]
    pub steps: usize,
    /// Training steps of LeNet and LeNet-BN (batch 256; 0 skips them).
    #[arg(long, default_value_t = 600)]
    pub lenet_steps: usize,
    /// Record the statistics and the test accuracy every K steps (statistics at steps 1,
    /// K + 1, 2K + 1, ...).
    #[arg(long, default_value_t = 50)]
    pub every: usize,
    /// Learning rate of the MLPs (SGD). The paper gives none; 0.5 is the smallest rate of a
    /// pilot (0.1, 0.5, 1, 2; 3000 steps) within a point of the MLP without BN's best (see
    /// docs/experiments.md).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_MLP_LR)]
    pub lr: f64,
    /// Standard deviation of the MLPs' initial weights ("small random Gaussian values").
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_INIT_STD)]
    pub init_std: f32,
    /// Seed of the initial weights and the batch order (the same for both models of a pair).
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

/// Summaries of one column of a layer's (N, units) input: one unit's values over the batch.
#[derive(Debug)]
pub struct UnitStats {
    unit: usize,
    every: usize,
    passes: usize,
    /// (step, summary), the step counted from 1 as in [`ActivationStats`].
    pub records: Vec<(usize, Summary)>,
}

impl UnitStats {
    pub fn new(unit: usize, every: usize) -> UnitStats {
        UnitStats {
            unit,
            every: every.max(1),
            passes: 0,
            records: Vec::new(),
        }
    }
}

impl InputObserver for UnitStats {
    fn observe(&mut self, _layer: &str, input: &Tensor) {
        self.passes += 1;
        if !(self.passes - 1).is_multiple_of(self.every) {
            return;
        }
        let shape = input.shape();
        if shape.len() != 2 || self.unit >= shape[1] {
            return;
        }
        let column: Vec<f32> = input
            .as_slice()
            .iter()
            .skip(self.unit)
            .step_by(shape[1])
            .copied()
            .collect();
        if let Some(summary) = Summary::of(&column) {
            self.records.push((self.passes, summary));
        }
    }
}

/// One layer's whole-input summaries over training.
#[derive(Debug, Clone, Serialize)]
pub struct LayerDrift {
    pub layer: String,
    /// (step, summary) with the step counted from 1.
    #[serde(serialize_with = "serialize_records")]
    pub records: Vec<(usize, Summary)>,
}

impl LayerDrift {
    /// `records` grouped by layer, the layers in the order they first appear.
    pub fn group(records: &[ActivationRecord]) -> Vec<LayerDrift> {
        let mut layers: Vec<LayerDrift> = Vec::new();
        for r in records {
            match layers.iter_mut().find(|l| l.layer == r.layer) {
                Some(l) => l.records.push((r.step, r.summary)),
                None => layers.push(LayerDrift {
                    layer: r.layer.clone(),
                    records: vec![(r.step, r.summary)],
                }),
            }
        }
        layers
    }
}

fn serialize_records<S: serde::Serializer>(
    records: &[(usize, Summary)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(records.len()))?;
    for (step, m) in records {
        seq.serialize_element(&serde_json::json!({
            "step": step, "p15": m.p15, "p50": m.p50, "p85": m.p85,
            "mean": m.mean, "std": m.std, "count": m.count
        }))?;
    }
    seq.end()
}

/// One trained model of the experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDrift {
    /// `mlp`, `mlp-bn`, `lenet`, `lenet-bn`.
    pub model: String,
    pub lr: f64,
    pub batch_size: usize,
    pub curve: Vec<CurvePoint>,
    pub ending: Ending,
    /// The input of unit [`UNIT`] of [`UNIT_LAYER`] (MLPs only).
    #[serde(serialize_with = "serialize_records")]
    pub unit: Vec<(usize, Summary)>,
    /// Every activation's whole input.
    pub layers: Vec<LayerDrift>,
}

impl ModelDrift {
    pub fn final_acc(&self) -> Option<f64> {
        self.curve.last().map(|p| p.test_acc)
    }
}

/// Checks every option before anything is created or loaded.
fn check(args: &DriftArgs) -> Result<(), Error> {
    steps::check_steps(args.steps, "--every", args.every)?;
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
    let mut models = Vec::new();
    let plans = plans(&args);
    let total = plans.len();
    for (i, plan) in plans.into_iter().enumerate() {
        eprintln!(
            "\n== {}/{total}: {} for {} steps",
            i + 1,
            plan.name,
            plan.steps
        );
        match train_one(&args, &session.data, plan)? {
            Ok(m) => models.push(m),
            Err(signal) => return Ok(Some(signal)),
        }
    }
    write_results(&session.dir, &models)?;
    let accuracy = tables::accuracy_table(&models);
    let drift = tables::drift_table(&models);
    println!("\ntest accuracy:\n{}", accuracy.text());
    println!(
        "pre-activation percentiles (p15 / p50 / p85), first and last record:\n{}",
        drift.text()
    );
    let mut page = Page::new("drift: internal covariate shift, measured");
    page.text(describe(&args));
    page.heading("Test accuracy").table(accuracy);
    page.figure(
        "the MLP chart",
        chart::mlp_chart(&session.dir, &args, &models),
    );
    page.heading("Pre-activation percentiles").table(drift);
    if args.lenet_steps > 0 {
        page.figure(
            "the LeNet chart",
            chart::lenet_chart(&session.dir, &args, &models),
        );
    }
    session.finish(page, &args)?;
    Ok(None)
}

/// One model to train.
struct Plan {
    name: &'static str,
    steps: usize,
    lr: f64,
    batch_size: usize,
}

fn plans(args: &DriftArgs) -> Vec<Plan> {
    let mlp = |name| Plan {
        name,
        steps: args.steps,
        lr: args.lr,
        batch_size: MLP_BATCH,
    };
    let mut out = vec![mlp("mlp"), mlp("mlp-bn")];
    if args.lenet_steps > 0 {
        for model in ModelKind::BRIEF {
            out.push(Plan {
                name: model.name(),
                steps: args.lenet_steps,
                lr: default_lr(model, OptimizerChoice::Sgd),
                batch_size: DEFAULT_BATCH_SIZE,
            });
        }
    }
    out
}

/// Builds the model of `plan` from the seed.
fn build(args: &DriftArgs, name: &str) -> Result<Sequential, Error> {
    let rng = &mut Rng::seed_from_u64(args.seed);
    Ok(match name {
        "mlp" => models::mlp(&MLP_HIDDEN, false, args.init_std, rng)?,
        "mlp-bn" => models::mlp(&MLP_HIDDEN, true, args.init_std, rng)?,
        "lenet" => models::lenet(Activation::Sigmoid, rng)?,
        _ => models::lenet_bn(Activation::Sigmoid, rng)?,
    })
}

/// Trains one model with its observers attached.
fn train_one(
    args: &DriftArgs,
    data: &norma_datasets::Dataset,
    plan: Plan,
) -> Result<Result<ModelDrift, Signal>, Error> {
    let mut model = build(args, plan.name)?;
    let stats = ActivationStats::attach_to_activations(&mut model, args.every)?;
    let unit = plan
        .name
        .starts_with("mlp")
        .then(|| Rc::new(RefCell::new(UnitStats::new(UNIT, args.every))));
    if let Some(observer) = &unit {
        model.observe_input(UNIT_LAYER, observer.clone())?;
    }
    let mut run = StepRun::new(model, plan.lr, plan.batch_size, args.seed, data)?;
    let (curve, ending) = match steps::train(
        &mut run,
        plan.steps,
        args.every,
        plan.name,
        0,
        |_, _| Ok(()),
    )? {
        Ok(done) => done,
        Err(signal) => return Ok(Err(signal)),
    };
    run.model.clear_observers();
    let layers = LayerDrift::group(stats.borrow().records());
    let unit = unit.map_or_else(Vec::new, |u| u.borrow().records.clone());
    Ok(Ok(ModelDrift {
        model: plan.name.to_string(),
        lr: plan.lr,
        batch_size: plan.batch_size,
        curve,
        ending,
        unit,
        layers,
    }))
}

/// The page's opening paragraph.
fn describe(args: &DriftArgs) -> String {
    let mut s = format!(
        "Ioffe & Szegedy's MLP (784-100-100-100-10, sigmoid, initial weights from N(0, {}²), \
         biases 0, SGD at lr {}, batch {MLP_BATCH}) without and with batch norm before each \
         sigmoid, {} steps each from seed {} (same initial weights of the linear layers and \
         same batches). Statistics every {} steps: the input of sigmoid {UNIT} of the last \
         hidden layer over the batch (the paper's Figure 1) and each hidden layer's whole \
         input.",
        args.init_std,
        fmt_lr(args.lr),
        args.steps,
        args.seed,
        args.every
    );
    if args.lenet_steps > 0 {
        let _ = write!(
            s,
            " LeNet and LeNet-BN (sigmoid, batch {DEFAULT_BATCH_SIZE}, lr {} and {}), {} steps \
             each: the percentiles of each activation's whole input (LeNet-BN: each batch \
             norm's output).",
            fmt_lr(default_lr(ModelKind::Lenet, OptimizerChoice::Sgd)),
            fmt_lr(default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd)),
            args.lenet_steps
        );
    }
    s
}

/// `drift.json` (everything), `drift.csv` (one line per record) and `accuracy.csv`.
fn write_results(dir: &RunDir, models: &[ModelDrift]) -> Result<(), Error> {
    dir.write_json("drift.json", &models)?;
    let mut csv = String::from("model,layer,unit,step,p15,p50,p85,mean,std,count\n");
    let mut line = |model: &str, layer: &str, unit: &str, step: usize, m: &Summary| {
        let _ = writeln!(
            csv,
            "{model},{layer},{unit},{step},{},{},{},{},{},{}",
            m.p15, m.p50, m.p85, m.mean, m.std, m.count
        );
    };
    for m in models {
        for (step, s) in &m.unit {
            line(&m.model, UNIT_LAYER, &UNIT.to_string(), *step, s);
        }
        for l in &m.layers {
            for (step, s) in &l.records {
                line(&m.model, &l.layer, "all", *step, s);
            }
        }
    }
    dir.write("drift.csv", csv.as_bytes())?;
    let curves: Vec<(&str, &[CurvePoint])> = models
        .iter()
        .map(|m| (m.model.as_str(), m.curve.as_slice()))
        .collect();
    steps::write_curves(dir, "accuracy", &curves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_observer_summarizes_one_column_every_k_passes() {
        let mut obs = UnitStats::new(1, 2);
        // (3, 2): column 1 holds 10, 20, 30.
        let t = Tensor::from_vec(&[3, 2], vec![0.0, 10.0, 5.0, 20.0, 9.0, 30.0]).unwrap();
        for _ in 0..3 {
            obs.observe("act3", &t);
        }
        assert_eq!(obs.records.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3]);
        let m = obs.records[0].1;
        assert_eq!((m.p15, m.p50, m.p85, m.mean), (10.0, 20.0, 30.0, 20.0));
        assert_eq!(m.count, 3);
    }
}
