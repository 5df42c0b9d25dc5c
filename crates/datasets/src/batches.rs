//! The batch iterator: sequential or seeded-shuffled order, and an explicit rule for the last,
//! incomplete batch.
//!
//! Each batch is gathered into one fresh allocation by copying whole sample rows; nothing is
//! allocated per sample, so data loading stays out of training profiles.

use norma_tensor::{Rng, Tensor};

use crate::{DatasetError, Result, Split};

/// The order in which samples are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// File order: sample 0, 1, 2, ...
    Sequential,
    /// A permutation drawn from this seed with norma's own [`Rng`] (Fisher–Yates): the same
    /// seed gives the same order on every machine and forever; use one seed per epoch.
    Shuffled(u64),
    /// The samples grouped by class label (class 0 first), shuffled from this seed within
    /// each class: batches that hold one class, or two at a boundary — the non-i.i.d. stream
    /// a model meets when data arrives sorted, as a test set read class by class.
    ByClass(u64),
}

/// What to do with the last batch when the split size is not a multiple of the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastBatch {
    /// Yield it as it is, smaller than the others (possibly a single sample). Every sample
    /// is visited. The rule for evaluation.
    Keep,
    /// Do not yield it: every batch has exactly `batch_size` samples and the
    /// `len % batch_size` samples left over (in this epoch's order) are skipped. A split
    /// smaller than one batch yields nothing.
    Drop,
    /// Yield it as it is, except that a last batch of exactly one sample is appended to the
    /// batch before it, which then holds `batch_size + 1` samples. Every sample is visited and
    /// no batch ever holds a single sample (batch norm cannot normalise one sample), so
    /// batch size 1, or a split of fewer than 2 samples, is an error. The rule for training.
    #[default]
    MergeSingle,
}

