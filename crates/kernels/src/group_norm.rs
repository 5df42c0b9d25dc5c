//! Group normalization (Wu & He, 2018), and layer normalization through it.
//!
//! For an input (N, C, ...) with S positions per channel, split into G groups of C/G channels,
//! each (sample, group) is normalized over its M = (C/G)·S values and then scaled and shifted
//! per channel:
//!
//! ```text
//! y = γ_c · (x − μ_{n,g}) / sqrt(σ²_{n,g} + eps) + β_c        μ, σ²: mean, biased variance
//! ```
//!
//! G = 1 is layer norm over (C, ...) with a per-channel affine, G = C instance norm. Layer norm
//! over the last dimensions with an element-wise affine (PyTorch's `nn.LayerNorm`) is the same
//! computation on the input seen as (N', D, 1) with G = 1: every row of D values is one group
//! and every element its own "channel" ([`layer_norm_forward`]).
//!
//! There are no running statistics: training and evaluation compute the same thing, a batch of
//! one is fine, and a sample's output never depends on the other samples of the batch.
//!
//! The backward pass, per group, with x̂ = (x − μ)·inv_std and g = γ_c·dy:
//!
//! ```text
//! dx   = inv_std · (g − mean(g) − x̂·mean(g·x̂))
//! dγ_c = Σ over samples and positions of dy·x̂        dβ_c = Σ dy
//! ```
//!
//! The guarantees are those of the batch-norm kernels: statistics in f64 around a shift (a
//! value of the group), so inputs with a large mean keep their precision and a constant group
//! gives exactly β; dx evaluated in f64 when its terms cancel (see `backward.rs`); fixed work
//! pieces, so results are bitwise identical for any number of threads, and at every SIMD level.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use crate::backward::{cancels, Gradients};
use crate::stats::{check_eps, inv_std};
use crate::sums::{self, GradTerms, ShiftedSquares, WeightedGradTerms};
use crate::KernelError;
use norma_simd::{dispatch, Kernel, Simd, SimdLevel, Width};

/// Values per piece of work (whole groups, at least one): ~64 KiB of f32.
const PIECE: usize = 1 << 14;
/// Values per backward piece when each channel has one value (see `backward`).
const ROW_PIECE: usize = 1 << 16;
/// Inputs with fewer values run on the calling thread: handing them to rayon's workers and
/// waiting for them costs more than the work (the pieces, and so the results, are the same).
const PARALLEL_MIN: usize = 1 << 17;

/// The `with_min_len` that keeps a parallel iterator over `len` values on the calling thread
/// when the input is small.
fn min_pieces(len: usize) -> usize {
    if len < PARALLEL_MIN {
        usize::MAX
    } else {
        1
    }
}

/// Per-(sample, group) statistics of a group-norm forward pass, sample-major (sample n's G
/// groups at `n·G ..`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    groups: usize,
    count: usize,
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f32,
}

impl GroupStats {
    /// Groups per sample G.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// M: values per group.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Mean per (sample, group), in f64.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Biased variance per (sample, group), in f64.
    pub fn var(&self) -> &[f64] {
        &self.var
    }

    /// The eps added to the variance.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    fn inv_std(&self, i: usize) -> f64 {
        inv_std(self.var[i], self.eps)
    }
}

/// Output and statistics of a group-norm or layer-norm forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct NormForward {
    pub output: ArrayD<f32>,
    pub stats: GroupStats,
}

/// The input as N samples of C channels with S positions each, in G groups.
#[derive(Debug, Clone, Copy)]
struct Groups {
    n: usize,
    c: usize,
    s: usize,
    g: usize,
}

impl Groups {
    /// Channels per group.
    fn cg(&self) -> usize {
        self.c / self.g
    }

    /// Values per group.
    fn m(&self) -> usize {
        self.cg() * self.s
    }
}

/// Group normalization of `x` (N, C, ...), contiguous, with `num_groups` groups and an optional
/// per-channel affine (`gamma`, `beta` of C values; `None` means 1 and 0). See the module docs.
///
/// Errors: an input of rank below 2, with no channel or no position, not contiguous; a group
/// count that is 0 or does not divide C; affine vectors of the wrong length; a bad eps.
pub fn group_norm_forward(
    x: ArrayViewD<'_, f32>,
    num_groups: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let shape = groups_of(x.shape(), num_groups)?;
    forward(shape, x, gamma, beta, eps)
}

