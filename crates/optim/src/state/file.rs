//! The state file (`optimizer.safetensors` in a training checkpoint): a safetensors file, so
//! any safetensors reader can list it.
//!
//! ```text
//! __metadata__   {"optimizer": "adam", "parameters": "10"}      the kind and the parameter count
//! velocity.<i>   F32, parameter i's shape                       sgd-momentum
//! m.<i>, v.<i>   F32, parameter i's shape                       adam, adamw
//! step.<i>       I64 scalar                                     adam, adamw
//! ```
//!
//! A parameter without entries is [`ParamState::Empty`].

use std::collections::HashMap;

use norma_tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::{OptimizerKind, OptimizerState, ParamState, StateError};

const KIND: &str = "optimizer";
const PARAMETERS: &str = "parameters";

fn file_error(e: impl std::fmt::Display) -> StateError {
    StateError::File(e.to_string())
}

impl OptimizerState {
    /// The state as the bytes of a safetensors file (see the module docs for the layout).
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        let f32_bytes =
            |t: &Tensor| -> Vec<u8> { t.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect() };
        let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, slot) in self.params.iter().enumerate() {
            for (buffer, t) in slot.tensors() {
                let shape = t.shape().to_vec();
                raw.push((format!("{buffer}.{i}"), Dtype::F32, shape, f32_bytes(t)));
            }
            if let ParamState::Moments { step, .. } = slot {
                // Counts beyond i64::MAX do not occur; saturate rather than wrap.
                let step = i64::try_from(*step).unwrap_or(i64::MAX);
                let le = step.to_le_bytes().to_vec();
                raw.push((format!("step.{i}"), Dtype::I64, vec![], le));
            }
        }
        let views = raw
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                Ok((
                    name.as_str(),
                    TensorView::new(*dtype, shape.clone(), bytes)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(file_error)?;
        let metadata = HashMap::from([
            (KIND.to_string(), self.kind.name().to_string()),
            (PARAMETERS.to_string(), self.params.len().to_string()),
        ]);
        safetensors::serialize(views, Some(metadata)).map_err(file_error)
    }

    /// Reads a state written by [`OptimizerState::to_bytes`].
    ///
    /// Errors ([`StateError::File`]): bytes that are not safetensors, a missing or unknown
    /// kind or parameter count, an entry of another name or dtype, half of Adam's moments.
    pub fn from_bytes(bytes: &[u8]) -> Result<OptimizerState, StateError> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(file_error)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let kind_name = metadata
            .get(KIND)
            .ok_or_else(|| file_error("no optimizer kind in its metadata"))?;
        let kind = OptimizerKind::from_name(kind_name)
            .ok_or_else(|| file_error(format!("unknown optimizer kind {kind_name:?}")))?;
        let count: usize = metadata
            .get(PARAMETERS)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| file_error("no parameter count in its metadata"))?;
        let file = SafeTensors::deserialize(bytes).map_err(file_error)?;
        let mut entries: HashMap<String, Entry> = HashMap::new();
        for (name, view) in file.tensors() {
            let entry = Entry::read(&name, &view)?;
            entries.insert(name, entry);
        }
        let mut params = Vec::with_capacity(count);
        for i in 0..count {
            let mut take = |buffer: &str| entries.remove(&format!("{buffer}.{i}"));
            let slot = match (take("velocity"), take("m"), take("v"), take("step")) {
                (None, None, None, None) => ParamState::Empty,
                (Some(Entry::Tensor(b)), None, None, None) => ParamState::Velocity(b),
                (None, Some(Entry::Tensor(m)), Some(Entry::Tensor(v)), Some(Entry::Step(step))) => {
                    ParamState::Moments { m, v, step }
                }
                _ => {
                    return Err(file_error(format!(
                        "parameter {i}: its entries are neither a velocity nor m, v and step"
                    )))
                }
            };
            params.push(slot);
        }
        if let Some(name) = entries.keys().min() {
            return Err(file_error(format!(
                "unexpected entry {name} (the state is for {count} parameters)"
            )));
        }
        Ok(OptimizerState { kind, params })
    }
}

/// One entry of the file.
enum Entry {
    Tensor(Tensor),
    Step(u64),
}

impl Entry {
    fn read(name: &str, view: &TensorView<'_>) -> Result<Entry, StateError> {
        let shape = view.shape().to_vec();
        match view.dtype() {
            Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let t = Tensor::from_vec(&shape, data)
                    .map_err(|e| file_error(format!("{name}: {e}")))?;
                Ok(Entry::Tensor(t))
            }
            Dtype::I64 if shape.is_empty() => {
                let le: [u8; 8] = view
                    .data()
                    .try_into()
                    .map_err(|_| file_error(format!("{name}: not one int64")))?;
                let step = u64::try_from(i64::from_le_bytes(le))
                    .map_err(|_| file_error(format!("{name}: a negative step count")))?;
                Ok(Entry::Step(step))
            }
            other => Err(file_error(format!(
                "{name}: {other:?} of shape {shape:?} (only F32 tensors and I64 step counts)"
            ))),
        }
    }
}
