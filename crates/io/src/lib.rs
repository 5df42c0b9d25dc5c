//! How norma writes and reads files: every file is replaced **atomically**, and every file a
//! user names is checked before it is read whole ([`read_limited`]).
//!
//! The content goes to a temporary file in the destination's folder, is flushed to disk, and the
//! temporary file is renamed over the final name. A reader, or a run killed half-way, sees the
//! old file or the new one, never a part of either; a failed write removes the temporary file
//! and leaves the destination untouched. Every crate of norma that writes (checkpoints, the
//! dataset cache and downloads, the experiments' run folders) goes through [`AtomicFile`].
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("metrics.json");
//! norma_io::write_atomic(&path, b"{}\n")?;
//! assert_eq!(std::fs::read(&path)?, b"{}\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod atomic;
mod read;

pub use atomic::{write_atomic, AtomicFile, TempName, WriteError, RANDOM_LEN};
pub use read::{check_regular, read_limited, ReadError};
