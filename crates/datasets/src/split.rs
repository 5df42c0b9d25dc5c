//! [`Split`]: a set of samples (images and their labels) such as the training or test set.

use norma_tensor::Tensor;

use crate::batches::{Batches, LastBatch, Order};
use crate::{DatasetError, Result};

/// Samples and their class labels: `images` has shape `(N, ...)` (`(N, 1, 28, 28)` for the
/// loaded datasets, values in [0, 1]) and `labels` holds N class indices.
#[derive(Clone, PartialEq)]
pub struct Split {
    images: Tensor,
    labels: Vec<usize>,
}

impl Split {
    /// A split from its images (first axis = sample) and one label per sample.
    pub fn new(images: Tensor, labels: Vec<usize>) -> Result<Self> {
        match images.shape().first() {
            Some(&n) if n == labels.len() => Ok(Split { images, labels }),
            Some(&n) => Err(DatasetError::InvalidArgument(format!(
                "Split::new: {n} images but {} labels",
                labels.len()
            ))),
            None => Err(DatasetError::InvalidArgument(
                "Split::new: images must have a sample axis (got a 0-dimensional tensor)"
                    .to_string(),
            )),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All images, shape `(N, ...)`.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// All labels, in sample order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The shape of one sample (the image shape without the sample axis).
    pub fn sample_shape(&self) -> &[usize] {
        &self.images.shape()[1..]
    }

    /// Number of samples of each class `0..num_classes` (labels outside are not counted).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(label) {
                *c += 1;
            }
        }
        counts
    }

    /// Splits off the last `count` samples: returns `(first len - count, last count)`.
    pub fn split_tail(self, count: usize) -> Result<(Split, Split)> {
        let n = self.len();
        if count > n {
            return Err(DatasetError::InvalidArgument(format!(
                "cannot take {count} samples from a split of {n}"
            )));
        }
        let keep = n - count;
        let row: usize = self.sample_shape().iter().product();
        let mut shape = self.images.shape().to_vec();
        let mut data = self.images.into_vec();
        let tail_data = data.split_off(keep * row);
        let mut labels = self.labels;
        let tail_labels = labels.split_off(keep);
        shape[0] = keep;
        let head = Tensor::from_vec(&shape, data);
        shape[0] = count;
        let tail = Tensor::from_vec(&shape, tail_data);
        match (head, tail) {
            (Ok(head), Ok(tail)) => Ok((
                Split {
                    images: head,
                    labels,
                },
                Split {
                    images: tail,
                    labels: tail_labels,
                },
            )),
            (Err(e), _) | (_, Err(e)) => Err(DatasetError::InvalidArgument(e.to_string())),
        }
    }

    /// Batches over this split; see [`Order`] and [`LastBatch`] for the rules.
    ///
    /// Errors when `batch_size` is 0, and in [`LastBatch::MergeSingle`] mode when a batch of
    /// one sample cannot be avoided (batch size 1, or fewer than 2 samples).
    pub fn batches(&self, batch_size: usize, order: Order, last: LastBatch) -> Result<Batches<'_>> {
        Batches::new(self, batch_size, order, last)
    }

    /// Training batches: shuffled from `seed` (pass a different seed each epoch), with the
    /// [`LastBatch::MergeSingle`] rule, so no batch ever holds a single sample.
    pub fn train_batches(&self, batch_size: usize, seed: u64) -> Result<Batches<'_>> {
        self.batches(batch_size, Order::Shuffled(seed), LastBatch::MergeSingle)
    }

    /// Evaluation batches: every sample once, in file order, the last batch possibly smaller
    /// ([`LastBatch::Keep`]).
    pub fn eval_batches(&self, batch_size: usize) -> Result<Batches<'_>> {
        self.batches(batch_size, Order::Sequential, LastBatch::Keep)
    }
}

/// Shows the size, the image shape and the first labels: a split's 60,000 labels in full
/// would drown any debug print or failed assertion.
impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        let more = if self.labels.len() > SHOWN {
            ", ..."
        } else {
            ""
        };
        let first = &self.labels[..self.labels.len().min(SHOWN)];
        f.debug_struct("Split")
            .field("len", &self.len())
            .field("images", &self.images.shape())
            .field("labels", &format_args!("{first:?}{more}"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_lengths_and_split_tail_keeps_order() {
        let images = Tensor::from_vec(&[4, 2], (0..8).map(|x| x as f32).collect()).unwrap();
        assert!(Split::new(images.clone(), vec![0, 1, 2]).is_err());
        assert!(Split::new(Tensor::scalar(1.0), vec![]).is_err());
        let s = Split::new(images, vec![0, 1, 2, 3]).unwrap();
        assert_eq!(s.sample_shape(), &[2]);
        assert_eq!(s.class_counts(3), vec![1, 1, 1]);
        let (a, b) = s.clone().split_tail(1).unwrap();
        assert_eq!(a.labels(), &[0, 1, 2]);
        assert_eq!(a.images().shape(), &[3, 2]);
        assert_eq!(b.labels(), &[3]);
        assert_eq!(b.images().as_slice(), &[6.0, 7.0]);
        assert!(s.clone().split_tail(5).is_err());
        assert_eq!(
            format!("{s:?}"),
            "Split { len: 4, images: [4, 2], labels: [0, 1, 2, 3] }"
        );
    }
}
