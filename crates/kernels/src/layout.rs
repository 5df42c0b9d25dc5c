//! How a batch-norm input is split into work: the (N, C, S) view, and the two parallel drivers
//! every kernel is built from.
//!
//! - [`channel_sums`]: per channel, two f64 sums of a per-element term over all N·S values.
//! - [`channel_map`]: an elementwise pass with per-channel constants.
//!
//! Work is cut into pieces whose boundaries depend only on the shape, never on the number of
//! threads, and partial sums are combined in piece order: results are bitwise identical on 1 or
//! 64 threads.
//!
//! Two cuts, chosen by the spatial size S:
//! - **planes** (S ≥ [`PLANE_PATH_MIN`], NCHW images): channel c's values are N contiguous
//!   planes of S values. A reduction piece is a run of planes of one channel, so a channel with
//!   few planes' worth of work (LeNet's 6 channels) is still spread over all cores.
//! - **rows** ((N, C) features, tiny images): a piece is a run of rows holding every channel;
//!   per-channel accumulators run along the row, which vectorizes across channels.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::sums::ChannelSum;
use crate::KernelError;

/// Values of one reduction or map piece: ~64 KiB of f32, a few µs of work.
const PIECE: usize = 1 << 14;
/// Row pieces carry a C-long accumulator each; larger pieces keep the final combine cheap.
const ROW_PIECE: usize = 1 << 16;
/// Smallest spatial size reduced plane by plane.
pub const PLANE_PATH_MIN: usize = 16;

/// A batch-norm input seen as (N, C, S): batch, channels, spatial positions per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl BnShape {
    /// (N, C) → S = 1; (N, C, L) → S = L; (N, C, H, W) → S = H·W.
    pub fn from_dims(dims: &[usize]) -> Result<BnShape, KernelError> {
        let (batch, channels, spatial) = match *dims {
            [n, c] => (n, c, 1),
            [n, c, l] => (n, c, l),
            [n, c, h, w] => (n, c, h * w),
            _ => {
                return Err(KernelError::UnsupportedShape {
                    shape: dims.to_vec(),
                })
            }
        };
        Ok(BnShape {
            batch,
            channels,
            spatial,
        })
    }

    /// M: how many values each channel's statistics are taken over (N·S).
    pub fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    /// True when there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn plane_path(&self) -> bool {
        self.spatial >= PLANE_PATH_MIN
    }

    fn planes_per_piece(&self) -> usize {
        (PIECE / self.spatial.max(1)).max(1)
    }

    fn rows_per_piece(&self) -> usize {
        (ROW_PIECE / (self.channels * self.spatial).max(1)).max(1)
    }
}

/// For each channel, the two sums of `kind` over the channel's N·S values (see
/// [`crate::sums`]). `x` and `y` have the input's shape (the same slice twice when only one is
/// needed); `k` holds one constant per channel.
pub fn channel_sums(
    shape: BnShape,
    x: &[f32],
    y: &[f32],
    k: &[f32],
    kind: &impl ChannelSum,
) -> Vec<[f64; 2]> {
    let (n, c, s) = (shape.batch, shape.channels, shape.spatial);
    let mut totals = vec![[0.0f64; 2]; c];
    if shape.is_empty() {
        return totals;
    }
    if shape.plane_path() {
        let per_piece = shape.planes_per_piece();
        let pieces_per_channel = n.div_ceil(per_piece);
        let partial: Vec<[f64; 2]> = (0..c * pieces_per_channel)
            .into_par_iter()
            .map(|piece| {
                let (ch, j) = (piece / pieces_per_channel, piece % pieces_per_channel);
                let mut sum = [0.0f64; 2];
                for img in j * per_piece..((j + 1) * per_piece).min(n) {
                    let plane = (img * c + ch) * s..(img * c + ch + 1) * s;
                    let [u, v] = kind.run(&x[plane.clone()], &y[plane], k[ch]);
                    sum[0] += u;
                    sum[1] += v;
                }
                sum
            })
            .collect();
        for (i, total) in totals.iter_mut().enumerate() {
            for p in &partial[i * pieces_per_channel..(i + 1) * pieces_per_channel] {
                total[0] += p[0];
                total[1] += p[1];
            }
        }
    } else {
        let rows = shape.rows_per_piece();
        let row_len = c * s;
        let partial: Vec<(Vec<f64>, Vec<f64>)> = x
            .par_chunks(rows * row_len)
            .zip(y.par_chunks(rows * row_len))
            .map(|(xp, yp)| {
                let mut a = vec![0.0f64; c];
                let mut b = vec![0.0f64; c];
                if s == 1 {
                    kind.rows(xp, yp, row_len, k, &mut a, &mut b);
                } else {
                    for (xr, yr) in xp.chunks_exact(row_len).zip(yp.chunks_exact(row_len)) {
                        for ch in 0..c {
                            let seg = ch * s..(ch + 1) * s;
                            let [u, v] = kind.run(&xr[seg.clone()], &yr[seg], k[ch]);
                            a[ch] += u;
                            b[ch] += v;
                        }
                    }
                }
                (a, b)
            })
            .collect();
        for (a, b) in &partial {
            for (i, total) in totals.iter_mut().enumerate() {
                total[0] += a[i];
                total[1] += b[i];
            }
        }
    }
    totals
}

