//! # norma-datasets
//!
//! Loads Fashion-MNIST and MNIST for norma's experiments, and batches them for training.
//!
//! * **Finding the data** ([`LoadOptions`]): an explicit directory (`--data-dir`, else the
//!   `NORMA_DATA_DIR` environment variable; when given, it must hold the data), else
//!   `./data/<name>/`, then Debian's
//!   `/usr/share/datasets/fashion-mnist/` (package `dataset-fashion-mnist`, Fashion-MNIST
//!   only), then a download from the official mirror into `./data/<name>/`, every archive
//!   checked against its known SHA-256. Files may be extracted or `.gz`.
//! * **Nothing is written where the data lives**: `.gz` files are decompressed once into the
//!   user's cache directory, `$XDG_CACHE_HOME/norma/<name>/` else
//!   `$HOME/.cache/norma/<name>/` ([`LoadOptions::user_cache_dir`]), one folder per source
//!   directory (55 MB each), reused while the source is unchanged; deleting it is always safe.
//!   Without a usable cache directory a load decompresses into a temporary directory removed
//!   afterwards. The only directory norma writes data into is the download directory; a
//!   failed download removes the directories it created (if empty), and temporary files left
//!   by a killed process are cleaned up by a later load.
//! * **No panic reaches the user**: every file is validated (present, a readable regular file
//!   rather than a directory, broken link or pipe, not empty, valid gzip, IDX magic number,
//!   item count, 28×28, length consistent with the header, labels below 10, images and labels
//!   agree) before the `mnist` crate parses it; each problem is a [`DatasetError`] variant
//!   naming the file and saying how to fix it.
//! * **The data** ([`Dataset`]): [`Split`]s of images as f32 in [0, 1] shaped `(N, 1, 28, 28)`
//!   and labels as class indices, an optional validation split (the last training images),
//!   [`Dataset::class_names`], and where the data was found ([`DataLocation`]).
//! * **Batches** ([`Batches`]): sequential or shuffled from a seed with norma's own
//!   [`norma_tensor::Rng`] (reproducible forever), with an explicit rule for the last batch
//!   ([`LastBatch`]); in training mode no batch ever holds a single sample.
//!
//! ```no_run
//! use norma_datasets::FashionMnist;
//!
//! // `None`: no --data-dir, so NORMA_DATA_DIR, ./data/fashion-mnist, Debian's package,
//! // then the official mirror are tried in turn.
//! let data = FashionMnist::options().validation(5_000).load()?;
//! println!("Fashion-MNIST from {}", data.location);
//! assert_eq!(data.train.images().shape(), &[55_000, 1, 28, 28]);
//! for epoch in 0..2u64 {
//!     for batch in data.train.train_batches(256, epoch)? {
//!         assert!(batch.len() >= 2);
//!         // forward/backward on batch.images (B, 1, 28, 28) and batch.labels ...
//!     }
//! }
//! let seen: usize = data.test.eval_batches(1000)?.map(|b| b.len()).sum();
//! assert_eq!(seen, 10_000);
//! println!("class 0 is {}", data.class_names()[0]);
//! # Ok::<(), norma_datasets::DatasetError>(())
//! ```
//!
//! A complete program, with its error handling, is `examples/load_and_batch.rs`:
//! `cargo run --release -p norma-datasets --example load_and_batch [-- <data dir>]`.
//!
//! Batching works on any [`Split`]:
//!
//! ```
//! use norma_datasets::{LastBatch, Order, Split};
//! use norma_tensor::Tensor;
//!
//! let images = Tensor::zeros(&[5, 1, 28, 28]);
//! let split = Split::new(images, vec![0, 1, 2, 3, 4])?;
//! let sizes: Vec<usize> = split
//!     .batches(2, Order::Shuffled(7), LastBatch::MergeSingle)?
//!     .map(|batch| batch.len())
//!     .collect();
//! assert_eq!(sizes, [2, 3]); // the lone fifth sample joins the batch before it
//! # Ok::<(), norma_datasets::DatasetError>(())
//! ```

#![warn(missing_docs)]

mod augment;
mod batches;
mod cache;
mod dataset;
mod download;
mod error;
mod identity;
mod idx;
mod kind;
mod options;
mod source;
mod split;
mod tempfiles;

pub use augment::Augment;
pub use batches::{Batch, Batches, LastBatch, Order};
pub use dataset::Dataset;
pub use error::{DatasetError, Result};
pub use kind::{
    DataFile, DatasetKind, FashionMnist, Mnist, DATA_DIR_ENV, DEBIAN_FASHION_MNIST_DIR, IMAGE_LEN,
    IMAGE_SIDE, NUM_CLASSES,
};
pub use options::LoadOptions;
pub use source::{DataLocation, Origin, CACHE_DIR_NAME};
pub use split::Split;
