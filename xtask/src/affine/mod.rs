//! `cargo xtask affine`: the brief's claim that batch norm's second step, the learnable scale γ
//! and shift β, restores the expressiveness that normalizing takes away. LeNet-BN trains with
//! γ and β (d2l's model) and without them (PyTorch's `affine=False`: every batch norm only
//! normalizes, γ ≡ 1 and β ≡ 0 are not parameters), with sigmoid (d2l) and ReLU, for each seed;
//! the same seed gives both the same initial weights and batches (batch norm draws nothing).
//!
//! Each run is a `train-lenet` run in `runs/<activation>-<affine|no-affine>-seed<seed>/` with
//! its own report. After training, the saved weights are loaded back into the run's network
//! (which refuses a file with other entries): the γ and β of every batch norm are read from
//! the models with them ([`gamma_beta`]), and the models without are checked to have none.
//! The tables, files and charts are in [`tables`] and [`chart`].

pub mod chart;
pub mod gamma_beta;
pub mod tables;

use serde::Serialize;

use crate::cli::args::{seed_range, CommonArgs, PreciseArgs, SeedArgs};
use crate::cli::checks;
use crate::cli::choices::{default_lr, ActivationChoice, OptimizerChoice};
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::experiment;
use crate::output::html::Page;
use crate::output::report::{fmt_lr, RunRecord};
use crate::run::spec::RunSpec;
use gamma_beta::LayerAffine;
use norma_layers::models::ModelKind;

/// Arguments of `affine` (3 seeds of 4 runs of 10 epochs by default, train-lenet's budget:
/// 27 minutes on 2 cores shared with builds; `--epochs 5` halves it and reads the same).
#[derive(Debug, clap::Args, Serialize)]
pub struct AffineArgs {
    /// Activations to compare with and without γ and β.
    #[arg(long, value_enum, num_args = 1.., default_values = ["sigmoid", "relu"])]
    pub activations: Vec<ActivationChoice>,
    /// Epochs per run (train-lenet's and placement's 10, so that the numbers compare).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate (SGD, batch 256) [default: 1.0, d2l's rate for LeNet-BN].
    #[arg(long)]
    pub lr: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub seeds: SeedArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub precise: PreciseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// With γ and β (d2l's LeNet-BN) first, then without.
pub const AFFINE: [bool; 2] = [true, false];

/// `affine` or `no-affine`, as in the run folders and the files.
pub fn affine_name(affine: bool) -> &'static str {
    if affine {
        "affine"
    } else {
        "no-affine"
    }
}

/// One trained configuration.
#[derive(Debug, Clone, Serialize)]
pub struct AffineRun {
    pub activation: ActivationChoice,
    /// Whether the batch norms had learnable γ and β.
    pub affine: bool,
    pub seed: u64,
    /// With precise statistics (unless `--precise-bn 0`).
    pub final_test_acc: Option<f64>,
    /// With the running statistics (the moving averages kept during training).
    pub final_test_acc_moving_avg: Option<f64>,
    /// Mean training loss of the last epoch.
    pub final_train_loss: Option<f64>,
    pub final_train_acc: Option<f64>,
    /// γ and β tensors in the trained model's state dict (`bn{i}.weight`, `bn{i}.bias`): 8
    /// with affine, 0 without.
    pub norm_parameters: usize,
    pub status: &'static str,
    /// The trained γ and β of each batch norm (empty without affine).
    #[serde(skip)]
    pub layers: Vec<LayerAffine>,
    #[serde(skip)]
    pub record: RunRecord,
}

/// Checks every option before anything is created or loaded.
fn check(args: &AffineArgs) -> Result<(), Error> {
    checks::distinct_activations("--activations", &args.activations)?;
    checks::at_least_one("--epochs", args.epochs as u64)?;
    if let Some(lr) = args.lr {
        checks::learning_rate("--lr", lr)?;
    }
    args.seeds.check()?;
    args.common.check()?;
    Ok(())
}

/// Runs `affine`; returns the signal that interrupted it, if one did.
pub fn run(args: AffineArgs) -> Result<Option<Signal>, Error> {
    check(&args)?;
    let Some(session) = experiment::start("affine", &args.common)? else {
        return Ok(signals::received());
    };
    session.write_config(&args)?;
    let runs_dir = session.dir.subdir("runs")?;
    let total = args.seeds.list().len() * args.activations.len() * AFFINE.len();
    let mut runs = Vec::new();
    for seed in args.seeds.list() {
        for &activation in &args.activations {
            for affine in AFFINE {
                let base = RunSpec::recipe(ModelKind::LenetBn, activation, seed, args.epochs);
                let spec = RunSpec {
                    lr: args.lr.unwrap_or(base.lr),
                    precise_bn: args.precise.precise_bn,
                    affine,
                    ..base
                };
                let name = format!(
                    "{}-{}-seed{seed}",
                    activation.activation().name(),
                    affine_name(affine)
                );
                eprintln!("\n== run {}/{total}: {name}", runs.len() + 1);
                let record = match session.train(&runs_dir, &name, vec![spec.clone()])? {
                    Ok(mut records) => records.remove(0),
                    Err(signal) => return Ok(Some(signal)),
                };
                let weights = runs_dir
                    .file(&name)
                    .join(format!("{}.safetensors", spec.model.name()));
                let trained = gamma_beta::trained(&spec, &weights)?;
                runs.push(AffineRun {
                    activation,
                    affine,
                    seed,
                    final_test_acc: record.final_test_acc_precise,
                    final_test_acc_moving_avg: record.final_test_acc,
                    final_train_loss: record.epochs.last().map(|e| e.train_loss),
                    final_train_acc: record.epochs.last().map(|e| e.train_acc),
                    norm_parameters: trained.norm_parameters,
                    status: record.status.word(),
                    layers: trained.layers,
                    record,
                });
            }
        }
    }
    tables::write_results(&session.dir, &args, &runs)?;
    let finals = tables::final_table(&args, &runs);
    let layers = tables::gamma_beta_table(&args, &runs);
    println!("\nfinal test accuracy:\n{}", finals.text());
    println!("learned γ and β (with affine):\n{}", layers.text());
    let mut page = Page::new("affine: batch norm with and without its learnable γ and β");
    page.text(format!(
        "LeNet-BN trained for {} epochs at lr {} (SGD, batch 256) with its batch norms' \
         learnable scale γ and shift β (d2l's model) and without them (PyTorch's affine=False: \
         each batch norm only normalizes, γ ≡ 1 and β ≡ 0), seeds {}; the same seed gives both \
         the same initial weights and batches. Test accuracy with precise batch-norm \
         statistics ({} training batches) and, in brackets, with the moving averages kept \
         during training. Every run's own folder, with its report, is in runs/.",
        args.epochs,
        fmt_lr(
            args.lr
                .unwrap_or_else(|| default_lr(ModelKind::LenetBn, OptimizerChoice::Sgd))
        ),
        seed_range(&args.seeds.list()),
        args.precise.precise_bn
    ));
    page.heading("Final test accuracy and training loss")
        .table(finals);
    page.figure(
        "the curves with and without γ and β",
        chart::curves_chart(&session.dir, &args, &runs),
    );
    page.heading("The learned γ and β").table(layers);
    page.figure(
        "the learned γ and β",
        chart::gamma_beta_chart(&session.dir, &args, &runs),
    );
    session.finish(page, &args)?;
    Ok(None)
}
