//! The headline numbers of `smoothness`, at fixed places in `smoothness.json` so that the
//! runs of several seeds can be compared field by field:
//!
//! - `/summary/<model>`: the final test accuracy, the final training loss (the mean batch loss
//!   of the last [`WINDOW`] steps), for the probed models the medians of the measures over all
//!   probes of the run, for the noisy model the final accuracy with its noise left out;
//! - `/at_loss/<level>`: the measures of LeNet and LeNet-BN where each model's training loss
//!   is `level` (one of [`LEVELS`]), and their ratio LeNet-BN / LeNet.
//!
//! The comparison at equal loss exists because the two models do not train equally fast: at
//! the same step LeNet-BN's loss is lower, and a lower loss alone can make the landscape look
//! flatter. Each probe's training loss is the mean batch loss of the [`WINDOW`] steps centred
//! on it ([`running_loss`]); a model's measures at a level are the medians over its probes
//! whose training loss is within a factor [`BAND`] of the level, or, if none is, the probe
//! nearest to it (in log loss) as long as the run's loss spans the level ([`at_level`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::output::report::median;
use crate::smoothness::ProbeRecord;

/// Steps in the window of a probe's training loss.
pub const WINDOW: usize = 50;

/// The training losses at which the models are compared (nats; both models pass them within
/// the documented 2400 steps at lr 0.9).
pub const LEVELS: [f64; 4] = [1.0, 0.7, 0.55, 0.45];

/// How far (as a factor) a probe's training loss may be from a level to count for it.
pub const BAND: f64 = 1.1;

/// The mean of the batch losses of the [`WINDOW`] steps centred on the weights after `step`
/// steps (`losses[i]` is the loss of step i + 1, measured at the weights after i steps),
/// cut off at the ends of the run; NaN if none is recorded or one is not finite.
pub fn running_loss(losses: &[f32], step: usize) -> f64 {
    let from = step.saturating_sub(WINDOW / 2).min(losses.len());
    let to = (step + WINDOW / 2).min(losses.len());
    mean(&losses[from..to])
}

/// The mean batch loss of the last [`WINDOW`] steps (NaN without steps).
pub fn final_loss(losses: &[f32]) -> f64 {
    mean(&losses[losses.len().saturating_sub(WINDOW)..])
}

fn mean(losses: &[f32]) -> f64 {
    if losses.is_empty() || losses.iter().any(|l| !l.is_finite()) {
        return f64::NAN;
    }
    losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64
}

/// The measures of one probe, or their medians over several.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measures {
    /// The running training loss ([`running_loss`]).
    pub train_loss: f64,
    /// max − min over η of L(x − η·g).
    pub loss_range: f64,
    /// max over η of ‖∇L(x) − ∇L(x − η·g)‖ (gradient predictiveness; smaller: more
    /// predictive).
    pub gradient_change: f64,
    /// Effective β-smoothness.
    pub beta: f64,
    /// ‖∇L(x)‖.
    pub grad_norm: f64,
}

impl Measures {
    pub fn of(p: &ProbeRecord) -> Measures {
        Measures {
            train_loss: p.train_loss,
            loss_range: p.loss_max - p.loss_min,
            gradient_change: p.predictiveness_max,
            beta: p.beta,
            grad_norm: p.grad_norm,
        }
    }

    /// Each measure's median over `ms` (NaN when empty).
    pub fn median(ms: &[Measures]) -> Measures {
        let m = |f: fn(&Measures) -> f64| median(ms.iter().map(f).collect());
        Measures {
            train_loss: m(|x| x.train_loss),
            loss_range: m(|x| x.loss_range),
            gradient_change: m(|x| x.gradient_change),
            beta: m(|x| x.beta),
            grad_norm: m(|x| x.grad_norm),
        }
    }

    /// Each measure of `self` divided by the same of `other`.
    pub fn ratio(&self, other: &Measures) -> Measures {
        Measures {
            train_loss: self.train_loss / other.train_loss,
            loss_range: self.loss_range / other.loss_range,
            gradient_change: self.gradient_change / other.gradient_change,
            beta: self.beta / other.beta,
            grad_norm: self.grad_norm / other.grad_norm,
        }
    }
}

/// A model's measures at one training-loss level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtLevel {
    /// Probes within the band around the level (0: the nearest probe stands in).
    pub probes: usize,
    #[serde(flatten)]
    pub measures: Measures,
}

