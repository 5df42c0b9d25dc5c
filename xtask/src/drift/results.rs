//! What `drift` records and writes: per model its test-accuracy curve and the probed
//! percentiles of each activation's input with their drift ([`measure`]), as `drift.json`
//! (keyed by model and layer name, so that a json pointer such as
//! `/models/mlp-bn/unit/drift/median_shift` stays put), `drift.csv` (one line per probe),
//! `drift-measures.csv` (one line per probed input) and `accuracy.csv`.

use std::fmt::Write as _;

use norma_layers::{ActivationRecord, Summary};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::drift::measure::{self, Drift, WARMUP_FRACTION};
use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::steps::{self, CurvePoint, Ending};

/// One probed input over training: an activation's whole input, or one unit of it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbedInput {
    pub layer: String,
    /// The unit (column) followed, or `None` for the whole input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<usize>,
    /// (steps taken, summary over the probe set).
    #[serde(serialize_with = "serialize_records")]
    pub records: Vec<(usize, Summary)>,
    pub drift: Option<Drift>,
}

impl ProbedInput {
    /// `records` of `layer` (and `unit`) with their drift over a run of `steps` steps.
    pub fn new(
        layer: &str,
        unit: Option<usize>,
        records: Vec<(usize, Summary)>,
        steps: usize,
    ) -> ProbedInput {
        ProbedInput {
            layer: layer.to_string(),
            unit,
            drift: measure::drift(&records, steps),
            records,
        }
    }

    /// `layer`, or `layer, unit k`.
    pub fn label(&self) -> String {
        match self.unit {
            Some(u) => format!("{}, unit {u}", self.layer),
            None => format!("{}, all", self.layer),
        }
    }
}

/// A model's drift over its activations: the mean of their measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelSummary {
    pub median_shift: f64,
    pub spread_change: f64,
}

/// One trained model of the experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDrift {
    /// `mlp`, `mlp-bn`, `lenet`, `lenet-bn`, `lenet-bn-noisy`.
    pub model: String,
    pub lr: f64,
    pub batch_size: usize,
    /// The step budget (the curve ends earlier if the run diverged).
    pub steps: usize,
    pub final_test_acc: Option<f64>,
    pub curve: Vec<CurvePoint>,
    pub ending: Ending,
    /// The input of one unit (MLPs: Ioffe & Szegedy's Figure 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<ProbedInput>,
    /// Every activation's whole input, by activation name.
    #[serde(serialize_with = "by_layer")]
    pub layers: Vec<ProbedInput>,
    /// The mean drift over `layers`.
    pub drift: Option<ModelSummary>,
}

impl ModelDrift {
    pub fn final_acc(&self) -> Option<f64> {
        self.curve.last().map(|p| p.test_acc)
    }

    /// The unit (if any), then the layers.
    pub fn inputs(&self) -> impl Iterator<Item = &ProbedInput> {
        self.unit.iter().chain(&self.layers)
    }

    /// [`ModelDrift::drift`] from `layers`.
    pub fn summary(layers: &[ProbedInput]) -> Option<ModelSummary> {
        let drifts: Vec<Drift> = layers.iter().filter_map(|l| l.drift).collect();
        measure::mean(&drifts).map(|(median_shift, spread_change)| ModelSummary {
            median_shift,
            spread_change,
        })
    }
}

fn by_layer<S: Serializer>(layers: &[ProbedInput], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(layers.len()))?;
    for l in layers {
        map.serialize_entry(&l.layer, l)?;
    }
    map.end()
}

/// `drift.json`: the probe set, the warm-up and the models by name.
#[derive(Serialize)]
struct Results<'a> {
    probe: ProbeInfo,
    warmup_fraction: f64,
    #[serde(serialize_with = "by_model")]
    models: &'a [ModelDrift],
}

/// What the probe set is.
#[derive(Serialize)]
struct ProbeInfo {
    split: &'static str,
    first_images: usize,
}

fn by_model<S: Serializer>(models: &&[ModelDrift], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(models.len()))?;
    for m in models.iter() {
        map.serialize_entry(&m.model, m)?;
    }
    map.end()
}

/// Writes `drift.json`, `drift.csv`, `drift-measures.csv` and `accuracy.csv`.
pub fn write_results(
    dir: &RunDir,
    probe_images: usize,
    models: &[ModelDrift],
) -> Result<(), Error> {
    let results = Results {
        probe: ProbeInfo {
            split: "test",
            first_images: probe_images,
        },
        warmup_fraction: WARMUP_FRACTION,
        models,
    };
    dir.write_json("drift.json", &results)?;
    let mut csv = String::from("model,layer,unit,step,p15,p50,p85,mean,std,count\n");
    let mut measures =
        String::from("model,layer,unit,from_step,to_step,median_shift,spread_change\n");
    for m in models {
        for input in m.inputs() {
            let unit = input.unit.map_or("all".to_string(), |u| u.to_string());
            for (step, s) in &input.records {
                let _ = writeln!(
                    csv,
                    "{},{},{unit},{step},{},{},{},{},{},{}",
                    m.model, input.layer, s.p15, s.p50, s.p85, s.mean, s.std, s.count
                );
            }
            if let Some(d) = input.drift {
                let _ = writeln!(
                    measures,
                    "{},{},{unit},{},{},{},{}",
                    m.model, input.layer, d.from_step, d.to_step, d.median_shift, d.spread_change
                );
            }
        }
    }
    dir.write("drift.csv", csv.as_bytes())?;
    dir.write("drift-measures.csv", measures.as_bytes())?;
    let curves: Vec<(&str, &[CurvePoint])> = models
        .iter()
        .map(|m| (m.model.as_str(), m.curve.as_slice()))
        .collect();
    steps::write_curves(dir, "accuracy", &curves)
}

/// One layer's whole-input summaries over training batches (`depth` records them with
/// [`norma_layers::ActivationStats`]).
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
    let mut seq = s.serialize_seq(Some(records.len()))?;
    for (step, m) in records {
        seq.serialize_element(&serde_json::json!({
            "step": step, "p15": m.p15, "p50": m.p50, "p85": m.p85,
            "mean": m.mean, "std": m.std, "count": m.count
        }))?;
    }
    seq.end()
}