/// Layer normalization over the trailing dimensions `normalized_shape` of `x` (PyTorch's
/// `nn.LayerNorm(normalized_shape)`): each slice of D = ∏ normalized_shape values is normalized
/// by its own mean and variance, then scaled and shifted element-wise by `gamma` and `beta` (D
/// values each, laid out as `normalized_shape`; `None` means 1 and 0).
///
/// Errors: `normalized_shape` empty, with a zero, or not the trailing dimensions of `x`; affine
/// vectors of the wrong length; a non-contiguous input; a bad eps.
pub fn layer_norm_forward(
    x: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let shape = rows_of(x.shape(), normalized_shape)?;
    forward(shape, x, gamma, beta, eps)
}

/// The gradient of [`group_norm_forward`]: dx, and dγ, dβ per channel (computed even without an
/// affine, where they are the gradients an affine would get).
pub fn group_norm_backward(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let shape = groups_of(x.shape(), stats.groups)?;
    backward(shape, x, dy, stats, gamma)
}

/// The gradient of [`layer_norm_forward`]: dx, and dγ, dβ of D values.
pub fn layer_norm_backward(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let shape = rows_of(x.shape(), normalized_shape)?;
    backward(shape, x, dy, stats, gamma)
}

/// (N, C, S) with G groups from a group-norm input shape.
fn groups_of(dims: &[usize], num_groups: usize) -> Result<Groups, KernelError> {
    if dims.len() < 2 || dims[1] == 0 || dims[2..].contains(&0) {
        return Err(KernelError::UnsupportedShape {
            shape: dims.to_vec(),
        });
    }
    let c = dims[1];
    if num_groups == 0 || !c.is_multiple_of(num_groups) {
        return Err(KernelError::Groups {
            channels: c,
            groups: num_groups,
        });
    }
    Ok(Groups {
        n: dims[0],
        c,
        s: dims[2..].iter().product(),
        g: num_groups,
    })
}

/// (N', D, 1) with one group from a layer-norm input shape.
fn rows_of(dims: &[usize], normalized_shape: &[usize]) -> Result<Groups, KernelError> {
    let k = normalized_shape.len();
    if k == 0
        || normalized_shape.contains(&0)
        || dims.len() < k
        || dims[dims.len() - k..] != *normalized_shape
    {
        return Err(KernelError::NormalizedShape {
            shape: dims.to_vec(),
            normalized_shape: normalized_shape.to_vec(),
        });
    }
    let d: usize = normalized_shape.iter().product();
    Ok(Groups {
        n: dims[..dims.len() - k].iter().product(),
        c: d,
        s: 1,
        g: 1,
    })
}

fn check_affine(c: usize, name: &'static str, v: Option<&[f32]>) -> Result<(), KernelError> {
    match v {
        Some(v) if v.len() != c => Err(KernelError::ChannelLength {
            name,
            expected: c,
            got: v.len(),
        }),
        _ => Ok(()),
    }
}

fn data<'a>(x: &'a ArrayViewD<'_, f32>) -> Result<&'a [f32], KernelError> {
    x.as_slice().ok_or_else(|| KernelError::NotContiguous {
        shape: x.shape().to_vec(),
    })
}

/// γ, or ones when there is none.
fn gamma_or_ones(c: usize, gamma: Option<&[f32]>) -> std::borrow::Cow<'_, [f32]> {
    gamma.map_or_else(|| vec![1.0; c].into(), Into::into)
}

