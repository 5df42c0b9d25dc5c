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

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use crate::backward::{cancels, Gradients};
use crate::layout::{map_channels, run_sums, BnShape};
use crate::simd::{vectorized, Kernel, SimdLevel, Supported};
use crate::stats::{check_eps, inv_std};
use crate::sums::{self, GradTerms, ShiftedSquares, WeightedGradTerms};
use crate::KernelError;

/// Values per backward piece: ~64 KiB of f32.
const PIECE: usize = 1 << 14;

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

    fn ncs(&self) -> BnShape {
        BnShape {
            batch: self.n,
            channels: self.c,
            spatial: self.s,
        }
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

/// The group statistics (one pass around each group's first value), then the normalization.
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
    let shift: Vec<f64> = xs.chunks_exact(m).map(|group| group[0] as f64).collect();
    let sums = run_sums(level, xs, m, &shift, ShiftedSquares);
    let (mut mean, mut var) = (
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
    );
    for (k, [sum, sum_sq]) in shift.iter().zip(sums) {
        let d_mean = sum / m as f64;
        mean.push(k + d_mean);
        var.push((sum_sq / m as f64 - d_mean * d_mean).max(0.0));
    }
    let stats = GroupStats {
        groups: shape.g,
        count: m,
        mean,
        var,
        eps,
    };
    // Per (sample, channel): the group's mean as f32 plus its rounding residual (x − mean is
    // exact near the mean), and γ_c·inv_std; β per channel.
    let per_channel = |f: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
        (0..shape.n * shape.c)
            .map(|i| {
                f(
                    i / shape.c * shape.g + i % shape.c / shape.cg(),
                    i % shape.c,
                )
            })
            .collect()
    };
    let mean32 = per_channel(&|gi, _| stats.mean[gi] as f32);
    let residual = per_channel(&|gi, _| (stats.mean[gi] - (stats.mean[gi] as f32) as f64) as f32);
    let scale =
        per_channel(&|gi, c| (gamma.map_or(1.0, |g| g[c] as f64) * stats.inv_std(gi)) as f32);
    let shift: Vec<f32> = beta.map_or_else(|| vec![0.0; shape.c], <[f32]>::to_vec);
    let output = map_channels(
        level,
        shape.ncs(),
        x.raw_dim(),
        xs,
        xs,
        [&mean32, &residual, &scale, &shift],
        |x, _, [m, r, a, b]| ((x - m) - r) * a + b,
    );
    Ok(NormForward { output, stats })
}

/// One backward piece: whole samples, their per-group sums Σg, Σg·(x − μ), Σg² (g = γ·dy) and
/// their per-channel contributions to dβ (Σdy) and dγ (Σ inv_std·dy·(x − μ)).
struct GradPiece<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    first: usize,
    shape: Groups,
    mean: &'a [f64],
    inv_std: &'a [f64],
    gamma: &'a [f32],
}

type GradPieceSums = (Vec<[f64; 3]>, [Vec<f64>; 2]);

