//! [`Dataset`] and the loading pipeline: locate, decompress, validate, parse, scale, split.

use std::path::Path;

use norma_tensor::Tensor;

use crate::cache::{self, CacheDir};
use crate::idx::{self, FileSet};
use crate::kind::{IMAGE_LEN, IMAGE_SIDE, NUM_CLASSES};
use crate::source::{self, DataLocation};
use crate::{DataFile, DatasetError, DatasetKind, LoadOptions, Result, Split};

/// A loaded dataset: training, optional validation and test splits, images as f32 in [0, 1]
/// (pixel / 255) of shape `(N, 1, 28, 28)`, labels as class indices below 10.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Which dataset this is.
    pub kind: DatasetKind,
    /// The training images (all 60,000, less the validation split).
    pub train: Split,
    /// The last `validation` training images, when [`LoadOptions::validation`] asked for some.
    pub validation: Option<Split>,
    /// The 10,000 test images.
    pub test: Split,
    /// Where the files were found (print it so a run says which data it used).
    pub location: DataLocation,
}

impl Dataset {
    /// The name of each class, indexed by label.
    pub fn class_names(&self) -> &'static [&'static str; NUM_CLASSES] {
        self.kind.class_names()
    }
}

/// Loads the dataset described by `options` (see [`LoadOptions`] for the search order), once
/// [`LoadOptions::load`] has checked them.
pub(crate) fn load(options: &LoadOptions) -> Result<Dataset> {
    let kind = options.kind;
    let located = source::locate(options)?;
    let prepared = cache::prepare(options, &located)?;
    let files = &prepared.files;
    idx::validate_set(kind, files)?;
    let raw = parse(kind, files)?;
    // A temporary directory is deleted with `prepared`, after parsing: its copies are gone,
    // so the location names the `.gz` sources instead.
    let (cache_dir, parsed) = match &prepared.cache {
        Some(CacheDir::Persistent(dir)) => (Some(dir.clone()), files.read.clone()),
        Some(CacheDir::Temporary(_)) => (None, files.shown.clone()),
        None => (None, files.read.clone()),
    };
    let location = DataLocation {
        dir: located.dir,
        origin: located.origin,
        files: parsed,
        cache_dir,
        decompressed: prepared.decompressed,
        downloaded: located.downloaded,
    };
    drop(prepared);
    let train = to_split(&raw.trn_img, &raw.trn_lbl)?;
    let test = to_split(&raw.tst_img, &raw.tst_lbl)?;
    let (train, validation) = if options.validation > 0 {
        let (train, validation) = train.split_tail(options.validation)?;
        (train, Some(validation))
    } else {
        (train, None)
    };
    Ok(Dataset {
        kind,
        train,
        validation,
        test,
        location,
    })
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| DatasetError::UnsupportedPath {
        path: path.to_path_buf(),
    })
}

/// Parses the four validated files with the `mnist` crate.
///
/// Every condition under which `MnistBuilder::finalize` panics (missing file, wrong magic,
/// header count other than 60,000/10,000, dimensions other than 28×28, payload shorter than
/// announced) has been ruled out by [`idx::validate_set`]; the lengths are checked again
/// afterwards in case a file changed in between.
fn parse(kind: DatasetKind, files: &FileSet) -> Result<mnist::Mnist> {
    let [trn_img, trn_lbl, tst_img, tst_lbl] = &files.read;
    // The `mnist` crate joins each file name to a base path; joining a full path to an
    // empty base gives the path itself, so each file can live in its own directory.
    let raw = mnist::MnistBuilder::new()
        .base_path("")
        .training_images_filename(utf8(trn_img)?)
        .training_labels_filename(utf8(trn_lbl)?)
        .test_images_filename(utf8(tst_img)?)
        .test_labels_filename(utf8(tst_lbl)?)
        .label_format_digit()
        .training_set_length(DataFile::TrainImages.expected_count() as u32)
        .validation_set_length(0)
        .test_set_length(DataFile::TestImages.expected_count() as u32)
        .finalize();
    let lengths = [
        raw.trn_img.len(),
        raw.trn_lbl.len(),
        raw.tst_img.len(),
        raw.tst_lbl.len(),
    ];
    for file in DataFile::ALL {
        let item = if file.is_images() { IMAGE_LEN } else { 1 };
        if lengths[file.index()] != file.expected_count() * item {
            return Err(DatasetError::io(
                "parsing",
                &files.shown[file.index()],
                std::io::Error::other("the file changed while it was being loaded; try again"),
            ));
        }
    }
    // Labels were range-checked before parsing; checking the parsed copy again costs
    // nothing and keeps a file replaced in between from yielding bad class indices.
    idx::check_labels(kind, &files.shown[1], &raw.trn_lbl)?;
    idx::check_labels(kind, &files.shown[3], &raw.tst_lbl)?;
    Ok(raw)
}

/// Scales bytes to [0, 1] and shapes them `(N, 1, 28, 28)`.
fn to_split(images: &[u8], labels: &[u8]) -> Result<Split> {
    let n = labels.len();
    // A table gives exactly `p / 255.0` for each of the 256 values, without a division per
    // pixel (47 million of them for the training set).
    let mut scale = [0f32; 256];
    for (p, v) in scale.iter_mut().enumerate() {
        *v = p as f32 / 255.0;
    }
    let pixels: Vec<f32> = images.iter().map(|&p| scale[usize::from(p)]).collect();
    let images = Tensor::from_vec(&[n, 1, IMAGE_SIDE, IMAGE_SIDE], pixels)
        .map_err(|e| DatasetError::InvalidArgument(e.to_string()))?;
    Split::new(images, labels.iter().map(|&l| usize::from(l)).collect())
}
