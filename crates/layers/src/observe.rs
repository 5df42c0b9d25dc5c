//! Watching the values that flow through a model during training, without touching the
//! training loop: an [`InputObserver`] attached to a child of a [`Sequential`] sees that
//! child's input on every training forward pass (PyTorch's forward pre-hooks).
//! [`ActivationStats`] is the observer the "why batch norm works" experiments use: every K
//! steps it records percentiles, mean and standard deviation of each activation's input.
//!
//! Observers cost nothing when none is attached (one empty-list check per child and forward).
//! They see training passes only — forward passes that record a graph — so evaluation and
//! `no_grad` inference never show up in the statistics.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use norma_tensor::Tensor;

use crate::{Relu, Result, Sequential, Sigmoid};

/// Sees the input of a layer on each training forward pass.
pub trait InputObserver {
    /// `layer` (its name in the model) is about to run on `input`.
    fn observe(&mut self, layer: &str, input: &Tensor);
}

/// A shared handle to an observer, as [`Sequential::observe_input`] takes it.
pub type SharedObserver = Rc<RefCell<dyn InputObserver>>;

/// Distribution summary of a set of values: the 15th, 50th and 85th percentiles (Ioffe &
/// Szegedy's Figure 1 plots these), the mean and the standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p15: f64,
    pub p50: f64,
    pub p85: f64,
    pub mean: f64,
    pub std: f64,
    /// Values summarized.
    pub count: usize,
}

impl Summary {
    /// The summary of `values` (`None` for an empty slice). Percentile p is the value of rank
    /// round(p/100 · (n − 1)) in sorted order (the nearest-rank rule; no interpolation); mean
    /// and (population) standard deviation are computed in f64. NaNs sort last.
    pub fn of(values: &[f32]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mut sorted = values.to_vec();
        let mut at = |p: f64| -> f64 {
            let rank = (p / 100.0 * (n - 1) as f64).round() as usize;
            let (_, v, _) = sorted.select_nth_unstable_by(rank, f32::total_cmp);
            *v as f64
        };
        let (p15, p50, p85) = (at(15.0), at(50.0), at(85.0));
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        Some(Summary {
            p15,
            p50,
            p85,
            mean,
            std: var.sqrt(),
            count: n,
        })
    }
}

/// One recorded summary: the input of `layer` at training step `step` (counted from 1: the
/// layer's `step`-th training forward pass).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRecord {
    pub step: usize,
    pub layer: String,
    pub summary: Summary,
}

/// Records [`Summary`]s of the inputs of observed layers every `every` training steps (steps
/// 1, 1 + every, 1 + 2·every, ...). Attach it to a model's activations with
/// [`ActivationStats::attach_to_activations`]: their inputs are the pre-activations.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{ActivationStats, Linear, Module, Sequential, Sigmoid};
/// use norma_tensor::{Rng, Tensor};
/// let mut rng = Rng::seed_from_u64(0);
/// let mut net = Sequential::new().with("fc", Linear::new(4, 3, &mut rng)?).with("act", Sigmoid);
/// let stats = ActivationStats::attach_to_activations(&mut net, 2)?;
/// for _ in 0..5 {
///     net.forward(&Var::constant(Tensor::rand_normal(&[8, 4], 0.0, 1.0, &mut rng)))?;
/// }
/// let records = stats.borrow().records().to_vec();
/// assert_eq!(records.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 3, 5]);
/// assert_eq!(records[0].layer, "act");
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
#[derive(Debug)]
pub struct ActivationStats {
    every: usize,
    passes: HashMap<String, usize>,
    records: Vec<ActivationRecord>,
}

impl ActivationStats {
    /// A recorder of every `every`-th training step (1 records every step).
    pub fn new(every: usize) -> ActivationStats {
        ActivationStats {
            every: every.max(1),
            passes: HashMap::new(),
            records: Vec::new(),
        }
    }

    /// A recorder attached to every [`Sigmoid`] and [`Relu`] child of `model`, named as the
    /// child (`act1`, ...).
    ///
    /// Errors: `every` of 0, or a model without activations.
    pub fn attach_to_activations(
        model: &mut Sequential,
        every: usize,
    ) -> Result<Rc<RefCell<ActivationStats>>> {
        let names: Vec<String> = model
            .children()
            .filter(|(_, m)| m.is::<Sigmoid>() || m.is::<Relu>())
            .map(|(n, _)| n.to_string())
            .collect();
        Self::attach(model, &names, every)
    }

    /// A recorder attached to the named children of `model`.
    ///
    /// Errors: `every` of 0, no name, or a name that is not a child of `model`.
    pub fn attach(
        model: &mut Sequential,
        layers: &[String],
        every: usize,
    ) -> Result<Rc<RefCell<ActivationStats>>> {
        let bad = |reason: String| crate::LayerError::Config {
            layer: "ActivationStats".into(),
            reason,
        };
        if every == 0 {
            return Err(bad("records every 0 steps: use at least 1".into()));
        }
        if layers.is_empty() {
            return Err(bad("no layer to observe".into()));
        }
        let stats = Rc::new(RefCell::new(ActivationStats::new(every)));
        let observer: SharedObserver = stats.clone();
        for name in layers {
            model.observe_input(name, observer.clone())?;
        }
        Ok(stats)
    }

    /// Everything recorded so far, in order.
    pub fn records(&self) -> &[ActivationRecord] {
        &self.records
    }
}

impl InputObserver for ActivationStats {
    fn observe(&mut self, layer: &str, input: &Tensor) {
        let pass = self.passes.entry(layer.to_string()).or_insert(0);
        *pass += 1;
        if (*pass - 1).is_multiple_of(self.every) {
            if let Some(summary) = Summary::of(input.as_slice()) {
                self.records.push(ActivationRecord {
                    step: *pass,
                    layer: layer.to_string(),
                    summary,
                });
            }
        }
    }
}
