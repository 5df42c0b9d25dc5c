//! The group-norm forward pass: pieces of whole groups, each group's statistics taken and the
//! group normalized while its values are still in cache.

use std::mem::MaybeUninit;

use ndarray::IxDyn;
use norma_simd::{Simd, SimdLevel};

use super::{gamma_or_ones, GroupShape, GroupStats, NormForward};
use crate::layout::{fill, in_parallel, FillPiece, PIECE};
use crate::precision::{inv_std, split};
use crate::sums::{self, ShiftedSquares};

/// One pass over the checked input `xs` of shape `dims`: pieces of whole groups run in
/// parallel, and each group's statistics are taken (one f64 pass around its first value) and the
/// group normalized while its values are still in cache.
pub(super) fn forward(
    shape: GroupShape,
    dims: IxDyn,
    xs: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
    centred: bool,
) -> NormForward {
    let group_len = shape.group_len();
    let gamma = gamma_or_ones(shape.channels, gamma);
    let beta = beta.map_or_else(|| vec![0.0; shape.channels].into(), std::borrow::Cow::from);
    let groups_per_piece = (PIECE / group_len).max(1);
    let pieces = ForwardPieces {
        groups_per_piece,
        shape,
        gamma: &gamma,
        beta: &beta,
        eps,
        centred,
    };
    let (output, stats) = fill(
        SimdLevel::current(),
        dims,
        xs,
        xs,
        groups_per_piece * group_len,
        in_parallel(xs.len()),
        &pieces,
    );
    let (mean, var) = stats.into_iter().flatten().map(|[m, v]| (m, v)).unzip();
    let stats = GroupStats {
        groups: shape.groups,
        count: group_len,
        mean,
        var,
        eps,
        centred,
    };
    NormForward { output, stats }
}

/// The statistics of one group in f64: its mean and biased variance, from sums around its
/// first value; or, not `centred` (RMS norm), 0 and its mean square, from sums around 0.
#[inline(always)]
fn group_stats<S: Simd>(simd: S, group: &[f32], centred: bool) -> [f64; 2] {
    let m = group.len() as f64;
    let k = if centred { group[0] as f64 } else { 0.0 };
    let [sum, sum_sq] = sums::run(simd, [(group, group, group)].into_iter(), k, ShiftedSquares);
    if !centred {
        return [0.0, sum_sq / m];
    }
    let d_mean = sum / m;
    [k + d_mean, (sum_sq / m - d_mean * d_mean).max(0.0)]
}

/// Values of a block of groups normalized right after their statistics: 16 KiB of f32, a third
/// of L1.
const L1_BLOCK: usize = 1 << 12;

/// The forward pieces: runs of `groups_per_piece` whole groups (counted over the batch).
struct ForwardPieces<'a> {
    groups_per_piece: usize,
    shape: GroupShape,
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
    centred: bool,
}

// SAFETY: pieces are runs of whole groups (fill cuts by a multiple of M, and N·C·S is N·G·M),
// and `run` writes every value of every group: all C/G values when S = 1, every plane of every
// channel otherwise.
unsafe impl FillPiece for ForwardPieces<'_> {
    /// Mean and variance of each group of the piece.
    type Output = Vec<[f64; 2]>;

    #[inline(always)]
    fn run<S: Simd>(
        &self,
        simd: S,
        index: usize,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        _: &[f32],
    ) -> Vec<[f64; 2]> {
        let GroupShape {
            spatial, groups, ..
        } = self.shape;
        let (per_group, group_len) = (self.shape.channels_per_group(), self.shape.group_len());
        let first = index * self.groups_per_piece;
        // Blocks of groups of about L1's size: every group's statistics first, then the
        // normalization, so the groups' reductions and square roots are independent and
        // overlap instead of waiting on each other, and the normalization reads from L1.
        // (Loops rather than map/collect: an adapter's closure may not be inlined into this
        // function, and would then run without its vector instructions.)
        let block = (L1_BLOCK / group_len).max(1) * group_len;
        let mut stats = Vec::with_capacity(x.len() / group_len);
        for (out, x) in out.chunks_mut(block).zip(x.chunks(block)) {
            let block_first = stats.len();
            for x in x.chunks_exact(group_len) {
                stats.push(group_stats(simd, x, self.centred));
            }
            let values = out
                .chunks_exact_mut(group_len)
                .zip(x.chunks_exact(group_len));
            for (j, ((out, x), &[mean, var])) in values.zip(&stats[block_first..]).enumerate() {
                let inv_std = inv_std(var, self.eps);
                let (mean, residual) = split(mean);
                // The group's channels: their γ and β.
                let first_channel = (first + block_first + j) % groups * per_group;
                let gamma = &self.gamma[first_channel..first_channel + per_group];
                let beta = &self.beta[first_channel..first_channel + per_group];
                if spatial == 1 {
                    // One value per channel (layer norm, group norm on features): each its own
                    // γ and β.
                    let (out, x) = (&mut out[..per_group], &x[..per_group]);
                    let inv_std = inv_std as f32;
                    for i in 0..per_group {
                        let a = gamma[i] * inv_std;
                        out[i].write(((x[i] - mean) - residual) * a + beta[i]);
                    }
                } else {
                    let planes = out.chunks_exact_mut(spatial).zip(x.chunks_exact(spatial));
                    for ((out, x), (&gamma, &beta)) in planes.zip(gamma.iter().zip(beta)) {
                        let a = (gamma as f64 * inv_std) as f32;
                        for (o, &x) in out.iter_mut().zip(x) {
                            o.write(((x - mean) - residual) * a + beta);
                        }
                    }
                }
            }
        }
        stats
    }
}