/// Writes `out_i = f(x_i, y_i, consts[channel of i])` for every value, in parallel. Each
/// channel has `K` constants.
pub fn channel_map<const K: usize, F>(
    shape: BnShape,
    x: &[f32],
    y: &[f32],
    out: &mut [MaybeUninit<f32>],
    consts: &[[f32; K]],
    f: F,
) where
    F: Fn(f32, f32, [f32; K]) -> f32 + Sync + Copy,
{
    let (c, s) = (shape.channels, shape.spatial);
    assert!(x.len() == out.len() && y.len() == out.len() && out.len() == shape.len());
    assert_eq!(consts.len(), c);
    if shape.is_empty() {
        return;
    }
    // Each sample is a row of C·S values; pieces are runs of whole samples.
    let row_len = c * s;
    let rows = if shape.plane_path() {
        (PIECE / row_len).max(1)
    } else {
        shape.rows_per_piece()
    };
    // Constants by kind rather than by channel, so the loop over channels reads each of them
    // contiguously (and vectorizes).
    let by_kind: [Vec<f32>; K] = std::array::from_fn(|j| consts.iter().map(|k| k[j]).collect());
    let by_kind = by_kind.each_ref().map(|v| &v[..]);
    out.par_chunks_mut(rows * row_len)
        .zip(x.par_chunks(rows * row_len))
        .zip(y.par_chunks(rows * row_len))
        .for_each(|((out, xp), yp)| {
            for ((o, xr), yr) in out
                .chunks_exact_mut(row_len)
                .zip(xp.chunks_exact(row_len))
                .zip(yp.chunks_exact(row_len))
            {
                if s == 1 {
                    by_channel_row(o, xr, yr, by_kind, f);
                } else {
                    for (i, k) in consts.iter().enumerate() {
                        let seg = i * s..(i + 1) * s;
                        for ((o, &x), &y) in o[seg.clone()]
                            .iter_mut()
                            .zip(&xr[seg.clone()])
                            .zip(&yr[seg])
                        {
                            o.write(f(x, y, *k));
                        }
                    }
                }
            }
        });
}

/// A reduction then an elementwise pass, the shape of every training kernel:
/// [`channel_sums`] of `kind`, then `constants(channel, sums)` for each channel in order, then
/// [`channel_map`] with those constants. Every value of `out` is written.
#[allow(clippy::too_many_arguments)]
pub fn reduce_then_map<const K: usize, F>(
    shape: BnShape,
    x: &[f32],
    y: &[f32],
    k: &[f32],
    kind: &impl ChannelSum,
    out: &mut [MaybeUninit<f32>],
    mut constants: impl FnMut(usize, [f64; 2]) -> [f32; K],
    f: F,
) where
    F: Fn(f32, f32, [f32; K]) -> f32 + Sync + Copy,
{
    let sums = channel_sums(shape, x, y, k, kind);
    let consts: Vec<[f32; K]> = sums
        .into_iter()
        .enumerate()
        .map(|(ch, sum)| constants(ch, sum))
        .collect();
    channel_map(shape, x, y, out, &consts, f);
}

/// One (N, C) row of [`channel_map`]: `out[c] = f(x[c], y[c], [k_0[c], …])`. A separate
/// function so that the constant slices arrive as plain arguments, which lets the compiler
/// keep them in registers and vectorize across channels.
#[inline(never)]
fn by_channel_row<const K: usize, F>(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    y: &[f32],
    k: [&[f32]; K],
    f: F,
) where
    F: Fn(f32, f32, [f32; K]) -> f32,
{
    let n = out.len();
    let (x, y) = (&x[..n], &y[..n]);
    let k: [&[f32]; K] = std::array::from_fn(|j| &k[j][..n]);
    for i in 0..n {
        out[i].write(f(x[i], y[i], std::array::from_fn(|j| k[j][i])));
    }
}

/// An output array of `shape` whose every value is written by `fill` (through
/// [`channel_map`]): skips zeroing memory that is about to be overwritten.
pub fn fill_output(
    dims: ndarray::IxDyn,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> ndarray::ArrayD<f32> {
    let mut out = ndarray::ArrayD::<f32>::uninit(dims);
    fill(out.as_slice_mut().expect("fresh array is contiguous"));
    // SAFETY: `fill` is always `channel_map`, which writes every element of the slice it is
    // given (it asserts the slice covers the whole shape and visits every plane or row).
    unsafe { out.assume_init() }
}