/// One pass over the input: pieces of whole groups run in parallel, and each group's
/// statistics are taken (one f64 pass around its first value) and the group normalized while
/// its values are still in cache.
fn forward(
    shape: Groups,
    x: ArrayViewD<'_, f32>,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let xs = data(&x)?;
    check_affine(shape.c, "gamma", gamma)?;
    check_affine(shape.c, "beta", beta)?;
    check_eps(eps)?;
    let (m, level) = (shape.m(), SimdLevel::current());
    let gamma = gamma_or_ones(shape.c, gamma);
    let beta = beta.map_or_else(|| vec![0.0; shape.c].into(), std::borrow::Cow::from);
    let mut output = ArrayD::<f32>::uninit(x.raw_dim());
    let slots = output
        .as_slice_mut()
        .expect("a freshly allocated array is contiguous");
    let per_piece = (PIECE / m).max(1) * m;
    let pieces: Vec<Vec<[f64; 2]>> = slots
        .par_chunks_mut(per_piece)
        .zip(xs.par_chunks(per_piece))
        .enumerate()
        .with_min_len(min_pieces(xs.len()))
        .map(|(i, (out, x))| {
            let piece = ForwardPiece {
                out,
                x,
                first: i * (per_piece / m),
                shape,
                gamma: &gamma,
                beta: &beta,
                eps,
            };
            dispatch(level, Width::Widest, piece)
        })
        .collect();
    // SAFETY: the slots are the N·C·S values of the input's shape; the pieces cover them in runs
    // of whole groups (par_chunks_mut by a multiple of M, and N·C·S is N·G·M), and
    // ForwardPiece::run writes every value of every group it is given.
    let output = unsafe { output.assume_init() };
    let (mean, var) = pieces.into_iter().flatten().map(|[m, v]| (m, v)).unzip();
    let stats = GroupStats {
        groups: shape.g,
        count: m,
        mean,
        var,
        eps,
    };
    Ok(NormForward { output, stats })
}

/// The statistics of one group: its mean and biased variance in f64, from sums around its
/// first value.
#[inline(always)]
fn group_stats<S: Simd>(simd: S, group: &[f32]) -> [f64; 2] {
    let (k, m) = (group[0] as f64, group.len() as f64);
    let [sum, sum_sq] = sums::run(simd, [(group, group, group)].into_iter(), k, ShiftedSquares);
    let d_mean = sum / m;
    [k + d_mean, (sum_sq / m - d_mean * d_mean).max(0.0)]
}

/// A value as an f32 and the part of it the f32 lost: `(x − hi) − lo` is `x − value` to f32
/// precision for x near the value.
fn split(value: f64) -> (f32, f32) {
    let hi = value as f32;
    (hi, (value - hi as f64) as f32)
}

/// One forward piece: whole groups, starting with group `first` (counted over the batch).
struct ForwardPiece<'a> {
    out: &'a mut [MaybeUninit<f32>],
    x: &'a [f32],
    first: usize,
    shape: Groups,
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
}

impl Kernel for ForwardPiece<'_> {
    /// Mean and variance of each group of the piece.
    type Output = Vec<[f64; 2]>;

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> Vec<[f64; 2]> {
        let Groups { s, g, .. } = self.shape;
        let (cg, m) = (self.shape.cg(), self.shape.m());
        // Every group's statistics first, then the normalization: the groups' reductions and
        // square roots are independent, so they overlap instead of waiting on each other.
        // (A loop rather than map/collect: an adapter's closure may not be inlined into this
        // function, and would then run without its vector instructions.)
        let mut stats = Vec::with_capacity(self.x.len() / m);
        for x in self.x.chunks_exact(m) {
            stats.push(group_stats(simd, x));
        }
        let groups = self.out.chunks_exact_mut(m).zip(self.x.chunks_exact(m));
        for (j, ((out, x), &[mean, var])) in groups.zip(&stats).enumerate() {
            let is = inv_std(var, self.eps);
            let (mean, residual) = split(mean);
            // The group's channels: their γ and β.
            let first_channel = (self.first + j) % g * cg;
            let gamma = &self.gamma[first_channel..first_channel + cg];
            let beta = &self.beta[first_channel..first_channel + cg];
            if s == 1 {
                // One value per channel (layer norm, group norm on features): each its own γ, β.
                let (out, x) = (&mut out[..cg], &x[..cg]);
                let is = is as f32;
                for i in 0..cg {
                    let a = gamma[i] * is;
                    out[i].write(((x[i] - mean) - residual) * a + beta[i]);
                }
            } else {
                let planes = out.chunks_exact_mut(s).zip(x.chunks_exact(s));
                for ((out, x), (&gamma, &beta)) in planes.zip(gamma.iter().zip(beta)) {
                    let a = (gamma as f64 * is) as f32;
                    for (o, &x) in out.iter_mut().zip(x) {
                        o.write(((x - mean) - residual) * a + beta);
                    }
                }
            }
        }
        stats
    }
}

