//! [`OptimizerState`]: what an optimizer needs to resume exactly — its kind and, per parameter,
//! its buffers — typed, checked once on import against the optimizer and its parameters.
//!
//! | kind | per parameter |
//! | --- | --- |
//! | `sgd` | nothing |
//! | `sgd-momentum` | the momentum buffer (after the parameter's first step) |
//! | `adam`, `adamw` | the moment estimates m, v and the parameter's step count |
//!
//! [`OptimizerState::to_bytes`] and [`OptimizerState::from_bytes`] store it as a safetensors
//! file (see the `file` module for the layout).

mod file;

use std::fmt;

use norma_autograd::Param;
use norma_tensor::Tensor;
use thiserror::Error;

/// Which optimizer a state belongs to: a state is only restored into an optimizer of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    /// SGD without momentum: no state.
    Sgd,
    /// SGD with momentum (plain or Nesterov): one buffer per parameter.
    SgdMomentum,
    /// Adam: moment estimates and a step count per parameter.
    Adam,
    /// AdamW (decoupled weight decay): as Adam.
    AdamW,
}

impl OptimizerKind {
    /// Every kind.
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::SgdMomentum,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
    ];

    /// `sgd`, `sgd-momentum`, `adam` or `adamw` (the name a state file records).
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::SgdMomentum => "sgd-momentum",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }

    /// The kind called `name` (see [`OptimizerKind::name`]).
    pub fn from_name(name: &str) -> Option<OptimizerKind> {
        OptimizerKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether a parameter of a state of this kind may hold `slot`.
    fn allows(self, slot: &ParamState) -> bool {
        match slot {
            ParamState::Empty => true,
            ParamState::Velocity(_) => self == OptimizerKind::SgdMomentum,
            ParamState::Moments { .. } => {
                matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
            }
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an optimizer keeps for one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamState {
    /// Nothing yet (the parameter has not taken a step), or nothing at all (plain SGD).
    Empty,
    /// SGD's momentum buffer, shaped like the parameter.
    Velocity(Tensor),
    /// Adam's first and second moment estimates, shaped like the parameter, and the number of
    /// steps the parameter has taken (its bias correction).
    Moments { m: Tensor, v: Tensor, step: u64 },
}

impl ParamState {
    /// `empty`, `velocity` or `moments`, for errors.
    fn name(&self) -> &'static str {
        match self {
            ParamState::Empty => "empty",
            ParamState::Velocity(_) => "velocity",
            ParamState::Moments { .. } => "moments",
        }
    }

    /// The slot's tensors with their names.
    fn tensors(&self) -> Vec<(&'static str, &Tensor)> {
        match self {
            ParamState::Empty => vec![],
            ParamState::Velocity(b) => vec![("velocity", b)],
            ParamState::Moments { m, v, .. } => vec![("m", m), ("v", v)],
        }
    }
}

/// An optimizer's state: its kind and one [`ParamState`] per parameter, in the optimizer's
/// parameter order.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    pub kind: OptimizerKind,
    pub params: Vec<ParamState>,
}

/// Why a state cannot be restored (or read).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StateError {
    /// The state belongs to another kind of optimizer.
    #[error("a {found} state cannot be restored into a {expected} optimizer")]
    Kind {
        expected: OptimizerKind,
        found: OptimizerKind,
    },
    /// The state is for another number of parameters.
    #[error("the state is for {found} parameters, the optimizer has {expected}")]
    ParamCount { expected: usize, found: usize },
    /// A parameter's slot is of a sort the kind does not keep (momentum in an Adam state).
    #[error("parameter {index}: a {kind} state holds no {found} slot")]
    Slot {
        index: usize,
        kind: OptimizerKind,
        found: &'static str,
    },
    /// A buffer does not have its parameter's shape.
    #[error("parameter {index}: {buffer} has shape {found:?}, the parameter {expected:?}")]
    Shape {
        index: usize,
        buffer: &'static str,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The bytes are not an optimizer state file (see [`OptimizerState::from_bytes`]).
    #[error("not an optimizer state file: {0}")]
    File(String),
}

impl OptimizerState {
    /// Checks that the state fits an optimizer of `kind` over `params`: the same kind, one slot
    /// per parameter, slots of that kind, buffers of the parameters' shapes. Import then
    /// cannot fail half-way.
    pub(crate) fn check(&self, kind: OptimizerKind, params: &[Param]) -> Result<(), StateError> {
        if self.kind != kind {
            return Err(StateError::Kind {
                expected: kind,
                found: self.kind,
            });
        }
        if self.params.len() != params.len() {
            return Err(StateError::ParamCount {
                expected: params.len(),
                found: self.params.len(),
            });
        }
        for (index, (slot, p)) in self.params.iter().zip(params).enumerate() {
            if !kind.allows(slot) {
                return Err(StateError::Slot {
                    index,
                    kind,
                    found: slot.name(),
                });
            }
            let expected = p.shape();
            for (buffer, t) in slot.tensors() {
                if t.shape() != expected.as_slice() {
                    return Err(StateError::Shape {
                        index,
                        buffer,
                        expected,
                        found: t.shape().to_vec(),
                    });
                }
            }
        }
        Ok(())
    }
}
