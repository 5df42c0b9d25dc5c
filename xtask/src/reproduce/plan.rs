//! What `reproduce` runs: every experiment behind docs/experiments.md, one [`Section`] per
//! part of the document, each a list of [`Job`]s — one xtask command with its documented
//! budget and seed — and the same commands on tiny budgets for `--quick`.
//!
//! The seeds: every comparison runs seeds 0, 1 and 2 (the brief's readings are stated only
//! where three seeds agree). Experiments that take `--seeds` run them in one job; the others
//! (train-lenet, eval-mode, drift, smoothness) get one job per seed.
//!
//! `seconds` is a rough estimate of a job on 2 cores, not a measurement (the README's
//! default-run times where there is one, times the seeds the job runs); the progress line
//! rescales the estimates by how long the finished jobs really took.

use serde::Serialize;

/// `placement --seeds 3` at its defaults on 2 cores: it took 934 s of CPU time (875 s user),
/// 40 min of wall time on a machine shared with other jobs (38 % of a core); a LeNet-BN run
/// here uses about one core, so alone it takes about its CPU time.
const PLACEMENT_SECONDS: f64 = 940.0;

/// The seeds every comparison is repeated over.
pub const SEEDS: [u64; 3] = [0, 1, 2];

/// One part of docs/experiments.md and the experiments behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// Claims 5, 7, 8: train-lenet's default run (both models, 10 epochs).
    Train,
    /// Claims 2 and 9: 20 epochs.
    TwentyEpochs,
    /// Claim 2: nets overfit, and whether batch norm reduces it, on a small training set
    /// trained for long enough to memorize it.
    Overfit,
    /// Claim 8: final accuracy against the learning rate.
    LrSweep,
    /// Claim 6: batch norm before or after the activation.
    Placement,
    /// Claim 4: batch norm with and without its learnable γ and β.
    Affine,
    /// Claim 11: the train/eval switch.
    EvalMode,
    /// Claim 10: batch size.
    BatchSize,
    /// Claim 1: internal covariate shift measured.
    Drift,
    /// Claim 12: smoothness and noisy batch norm.
    Smoothness,
    /// Issue 21: batch norm and shortcuts in deep networks.
    Depth,
}

impl Section {
    /// Every section, in the document's order.
    pub const ALL: [Section; 11] = [
        Section::Train,
        Section::TwentyEpochs,
        Section::Overfit,
        Section::LrSweep,
        Section::Placement,
        Section::Affine,
        Section::EvalMode,
        Section::BatchSize,
        Section::Drift,
        Section::Smoothness,
        Section::Depth,
    ];

