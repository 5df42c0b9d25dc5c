//! Training-time augmentation of image batches, as a ResNet recipe uses it (He et al. 2016,
//! Section 4.2: "4 pixels are padded on each side, and a 32×32 crop is randomly sampled from
//! the padded image or its horizontal flip"): a random crop of the zero-padded image and a
//! random horizontal flip, drawn per image from a seeded [`Rng`].
//!
//! Off unless asked for ([`Augment::NONE`]); the same generator state gives the same images on
//! every machine and thread count (the draws are sequential, one image after the other).

use norma_tensor::{Rng, Tensor};

use crate::{DatasetError, Result};

/// Random crop with zero padding and random horizontal flip, applied image by image.
///
/// For an image x of shape (C, H, W) with padding p: an offset (o_y, o_x) is drawn uniformly
/// from {0, …, 2p}² and the output is
///
/// `y[c, i, j] = x[c, i + o_y − p, j' + o_x − p]` (0 where that falls outside the image),
///
/// with `j' = W − 1 − j` when the image is flipped (probability ½) and `j' = j` otherwise —
/// the crop of the padded image, then the flip, as torchvision's `RandomCrop(padding=p)`
/// followed by `RandomHorizontalFlip()`. Zero is the background of the MNIST-style datasets,
/// so the padding adds background.
///
/// Per image the generator is drawn in this order: o_y and o_x (only if p > 0), then the flip
/// (only if flipping is on).
///
/// ```
/// use norma_datasets::Augment;
/// use norma_tensor::{Rng, Tensor};
/// let mut images = Tensor::from_vec(&[1, 1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let flip = Augment { crop_padding: 0, horizontal_flip: true };
/// flip.apply(&mut images, &mut Rng::seed_from_u64(0))?;
/// let row = &images.as_slice()[..3];
/// assert!(row == [1.0, 2.0, 3.0] || row == [3.0, 2.0, 1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    /// Zero padding p on each side before the crop; 0 for no crop.
    pub crop_padding: usize,
    /// Flip each image left to right with probability ½.
    pub horizontal_flip: bool,
}

impl Augment {
    /// No augmentation: [`Augment::apply`] leaves the images as they are.
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        horizontal_flip: false,
    };

    /// True when [`Augment::apply`] changes nothing.
    pub fn is_none(&self) -> bool {
        *self == Augment::NONE
    }

    /// Checks that the augmentation suits `height` × `width` images (what [`Augment::apply`]
    /// checks first), so that a caller can refuse it before any data is loaded.
    ///
    /// Errors: a padding larger than the height or width (a crop could miss the image
    /// entirely).
    pub fn check(&self, height: usize, width: usize) -> Result<()> {
        let p = self.crop_padding;
        if p > height || p > width {
            return Err(DatasetError::InvalidArgument(format!(
                "crop padding {p} is larger than the {height}×{width} images: a crop could miss \
                 the image entirely; use a padding of at most {}",
                height.min(width)
            )));
        }
        Ok(())
    }

    /// Augments every image of `images`, shape (N, C, H, W), in place, drawing from `rng`.
    ///
    /// Errors: `images` not 4-D, or a padding larger than the image's height or width (the
    /// crop could then miss the image entirely).
    pub fn apply(&self, images: &mut Tensor, rng: &mut Rng) -> Result<()> {
        let shape = images.shape().to_vec();
        let &[n, c, h, w] = shape.as_slice() else {
            return Err(DatasetError::InvalidArgument(format!(
                "augmentation needs images of shape (N, C, H, W); got {shape:?}"
            )));
        };
        self.check(h, w)?;
        let p = self.crop_padding;
        if self.is_none() || n == 0 {
            return Ok(());
        }
        let plane = h * w;
        let mut source = vec![0.0f32; c * plane];
        for image in images.as_slice_mut().chunks_exact_mut(c * plane) {
            let (offset_y, offset_x) = if p > 0 {
                (rng.below(2 * p + 1), rng.below(2 * p + 1))
            } else {
                (p, p)
            };
            let flip = self.horizontal_flip && rng.below(2) == 1;
            source.copy_from_slice(image);
            for (out, src) in image
                .chunks_exact_mut(plane)
                .zip(source.chunks_exact(plane))
            {
                transform_plane(out, src, w, (offset_y, offset_x), p, flip);
            }
        }
        Ok(())
    }
}