/// The measures of `probes` at training loss `level` (see the module docs); `None` if the
/// run's training loss never spans the level.
pub fn at_level(probes: &[ProbeRecord], level: f64) -> Option<AtLevel> {
    let finite: Vec<&ProbeRecord> = probes.iter().filter(|p| p.train_loss > 0.0).collect();
    let in_band: Vec<Measures> = finite
        .iter()
        .filter(|p| p.train_loss <= level * BAND && p.train_loss >= level / BAND)
        .map(|p| Measures::of(p))
        .collect();
    if !in_band.is_empty() {
        return Some(AtLevel {
            probes: in_band.len(),
            measures: Measures::median(&in_band),
        });
    }
    let lowest = finite.iter().map(|p| p.train_loss).fold(f64::MAX, f64::min);
    let highest = finite.iter().map(|p| p.train_loss).fold(0.0, f64::max);
    if !(lowest < level && level < highest) {
        return None;
    }
    let distance = |p: &&&ProbeRecord| (p.train_loss / level).ln().abs();
    finite
        .iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .map(|p| AtLevel {
            probes: 0,
            measures: Measures::of(p),
        })
}

/// LeNet and LeNet-BN at one level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelRow {
    pub lenet: Option<AtLevel>,
    #[serde(rename = "lenet-bn")]
    pub lenet_bn: Option<AtLevel>,
    /// LeNet-BN's measures divided by LeNet's (below 1: smoother with batch norm).
    pub ratio: Option<Measures>,
}

/// The row of every level in [`LEVELS`], keyed by the level as written (`"0.55"`).
pub fn at_loss(lenet: &[ProbeRecord], lenet_bn: &[ProbeRecord]) -> BTreeMap<String, LevelRow> {
    LEVELS
        .iter()
        .map(|&level| {
            let plain = at_level(lenet, level);
            let bn = at_level(lenet_bn, level);
            let ratio = match (&plain, &bn) {
                (Some(p), Some(b)) => Some(b.measures.ratio(&p.measures)),
                _ => None,
            };
            let row = LevelRow {
                lenet: plain,
                lenet_bn: bn,
                ratio,
            };
            (level.to_string(), row)
        })
        .collect()
}

/// One model's headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub final_test_acc: Option<f64>,
    /// [`final_loss`] of the run.
    pub final_train_loss: f64,
    /// The noisy model's final test accuracy with the noise left out at test time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_test_acc_noise_left_out: Option<f64>,
    /// The medians over every probe of the run (probed models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<Measures>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(train_loss: f64, beta: f64) -> ProbeRecord {
        ProbeRecord {
            step: 0,
            train_loss,
            loss: train_loss,
            grad_norm: 1.0,
            loss_min: train_loss - 0.1,
            loss_max: train_loss + 0.1,
            predictiveness_min: 0.0,
            predictiveness_max: beta,
            beta,
            etas: Vec::new(),
            losses: Vec::new(),
            grad_changes: Vec::new(),
        }
    }

    #[test]
    fn the_running_loss_is_centred_and_cut_at_the_ends() {
        let losses: Vec<f32> = (0..200).map(|i| i as f32).collect();
        // Steps 75..125 (entries 75..124) around the weights after 100 steps: mean 99.5.
        assert_eq!(running_loss(&losses, 100), 99.5);
        // At the start only the 25 entries after it.
        assert_eq!(running_loss(&losses, 0), 12.0);
        assert_eq!(final_loss(&losses), 174.5);
        assert!(running_loss(&[], 0).is_nan() && final_loss(&[]).is_nan());
        assert!(running_loss(&[1.0, f32::NAN], 0).is_nan());
    }

    #[test]
    fn a_level_takes_the_median_of_the_probes_near_it_or_the_nearest() {
        let probes = [
            probe(2.3, 9.0),
            probe(1.05, 1.0),
            probe(0.98, 3.0),
            probe(0.93, 2.0),
            probe(0.5, 7.0),
        ];
        let at = at_level(&probes, 1.0).unwrap();
        assert_eq!(at.probes, 3);
        assert_eq!(at.measures.beta, 2.0);
        assert_eq!(at.measures.train_loss, 0.98);
        // 0.7: no probe within 10 %; the nearest in log loss is 0.93 (a factor 1.33 away)
        // rather than 0.5 (a factor 1.4).
        let near = at_level(&probes, 0.7).unwrap();
        assert_eq!((near.probes, near.measures.beta), (0, 2.0));
        // Below the lowest loss or above the highest: not reached.
        assert_eq!(at_level(&probes, 0.3), None);
        assert_eq!(at_level(&probes, 3.0), None);
        let rows = at_loss(&probes, &probes[..2]);
        let row = &rows["1"];
        assert_eq!(row.ratio.unwrap().beta, 0.5, "{row:?}");
        assert!(rows["0.45"].ratio.is_none() && rows["0.45"].lenet_bn.is_none());
    }
}
