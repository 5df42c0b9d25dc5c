//! What `smoothness` writes: `smoothness.json` (the headline numbers at fixed pointers, see
//! [`super::summary`], then every model's trajectory), `smoothness.csv` (one line per
//! probe), `at-loss.csv` (the comparison at equal training loss), `summary.csv` (one line per
//! model) and `accuracy.csv` (the test-accuracy curves).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::Error;
use crate::output::run_dir::RunDir;
use crate::smoothness::summary::{self, AtLevel, LevelRow, Measures, ModelSummary};
use crate::smoothness::{ModelTrajectory, NOISE_LEFT_OUT};
use crate::steps::{self, CurvePoint};

/// The contents of `smoothness.json`.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    /// Steps in the window of the running training loss.
    pub window: usize,
    /// The training-loss levels of `at_loss`.
    pub levels: Vec<f64>,
    /// Per model name.
    pub summary: BTreeMap<String, ModelSummary>,
    /// Per level (as written in `levels`).
    pub at_loss: BTreeMap<String, LevelRow>,
    pub models: &'a [ModelTrajectory],
}

/// The results of the trained `models` (LeNet and LeNet-BN found by name; a level is empty
/// for a model that is missing).
pub fn results(models: &[ModelTrajectory]) -> Results<'_> {
    let probes = |name: &str| {
        models
            .iter()
            .find(|m| m.model == name)
            .map_or(&[][..], |m| m.probes.as_slice())
    };
    Results {
        window: summary::WINDOW,
        levels: summary::LEVELS.to_vec(),
        summary: models
            .iter()
            .map(|m| (m.model.clone(), m.summary()))
            .collect(),
        at_loss: summary::at_loss(probes("lenet"), probes("lenet-bn")),
        models,
    }
}

const MEASURES_HEADER: &str = "train_loss,loss_range,gradient_change,beta,grad_norm";

fn measures_csv(m: &Measures) -> String {
    format!(
        "{},{},{},{},{}",
        m.train_loss, m.loss_range, m.gradient_change, m.beta, m.grad_norm
    )
}

/// Writes every file of the module docs.
pub fn write(dir: &RunDir, r: &Results) -> Result<(), Error> {
    dir.write_json("smoothness.json", r)?;
    let mut csv = String::from(
        "model,step,train_loss,loss,grad_norm,loss_min,loss_max,predictiveness_min,\
         predictiveness_max,beta\n",
    );
    for m in r.models {
        for p in &m.probes {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{}",
                m.model,
                p.step,
                p.train_loss,
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
    let mut csv = format!("level,model,probes,{MEASURES_HEADER}\n");
    for (level, row) in &r.at_loss {
        let cells = [("lenet", &row.lenet), ("lenet-bn", &row.lenet_bn)];
        for (model, at) in cells {
            if let Some(AtLevel { probes, measures }) = at {
                let _ = writeln!(csv, "{level},{model},{probes},{}", measures_csv(measures));
            }
        }
        if let Some(ratio) = &row.ratio {
            let _ = writeln!(csv, "{level},lenet-bn / lenet,,{}", measures_csv(ratio));
        }
    }
    dir.write("at-loss.csv", csv.as_bytes())?;
    let mut csv = format!(
        "model,final_test_acc,final_test_acc_noise_left_out,final_train_loss,\
         median_{}\n",
        MEASURES_HEADER.replace(',', ",median_")
    );
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (model, s) in &r.summary {
        let median = s
            .median
            .as_ref()
            .map_or_else(|| ",,,,".to_string(), measures_csv);
        let _ = writeln!(
            csv,
            "{model},{},{},{},{median}",
            cell(s.final_test_acc),
            cell(s.final_test_acc_noise_left_out),
            s.final_train_loss
        );
    }
    dir.write("summary.csv", csv.as_bytes())?;
    let mut curves: Vec<(&str, &[CurvePoint])> = r
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.curve.as_slice()))
        .collect();
    for m in r.models.iter().filter(|m| !m.noise_left_out.is_empty()) {
        curves.push((NOISE_LEFT_OUT, m.noise_left_out.as_slice()));
    }
    steps::write_curves(dir, "accuracy", &curves)
}
