//! What each dataset is: its name, its four files, its classes, its mirror and checksums.

use std::fmt;
use std::path::PathBuf;

use crate::options::LoadOptions;
use crate::{Dataset, Result};

/// Side of every image, in pixels (both datasets are 28×28 grey levels).
pub const IMAGE_SIDE: usize = 28;

/// Number of values in one image (`IMAGE_SIDE²`).
pub const IMAGE_LEN: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Number of classes of both datasets.
pub const NUM_CLASSES: usize = 10;

/// Where Debian's `dataset-fashion-mnist` package installs the four archives.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable naming a directory to load the data from (an explicit argument wins).
pub const DATA_DIR_ENV: &str = "NORMA_DATA_DIR";

const FASHION_CLASSES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const DIGIT_CLASSES: [&str; NUM_CLASSES] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// One of the datasets this crate can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Zalando's Fashion-MNIST: 28×28 grey photos of clothes in 10 classes.
    FashionMnist,
    /// LeCun's MNIST: 28×28 grey handwritten digits.
    Mnist,
}

impl DatasetKind {
    /// Folder name used under `./data/` and in caches: `fashion-mnist` or `mnist`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
        }
    }

    /// Human-readable name: `Fashion-MNIST` or `MNIST`.
    pub fn display_name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Mnist => "MNIST",
        }
    }

    /// The name of each class, indexed by label.
    pub fn class_names(self) -> &'static [&'static str; NUM_CLASSES] {
        match self {
            DatasetKind::FashionMnist => &FASHION_CLASSES,
            DatasetKind::Mnist => &DIGIT_CLASSES,
        }
    }

    /// The official mirror the archives are downloaded from (file names are appended).
    pub fn default_mirror(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => {
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
            }
            DatasetKind::Mnist => "https://ossci-datasets.s3.amazonaws.com/mnist",
        }
    }

    /// SHA-256 of the official `.gz` archives, in [`DataFile::ALL`] order.
    pub fn archive_sha256(self) -> [&'static str; 4] {
        match self {
            DatasetKind::FashionMnist => [
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ],
            DatasetKind::Mnist => [
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ],
        }
    }

    /// The system-wide directory a distribution package installs the data into, if any.
    pub fn system_dir(self) -> Option<PathBuf> {
        match self {
            DatasetKind::FashionMnist => Some(PathBuf::from(DEBIAN_FASHION_MNIST_DIR)),
            DatasetKind::Mnist => None,
        }
    }

    /// How a user gets the data; ends every error message about missing or bad files.
    pub fn how_to_get(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => {
                "To get Fashion-MNIST: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), \
                 or put the four files (.gz or extracted) in a directory and pass `--data-dir <dir>` \
                 or set NORMA_DATA_DIR=<dir>, or let norma download them into data/fashion-mnist/."
            }
            DatasetKind::Mnist => {
                "To get MNIST: put the four files (.gz or extracted) in a directory and pass \
                 `--data-dir <dir>` or set NORMA_DATA_DIR=<dir>, or let norma download them \
                 into data/mnist/."
            }
        }
    }

    /// Default loading options for this dataset (see [`LoadOptions`]).
    pub fn options(self) -> LoadOptions {
        LoadOptions::new(self)
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// One of the four files of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFile {
    /// `train-images-idx3-ubyte`: the 60,000 training images.
    TrainImages,
    /// `train-labels-idx1-ubyte`: the 60,000 training labels.
    TrainLabels,
    /// `t10k-images-idx3-ubyte`: the 10,000 test images.
    TestImages,
    /// `t10k-labels-idx1-ubyte`: the 10,000 test labels.
    TestLabels,
}

impl DataFile {
    /// The four files, in the order used by every `[_; 4]` array of this crate.
    pub const ALL: [DataFile; 4] = [
        DataFile::TrainImages,
        DataFile::TrainLabels,
        DataFile::TestImages,
        DataFile::TestLabels,
    ];

    /// Name of the extracted file, e.g. `train-images-idx3-ubyte`.
    pub fn file_name(self) -> &'static str {
        match self {
            DataFile::TrainImages => "train-images-idx3-ubyte",
            DataFile::TrainLabels => "train-labels-idx1-ubyte",
            DataFile::TestImages => "t10k-images-idx3-ubyte",
            DataFile::TestLabels => "t10k-labels-idx1-ubyte",
        }
    }

    /// Name of the gzip archive, e.g. `train-images-idx3-ubyte.gz`.
    pub fn gz_name(self) -> &'static str {
        match self {
            DataFile::TrainImages => "train-images-idx3-ubyte.gz",
            DataFile::TrainLabels => "train-labels-idx1-ubyte.gz",
            DataFile::TestImages => "t10k-images-idx3-ubyte.gz",
            DataFile::TestLabels => "t10k-labels-idx1-ubyte.gz",
        }
    }

    /// True for the two image files, false for the two label files.
    pub fn is_images(self) -> bool {
        matches!(self, DataFile::TrainImages | DataFile::TestImages)
    }

    /// Number of items the file must hold (60,000 for training, 10,000 for test).
    pub fn expected_count(self) -> usize {
        match self {
            DataFile::TrainImages | DataFile::TrainLabels => 60_000,
            DataFile::TestImages | DataFile::TestLabels => 10_000,
        }
    }

    /// Position of this file in [`DataFile::ALL`].
    pub fn index(self) -> usize {
        match self {
            DataFile::TrainImages => 0,
            DataFile::TrainLabels => 1,
            DataFile::TestImages => 2,
            DataFile::TestLabels => 3,
        }
    }
}

/// A unit type standing for one dataset: `KIND`, `class_names()`, `options()` and `load()`.
macro_rules! dataset_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl $name {
            /// The dataset this type stands for.
            pub const KIND: DatasetKind = $kind;

            /// The class names, indexed by label.
            pub fn class_names() -> &'static [&'static str; NUM_CLASSES] {
                Self::KIND.class_names()
            }

            /// Default loading options, to adjust before [`LoadOptions::load`].
            pub fn options() -> LoadOptions {
                LoadOptions::new(Self::KIND)
            }

            /// Loads the dataset: from `data_dir` when given (else `$NORMA_DATA_DIR`), otherwise
            /// from `./data/<name>/`, the system directory, or a download (see [`LoadOptions`]).
            pub fn load(data_dir: Option<&std::path::Path>) -> Result<Dataset> {
                Self::options().data_dir(data_dir.map(|d| d.to_path_buf())).load()
            }
        }
    };
}

dataset_type!(
    /// Zalando's Fashion-MNIST, the dataset norma trains on by default.
    ///
    /// Classes, by label: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker,
    /// Bag, Ankle boot.
    FashionMnist,
    DatasetKind::FashionMnist
);

dataset_type!(
    /// LeCun's MNIST handwritten digits (classes "0" to "9").
    Mnist,
    DatasetKind::Mnist
);