impl Kernel for GradPiece<'_> {
    type Output = GradPieceSums;

    #[inline(always)]
    fn run(self, level: Supported) -> GradPieceSums {
        let Groups { c, s, g, .. } = self.shape;
        let cg = self.shape.cg();
        let mut groups = Vec::new();
        let (mut dbeta, mut dgamma) = (vec![0.0f64; c], vec![0.0f64; c]);
        let rows = self.x.chunks_exact(c * s).zip(self.dy.chunks_exact(c * s));
        for (r, (xr, dyr)) in rows.enumerate() {
            for gr in 0..g {
                let gi = (self.first + r) * g + gr;
                let (mu, is) = (self.mean[gi], self.inv_std[gi]);
                let channels = gr * cg..(gr + 1) * cg;
                let mut abq = [0.0f64; 3];
                if s == 1 {
                    // One value per channel: the group is one run, weighted by γ.
                    let (xs, dys) = (&xr[channels.clone()], &dyr[channels.clone()]);
                    let run = [(xs, dys, &self.gamma[channels.clone()])];
                    abq = sums::run(level, run.into_iter(), mu, WeightedGradTerms);
                    for ((d, b), (&xv, &dyv)) in dbeta[channels.clone()]
                        .iter_mut()
                        .zip(&mut dgamma[channels])
                        .zip(xs.iter().zip(dys))
                    {
                        *d += dyv as f64;
                        *b += is * (dyv as f64 * (xv as f64 - mu));
                    }
                } else {
                    for ch in channels {
                        let plane = ch * s..(ch + 1) * s;
                        let (xs, dys) = (&xr[plane.clone()], &dyr[plane]);
                        let p = sums::run(level, [(xs, dys, dys)].into_iter(), mu, GradTerms);
                        let w = self.gamma[ch] as f64;
                        abq[0] += w * p[0];
                        abq[1] += w * p[1];
                        abq[2] += w * w * p[2];
                        dbeta[ch] += p[0];
                        dgamma[ch] += is * p[1];
                    }
                }
                groups.push(abq);
            }
        }
        (groups, [dbeta, dgamma])
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
    let ones;
    let gamma = match gamma {
        Some(g) => g,
        None => {
            ones = vec![1.0f32; c];
            &ones
        }
    };
    let inv: Vec<f64> = (0..n * g).map(|i| stats.inv_std(i)).collect();
    let rows = (PIECE / (c * shape.s)).max(1);
    let pieces: Vec<GradPieceSums> = xs
        .par_chunks(rows * c * shape.s)
        .zip(dys.par_chunks(rows * c * shape.s))
        .enumerate()
        .map(|(i, (x, dy))| {
            let piece = GradPiece {
                x,
                dy,
                first: i * rows,
                shape,
                mean: &stats.mean,
                inv_std: &inv,
                gamma,
            };
            vectorized(level, piece)
        })
        .collect();
    let mut groups: Vec<[f64; 3]> = Vec::with_capacity(n * g);
    let (mut dbeta, mut dgamma) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (piece_groups, [d, b]) in pieces {
        groups.extend(piece_groups);
        dbeta.iter_mut().zip(d).for_each(|(t, v)| *t += v);
        dgamma.iter_mut().zip(b).for_each(|(t, v)| *t += v);
    }
    // dx = a·dy − b − (x − μ)·k with a = inv_std·γ_c, b = inv_std·Σg/M, k = inv_std³·Σg·(x−μ)/M.
    let mf = m as f64;
    let group_of = |i: usize| i / c * g + i % c / shape.cg();
    let b: Vec<f64> = (0..n * g).map(|i| inv[i] * groups[i][0] / mf).collect();
    let k: Vec<f64> = (0..n * g)
        .map(|i| inv[i].powi(3) * groups[i][1] / mf)
        .collect();
    let exact = (0..n * g).any(|i| {
        let [sum, dot, sum_sq] = groups[i];
        cancels(mf, stats.var[i], stats.eps, sum, dot, sum_sq)
    });
    let expand =
        |v: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..n * c).map(|i| v(group_of(i))).collect() };
    let a: Vec<f64> = (0..n * c)
        .map(|i| inv[group_of(i)] * gamma[i % c] as f64)
        .collect();
    let (mean_nc, b_nc, k_nc) = (
        expand(&|gi| stats.mean[gi]),
        expand(&|gi| b[gi]),
        expand(&|gi| k[gi]),
    );
    let dx = if exact {
        map_channels(
            level,
            shape.ncs(),
            x.raw_dim(),
            xs,
            dys,
            [&mean_nc, &a, &b_nc, &k_nc],
            |x, dy, [mu, a, b, k]| (a * dy as f64 - b - (x as f64 - mu) * k) as f32,
        )
    } else {
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let residual: Vec<f32> = mean_nc
            .iter()
            .map(|&m| (m - (m as f32) as f64) as f32)
            .collect();
        map_channels(
            level,
            shape.ncs(),
            x.raw_dim(),
            xs,
            dys,
            [
                &f32s(&mean_nc),
                &residual,
                &f32s(&a),
                &f32s(&b_nc),
                &f32s(&k_nc),
            ],
            |x, dy, [mu, r, a, b, k]| a * dy - b - ((x - mu) - r) * k,
        )
    };
    Ok(Gradients {
        dx,
        dgamma: dgamma.iter().map(|&v| v as f32).collect(),
        dbeta: dbeta.iter().map(|&v| v as f32).collect(),
    })
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
