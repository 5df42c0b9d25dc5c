//! Checkpoints in safetensors, named and laid out exactly as PyTorch's `state_dict`.
//!
//! A model's parameters (`conv1.weight` [6, 1, 5, 5], `fc1.bias` [120], ...) and buffers
//! (`bn1.running_mean` [6], `bn1.num_batches_tracked` int64 []) are stored under their full
//! names; conv weights are (out, in, kh, kw) and linear weights (out, in), so
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts a file saved
//! here, and a file saved by `safetensors.torch.save_file(model.state_dict(), path)` loads here.
//!
//! - [`save`] is atomic: it writes a temporary file in the same folder, flushes it to disk and
//!   renames it over the final name, so an interrupted save never leaves a partial checkpoint.
//! - [`load`] checks every name, shape and dtype against the model first and reports all that is
//!   missing, unexpected or mismatched in one [`CheckpointError::Mismatch`]; nothing is applied
//!   unless everything fits. A missing `num_batches_tracked` is accepted and set to 0, as
//!   PyTorch does for checkpoints written before it existed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use norma_tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use thiserror::Error;

use crate::{Buffer, BufferValue, Module};

/// One way in which a checkpoint does not fit a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The model has this tensor; the file does not.
    Missing(String),
    /// The file has this tensor; the model does not.
    Unexpected(String),
    /// Both have it, with different shapes.
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Both have it, with different element types.
    Dtype {
        name: String,
        expected: &'static str,
        found: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(n) => write!(f, "missing {n}"),
            Problem::Unexpected(n) => write!(f, "unexpected {n}"),
            Problem::Shape {
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{name}: shape {found:?} in the file, {expected:?} in the model"
                )
            }
            Problem::Dtype {
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{name}: dtype {found} in the file, {expected} in the model"
                )
            }
        }
    }
}

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, corrupt header, ...).
    #[error("checkpoint {path} is not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    /// The file is valid but does not fit the model; every problem is listed.
    #[error("checkpoint {path} does not fit the model ({} problems): {}", problems.len(), list(problems))]
    Mismatch {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A named tensor of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    F32(Tensor),
    I64(i64),
}

impl StateValue {
    fn dtype_name(&self) -> &'static str {
        match self {
            StateValue::F32(_) => "F32",
            StateValue::I64(_) => "I64",
        }
    }

    fn shape(&self) -> Vec<usize> {
        match self {
            StateValue::F32(t) => t.shape().to_vec(),
            StateValue::I64(_) => vec![],
        }
    }
}

/// The model's parameters and buffers by full name (PyTorch's `state_dict()`).
pub fn state_dict(model: &dyn Module) -> BTreeMap<String, StateValue> {
    let mut out = BTreeMap::new();
    for (name, p) in model.named_parameters() {
        out.insert(name, StateValue::F32(p.value().clone()));
    }
    for (name, b) in model.named_buffers() {
        let value = match &*b.get() {
            BufferValue::F32(t) => StateValue::F32(t.clone()),
            BufferValue::I64(v) => StateValue::I64(*v),
        };
        out.insert(name, value);
    }
    out
}

/// The safetensors bytes of a state dict.
pub fn to_bytes(state: &BTreeMap<String, StateValue>) -> Result<Vec<u8>, String> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(name, value)| match value {
            StateValue::F32(t) => (
                name.clone(),
                Dtype::F32,
                t.shape().to_vec(),
                t.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            StateValue::I64(v) => (name.clone(), Dtype::I64, vec![], v.to_le_bytes().to_vec()),
        })
        .collect();
    let views = raw
        .iter()
        .map(|(n, d, s, bytes)| {
            Ok((
                n.as_str(),
                TensorView::new(*d, s.clone(), bytes).map_err(|e| e.to_string())?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Parses safetensors bytes into a state dict (F32 and I64 tensors; other dtypes are kept as
/// an error entry so that loading can name them).
pub fn from_bytes(bytes: &[u8]) -> Result<BTreeMap<String, Result<StateValue, String>>, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let value = match view.dtype() {
            Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Tensor::from_vec(view.shape(), data)
                    .map(StateValue::F32)
                    .map_err(|e| e.to_string())
            }
            Dtype::I64 if view.shape().iter().product::<usize>() == 1 => {
                let b = view.data();
                let mut le = [0u8; 8];
                le.copy_from_slice(&b[..8]);
                Ok(StateValue::I64(i64::from_le_bytes(le)))
            }
            other => Err(format!("{other:?}{:?}", view.shape())),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Saves the model's state dict to `path`, atomically.
pub fn save(model: &dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let bytes = to_bytes(&state_dict(model)).map_err(|reason| CheckpointError::Format {
        path: path.to_path_buf(),
        reason,
    })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Loads `path` into the model's parameters and buffers, all or nothing.
pub fn load(model: &dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(model, &bytes, path)
}

/// Like [`load`] for bytes already in memory (`path` only names them in errors).
pub fn load_bytes(model: &dyn Module, bytes: &[u8], path: &Path) -> Result<(), CheckpointError> {
    let mut file = from_bytes(bytes).map_err(|reason| CheckpointError::Format {
        path: path.to_path_buf(),
        reason,
    })?;
    let expected = state_dict(model);
    let mut problems = Vec::new();
    let mut values: HashMap<String, StateValue> = HashMap::new();
    for (name, want) in &expected {
        match file.remove(name) {
            None if name.ends_with("num_batches_tracked") => {
                values.insert(name.clone(), StateValue::I64(0));
            }
            None => problems.push(Problem::Missing(name.clone())),
            Some(Err(found)) => problems.push(Problem::Dtype {
                name: name.clone(),
                expected: want.dtype_name(),
                found,
            }),
            Some(Ok(got)) if got.dtype_name() != want.dtype_name() => {
                problems.push(Problem::Dtype {
                    name: name.clone(),
                    expected: want.dtype_name(),
                    found: got.dtype_name().to_string(),
                })
            }
            Some(Ok(got)) if got.shape() != want.shape() => problems.push(Problem::Shape {
                name: name.clone(),
                expected: want.shape(),
                found: got.shape(),
            }),
            Some(Ok(got)) => {
                values.insert(name.clone(), got);
            }
        }
    }
    problems.extend(file.into_keys().map(Problem::Unexpected));
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    apply(model, values);
    Ok(())
}

/// Writes checked values into the model (every name is present and fits).
fn apply(model: &dyn Module, mut values: HashMap<String, StateValue>) {
    for (name, p) in model.named_parameters() {
        if let Some(StateValue::F32(t)) = values.remove(&name) {
            *p.value_mut() = t;
        }
    }
    for (name, b) in model.named_buffers() {
        set_buffer(&b, values.remove(&name));
    }
}

fn set_buffer(buffer: &Buffer, value: Option<StateValue>) {
    match value {
        Some(StateValue::F32(t)) => *buffer.get_mut() = BufferValue::F32(t),
        Some(StateValue::I64(v)) => *buffer.get_mut() = BufferValue::I64(v),
        None => {}
    }
}