    /// The section's folder name (as on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Section::Train => "train",
            Section::TwentyEpochs => "twenty-epochs",
            Section::Overfit => "overfit",
            Section::LrSweep => "lr-sweep",
            Section::Placement => "placement",
            Section::Affine => "affine",
            Section::EvalMode => "eval-mode",
            Section::BatchSize => "batch-size",
            Section::Drift => "drift",
            Section::Smoothness => "smoothness",
            Section::Depth => "depth",
        }
    }

    /// The section's jobs at the documented budgets, or at tiny ones for `quick`.
    pub fn jobs(self, quick: bool) -> Vec<Job> {
        let per_seed = |command: &'static str, args: &[&str], seconds: f64| {
            SEEDS
                .iter()
                .map(|seed| Job {
                    name: format!("seed{seed}"),
                    args: [&[command], args, &["--seed", &seed.to_string()]]
                        .concat()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    seconds,
                })
                .collect::<Vec<_>>()
        };
        let all_seeds = |command: &'static str, args: &[&str], seconds: f64| {
            let seeds = SEEDS.len().to_string();
            vec![Job {
                name: "seeds".into(),
                args: [&[command], args, &["--seed", "0", "--seeds", &seeds]]
                    .concat()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                seconds,
            }]
        };
        // Tiny budgets: a few hundred images, one epoch or a few dozen steps.
        const TINY: [&str; 2] = ["--train-samples", "600"];
        match (self, quick) {
            (Section::Train, false) => per_seed("train-lenet", &[], 90.0),
            (Section::Train, true) => per_seed(
                "train-lenet",
                &[&TINY[..], &["--epochs", "1"]].concat(),
                4.0,
            ),
            (Section::TwentyEpochs, false) => per_seed("train-lenet", &["--epochs", "20"], 170.0),
            (Section::TwentyEpochs, true) => per_seed(
                "train-lenet",
                &[&TINY[..], &["--epochs", "2"]].concat(),
                5.0,
            ),
            (Section::Overfit, false) => per_seed("train-lenet", &OVERFIT, OVERFIT_SECONDS),
            (Section::Overfit, true) => per_seed(
                "train-lenet",
                &[&TINY[..], &["--batch-size", "64", "--epochs", "3"]].concat(),
                5.0,
            ),
            (Section::LrSweep, false) => all_seeds(
                "lr-sweep",
                &[
                    "--lrs", "0.03", "0.1", "0.3", "0.9", "1", "3", "10", "--epochs", "10",
                ],
                1800.0,
            ),
            (Section::LrSweep, true) => all_seeds(
                "lr-sweep",
                &[&TINY[..], &["--lrs", "0.1", "1", "--epochs", "1"]].concat(),
                12.0,
            ),
            // The defaults: every configuration tuned at lr 0.1, 0.3, 1 and 3 for 3 epochs on
            // 55 000 images (5000 held out), then 10 epochs at its rate — 144 + 120 epochs of
            // LeNet-BN over the three seeds.
            (Section::Placement, false) => all_seeds("placement", &[], PLACEMENT_SECONDS),
            (Section::Placement, true) => all_seeds(
                "placement",
                &[
                    &TINY[..],
                    &[
                        "--validation",
                        "100",
                        "--lrs",
                        "0.3",
                        "1",
                        "--tune-epochs",
                        "1",
                        "--epochs",
                        "1",
                    ],
                ]
                .concat(),
                15.0,
            ),
            // Placement's 12 runs of 10 epochs; measured once at 1604 s on 2 cores shared
            // with builds.
            (Section::Affine, false) => all_seeds("affine", &[], 1100.0),
            (Section::Affine, true) => {
                all_seeds("affine", &[&TINY[..], &["--epochs", "1"]].concat(), 12.0)
            }
            (Section::EvalMode, false) => per_seed("eval-mode", &[], 120.0),
            (Section::EvalMode, true) => per_seed(
                "eval-mode",
                &[
                    &TINY[..],
                    &["--epochs", "1", "--batch-sizes", "2", "64", "--orders", "2"],
                ]
                .concat(),
                8.0,
            ),
            // 49 cells and two fine-tunings a seed: measured at 36m39s for the 3 seeds on the
            // 2-core Xeon.
            (Section::BatchSize, false) => all_seeds("batch-size", &[], 2200.0),
            (Section::BatchSize, true) => all_seeds(
                "batch-size",
                &[&TINY[..], &["--epochs", "1", "--batch-sizes", "2", "64"]].concat(),
                25.0,
            ),
            // Measured: 233 s of CPU (user + system) a seed on 2 shared cores, 5–10 min of
            // wall time while other builds ran.
            (Section::Drift, false) => per_seed(
                "drift",
                &[
                    "--steps",
                    "50000",
                    "--every",
                    "500",
                    "--lenet-steps",
                    "3000",
                    "--lenet-every",
                    "100",
                ],
                300.0,
            ),
            (Section::Drift, true) => per_seed(
                "drift",
                &[
                    &TINY[..],
                    &[
                        "--steps",
                        "20",
                        "--every",
                        "5",
                        "--lenet-steps",
                        "4",
                        "--lenet-every",
                        "2",
                    ],
                ]
                .concat(),
                4.0,
            ),
            // Probes every 25 steps at 9 step sizes, test accuracy every 100: measured at
            // 120 s of CPU and 190 s on the 2 cores shared with other jobs, a seed.
            (Section::Smoothness, false) => per_seed(
                "smoothness",
                &["--steps", "2400", "--every", "25", "--eval-every", "100"],
                190.0,
            ),
            (Section::Smoothness, true) => per_seed(
                "smoothness",
                &[
                    &TINY[..],
                    &["--steps", "20", "--every", "10", "--eval-every", "10"],
                ]
                .concat(),
                5.0,
            ),
            (Section::Depth, false) => all_seeds("depth", &[], 720.0),
            (Section::Depth, true) => all_seeds(
                "depth",
                &[
                    &TINY[..],
                    &[
                        "--depths",
                        "8",
                        "--steps",
                        "10",
                        "--every",
                        "5",
                        "--test-samples",
                        "200",
                    ],
                ]
                .concat(),
                6.0,
            ),
        }
    }
}

/// The `overfit` section's budget: 2000 training images (31 batches of 64 an epoch; the
/// default 256 leaves too few steps for plain LeNet to memorize them) for 300 epochs at the
/// default learning rates. LeNet-BN's eval-mode train accuracy nears 1 and its test loss rises
/// while test accuracy levels off; plain LeNet, slower (its sigmoid plateau lasts 30-60
/// epochs), gets there later.
const OVERFIT: [&str; 6] = [
    "--train-samples",
    "2000",
    "--batch-size",
    "64",
    "--epochs",
    "300",
];

/// One job of the `overfit` section, both models: a rough estimate from one job that took
/// 174 s of CPU time (and 878 s of wall time on a heavily shared machine).
const OVERFIT_SECONDS: f64 = 200.0;

/// One command of a section: `cargo xtask <args> --out <folder of the job>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// The job's folder in its section's (`seed0`, `seeds`).
    pub name: String,
    /// The xtask command line without the program and `--out`.
    pub args: Vec<String>,
    /// A rough estimate of how long it takes (see the module docs).
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_runs_every_seed_and_quick_runs_the_same_commands() {
        for section in Section::ALL {
            for quick in [false, true] {
                let jobs = section.jobs(quick);
                let line = jobs
                    .iter()
                    .map(|j| j.args.join(" "))
                    .collect::<Vec<_>>()
                    .join("; ");
                for seed in SEEDS {
                    let alone = format!("--seed {seed}");
                    let together = format!("--seed 0 --seeds {}", SEEDS.len());
                    assert!(
                        line.contains(&alone) || line.contains(&together),
                        "{}: seed {seed} missing in {line}",
                        section.name()
                    );
                }
                let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                let mut unique = names.clone();
                unique.dedup();
                assert_eq!(names, unique, "job folders are distinct");
            }
            let commands = |quick| {
                section
                    .jobs(quick)
                    .iter()
                    .map(|j| j.args[0].clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(commands(false), commands(true), "{}", section.name());
        }
    }
}
