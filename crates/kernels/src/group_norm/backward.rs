//! The group-norm backward pass, per group, with x̂ = (x − μ)·inv_std and g = γ_c·dy:
//!
//! ```text
//! dx   = inv_std · (g − mean(g) − x̂·mean(g·x̂))
//! dγ_c = Σ over samples and positions of dy·x̂        dβ_c = Σ dy
//! ```
//!
//! dx is evaluated in f64 when its terms cancel (see `precision::cancels`). RMS norm's
//! statistics (not centred: μ = 0 and the mean square in place of the variance) drop the
//! mean(g) term, since μ does not depend on x:
//!
//! ```text
//! dx   = inv_std · (g − x̂·mean(g·x̂))       x̂ = x·inv_std
//! ```

use std::mem::MaybeUninit;

use ndarray::IxDyn;
use norma_simd::{Simd, SimdLevel};
use rayon::prelude::*;

use super::{gamma_or_ones, GroupShape, GroupStats};
use crate::layout::{fill, in_parallel, FillPiece, PIECE, ROW_PIECE};
use crate::precision::{cancels, split};
use crate::sums::{self, GradTerms, WeightedGradTerms};
use crate::Gradients;

/// The gradients of the checked input `xs` of shape `dims`, its output gradient `dys` and the
/// forward's statistics.
pub(super) fn backward(
    shape: GroupShape,
    dims: IxDyn,
    xs: &[f32],
    dys: &[f32],
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Gradients {
    let (c, g) = (shape.channels, shape.groups);
    let gamma = gamma_or_ones(c, gamma);
    // Pieces of whole samples. Each carries C-long dβ and dγ accumulators: with one value per
    // channel (layer norm's rows), C is as long as a sample, and larger pieces keep their sum
    // cheap.
    let row = c * shape.spatial;
    let piece = if shape.spatial == 1 { ROW_PIECE } else { PIECE };
    let samples_per_piece = (piece / row).max(1);
    let backward = BackwardPieces {
        groups_per_piece: samples_per_piece * g,
        shape,
        stats,
        gamma: &gamma,
    };
    let (dx, pieces) = fill(
        SimdLevel::current(),
        dims,
        xs,
        dys,
        samples_per_piece * row,
        in_parallel(xs.len()),
        &backward,
    );
    // dβ and dγ: the pieces' partial sums added in piece order, channel by channel.
    let total = |which: usize| -> Vec<f32> {
        let mut out = vec![0.0f32; c];
        let add_pieces = |(i, out): (usize, &mut [f32])| {
            let channels = i * PIECE..i * PIECE + out.len();
            let mut acc = vec![0.0f64; out.len()];
            for piece in &pieces {
                let part = &piece[which][channels.clone()];
                acc.iter_mut().zip(part).for_each(|(a, v)| *a += v);
            }
            out.iter_mut().zip(acc).for_each(|(o, a)| *o = a as f32);
        };
        if in_parallel(c * pieces.len()) {
            out.par_chunks_mut(PIECE).enumerate().for_each(add_pieces);
        } else {
            out.chunks_mut(PIECE).enumerate().for_each(add_pieces);
        }
        out
    };
    Gradients {
        dx,
        dbeta: total(0),
        dgamma: total(1),
    }
}

/// The backward pieces: runs of whole samples, `groups_per_piece` groups each (counted over
/// the batch). For each group a piece takes the sums Σg, Σg·(x − μ), Σg² of g = γ·dy, adds the
/// group's share of dβ (Σdy) and dγ (Σ inv_std·dy·(x − μ)) per channel, and writes the group's
/// dx.
struct BackwardPieces<'a> {
    groups_per_piece: usize,
    shape: GroupShape,
    stats: &'a GroupStats,
    gamma: &'a [f32],
}

/// Samples whose dβ and dγ are added to the accumulators together (one value per channel).
const ROWS: usize = 4;

