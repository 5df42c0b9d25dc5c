//! The general convolution path (any stride), lowered to GEMM through im2col.
//!
//! The receptive fields of a group of B samples are unrolled side by side into one matrix
//! `cols` of shape (C·kh·kw, B·OH·OW) (sample j in columns j·OH·OW ..), so that each GEMM
//! covers B samples; with Y and dY gathered the same way as (O, B·OH·OW):
//!
//! - forward:          `Y = W · cols + b`          (O, C·kh·kw)·(C·kh·kw, B·OH·OW)
//! - weight gradient:  `dW = Σ_groups dY · colsᵀ`, `db = Σ dY`
//! - input gradient:   `dx = col2im(Wᵀ · dY)`
//!
//! B is chosen from the shapes alone so that `cols` stays cache-sized. Groups are split over
//! rayon; per-group partial weight gradients are added in group order, so results do not
//! depend on the number of threads. Stride-1 convolutions take the direct path
//! (`super::direct`) instead.

use std::mem::MaybeUninit;

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::gemm::gemm_serial;
use crate::scratch::with_buffers;

/// Floats of the unrolled matrix per group: 256 KiB, about half of an L2 cache.
const COLS_PER_GROUP: usize = 1 << 16;
/// Upper bound on samples per group, so even tiny images leave work for every thread.
const MAX_GROUP: usize = 16;

impl Conv2dGeometry {
    /// Samples unrolled together into one GEMM (depends on the shapes only).
    fn group(&self) -> usize {
        (COLS_PER_GROUP / (self.patch_len() * self.out_pixels()).max(1)).clamp(1, MAX_GROUP)
    }

    /// The input row and column range of output row `oy`'s receptive field at kernel offset
    /// `(ki, kj)`, as signed positions (negative or past the edge means padding).
    #[inline]
    fn source(&self, o: usize, k: usize) -> isize {
        (o * self.stride + k) as isize - self.padding as isize
    }

    /// For kernel column offset `kj`: the output columns `ox` whose input column is inside the
    /// image, as a half-open range.
    fn valid_out_cols(&self, kj: usize) -> (usize, usize) {
        let first = (self.padding.saturating_sub(kj)).div_ceil(self.stride);
        // ox*s + kj - p <= W - 1  <=>  ox <= (W - 1 + p - kj) / s
        let last = (self.width + self.padding)
            .checked_sub(kj + 1)
            .map(|v| v / self.stride);
        match last {
            Some(l) if first <= l => (first, (l + 1).min(self.out_w)),
            _ => (0, 0),
        }
    }