/// One batch: `images` of shape `(B, ...)` (`(B, 1, 28, 28)` for the loaded datasets) and
/// the B matching class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The images, samples along the first axis.
    pub images: Tensor,
    /// The class index of each image.
    pub labels: Vec<usize>,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a batch without samples (never yielded by [`Batches`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Iterator over the batches of one epoch of a [`Split`]; built by [`Split::batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    split: &'a Split,
    order: Vec<usize>,
    batch_size: usize,
    /// Samples of `order` that are yielded (all but the dropped tail).
    covered: usize,
    num_batches: usize,
    next: usize,
}

impl<'a> Batches<'a> {
    pub(crate) fn new(
        split: &'a Split,
        batch_size: usize,
        order: Order,
        last: LastBatch,
    ) -> Result<Self> {
        let n = split.len();
        if batch_size == 0 {
            return Err(DatasetError::InvalidArgument(
                "batch size must be at least 1 (got 0)".to_string(),
            ));
        }
        let (num_batches, covered) = match last {
            LastBatch::Keep => (n.div_ceil(batch_size), n),
            LastBatch::Drop => (n / batch_size, n / batch_size * batch_size),
            LastBatch::MergeSingle => {
                if batch_size == 1 {
                    return Err(DatasetError::InvalidArgument(
                        "batch size 1 in training mode (LastBatch::MergeSingle) would give \
                         batches of a single sample, which batch norm cannot normalise; use a \
                         batch size of at least 2, or LastBatch::Keep without batch norm"
                            .to_string(),
                    ));
                }
                if n < 2 {
                    return Err(DatasetError::InvalidArgument(format!(
                        "a split of {n} sample(s) cannot be trained in batches without a batch \
                         of a single sample (batch norm needs at least 2); use a larger split \
                         or LastBatch::Keep without batch norm"
                    )));
                }
                if n > batch_size && n % batch_size == 1 {
                    (n / batch_size, n)
                } else {
                    (n.div_ceil(batch_size), n)
                }
            }
        };
        let mut indices: Vec<usize> = (0..n).collect();
        match order {
            Order::Sequential => {}
            Order::Shuffled(seed) => Rng::seed_from_u64(seed).shuffle(&mut indices),
            Order::ByClass(seed) => {
                Rng::seed_from_u64(seed).shuffle(&mut indices);
                // A stable sort keeps the shuffled order within each class.
                let labels = split.labels();
                indices.sort_by_key(|&i| labels[i]);
            }
        }
        Ok(Batches {
            split,
            order: indices,
            batch_size,
            covered,
            num_batches,
            next: 0,
        })
    }

    /// The sample indices of this epoch, in visiting order (including any dropped tail).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn gather(&self, indices: &[usize]) -> Batch {
        let row: usize = self.split.sample_shape().iter().product();
        let mut shape = self.split.images().shape().to_vec();
        shape[0] = indices.len();
        let src = self.split.images().as_slice();
        let all_labels = self.split.labels();
        let mut images = Tensor::zeros(&shape);
        let dst = images.as_slice_mut();
        if row > 0 {
            for (out_row, &i) in dst.chunks_exact_mut(row).zip(indices) {
                out_row.copy_from_slice(&src[i * row..(i + 1) * row]);
            }
        }
        let labels = indices.iter().map(|&i| all_labels[i]).collect();
        Batch { images, labels }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.num_batches {
            return None;
        }
        let start = self.next * self.batch_size;
        let end = if self.next + 1 == self.num_batches {
            self.covered
        } else {
            start + self.batch_size
        };
        self.next += 1;
        let indices = &self.order[start..end];
        Some(self.gather(indices))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.num_batches - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split of `n` samples of shape (1, 28, 28) whose every pixel is the sample index, with
    /// label `index % 10`.
    fn split(n: usize) -> Split {
        let row = 28 * 28;
        let data = (0..n * row).map(|k| (k / row) as f32).collect();
        let images = Tensor::from_vec(&[n, 1, 28, 28], data).unwrap();
        Split::new(images, (0..n).map(|i| i % 10).collect()).unwrap()
    }

    /// The sample indices of each batch, checking that images and labels agree.
    fn epoch(s: &Split, bs: usize, order: Order, last: LastBatch) -> Vec<Vec<usize>> {
        s.batches(bs, order, last)
            .unwrap()
            .map(|b| {
                let b_len = b.len();
                assert_eq!(b.images.shape(), &[b_len, 1, 28, 28]);
                let ids: Vec<usize> = b
                    .images
                    .as_slice()
                    .chunks(784)
                    .map(|r| {
                        assert!(r.iter().all(|&v| v == r[0]), "rows are copied whole");
                        r[0] as usize
                    })
                    .collect();
                let expected_labels: Vec<usize> = ids.iter().map(|i| i % 10).collect();
                assert_eq!(b.labels, expected_labels);
                ids
            })
            .collect()
    }

    fn sizes(batches: &[Vec<usize>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn every_index_exactly_once_per_epoch() {
        let s = split(103);
        for last in [LastBatch::Keep, LastBatch::MergeSingle] {
            for order in [Order::Sequential, Order::Shuffled(9)] {
                let mut all: Vec<usize> = epoch(&s, 10, order, last).concat();
                all.sort_unstable();
                assert_eq!(all, (0..103).collect::<Vec<_>>(), "{order:?} {last:?}");
            }
        }
    }

    #[test]
    fn sequential_is_file_order() {
        let s = split(25);
        let b = epoch(&s, 10, Order::Sequential, LastBatch::Keep);
        assert_eq!(b.concat(), (0..25).collect::<Vec<_>>());
        assert_eq!(sizes(&b), [10, 10, 5]);
    }

    #[test]
    fn same_seed_same_order_different_seed_different_order() {
        let s = split(200);
        let a = epoch(&s, 32, Order::Shuffled(1), LastBatch::MergeSingle);
        let b = epoch(&s, 32, Order::Shuffled(1), LastBatch::MergeSingle);
        let c = epoch(&s, 32, Order::Shuffled(2), LastBatch::MergeSingle);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a.concat(), (0..200).collect::<Vec<_>>());
        // The order is norma's Rng shuffle of 0..n, so it is fixed by the seed forever.
        let mut expected: Vec<usize> = (0..200).collect();
        Rng::seed_from_u64(1).shuffle(&mut expected);
        assert_eq!(a.concat(), expected);
    }

    #[test]
    fn last_batch_rules() {
        let s = split(21);
        let keep = epoch(&s, 10, Order::Sequential, LastBatch::Keep);
        assert_eq!(sizes(&keep), [10, 10, 1]);
        let drop = epoch(&s, 10, Order::Sequential, LastBatch::Drop);
        assert_eq!(sizes(&drop), [10, 10]);
        assert_eq!(drop.concat(), (0..20).collect::<Vec<_>>());
        let merge = epoch(&s, 10, Order::Sequential, LastBatch::MergeSingle);
        assert_eq!(sizes(&merge), [10, 11]);
        assert_eq!(merge.concat(), (0..21).collect::<Vec<_>>());
        // A last batch of 2 or more is kept as it is.
        let merge = epoch(&split(22), 10, Order::Sequential, LastBatch::MergeSingle);
        assert_eq!(sizes(&merge), [10, 10, 2]);
        // Exact multiples have no incomplete batch in any mode.
        for last in [LastBatch::Keep, LastBatch::Drop, LastBatch::MergeSingle] {
            assert_eq!(
                sizes(&epoch(&split(20), 10, Order::Sequential, last)),
                [10, 10]
            );
        }
        assert_eq!(LastBatch::default(), LastBatch::MergeSingle);
    }

    #[test]
    fn training_mode_never_yields_a_batch_of_one() {
        for n in 2..40 {
            let s = split(n);
            for bs in 2..12 {
                let b = s.train_batches(bs, n as u64).unwrap();
                assert_eq!(b.len(), b.clone().count());
                let sizes: Vec<usize> = b.map(|b| b.len()).collect();
                assert!(
                    sizes.iter().all(|&k| k >= 2 && k <= bs + 1),
                    "n={n} bs={bs}: {sizes:?}"
                );
                assert_eq!(sizes.iter().sum::<usize>(), n);
            }
        }
    }

    #[test]
    fn batch_larger_than_the_split() {
        let s = split(7);
        assert_eq!(
            sizes(&epoch(&s, 100, Order::Sequential, LastBatch::Keep)),
            [7]
        );
        assert_eq!(
            sizes(&epoch(&s, 100, Order::Shuffled(3), LastBatch::MergeSingle)),
            [7]
        );
        assert!(epoch(&s, 100, Order::Sequential, LastBatch::Drop).is_empty());
    }

    #[test]
    fn unusable_arguments_are_errors() {
        let s = split(5);
        for last in [LastBatch::Keep, LastBatch::Drop, LastBatch::MergeSingle] {
            let e = s.batches(0, Order::Sequential, last).unwrap_err();
            assert!(matches!(e, DatasetError::InvalidArgument(_)), "{e}");
        }
        assert!(s.train_batches(1, 0).is_err());
        assert!(s.batches(1, Order::Sequential, LastBatch::Keep).is_ok());
        let one = split(1);
        let e = one.train_batches(8, 0).unwrap_err();
        assert!(e.to_string().contains("batch norm"), "{e}");
        assert_eq!(
            sizes(&epoch(&one, 8, Order::Sequential, LastBatch::Keep)),
            [1]
        );
        let empty = split(0);
        assert!(empty.train_batches(8, 0).is_err());
        assert_eq!(empty.eval_batches(8).unwrap().count(), 0);
    }

    #[test]
    fn eval_batches_are_sequential_and_keep_the_tail() {
        let s = split(21);
        let b: Vec<Vec<usize>> = s.eval_batches(10).unwrap().map(|b| b.labels).collect();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 1]);
        assert_eq!(b[2], [0]);
    }

    #[test]
    fn by_class_batches_hold_one_class_each_in_a_seeded_order() {
        let s = split(100);
        let batches = epoch(&s, 10, Order::ByClass(3), LastBatch::Keep);
        assert_eq!(batches.len(), 10);
        for (class, ids) in batches.iter().enumerate() {
            assert!(
                ids.iter().all(|i| i % 10 == class),
                "batch {class}: {ids:?}"
            );
        }
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "every sample once");
        assert_eq!(batches, epoch(&s, 10, Order::ByClass(3), LastBatch::Keep));
        assert_ne!(batches, epoch(&s, 10, Order::ByClass(4), LastBatch::Keep));
    }
}