// SAFETY: pieces are runs of whole samples, hence of whole groups, and `run` writes every value
// of every group: GroupDx::write_f64 and write_f32 write every plane of every channel of the
// group (all C/G values when S = 1).
unsafe impl FillPiece for BackwardPieces<'_> {
    /// The piece's partial dβ and dγ per channel.
    type Output = [Vec<f64>; 2];

    #[inline(always)]
    fn run<S: Simd>(
        &self,
        simd: S,
        index: usize,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        dy: &[f32],
    ) -> [Vec<f64>; 2] {
        let BackwardPieces {
            shape,
            stats,
            gamma,
            ..
        } = *self;
        let first = index * self.groups_per_piece;
        let GroupShape {
            channels: c,
            spatial: s,
            groups: g,
            ..
        } = shape;
        // M, the values per group.
        let (per_group, m) = (shape.channels_per_group(), shape.group_len());
        let mut grads = [vec![0.0f64; c], vec![0.0f64; c]];
        // Mean and inv_std of the block's groups.
        let mut centres = Vec::with_capacity(ROWS * g);
        let block = ROWS * c * s;
        let blocks = out
            .chunks_mut(block)
            .zip(x.chunks(block).zip(dy.chunks(block)));
        for (b, (out, (x, dy))) in blocks.enumerate() {
            let first = first + b * ROWS * g;
            centres.clear();
            for gi in first..first + x.len() / m {
                centres.push((stats.mean[gi], stats.inv_std(gi)));
            }
            let groups = out
                .chunks_exact_mut(m)
                .zip(x.chunks_exact(m).zip(dy.chunks_exact(m)));
            for (j, (out, (x, dy))) in groups.enumerate() {
                let gi = first + j;
                let (mu, inv_std) = centres[j];
                let channels = gi % g * per_group..(gi % g + 1) * per_group;
                let sums = if s == 1 {
                    // One value per channel: the group is one run, weighted by γ.
                    let (x, dy, gamma) =
                        (&x[..per_group], &dy[..per_group], &gamma[channels.clone()]);
                    sums::run(simd, [(x, dy, gamma)].into_iter(), mu, WeightedGradTerms)
                } else {
                    let mut sums = [0.0f64; 3];
                    let planes = x.chunks_exact(s).zip(dy.chunks_exact(s));
                    for ((x, dy), ch) in planes.zip(channels.clone()) {
                        let p = sums::run(simd, [(x, dy, dy)].into_iter(), mu, GradTerms);
                        let w = gamma[ch] as f64;
                        sums[0] += w * p[0];
                        sums[1] += w * p[1];
                        sums[2] += w * w * p[2];
                        grads[0][ch] += p[0];
                        grads[1][ch] += inv_std * p[1];
                    }
                    sums
                };
                // Uncentred (RMS norm) the mean is a constant 0: no Σg term.
                let sum_g = if stats.centred { sums[0] } else { 0.0 };
                let exact = cancels(m as f64, stats.var[gi], stats.eps, sum_g, sums[1], sums[2]);
                let dx = GroupDx {
                    mu,
                    // dx = a·dy − b − (x − μ)·k with a = inv_std·γ_c, b = inv_std·Σg/M and
                    // k = inv_std³·Σg·(x − μ)/M.
                    inv_std,
                    b: inv_std * sum_g / m as f64,
                    k: inv_std.powi(3) * sums[1] / m as f64,
                };
                let gamma = &gamma[channels];
                if exact {
                    dx.write_f64(out, x, dy, gamma, s);
                } else {
                    dx.write_f32(out, x, dy, gamma, s);
                }
            }
            if s == 1 {
                add_row_grads(shape, &centres, x, dy, &mut grads);
            }
        }
        grads
    }
}

