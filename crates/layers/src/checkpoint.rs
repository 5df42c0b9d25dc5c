//! Checkpoints in safetensors, named and laid out exactly as PyTorch's `state_dict`.
//!
//! A model's parameters (`conv1.weight` (6, 1, 5, 5), `fc1.bias` (120), ...) and buffers
//! (`bn1.running_mean` (6), `bn1.num_batches_tracked` int64 scalar) are stored under their full
//! names; conv weights are (out, in, kh, kw) and linear weights (out, in), so
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts a file saved
//! here, and a file saved by `safetensors.torch.save_file(model.state_dict(), path)` loads here.
//!
//! - [`save`] is atomic: it writes a temporary file in the same folder, flushes it to disk and
//!   renames it over the final name, so an interrupted save never leaves a partial checkpoint.
//! - [`load`] checks every name, shape and dtype against the model first, and every value
//!   (no NaN or infinity, no negative running variance), and reports all that is missing,
//!   unexpected, mismatched or invalid in one [`CheckpointError::Mismatch`]; nothing is applied
//!   unless everything fits. A missing `num_batches_tracked` is accepted and set to 0, as
//!   PyTorch does for checkpoints written before it existed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use std::path::{Path, PathBuf};

use norma_tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};
use thiserror::Error;

use crate::{Buffer, Module};

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
    /// The value cannot be right: NaN or infinite entries, a negative running variance.
    Invalid { name: String, reason: String },
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
            Problem::Invalid { name, reason } => write!(f, "{name}: {reason}"),
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
    /// The path is not a regular file (a directory, a FIFO, a device), or it is larger than any
    /// checkpoint of this model can be: nothing was read.
    #[error("checkpoint {source}")]
    Refused {
        #[source]
        source: norma_io::ReadError,
    },
    /// The file is not a valid safetensors file (truncated, corrupt header, ...).
    #[error("checkpoint {path} is not a valid safetensors file: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// The file is valid but does not fit the model; every problem is listed.
    #[error("checkpoint {path} does not fit the model ({}): {}", count(problems.len()), list(problems))]
    Mismatch {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Bytes that are not a safetensors file, or a state dict that cannot be written as one.
#[derive(Debug, Error)]
pub enum FormatError {
    /// safetensors refused the bytes or the tensors.
    #[error(transparent)]
    Safetensors(#[from] SafeTensorError),
    /// An entry of a kind norma does not write.
    #[error(
        "{name} has dtype {dtype}, which norma does not write (only F32 tensors and I64 scalars)"
    )]
    Unsupported { name: String, dtype: String },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".to_string()
    } else {
        format!("{n} problems")
    }
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
    /// A float32 tensor.
    F32(Tensor),
    /// An int64 scalar.
    I64(i64),
    /// A tensor of a kind norma does not store (another dtype, or a non-scalar int64); kept so
    /// that loading can name it.
    Unsupported { dtype: String, shape: Vec<usize> },
}

impl StateValue {
    fn dtype_name(&self) -> String {
        match self {
            StateValue::F32(_) => "F32".into(),
            StateValue::I64(_) => "I64".into(),
            StateValue::Unsupported { dtype, .. } => dtype.clone(),
        }
    }

    fn shape(&self) -> Vec<usize> {
        match self {
            StateValue::F32(t) => t.shape().to_vec(),
            StateValue::I64(_) => vec![],
            StateValue::Unsupported { shape, .. } => shape.clone(),
        }
    }
}

/// The model's parameters and buffers by full name (PyTorch's `state_dict()`).
pub fn state_dict(model: &dyn Module) -> BTreeMap<String, StateValue> {
    let mut out = BTreeMap::new();
    for (name, p) in model.named_parameters() {
        out.insert(name, StateValue::F32(Tensor::clone(&p.value())));
    }
    for (name, b) in model.named_buffers() {
        let value = match &b {
            Buffer::F32(t) => StateValue::F32(t.get()),
            Buffer::I64(c) => StateValue::I64(c.get()),
        };
        out.insert(name, value);
    }
    out
}