    /// Unrolls one sample `x` (C, H, W) into columns of `cols`, whose rows (C·kh·kw of them)
    /// are `ld` apart; the sample's OH·OW columns start at the beginning of `cols`.
    fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize) {
        let (ow, opix) = (self.out_w, self.out_pixels());
        let mut row = 0;
        for c in 0..self.in_channels {
            let plane = &x[c * self.in_pixels()..(c + 1) * self.in_pixels()];
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let dst = &mut cols[row * ld..row * ld + opix];
                    let (x0, x1) = self.valid_out_cols(kj);
                    for oy in 0..self.out_h {
                        let line = &mut dst[oy * ow..(oy + 1) * ow];
                        let iy = self.source(oy, ki);
                        if iy < 0 || iy >= self.height as isize || x0 == x1 {
                            line.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * self.width..(iy as usize + 1) * self.width];
                        if x0 > 0 {
                            line[..x0].fill(0.0);
                        }
                        if x1 < ow {
                            line[x1..].fill(0.0);
                        }
                        let ix0 = (x0 * self.stride + kj) - self.padding;
                        if self.stride == 1 {
                            line[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                        } else {
                            for (d, s) in line[x0..x1]
                                .iter_mut()
                                .zip(src[ix0..].iter().step_by(self.stride))
                            {
                                *d = *s;
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }
    /// Adds unrolled gradient columns (rows `ld` apart, as written by [`Self::im2col`]) back
    /// onto one sample's input gradient `dx` (C, H, W): the transpose of `im2col`.
    fn col2im(&self, cols: &[f32], ld: usize, dx: &mut [f32]) {
        let (ow, opix) = (self.out_w, self.out_pixels());
        let mut row = 0;
        for c in 0..self.in_channels {
            let plane = &mut dx[c * self.in_pixels()..(c + 1) * self.in_pixels()];
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let src = &cols[row * ld..row * ld + opix];
                    let (x0, x1) = self.valid_out_cols(kj);
                    row += 1;
                    if x0 == x1 {
                        continue;
                    }
                    let ix0 = (x0 * self.stride + kj) - self.padding;
                    for oy in 0..self.out_h {
                        let iy = self.source(oy, ki);
                        if iy < 0 || iy >= self.height as isize {
                            continue;
                        }
                        let line = &src[oy * ow + x0..oy * ow + x1];
                        let dst =
                            &mut plane[iy as usize * self.width..(iy as usize + 1) * self.width];
                        if self.stride == 1 {
                            for (d, s) in dst[ix0..ix0 + line.len()].iter_mut().zip(line) {
                                *d += s;
                            }
                        } else {
                            for (d, s) in dst[ix0..].iter_mut().step_by(self.stride).zip(line) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

fn matrix(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("internal: buffer sized for the matrix")
}

fn matrix_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("internal: buffer sized for the matrix")
}

/// Unrolls samples `first..first + count` of `x` side by side into `cols`
/// (C·kh·kw, count·OH·OW).
fn unroll(g: &Conv2dGeometry, x: &[f32], first: usize, count: usize, cols: &mut [f32]) {
    let (in_len, opix) = (g.in_channels * g.in_pixels(), g.out_pixels());
    for j in 0..count {
        let sample = &x[(first + j) * in_len..(first + j + 1) * in_len];
        g.im2col(sample, &mut cols[j * opix..], count * opix);
    }
}

/// Copies samples `first..first + count` of a (N, O, P) tensor into `out` as (O, count·P).
fn gather(data: &[f32], o: usize, p: usize, first: usize, count: usize, out: &mut [f32]) {
    for j in 0..count {
        let sample = &data[(first + j) * o * p..(first + j + 1) * o * p];
        for (ch, row) in sample.chunks_exact(p).enumerate() {
            out[ch * count * p + j * p..][..p].copy_from_slice(row);
        }
    }
}

/// `y = conv2d(x, w) + bias`, writing every element of `out` (N, O, OH, OW).
pub(super) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
    out.par_chunks_mut(group * o * opix)
        .enumerate()
        .for_each(|(task, y)| {
            let count = y.len() / (o * opix);
            let n = count * opix;
            with_buffers([k * n, o * n], |[cols, prod]| {
                unroll(g, x, task * group, count, cols);
                gemm_serial(
                    1.0,
                    matrix(w, o, k),
                    matrix(cols, k, n),
                    0.0,
                    matrix_mut(prod, o, n),
                );
                // Scatter (O, count·P) back to (count, O, P), adding the bias.
                for (j, y) in y.chunks_exact_mut(o * opix).enumerate() {
                    for (ch, row) in y.chunks_exact_mut(opix).enumerate() {
                        let src = &prod[ch * n + j * opix..][..opix];
                        let b = bias.map_or(0.0, |b| b[ch]);
                        row.iter_mut().zip(src).for_each(|(d, s)| {
                            d.write(s + b);
                        });
                    }
                }
            });
        });
}

/// Adds the input gradient of `dy` (N, O, OH, OW) onto `dx` (N, C, H, W).
pub(super) fn backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
    let in_len = g.in_channels * g.in_pixels();
    let wt = matrix(w, o, k).reversed_axes();
    dx.par_chunks_mut(group * in_len)
        .enumerate()
        .for_each(|(task, dx)| {
            let count = dx.len() / in_len;
            let n = count * opix;
            with_buffers([o * n, k * n], |[dy_group, cols]| {
                gather(dy, o, opix, task * group, count, dy_group);
                gemm_serial(1.0, wt, matrix(dy_group, o, n), 0.0, matrix_mut(cols, k, n));
                for (j, dx_n) in dx.chunks_exact_mut(in_len).enumerate() {
                    g.col2im(&cols[j * opix..], n, dx_n);
                }
            });
        });
}

/// The weight gradient (O, C·kh·kw) and bias gradient (O) of `dy` for the input `x`.
pub(super) fn backward_params(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
    // One partial (dW, db) per group, summed below in group order.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..g.batch.div_ceil(group))
        .into_par_iter()
        .map(|task| {
            let first = task * group;
            let count = group.min(g.batch - first);
            let n = count * opix;
            let mut dw = vec![0.0f32; o * k];
            let db = with_buffers([k * n, o * n], |[cols, dy_group]| {
                unroll(g, x, first, count, cols);
                gather(dy, o, opix, first, count, dy_group);
                let cols_t = matrix(cols, k, n).reversed_axes();
                gemm_serial(
                    1.0,
                    matrix(dy_group, o, n),
                    cols_t,
                    0.0,
                    matrix_mut(&mut dw, o, k),
                );
                dy_group
                    .chunks_exact(n)
                    .map(|row| row.iter().sum::<f32>())
                    .collect()
            });
            (dw, db)
        })
        .collect();
    let mut dw = vec![0.0f32; o * k];
    let mut db = vec![0.0f32; o];
    for (pw, pb) in &partials {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_columns_cover_exactly_the_inside() {
        for &(w, k, s, p) in &[(5, 3, 1, 1), (7, 3, 2, 2), (4, 2, 3, 0), (6, 5, 2, 3)] {
            let g = Conv2dGeometry::new(&[1, 1, w, w], &[1, 1, k, k], s, p).unwrap();
            for kj in 0..k {
                let (x0, x1) = g.valid_out_cols(kj);
                for ox in 0..g.out_w {
                    let ix = g.source(ox, kj);
                    let inside = ix >= 0 && ix < w as isize;
                    assert_eq!(
                        inside,
                        (x0..x1).contains(&ox),
                        "w{w} k{k} s{s} p{p} kj{kj} ox{ox}"
                    );
                }
            }
        }
    }
}