/// With one value per channel: adds the dβ and dγ of up to [`ROWS`] samples (`x`, `dy`, the
/// mean and inv_std of their groups in `centres`) to the per-channel accumulators, all samples
/// in one pass.
#[inline(always)]
fn add_row_grads<'a>(
    shape: GroupShape,
    centres: &[(f64, f64)],
    x: &'a [f32],
    dy: &'a [f32],
    grads: &mut [Vec<f64>; 2],
) {
    let GroupShape {
        channels: c,
        groups: g,
        ..
    } = shape;
    let per_group = shape.channels_per_group();
    let [dbeta, dgamma] = grads;
    let rows = x.len() / c;
    for gr in 0..g {
        let channels = gr * per_group..(gr + 1) * per_group;
        let (dbeta, dgamma) = (&mut dbeta[channels.clone()], &mut dgamma[channels.clone()]);
        let row = |v: &'a [f32], r: usize| -> &'a [f32] { &v[r * c..][channels.clone()] };
        if rows == ROWS {
            let [(m0, i0), (m1, i1), (m2, i2), (m3, i3)]: [(f64, f64); ROWS] =
                std::array::from_fn(|r| centres[r * g + gr]);
            let [x0, x1, x2, x3]: [&[f32]; ROWS] = std::array::from_fn(|r| row(x, r));
            let [d0, d1, d2, d3]: [&[f32]; ROWS] = std::array::from_fn(|r| row(dy, r));
            for i in 0..per_group {
                let d = [d0[i] as f64, d1[i] as f64, d2[i] as f64, d3[i] as f64];
                let t = [
                    i0 * (d[0] * (x0[i] as f64 - m0)),
                    i1 * (d[1] * (x1[i] as f64 - m1)),
                    i2 * (d[2] * (x2[i] as f64 - m2)),
                    i3 * (d[3] * (x3[i] as f64 - m3)),
                ];
                dbeta[i] += (d[0] + d[1]) + (d[2] + d[3]);
                dgamma[i] += (t[0] + t[1]) + (t[2] + t[3]);
            }
        } else {
            for r in 0..rows {
                let (mu, inv_std) = centres[r * g + gr];
                let (x, dy) = (row(x, r), row(dy, r));
                for i in 0..per_group {
                    dbeta[i] += dy[i] as f64;
                    dgamma[i] += inv_std * (dy[i] as f64 * (x[i] as f64 - mu));
                }
            }
        }
    }
}

/// The constants of one group's dx (see [`BackwardPieces`]).
struct GroupDx {
    mu: f64,
    inv_std: f64,
    b: f64,
    k: f64,
}

impl GroupDx {
    /// dx evaluated in f64, for a group whose terms cancel (see `precision::cancels`).
    #[inline(always)]
    fn write_f64(
        &self,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        s: usize,
    ) {
        let planes = out
            .chunks_exact_mut(s)
            .zip(x.chunks_exact(s).zip(dy.chunks_exact(s)));
        for ((out, (x, dy)), &gamma) in planes.zip(gamma) {
            let a = self.inv_std * gamma as f64;
            for (o, (&x, &dy)) in out.iter_mut().zip(x.iter().zip(dy)) {
                o.write((a * dy as f64 - self.b - (x as f64 - self.mu) * self.k) as f32);
            }
        }
    }

    /// dx evaluated in f32, with x − μ exact near the mean (μ split into f32 and residual).
    #[inline(always)]
    fn write_f32(
        &self,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        s: usize,
    ) {
        let (mu, residual) = split(self.mu);
        let (b, k) = (self.b as f32, self.k as f32);
        if s == 1 {
            let n = out.len();
            let (x, dy, gamma) = (&x[..n], &dy[..n], &gamma[..n]);
            let inv_std = self.inv_std as f32;
            for i in 0..n {
                let a = gamma[i] * inv_std;
                out[i].write(a * dy[i] - b - ((x[i] - mu) - residual) * k);
            }
        } else {
            let planes = out
                .chunks_exact_mut(s)
                .zip(x.chunks_exact(s).zip(dy.chunks_exact(s)));
            for ((out, (x, dy)), &gamma) in planes.zip(gamma) {
                let a = (self.inv_std * gamma as f64) as f32;
                for (o, (&x, &dy)) in out.iter_mut().zip(x.iter().zip(dy)) {
                    o.write(a * dy - b - ((x - mu) - residual) * k);
                }
            }
        }
    }
}