fn backward(
    shape: Groups,
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    if x.shape() != dy.shape() {
        return Err(KernelError::ShapeMismatch {
            name: "output gradient",
            expected: x.shape().to_vec(),
            got: dy.shape().to_vec(),
        });
    }
    let (xs, dys) = (data(&x)?, data(&dy)?);
    check_affine(shape.c, "gamma", gamma)?;
    let (n, c, g, m) = (shape.n, shape.c, shape.g, shape.m());
    if stats.groups != g || stats.count != m || stats.mean.len() != n * g {
        return Err(KernelError::ShapeMismatch {
            name: "group statistics",
            expected: vec![n, g, m],
            got: vec![
                stats.mean.len() / stats.groups.max(1),
                stats.groups,
                stats.count,
            ],
        });
    }
    let level = SimdLevel::current();
    let gamma = gamma_or_ones(c, gamma);
    let mut dx = ArrayD::<f32>::uninit(x.raw_dim());
    let slots = dx
        .as_slice_mut()
        .expect("a freshly allocated array is contiguous");
    // Pieces of whole samples. Each carries C-long dβ and dγ accumulators: with one value per
    // channel (layer norm's rows), C is as long as a sample, and larger pieces keep their sum
    // cheap.
    let row = c * shape.s;
    let piece = if shape.s == 1 { ROW_PIECE } else { PIECE };
    let per_piece = (piece / row).max(1) * row;
    let pieces: Vec<[Vec<f64>; 2]> = slots
        .par_chunks_mut(per_piece)
        .zip(xs.par_chunks(per_piece).zip(dys.par_chunks(per_piece)))
        .enumerate()
        .with_min_len(min_pieces(xs.len()))
        .map(|(i, (out, (x, dy)))| {
            let piece = BackwardPiece {
                out,
                x,
                dy,
                first: i * (per_piece / row) * g,
                shape,
                stats,
                gamma: &gamma,
            };
            dispatch(level, Width::Widest, piece)
        })
        .collect();
    // SAFETY: as in `forward`: the pieces cover the slots in whole samples, hence whole groups,
    // and BackwardPiece::run writes every value of every group it is given.
    let dx = unsafe { dx.assume_init() };
    // dβ and dγ: the pieces' partial sums added in piece order, channel by channel.
    let total = |which: usize| -> Vec<f32> {
        let mut out = vec![0.0f32; c];
        let chunks = out.par_chunks_mut(PIECE).enumerate();
        chunks
            .with_min_len(min_pieces(c * pieces.len()))
            .for_each(|(i, out)| {
                let channels = i * PIECE..i * PIECE + out.len();
                let mut acc = vec![0.0f64; out.len()];
                for piece in &pieces {
                    let part = &piece[which][channels.clone()];
                    acc.iter_mut().zip(part).for_each(|(a, v)| *a += v);
                }
                out.iter_mut().zip(acc).for_each(|(o, a)| *o = a as f32);
            });
        out
    };
    Ok(Gradients {
        dx,
        dbeta: total(0),
        dgamma: total(1),
    })
}

/// One backward piece: whole samples, the first of them holding group `first` (counted over
/// the batch). For each group it takes the sums Σg, Σg·(x − μ), Σg² of g = γ·dy, adds the
/// group's share of dβ (Σdy) and dγ (Σ inv_std·dy·(x − μ)) per channel, and writes the group's
/// dx.
struct BackwardPiece<'a> {
    out: &'a mut [MaybeUninit<f32>],
    x: &'a [f32],
    dy: &'a [f32],
    first: usize,
    shape: Groups,
    stats: &'a GroupStats,
    gamma: &'a [f32],
}

/// Samples whose dβ and dγ are added to the accumulators together (one value per channel).
const ROWS: usize = 4;