/// One (H, W) plane of [`Augment::apply`]: `out[i, j] = src[i + o_y − p, j' + o_x − p]`, 0
/// outside `src`, with `j' = W − 1 − j` if `flip`.
fn transform_plane(
    out: &mut [f32],
    src: &[f32],
    w: usize,
    (offset_y, offset_x): (usize, usize),
    p: usize,
    flip: bool,
) {
    let h = src.len() / w;
    for (i, row) in out.chunks_exact_mut(w).enumerate() {
        // Source row i + o_y − p, in range when p ≤ i + o_y < p + h.
        let from_row = (i + offset_y)
            .checked_sub(p)
            .filter(|&r| r < h)
            .map(|r| &src[r * w..(r + 1) * w]);
        for (j, v) in row.iter_mut().enumerate() {
            let column = if flip { w - 1 - j } else { j };
            *v = from_row
                .and_then(|r| (column + offset_x).checked_sub(p).and_then(|k| r.get(k)))
                .copied()
                .unwrap_or(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images of 2 channels, 3×4, with distinct values.
    fn images() -> Tensor {
        Tensor::from_vec(&[2, 2, 3, 4], (0..48).map(|v| v as f32 + 1.0).collect()).unwrap()
    }

    #[test]
    fn no_augmentation_changes_nothing_and_draws_nothing() {
        let mut x = images();
        let rng = &mut Rng::seed_from_u64(1);
        Augment::NONE.apply(&mut x, rng).unwrap();
        assert_eq!(x, images());
        assert_eq!(rng.next_u64(), Rng::seed_from_u64(1).next_u64());
    }

    #[test]
    fn a_flip_reverses_every_row_of_every_channel_and_twice_is_the_identity() {
        let mut plane = vec![0.0; 12];
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        transform_plane(&mut plane, &src, 4, (0, 0), 0, true);
        assert_eq!(plane[..4], [3.0, 2.0, 1.0, 0.0]);
        let mut back = vec![0.0; 12];
        transform_plane(&mut back, &plane, 4, (0, 0), 0, true);
        assert_eq!(back, src);
    }

    #[test]
    fn a_crop_shifts_the_image_and_pads_with_zeros() {
        let src: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 12];
        // p = 1, offset (0, 2): the content moves one row down and one column left.
        transform_plane(&mut out, &src, 4, (0, 2), 1, false);
        assert_eq!(
            out,
            [0.0, 0.0, 0.0, 0.0, 2.0, 3.0, 4.0, 0.0, 6.0, 7.0, 8.0, 0.0]
        );
        // The centre offset (p, p) is the image itself.
        transform_plane(&mut out, &src, 4, (1, 1), 1, false);
        assert_eq!(out, src);
    }

    #[test]
    fn the_same_generator_gives_the_same_images_and_each_image_its_own_draw() {
        let augment = Augment {
            crop_padding: 2,
            horizontal_flip: true,
        };
        let run = |seed| {
            let mut x =
                Tensor::from_vec(&[64, 1, 3, 4], (0..768).map(|v| v as f32).collect()).unwrap();
            augment
                .apply(&mut x, &mut Rng::seed_from_u64(seed))
                .unwrap();
            x
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Every value is 0 (padding) or a value of its own image: nothing leaks between images.
        let x = run(7);
        for (k, image) in x.as_slice().chunks(12).enumerate() {
            let own = (k * 12) as f32..((k + 1) * 12) as f32;
            assert!(
                image.iter().all(|v| *v == 0.0 || own.contains(v)),
                "{image:?}"
            );
        }
        // Over 64 images some are flipped and some shifted.
        let untouched = x
            .as_slice()
            .chunks(12)
            .enumerate()
            .filter(|(k, image)| image.iter().zip(k * 12..).all(|(v, u)| *v == u as f32))
            .count();
        assert!(untouched < 32, "{untouched} of 64 untouched");
    }

    #[test]
    fn channels_of_one_image_move_together() {
        let augment = Augment {
            crop_padding: 1,
            horizontal_flip: true,
        };
        // Channel 1 is channel 0 plus 100: after the same crop and flip it still is, except
        // where both are padding.
        let c0: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let data: Vec<f32> = c0
            .iter()
            .chain(&c0.iter().map(|v| v + 100.0).collect::<Vec<_>>())
            .copied()
            .collect();
        for seed in 0..20 {
            let mut x = Tensor::from_vec(&[1, 2, 3, 4], data.clone()).unwrap();
            augment
                .apply(&mut x, &mut Rng::seed_from_u64(seed))
                .unwrap();
            let (a, b) = x.as_slice().split_at(12);
            for (u, v) in a.iter().zip(b) {
                assert!(
                    (*u == 0.0 && *v == 0.0) || *v == u + 100.0,
                    "seed {seed}: {u} {v}"
                );
            }
        }
    }

    #[test]
    fn bad_shapes_and_paddings_are_refused_with_the_input() {
        let flip = Augment {
            crop_padding: 0,
            horizontal_flip: true,
        };
        let mut flat = Tensor::zeros(&[2, 12]);
        let err = flip
            .apply(&mut flat, &mut Rng::seed_from_u64(0))
            .unwrap_err();
        assert!(err.to_string().contains("[2, 12]"), "{err}");
        let wide = Augment {
            crop_padding: 4,
            horizontal_flip: false,
        };
        let err = wide
            .apply(&mut images(), &mut Rng::seed_from_u64(0))
            .unwrap_err();
        assert!(
            err.to_string().contains("padding 4") && err.to_string().contains("3×4"),
            "{err}"
        );
    }
}