/// The safetensors bytes of a state dict.
///
/// Errors: an [`StateValue::Unsupported`] entry (norma only writes F32 and I64 tensors).
pub fn to_bytes(state: &BTreeMap<String, StateValue>) -> Result<Vec<u8>, FormatError> {
    let mut raw: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(state.len());
    for (name, value) in state {
        raw.push(match value {
            StateValue::F32(t) => (
                name,
                Dtype::F32,
                t.shape().to_vec(),
                t.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            StateValue::I64(v) => (name, Dtype::I64, vec![], v.to_le_bytes().to_vec()),
            StateValue::Unsupported { dtype, .. } => {
                return Err(FormatError::Unsupported {
                    name: name.clone(),
                    dtype: dtype.clone(),
                })
            }
        });
    }
    let views = raw
        .iter()
        .map(|(n, d, s, bytes)| Ok((*n, TensorView::new(*d, s.clone(), bytes)?)))
        .collect::<Result<Vec<_>, SafeTensorError>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// Parses safetensors bytes into a state dict: F32 tensors and I64 scalars, every other entry
/// as [`StateValue::Unsupported`] so that loading can name it.
pub fn from_bytes(bytes: &[u8]) -> Result<BTreeMap<String, StateValue>, FormatError> {
    let file = SafeTensors::deserialize(bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let value = match view.dtype() {
            Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                // safetensors checked that the data holds exactly shape.product() values.
                match Tensor::from_vec(&shape, data) {
                    Ok(t) => StateValue::F32(t),
                    Err(_) => StateValue::Unsupported {
                        dtype: "F32".into(),
                        shape,
                    },
                }
            }
            Dtype::I64 if shape.iter().product::<usize>() == 1 && view.data().len() == 8 => {
                let mut le = [0u8; 8];
                le.copy_from_slice(view.data());
                StateValue::I64(i64::from_le_bytes(le))
            }
            other => StateValue::Unsupported {
                dtype: format!("{other:?}"),
                shape,
            },
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Saves the model's state dict to `path`, atomically.
pub fn save(model: &dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let bytes = to_bytes(&state_dict(model)).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically (norma-io's [`norma_io::write_atomic`]): through a
/// temporary file in the same folder, flushed to disk, and a rename. Readers see the old file or
/// the new one, never a part. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    norma_io::write_atomic(path, bytes).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: match e {
            norma_io::WriteError::Io { source, .. } => source,
            refused => std::io::Error::other(refused.to_string()),
        },
    })
}

/// Loads `path` into the model's parameters and buffers, all or nothing.
///
/// Only a regular file no larger than a checkpoint of this model can be
/// ([`max_file_len`]) is read: a FIFO, a device or a huge file is refused before any byte is.
pub fn load(model: &dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let bytes = read_checkpoint(path, max_file_len(&state_dict(model)))?;
    load_bytes(model, &bytes, path)
}

/// Reads a checkpoint file of at most `limit` bytes (see [`norma_io::read_limited`]).
pub fn read_checkpoint(path: &Path, limit: u64) -> Result<Vec<u8>, CheckpointError> {
    norma_io::read_limited(path, limit).map_err(|e| match e {
        norma_io::ReadError::Io { source, .. } => CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        },
        refused => CheckpointError::Refused { source: refused },
    })
}

/// The largest safetensors file that can hold `state` and nothing else: its data, plus a
/// header with room to spare (each entry's JSON is its name and ~60 bytes of dtype, shape and
/// offsets; 64 KiB cover metadata such as PyTorch's `{"format": "pt"}` and the alignment
/// padding). A file with the same names cannot be larger; checking the size first keeps a huge
/// or endless file from being read.
pub fn max_file_len(state: &BTreeMap<String, StateValue>) -> u64 {
    let entries: u64 = state
        .iter()
        .map(|(name, value)| {
            let data = match value {
                StateValue::F32(t) => 4 * t.len() as u64,
                StateValue::I64(_) => 8,
                StateValue::Unsupported { shape, .. } => 8 * shape.iter().product::<usize>() as u64,
            };
            data + 2 * name.len() as u64 + 256
        })
        .sum();
    8 + (64 << 10) + entries
}

/// Like [`load`] for bytes already in memory (`path` only names them in errors).
pub fn load_bytes(model: &dyn Module, bytes: &[u8], path: &Path) -> Result<(), CheckpointError> {
    let mut file = from_bytes(bytes).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
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
            Some(got) if got.dtype_name() != want.dtype_name() => problems.push(Problem::Dtype {
                name: name.clone(),
                expected: if matches!(want, StateValue::I64(_)) {
                    "I64"
                } else {
                    "F32"
                },
                found: got.dtype_name(),
            }),
            Some(got) if got.shape() != want.shape() => problems.push(Problem::Shape {
                name: name.clone(),
                expected: want.shape(),
                found: got.shape(),
            }),
            Some(got) => match invalid(name, &got) {
                Some(reason) => problems.push(Problem::Invalid {
                    name: name.clone(),
                    reason,
                }),
                None => {
                    values.insert(name.clone(), got);
                }
            },
        }
    }
    problems.extend(file.into_keys().map(Problem::Unexpected));
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    // Every name, dtype and shape was checked against this model: setting does not fail.
    apply(model, values, path)
}

/// Why a value that fits by name, dtype and shape still cannot be loaded, if it cannot.
fn invalid(name: &str, value: &StateValue) -> Option<String> {
    match value {
        StateValue::F32(t) => {
            let bad = t.as_slice().iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Some(format!("{bad} of {} values are NaN or infinite", t.len()));
            }
            let negative = t.as_slice().iter().filter(|v| **v < 0.0).count();
            (name.ends_with("running_var") && negative > 0)
                .then(|| format!("{negative} negative variances"))
        }
        StateValue::I64(v) => (name.ends_with("num_batches_tracked") && *v < 0)
            .then(|| format!("negative batch count {v}")),
        StateValue::Unsupported { .. } => Some("unsupported dtype".into()),
    }
}

/// Writes checked values into the model (every name is present and fits).
fn apply(
    model: &dyn Module,
    mut values: HashMap<String, StateValue>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let failed = |name: String, e: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        problems: vec![Problem::Invalid { name, reason: e }],
    };
    for (name, p) in model.named_parameters() {
        if let Some(StateValue::F32(t)) = values.remove(&name) {
            p.set_value(t).map_err(|e| failed(name, e.to_string()))?;
        }
    }
    for (name, b) in model.named_buffers() {
        match (&b, values.remove(&name)) {
            (Buffer::F32(buffer), Some(StateValue::F32(t))) => {
                buffer.set(t).map_err(|e| failed(name, e.to_string()))?
            }
            (Buffer::I64(counter), Some(StateValue::I64(v))) => counter.set(v),
            _ => {}
        }
    }
    Ok(())
}