impl Kernel for BackwardPiece<'_> {
    /// The piece's partial dβ and dγ per channel.
    type Output = [Vec<f64>; 2];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [Vec<f64>; 2] {
        let BackwardPiece {
            out,
            x,
            dy,
            first,
            shape,
            stats,
            gamma,
        } = self;
        let Groups { c, s, g, .. } = shape;
        let (cg, m) = (shape.cg(), shape.m());
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
                let (mu, is) = centres[j];
                let channels = gi % g * cg..(gi % g + 1) * cg;
                let sums = if s == 1 {
                    // One value per channel: the group is one run, weighted by γ.
                    let (x, dy, gamma) = (&x[..cg], &dy[..cg], &gamma[channels.clone()]);
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
                        grads[1][ch] += is * p[1];
                    }
                    sums
                };
                let exact = cancels(
                    m as f64,
                    stats.var[gi],
                    stats.eps,
                    sums[0],
                    sums[1],
                    sums[2],
                );
                let dx = GroupDx {
                    mu,
                    // dx = a·dy − b − (x − μ)·k with a = inv_std·γ_c, b = inv_std·Σg/M and
                    // k = inv_std³·Σg·(x − μ)/M.
                    is,
                    b: is * sums[0] / m as f64,
                    k: is.powi(3) * sums[1] / m as f64,
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
    shape: Groups,
    centres: &[(f64, f64)],
    x: &'a [f32],
    dy: &'a [f32],
    grads: &mut [Vec<f64>; 2],
) {
    let Groups { c, g, .. } = shape;
    let cg = shape.cg();
    let [dbeta, dgamma] = grads;
    let rows = x.len() / c;
    for gr in 0..g {
        let channels = gr * cg..(gr + 1) * cg;
        let (dbeta, dgamma) = (&mut dbeta[channels.clone()], &mut dgamma[channels.clone()]);
        let row = |v: &'a [f32], r: usize| -> &'a [f32] { &v[r * c..][channels.clone()] };
        if rows == ROWS {
            let [(m0, i0), (m1, i1), (m2, i2), (m3, i3)]: [(f64, f64); ROWS] =
                std::array::from_fn(|r| centres[r * g + gr]);
            let [x0, x1, x2, x3]: [&[f32]; ROWS] = std::array::from_fn(|r| row(x, r));
            let [d0, d1, d2, d3]: [&[f32]; ROWS] = std::array::from_fn(|r| row(dy, r));
            for i in 0..cg {
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
                let (mu, is) = centres[r * g + gr];
                let (x, dy) = (row(x, r), row(dy, r));
                for i in 0..cg {
                    dbeta[i] += dy[i] as f64;
                    dgamma[i] += is * (dy[i] as f64 * (x[i] as f64 - mu));
                }
            }
        }
    }
}

/// The constants of one group's dx (see [`BackwardPiece`]).
struct GroupDx {
    mu: f64,
    is: f64,
    b: f64,
    k: f64,
}

impl GroupDx {
    /// dx evaluated in f64, for a group whose terms cancel (see `backward.rs`).
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
            let a = self.is * gamma as f64;
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
            let is = self.is as f32;
            for i in 0..n {
                let a = gamma[i] * is;
                out[i].write(a * dy[i] - b - ((x[i] - mu) - residual) * k);
            }
        } else {
            let planes = out
                .chunks_exact_mut(s)
                .zip(x.chunks_exact(s).zip(dy.chunks_exact(s)));
            for ((out, (x, dy)), &gamma) in planes.zip(gamma) {
                let a = (self.is * gamma as f64) as f32;
                for (o, (&x, &dy)) in out.iter_mut().zip(x.iter().zip(dy)) {
                    o.write(a * dy - b - ((x - mu) - residual) * k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn small_example_by_hand() {
        // One sample, 2 channels of 2 positions, 1 group: values 1, 3 | 5, 7 → mean 4, var 5.
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![1.0f32, 3.0, 5.0, 7.0]).unwrap();
        let out =
            group_norm_forward(x.view(), 1, Some(&[1.0, 2.0]), Some(&[0.0, 1.0]), 0.0).unwrap();
        assert_eq!(out.stats.mean(), &[4.0]);
        assert_eq!(out.stats.var(), &[5.0]);
        let s = 5.0f32.sqrt();
        let want = [-3.0 / s, -1.0 / s, 2.0 / s + 1.0, 6.0 / s + 1.0];
        for (g, w) in out.output.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn bad_groups_and_shapes_are_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[2, 6, 3]));
        for groups in [0, 4, 7] {
            let err = group_norm_forward(x.view(), groups, None, None, 1e-5).unwrap_err();
            assert_eq!(
                err,
                KernelError::Groups {
                    channels: 6,
                    groups
                }
            );
        }
        let flat = ArrayD::<f32>::zeros(IxDyn(&[6]));
        assert!(group_norm_forward(flat.view(), 1, None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[6], None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[], None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[6, 3], Some(&[1.0; 3]), None, 1e-5).is_err());
        let ok = layer_norm_forward(x.view(), &[6, 3], Some(&[1.0; 18]), None, 1e-5).unwrap();
        assert_eq!(ok.stats.mean().len(), 2);
    }
}
