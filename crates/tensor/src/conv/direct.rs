//! Convolution computed straight from the image, without im2col.
//!
//! With stride 1, the input pixel `(c, oy + ki, ox + kj)` of output `(oy, ox)` sits at the fixed
//! offset `tap = c·Hp·Wp + ki·Wp + kj` from position `oy·Wp + ox` of the (zero-padded, Hp × Wp)
//! image. A vector of L outputs `(oy, ox .. ox + L)` therefore reads L consecutive input values
//! at each tap: the taps are the rows of a GEMM operand that is never built, read in place
//! through an offset table ([`Offsets`]).
//!
//! A stride s > 1 is brought back to that case by splitting the padded image into its s × s
//! *phases* (space-to-depth): phase (a, b) of channel c holds the pixels `(s·y + a, s·x + b)` as a
//! ⌈Hp/s⌉ × ⌈Wp/s⌉ plane. Output `(oy, ox)` reads `(s·oy + ki, s·ox + kj)`, which is pixel
//! `(oy + ki / s, ox + kj / s)` of phase `(ki mod s, kj mod s)`: again a fixed offset from position
//! `oy·Wq + ox`, so consecutive outputs read consecutive values. Only the phases some tap reads
//! are stored (one for a 1×1 stride-2 projection). With s = 1 there is one phase, the image.
//!
//! - forward: `y[o][q] = b[o] + Σ_t W[o][t] · x[tap_t + pos_q]`, a broadcast tile with rows o
//!   and depth t;
//! - input gradient: `dx[tap_t + pos_q] += Σ_o W[o][t] · dy[o][q]`, a broadcast tile with rows t
//!   and depth o whose results are added at the taps' offsets: col2im fused into the GEMM; for a
//!   same-size stride-1 convolution with 8 or more input channels, a forward pass over `dy`
//!   with the weights transposed and flipped instead ([`same_size_transpose`]);
//! - weight gradient: `dW[o][t] = Σ_n Σ_q dy[o][q] · x[tap_t + pos_q]`, dot tiles over the
//!   batch, with per-lane partial sums added in a fixed order and reduced once.
//!
//! The forward pass sums the taps in (c, ki, kj) order with one FMA each, as a GEMM over im2col
//! columns would.
//!
//! When the output rows are short and the output channels many, the forward pass and the weight
//! gradient vectorize over output channels instead ([`channels`]).
//!
//! The output vectors cover an output plane in one of two layouts ([`Plan`]), whichever needs
//! fewer: *rows* (each output row split into ⌈OW / L⌉ vectors) or *flat* (positions `oy·Wq + ox`
//! as one long row). Lanes past the end of a row are computed on scratch values and never
//! stored; the output gradient is copied into the same layout with zeros there. When the layout
//! is exactly the tensor's (rows of a multiple of L values: LeNet-BN's 24 and 8 columns with
//! 8-lane vectors) outputs and gradients are read and written in place, and an unpadded stride-1
//! image whose reads stay inside it is read in place too.

mod channels;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::microkernel::{
    broadcast_tile, dot_step, dot_tile_shape, pick_dot_tile, pick_tile, pick_tile_shape,
    tile_shape, tile_shape_within, tile_shapes, Offsets, Packed, Strided, TileFn,
};
use crate::scratch::with_buffers;
use norma_simd::{dispatch, vector_cost, vector_shape, Kernel, Simd, SimdLevel, Width};

/// Samples per task of the forward pass and the input gradient (each sample is independent).
const SAMPLES_PER_TASK: usize = 8;
/// Floats of images and gradient planes a weight-gradient task streams through for each tile:
/// 256 KiB, a quarter of an L2 cache.
const PARTIAL_FLOATS: usize = 1 << 16;
/// Input channels from which a same-size convolution's input gradient is computed as a forward
/// pass ([`same_size_transpose`]).
const MIN_SAME_SIZE_CHANNELS: usize = 8;
/// Bounds on the samples per partial weight gradient.
const PARTIAL_SAMPLES: (usize, usize) = (4, 32);

/// How a pass weighs one vector of a width when it chooses between layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// By what the vector costs on this CPU ([`vector_cost`]): for the passes whose results are
    /// the same at either width and in either layout (every value one sum in a fixed order):
    /// the forward pass, and the input gradient when [`distinct_tap_channels`] holds.
    Cheapest,
    /// By its lanes: for the weight gradient, whose per-lane partial sums (and partials of as
    /// many samples as fit a cache, counted in the layout's values) make its result depend on
    /// the width, which must therefore follow from the shapes and the level only, not from the
    /// CPU model. Narrow vectors must save more than 1/64 of the lanes (see
    /// [`Choice::narrow_wins`]).
    FewestLanes,
}

impl Choice {
    /// The weight of one vector of `width` at `level`.
    fn unit(self, level: SimdLevel, width: Width) -> usize {
        match self {
            Choice::Cheapest => vector_cost(level, width),
            Choice::FewestLanes => vector_shape(level, width).0,
        }
    }

    /// Whether narrow vectors weighing `narrow` in all beat wide ones weighing `wide`.
    ///
    /// By lanes, a near tie goes to the wide vectors: a wide vector is never dearer than two
    /// narrow ones, and on CPUs with full-width 512-bit units (Intel, Zen 5) it costs what one
    /// does. The 16→16 convolution at 28×28, whose narrow layout saves 1 % of the lanes (840
    /// against 848), computed its weight gradient in 5.8 ms on narrow vectors and 4.6 ms on
    /// wide ones (Zen 5, 1 thread). Narrow vectors must save more than 1/64 of the lanes; every
    /// LeNet convolution saves more or none, so LeNet's widths (and results) are what they were
    /// under the plain "fewer lanes" rule.
    fn narrow_wins(self, narrow: usize, wide: usize) -> bool {
        match self {
            Choice::Cheapest => narrow < wide,
            Choice::FewestLanes => 64 * narrow < 63 * wide,
        }
    }
}

/// Whether the input gradient's tiles hold taps of `channels` distinct input channels at every
/// width of `level` (see [`input_tile_shape`]): then no two taps of a tile add into the same
/// value, each value receives its terms in tap order, and the result does not depend on the
/// width. With fewer channels than a tile's rows, taps of one plane share a tile and the order
/// of their additions follows the vectors.
fn distinct_tap_channels(level: SimdLevel, channels: usize) -> bool {
    [Width::Widest, Width::Narrow].into_iter().all(|width| {
        let registers = vector_shape(level, width).1;
        tile_shapes(registers).iter().any(|&(mr, _)| mr <= channels)
    })
}

/// How one convolution's output planes are covered by vectors of `lanes` values, and where the
/// taps read the image in its phase layout.
#[derive(Debug, Clone)]
struct Plan {
    g: Conv2dGeometry,
    /// Width of one phase plane of the image layout (the padded width when the stride is 1).
    wq: usize,
    /// Height of one phase plane.
    hq: usize,
    /// Phases stored per channel: row phases × column phases (only those some tap reads).
    phases: (usize, usize),
    lanes: usize,
    /// Input position (in a phase plane) of each output vector; vector q sits at `q · lanes`
    /// in the output layout.
    ipos: Vec<usize>,
    /// Distance between output rows in the output layout.
    out_row: usize,
    /// Offset of each tap (c, ki, kj) in the image layout.
    taps: Vec<usize>,
    /// Values of the image layout including the slack that the last vectors read.
    image_len: usize,
    /// The input tensor itself can be read (stride 1, no padding, every read inside the sample).
    in_place_input: bool,
    /// The output layout is the tensor's (O, OH, OW).
    in_place_output: bool,
}

impl Plan {
    fn new(g: &Conv2dGeometry, lanes: usize) -> Plan {
        let s = g.stride;
        let (hp, wp) = (g.height + 2 * g.padding, g.width + 2 * g.padding);
        let (hq, wq) = (hp.div_ceil(s), wp.div_ceil(s));
        // Tap (ki, kj) reads phase (ki mod s, kj mod s): the first min(k, s) phases of each axis.
        let phases = (g.kernel_h.min(s), g.kernel_w.min(s));
        let (oh, ow) = (g.out_h, g.out_w);
        let per_row = ow.div_ceil(lanes);
        let flat = ((oh - 1) * wq + ow).div_ceil(lanes);
        let (ipos, out_row): (Vec<usize>, usize) = if oh * per_row <= flat {
            let ipos = (0..oh)
                .flat_map(|r| (0..per_row).map(move |j| r * wq + j * lanes))
                .collect();
            (ipos, per_row * lanes)
        } else {
            ((0..flat).map(|q| q * lanes).collect(), wq)
        };
        let plane = hq * wq;
        let mut taps = Vec::with_capacity(g.patch_len());
        for c in 0..g.in_channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let phase = (c * phases.0 + ki % s) * phases.1 + kj % s;
                    taps.push(phase * plane + (ki / s) * wq + kj / s);
                }
            }
        }
        // Positions increase, so the last one with the furthest tap gives the furthest read.
        let far_tap = taps.iter().copied().max().unwrap_or(0);
        let reach = far_tap + ipos[ipos.len() - 1] + lanes;
        let image = g.in_channels * phases.0 * phases.1 * plane;
        Plan {
            g: *g,
            wq,
            hq,
            phases,
            lanes,
            in_place_output: out_row == ow && ipos.len() * lanes == oh * ow,
            in_place_input: s == 1 && g.padding == 0 && reach <= image,
            image_len: reach.max(image),
            ipos,
            out_row,
            taps,
        }
    }

    /// The plan for `level` and its vector width: the level's widest vectors, or 8-lane ones on
    /// AVX-512 when `choice` prefers them.
    fn choose(g: &Conv2dGeometry, level: SimdLevel, choice: Choice) -> (Plan, Width) {
        let cost = |p: &Plan, width| p.count() * choice.unit(level, width);
        let (widest, _) = vector_shape(level, Width::Widest);
        let wide = Plan::new(g, widest);
        if widest > 8 {
            let narrow = Plan::new(g, 8);
            if choice.narrow_wins(cost(&narrow, Width::Narrow), cost(&wide, Width::Widest)) {
                return (narrow, Width::Narrow);
            }
        }
        (wide, Width::Widest)
    }

    /// Vectors per output plane.
    fn count(&self) -> usize {
        self.ipos.len()
    }

    /// Values per output plane in the output layout.
    fn plane(&self) -> usize {
        self.count() * self.lanes
    }

    /// Samples per partial weight gradient (fixed by the shapes: partials are added in order).
    fn samples_per_partial(&self) -> usize {
        let image = self.image_scratch().max(self.sample_in());
        let planes = self.planes_scratch().max(self.sample_out());
        (PARTIAL_FLOATS / (image + planes)).clamp(PARTIAL_SAMPLES.0, PARTIAL_SAMPLES.1)
    }

    /// Scratch for one padded image, or none when the input is read in place.
    fn image_scratch(&self) -> usize {
        if self.in_place_input {
            0
        } else {
            self.image_len
        }
    }

    /// Scratch for one sample's output planes, or none when the output layout is the tensor's.
    fn planes_scratch(&self) -> usize {
        if self.in_place_output {
            0
        } else {
            self.g.out_channels * self.plane()
        }
    }

    fn sample_in(&self) -> usize {
        self.g.in_channels * self.g.height * self.g.width
    }

    fn sample_out(&self) -> usize {
        self.g.out_channels * self.g.out_h * self.g.out_w
    }

    /// Writes sample `x` (C, H, W) into `image` (`image_len` values) in the phase layout:
    /// zero border and slack.
    fn fill_image(&self, x: &[f32], image: &mut [f32]) {
        let (p, w) = (self.g.padding, self.g.width);
        if self.g.stride == 1 {
            // Every value is written once: the rows with their borders, then the slack.
            let (h, wq) = (self.g.height, self.wq);
            let plane = self.hq * wq;
            for (src, dst) in x.chunks_exact(h * w).zip(image.chunks_exact_mut(plane)) {
                dst[..p * wq + p].fill(0.0);
                for (row, line) in src.chunks_exact(w).enumerate() {
                    let at = (row + p) * wq + p;
                    copy_short(&mut dst[at..][..w], line);
                    // This row's right border and the next row's left one.
                    dst[at + w..][..2 * p].fill(0.0);
                }
                dst[(h + p) * wq + p..].fill(0.0);
            }
            image[self.g.in_channels * plane..].fill(0.0);
            return;
        }
        image.fill(0.0);
        self.for_each_row(image.len(), |row, at| {
            self.deinterleave(&x[row * w..][..w], image, at);
        });
    }

    /// Writes the inside of an image gradient in the phase layout into every value of `dx`
    /// (C, H, W).
    fn crop(&self, image: &[f32], dx: &mut [MaybeUninit<f32>]) {
        let w = self.g.width;
        if self.g.stride > 1 {
            // Rows and columns of phases that no tap reads get no gradient.
            dx.fill(MaybeUninit::new(0.0));
        }
        self.for_each_row(image.len(), |row, at| {
            let line = &mut dx[row * w..][..w];
            if self.g.stride == 1 {
                copy_short(line, as_uninit(&image[at..][..w]));
            } else {
                self.interleave(image, at, line);
            }
        });
    }

    /// Calls `f(row, at)` for every input row (`row` counts the rows of all channels) whose
    /// pixels some tap reads, with `at` the image-layout position of its first pixel's column
    /// phase 0 (stride 1: the pixel itself).
    fn for_each_row(&self, image_len: usize, mut f: impl FnMut(usize, usize)) {
        let (s, p) = (self.g.stride, self.g.padding);
        let plane = self.hq * self.wq;
        debug_assert!(image_len >= self.g.in_channels * self.phases.0 * self.phases.1 * plane);
        for c in 0..self.g.in_channels {
            for iy in 0..self.g.height {
                let (row_phase, y) = ((iy + p) % s, (iy + p) / s);
                if row_phase >= self.phases.0 {
                    continue;
                }
                let phase = (c * self.phases.0 + row_phase) * self.phases.1;
                // Column phase 0 of this row; stride 1 points at the first pixel itself.
                let first = if s == 1 { p } else { 0 };
                f(c * self.g.height + iy, phase * plane + y * self.wq + first);
            }
        }
    }

    /// Pixel `ix` of an input row goes to column `(ix + p) / s` of column phase `(ix + p) mod s`
    /// (dropped when no tap reads that phase); `at` is the row in column phase 0.
    fn deinterleave(&self, line: &[f32], image: &mut [f32], at: usize) {
        let plane = self.hq * self.wq;
        for (phase, first, col) in self.column_phases() {
            let dst = &mut image[at + phase * plane + col..];
            for (d, &v) in dst
                .iter_mut()
                .zip(line[first..].iter().step_by(self.g.stride))
            {
                *d = v;
            }
        }
    }

    /// The transpose of [`Self::deinterleave`], written into `line`.
    fn interleave(&self, image: &[f32], at: usize, line: &mut [MaybeUninit<f32>]) {
        let plane = self.hq * self.wq;
        for (phase, first, col) in self.column_phases() {
            let src = &image[at + phase * plane + col..];
            for (d, &v) in line[first..].iter_mut().step_by(self.g.stride).zip(src) {
                d.write(v);
            }
        }
    }

    /// For each stored column phase b: (b, the first input column `ix` with `(ix + p) mod s = b`,
    /// its column `(ix + p) / s` in the phase plane). Columns of one phase are s apart.
    fn column_phases(&self) -> impl Iterator<Item = (usize, usize, usize)> + use<'_> {
        let (s, p) = (self.g.stride, self.g.padding);
        (0..self.phases.1)
            .map(move |b| {
                let first = (b + s - p % s) % s;
                (b, first, (first + p) / s)
            })
            .filter(|&(_, first, _)| first < self.g.width)
    }

    /// Copies one sample's output gradient (O, OH, OW) into the output layout, with zeros in the
    /// lanes no output maps to.
    fn fill_planes(&self, dy: &[f32], planes: &mut [f32]) {
        let (oh, ow) = (self.g.out_h, self.g.out_w);
        for (src, dst) in dy
            .chunks_exact(oh * ow)
            .zip(planes.chunks_exact_mut(self.plane()))
        {
            // Every value is written once: each row, the gap to the next, the tail.
            for (row, line) in src.chunks_exact(ow).enumerate() {
                let at = row * self.out_row;
                copy_short(&mut dst[at..][..ow], line);
                let gap = if row + 1 < oh { self.out_row - ow } else { 0 };
                dst[at + ow..][..gap].fill(0.0);
            }
            dst[(oh - 1) * self.out_row + ow..].fill(0.0);
        }
    }

    /// Copies one sample's outputs from the output layout into `y` (O, OH, OW).
    fn copy_out(&self, planes: &[f32], y: &mut [MaybeUninit<f32>]) {
        let (oh, ow) = (self.g.out_h, self.g.out_w);
        for (src, dst) in planes
            .chunks_exact(self.plane())
            .zip(y.chunks_exact_mut(oh * ow))
        {
            for (row, line) in dst.chunks_exact_mut(ow).enumerate() {
                copy_short(line, as_uninit(&src[row * self.out_row..][..ow]));
            }
        }
    }
}

/// Copies a short row (7 to 28 values in LeNet and ResNet-20) with fixed-size moves: a plain
/// copy loop would be turned into a call to `memmove`, whose overhead dominates at this size.
/// The values past the last whole block of 8 (or 4) are copied as the row's last 8 (or 4),
/// overlapping the block before, instead of one by one.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    assert_eq!(n, src.len(), "internal: rows of different lengths");
    fn block<T: Copy, const B: usize>(dst: &mut [T], src: &[T], at: usize) {
        let s: &[T; B] = src[at..at + B].try_into().expect("B values");
        let d: &mut [T; B] = (&mut dst[at..at + B]).try_into().expect("B values");
        *d = *s;
    }
    if n >= 8 {
        for at in (0..n - 7).step_by(8) {
            block::<T, 8>(dst, src, at);
        }
        if !n.is_multiple_of(8) {
            block::<T, 8>(dst, src, n - 8);
        }
    } else if n >= 4 {
        block::<T, 4>(dst, src, 0);
        block::<T, 4>(dst, src, n - 4);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Initialised values seen as possibly uninitialised ones (to copy them into an output).
fn as_uninit(values: &[f32]) -> &[MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and every `f32` is a valid
    // `MaybeUninit<f32>`; the slice is only read.
    unsafe { &*(values as *const [f32] as *const [MaybeUninit<f32>]) }
}

/// `rows` × `depth` matrix `at(r, k)` packed into panels of `mr` rows, depth-major within each
/// panel (`(r, k)` of panel p at `(p · depth + k) · mr + r`), rows past the end zero.
fn pack(rows: usize, depth: usize, mr: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let panels = rows.div_ceil(mr);
    let mut out = vec![0.0f32; panels * depth * mr];
    for (i, v) in out.iter_mut().enumerate() {
        let (r, k, p) = (i % mr, (i / mr) % depth, i / (mr * depth));
        if p * mr + r < rows {
            *v = at(p * mr + r, k);
        }
    }
    out
}

/// Writes `conv2d(x, w) + bias` into every element of `out` (N, O, OH, OW).
pub(super) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let level = SimdLevel::current();
    let (plan, width) = Plan::choose(g, level, Choice::Cheapest);
    forward_with(&plan, level, width, x, w, bias, out);
}

/// [`forward`] with the given plan and width.
fn forward_with(
    plan: &Plan,
    level: SimdLevel,
    width: Width,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let g = &plan.g;
    if let Some(width) = channels::worthwhile(plan, width, level, Choice::FewestLanes) {
        return channels::forward(plan, level, width, x, w, bias, out);
    }
    let (o, k) = (g.out_channels, g.patch_len());
    let mr = tile_shape(vector_shape(level, width).1, o, plan.count()).0;
    let weights = pack(o, k, mr, |r, t| w[r * k + t]);
    let (sin, sout) = (plan.sample_in(), plan.sample_out());
    let image_len = plan.image_scratch();
    let planes_len = plan.planes_scratch();
    x.par_chunks(SAMPLES_PER_TASK * sin)
        .zip(out.par_chunks_mut(SAMPLES_PER_TASK * sout))
        .for_each(|(x, y)| {
            // Scratch is taken before entering the SIMD code: everything between the dispatched
            // entry point and the vector instructions must be inlined into it.
            with_buffers([image_len, planes_len], |[image, planes]| {
                let task = Forward {
                    plan,
                    x,
                    weights: &weights,
                    mr,
                    bias,
                    y,
                    image,
                    planes,
                };
                dispatch(level, width, task);
            })
        });
}

struct Forward<'a> {
    plan: &'a Plan,
    /// The task's samples.
    x: &'a [f32],
    weights: &'a [f32],
    mr: usize,
    bias: Option<&'a [f32]>,
    y: &'a mut [MaybeUninit<f32>],
    /// Scratch for one padded image and one sample's output planes (empty when in place).
    image: &'a mut [f32],
    planes: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (rows, vectors) = (self.plan.g.out_channels, self.plan.count());
        pick_tile(S::REGISTERS, rows, vectors, WithSimd { s, task: self });
    }
}

/// A task and the vector token it runs with, for [`TileFn`].
struct WithSimd<S, T> {
    s: S,
    task: T,
}

impl<S: Simd> TileFn for WithSimd<S, Forward<'_>> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NV: usize>(self) {
        let WithSimd { s, task } = self;
        let plan = task.plan;
        let same = MR == task.mr && S::LANES == plan.lanes;
        assert!(same, "internal: tile differs from the plan");
        let (o, k, count, plane) = (
            plan.g.out_channels,
            plan.taps.len(),
            plan.count(),
            plan.plane(),
        );
        let (sin, sout) = (plan.sample_in(), plan.sample_out());
        for (x, y) in task.x.chunks_exact(sin).zip(task.y.chunks_exact_mut(sout)) {
            let src = if plan.in_place_input {
                x.as_ptr()
            } else {
                plan.fill_image(x, task.image);
                task.image.as_ptr()
            };
            let dst: *mut f32 = if plan.in_place_output {
                y.as_mut_ptr().cast()
            } else {
                task.planes.as_mut_ptr()
            };
            let taps = Offsets {
                base: src,
                offsets: &plan.taps,
            };
            for panel in 0..o.div_ceil(MR) {
                let a = Packed::<MR> {
                    ptr: task.weights[panel * k * MR..][..k * MR].as_ptr(),
                };
                let rows = MR.min(o - panel * MR);
                for q0 in (0..count).step_by(NV) {
                    let valid = NV.min(count - q0);
                    // Vectors past the end repeat the last one; they are not stored.
                    let pos = std::array::from_fn(|v| plan.ipos[(q0 + v).min(count - 1)]);
                    // SAFETY: every tap plus every position plus LANES stays within `image_len`
                    // values of the padded image, or within the sample when read in place
                    // (`Plan::new`); the panel holds k × MR weights.
                    let acc = unsafe { broadcast_tile::<S, _, _, MR, NV>(s, k, a, taps, &pos) };
                    for (r, acc_r) in acc.iter().enumerate().take(rows) {
                        let ch = panel * MR + r;
                        let b = s.splat(task.bias.map_or(0.0, |b| b[ch]));
                        for (v, &value) in acc_r.iter().enumerate().take(valid) {
                            let at = ch * plane + (q0 + v) * S::LANES;
                            // SAFETY: channel `ch < O` and vector `q0 + v < count` lie inside the
                            // O planes of `plane` values of the output layout, which is `y`
                            // itself (O·OH·OW values) or `planes` (O · plane).
                            unsafe { s.store(dst.add(at), s.add(value, b)) };
                        }
                    }
                }
            }
            if !plan.in_place_output {
                plan.copy_out(task.planes, y);
            }
        }
    }
}

/// Writes the input gradient of `dy` (N, O, OH, OW) into every element of `dx` (N, C, H, W).
pub(super) fn backward_input(
    g: &Conv2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    if let Some((transposed, flipped)) = same_size_transpose(g, w) {
        return forward(&transposed, dy, &flipped, None, dx);
    }
    let level = SimdLevel::current();
    let choice = if distinct_tap_channels(level, g.in_channels) {
        Choice::Cheapest
    } else {
        Choice::FewestLanes
    };
    let (plan, width) = Plan::choose(g, level, choice);
    backward_input_with(&plan, level, width, dy, w, dx);
}

/// For a stride-1 convolution whose padding keeps the image size (`2p + 1 = k` on both axes,
/// ResNet's 3×3 convolutions with padding 1), the input gradient is itself such a convolution:
/// `dx[c][y][x] = Σ_o Σ_(i, j) W[o][c][k−1−i][k−1−j] · dy[o][y − p + i][x − p + j]`, the output
/// gradient convolved with the weights transposed (C, O, kh, kw) and flipped, padding p. As a
/// forward pass it keeps its sums in registers instead of adding each tap's terms into `dx` in
/// memory, and reads `dy` through the forward pass's layouts (on Zen 5, 1 thread: 16→16 at
/// 28×28 4.1–4.5 → 3.4–3.7 ms, 32→32 at 14×14 3.9–4.0 → 3.0–3.6 ms). Each value is then one
/// sum in (o, i, j) order, like every forward pass. The transposed convolution's output
/// channels are the input's: with fewer than [`MIN_SAME_SIZE_CHANNELS`] the forward's tiles
/// (6 to 8 output channels) would be mostly padding (ResNet's stem: 0.75 → 1.4 ms), so those,
/// unpadded convolutions (whose forward form would read a border of zeros as wide as the
/// kernel: LeNet's second) and strided ones keep the transposed GEMM below.
fn same_size_transpose(g: &Conv2dGeometry, w: &[f32]) -> Option<(Conv2dGeometry, Vec<f32>)> {
    let same = |k: usize| 2 * g.padding + 1 == k;
    let channels = g.in_channels >= MIN_SAME_SIZE_CHANNELS;
    if g.stride != 1 || !same(g.kernel_h) || !same(g.kernel_w) || !channels {
        return None;
    }
    let (o, c, kh, kw) = (g.out_channels, g.in_channels, g.kernel_h, g.kernel_w);
    let input = [g.batch, o, g.out_h, g.out_w];
    let weight = [c, o, kh, kw];
    let transposed = Conv2dGeometry::new(&input, &weight, 1, g.padding).ok()?;
    // Kernel (ic, oc) of the result is kernel (oc, ic) of `w` read backwards.
    let kk = kh * kw;
    let mut flipped = Vec::with_capacity(w.len());
    for ic in 0..c {
        for oc in 0..o {
            flipped.extend(w[(oc * c + ic) * kk..][..kk].iter().rev());
        }
    }
    Some((transposed, flipped))
}

/// [`backward_input`] with the given plan and width.
fn backward_input_with(
    plan: &Plan,
    level: SimdLevel,
    width: Width,
    dy: &[f32],
    w: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    let g = &plan.g;
    let (o, k) = (g.out_channels, g.patch_len());
    // The taps in channel-minor order (ki, kj, c): the MR taps of a tile are then a plane apart
    // when MR <= C, and the tile's additions into dx never overlap each other. Overlapping
    // unaligned read-modify-writes a few values apart defeat store-to-load forwarding and made
    // this pass twice as slow as the forward.
    let (c, kk) = (g.in_channels, g.kernel_h * g.kernel_w);
    let shape = input_tile_shape(vector_shape(level, width).1, k, plan.count(), c);
    let mr = shape.0;
    let order: Vec<usize> = (0..k).map(|i| (i % c) * kk + i / c).collect();
    let taps: Vec<usize> = order.iter().map(|&t| plan.taps[t]).collect();
    // Wᵀ: rows are taps, depth is output channels.
    let weights = pack(k, o, mr, |i, ch| w[ch * k + order[i]]);
    let (sin, sout) = (plan.sample_in(), plan.sample_out());
    let (planes_len, image_len) = (plan.planes_scratch(), plan.image_scratch());
    dy.par_chunks(SAMPLES_PER_TASK * sout)
        .zip(dx.par_chunks_mut(SAMPLES_PER_TASK * sin))
        .for_each(|(dy, dx)| {
            with_buffers([planes_len, image_len], |[planes, image]| {
                let task = BackwardInput {
                    plan,
                    shape,
                    taps: &taps,
                    dy,
                    weights: &weights,
                    mr,
                    dx,
                    planes,
                    image,
                };
                dispatch(level, width, task);
            })
        });
}

/// The tile shape of the input gradient: at most as many rows (taps of a tile, channel-minor)
/// as input channels, so that no two taps of a tile are one column apart.
fn input_tile_shape(
    registers: usize,
    taps: usize,
    vectors: usize,
    channels: usize,
) -> (usize, usize) {
    tile_shape_within(registers, taps, vectors, channels)
}

struct BackwardInput<'a> {
    plan: &'a Plan,
    shape: (usize, usize),
    /// The plan's taps in the order of the packed weights.
    taps: &'a [usize],
    dy: &'a [f32],
    weights: &'a [f32],
    mr: usize,
    dx: &'a mut [MaybeUninit<f32>],
    /// Scratch for one sample's gradient planes and padded image gradient (empty when in
    /// place).
    planes: &'a mut [f32],
    image: &'a mut [f32],
}

impl Kernel for BackwardInput<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        pick_tile_shape(self.shape, WithSimd { s, task: self });
    }
}

impl<S: Simd> TileFn for WithSimd<S, BackwardInput<'_>> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NV: usize>(self) {
        let WithSimd { s, task } = self;
        let plan = task.plan;
        let same = MR == task.mr && S::LANES == plan.lanes;
        assert!(same, "internal: tile differs from the plan");
        let (o, k, count, plane) = (
            plan.g.out_channels,
            task.taps.len(),
            plan.count(),
            plan.plane(),
        );
        let (sin, sout) = (plan.sample_in(), plan.sample_out());
        for (dy, dx) in task
            .dy
            .chunks_exact(sout)
            .zip(task.dx.chunks_exact_mut(sin))
        {
            let src = if plan.in_place_output {
                dy.as_ptr()
            } else {
                plan.fill_planes(dy, task.planes);
                task.planes.as_ptr()
            };
            let dst: *mut f32 = if plan.in_place_input {
                // The terms are added in place, onto zeros.
                dx.fill(MaybeUninit::new(0.0));
                dx.as_mut_ptr().cast()
            } else {
                task.image.fill(0.0);
                task.image.as_mut_ptr()
            };
            let channels = Strided {
                base: src,
                stride: plane,
            };
            for panel in 0..k.div_ceil(MR) {
                let a = Packed::<MR> {
                    ptr: task.weights[panel * o * MR..][..o * MR].as_ptr(),
                };
                let rows = MR.min(k - panel * MR);
                for q0 in (0..count).step_by(NV) {
                    let valid = NV.min(count - q0);
                    let pos = std::array::from_fn(|v| (q0 + v).min(count - 1) * S::LANES);
                    // SAFETY: channel `< O` plus vector `< count` stays inside the O planes of
                    // `plane` values; the panel holds O × MR weights.
                    let acc = unsafe { broadcast_tile::<S, _, _, MR, NV>(s, o, a, channels, &pos) };
                    for (r, acc_r) in acc.iter().enumerate().take(rows) {
                        let tap = task.taps[panel * MR + r];
                        for (v, &value) in acc_r.iter().enumerate().take(valid) {
                            // SAFETY: tap + position + LANES stays within the padded image
                            // (`image_len`), or within the sample when written in place. Lanes
                            // past a row's outputs add the zeros of the gradient layout (times
                            // the weights).
                            unsafe {
                                let p = dst.add(tap + plan.ipos[q0 + v]);
                                s.store(p, s.add(s.load(p), value));
                            }
                        }
                    }
                }
            }
            if !plan.in_place_input {
                plan.crop(task.image, dx);
            }
        }
    }
}

/// The weight gradient (O, C·kh·kw) and bias gradient (O) of `dy` for the input `x`.
pub(super) fn backward_params(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let level = SimdLevel::current();
    let (plan, width) = Plan::choose(g, level, Choice::FewestLanes);
    if let Some(width) = channels::worthwhile_for_weights(&plan, width, level) {
        return channels::backward_params(&plan, level, width, x, dy);
    }
    let (o, k, lanes) = (g.out_channels, g.patch_len(), plan.lanes);
    let (sin, sout) = (plan.sample_in(), plan.sample_out());
    let group = plan.samples_per_partial();
    let tasks = g.batch.div_ceil(group);
    let (image_len, planes_len) = (plan.image_scratch(), plan.planes_scratch());
    // Per task, per (o, t) and per o: one partial sum per lane.
    let (dw_len, db_len) = (o * k * lanes, o * lanes);
    with_buffers([tasks * dw_len, tasks * db_len], |[dw_parts, db_parts]| {
        x.par_chunks(group * sin)
            .zip(dy.par_chunks(group * sout))
            .zip(dw_parts.par_chunks_mut(dw_len))
            .zip(db_parts.par_chunks_mut(db_len))
            .for_each(|(((x, dy), dw), db)| {
                let samples = x.len() / sin;
                let lens = [samples * image_len, samples * planes_len];
                with_buffers(lens, |[images, planes]| {
                    // The samples' images and gradient planes, in the plan's layouts.
                    let images: &[f32] = if plan.in_place_input {
                        x
                    } else {
                        for (x, image) in
                            x.chunks_exact(sin).zip(images.chunks_exact_mut(image_len))
                        {
                            plan.fill_image(x, image);
                        }
                        images
                    };
                    let planes: &[f32] = if plan.in_place_output {
                        dy
                    } else {
                        for (dy, p) in dy
                            .chunks_exact(sout)
                            .zip(planes.chunks_exact_mut(planes_len))
                        {
                            plan.fill_planes(dy, p);
                        }
                        planes
                    };
                    let task = BackwardParams {
                        plan: &plan,
                        samples,
                        images,
                        planes,
                        dw,
                        db,
                    };
                    dispatch(level, width, task);
                })
            });
        let sum = |parts: &[f32], len: usize| {
            let mut out = vec![0.0f32; len];
            dispatch(
                level,
                width,
                LaneSums {
                    parts,
                    out: &mut out,
                },
            );
            out
        };
        (sum(dw_parts, o * k), sum(db_parts, o))
    })
}

struct BackwardParams<'a> {
    plan: &'a Plan,
    samples: usize,
    /// The samples' images and gradient planes in the plan's layouts, one after the other.
    images: &'a [f32],
    planes: &'a [f32],
    /// Per-lane partial sums, (O, C·kh·kw, LANES) and (O, LANES).
    dw: &'a mut [f32],
    db: &'a mut [f32],
}

impl Kernel for BackwardParams<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let g = &self.plan.g;
        let (rows, cols) = (g.out_channels, g.patch_len());
        pick_dot_tile(S::REGISTERS, rows, cols, WithSimd { s, task: self });
    }
}

impl<S: Simd> TileFn for WithSimd<S, BackwardParams<'_>> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NT: usize>(self) {
        let WithSimd { s, task } = self;
        let plan = task.plan;
        assert_eq!(
            S::LANES,
            plan.lanes,
            "internal: vectors differ from the plan"
        );
        let (o, k, plane) = (plan.g.out_channels, plan.taps.len(), plan.plane());
        debug_assert_eq!((MR, NT), dot_tile_shape(S::REGISTERS, o, k));
        let (images, planes) = (task.images, task.planes);
        let (image_step, planes_step) = (images.len() / task.samples, planes.len() / task.samples);
        // Samples outside the tap tiles: a block of MR gradient planes of one sample stays in
        // L1 while every tap tile reads it. Each accumulator is kept in the partial between
        // samples (a store and a load, exact), so it still sums its terms sample by sample,
        // vector by vector, as a loop over samples inside the tile would.
        for op in 0..o.div_ceil(MR) {
            let rows = MR.min(o - op * MR);
            for n in 0..task.samples {
                let (image, dy) = (&images[n * image_step..], &planes[n * planes_step..]);
                // Rows and taps past the end repeat the last one; they are not stored.
                let mut a = [dy.as_ptr(); MR];
                for (r, a) in a.iter_mut().enumerate() {
                    *a = dy[(op * MR + r).min(o - 1) * plane..].as_ptr();
                }
                for tp in 0..k.div_ceil(NT) {
                    let taps = NT.min(k - tp * NT);
                    let mut acc = [[s.zero(); NT]; MR];
                    if n > 0 {
                        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
                            for (t, value) in acc_r.iter_mut().enumerate().take(taps) {
                                let at = ((op * MR + r) * k + tp * NT + t) * S::LANES;
                                // SAFETY: `(o, t)` is inside the (O, K, LANES) partial.
                                *value = unsafe { s.load(task.dw[at..][..S::LANES].as_ptr()) };
                            }
                        }
                    }
                    let mut b = [image.as_ptr(); NT];
                    for (t, b) in b.iter_mut().enumerate() {
                        *b = image[plan.taps[(tp * NT + t).min(k - 1)]..].as_ptr();
                    }
                    for (q, &ipos) in plan.ipos.iter().enumerate() {
                        // SAFETY: channel planes hold `count` vectors; every tap plus every
                        // position plus LANES is inside the image (see `Plan::new`).
                        unsafe { dot_step(s, &a, q * S::LANES, &b, ipos, &mut acc) };
                    }
                    for (r, acc_r) in acc.iter().enumerate().take(rows) {
                        for (t, &value) in acc_r.iter().enumerate().take(taps) {
                            let at = ((op * MR + r) * k + tp * NT + t) * S::LANES;
                            // SAFETY: `(o, t)` is inside the (O, K, LANES) partial.
                            unsafe { s.store(task.dw[at..][..S::LANES].as_mut_ptr(), value) };
                        }
                    }
                }
            }
        }
        for (ch, db) in task.db.chunks_exact_mut(S::LANES).enumerate() {
            let mut acc = s.zero();
            for n in 0..task.samples {
                let dy = &planes[n * planes_step + ch * plane..][..plane];
                for v in dy.chunks_exact(S::LANES) {
                    // SAFETY: `v` holds LANES values.
                    acc = s.add(acc, unsafe { s.load(v.as_ptr()) });
                }
            }
            // SAFETY: `db` holds LANES values.
            unsafe { s.store(db.as_mut_ptr(), acc) };
        }
    }
}

/// `out[i] = Σ_lanes Σ_tasks parts[task][i][lane]`, tasks added in order.
struct LaneSums<'a> {
    parts: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for LaneSums<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let len = self.out.len() * S::LANES;
        for (i, out) in self.out.iter_mut().enumerate() {
            let mut acc = s.zero();
            for part in self.parts.chunks_exact(len) {
                let v = &part[i * S::LANES..][..S::LANES];
                // SAFETY: `v` holds LANES values.
                acc = s.add(acc, unsafe { s.load(v.as_ptr()) });
            }
            *out = s.reduce_sum(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// The weight gradient's width and layout on AVX-512: LeNet's and LeNet-BN's convolutions
    /// keep the width of the plain "fewer lanes" rule and the layouts they had (their
    /// published results were computed with them), the near tie of ResNet-20's 28×28
    /// convolutions goes to the wide vectors, and the stem's 9 taps stay on pixel vectors.
    #[test]
    fn weight_gradient_width_follows_the_lanes() {
        let level = SimdLevel::Avx512;
        // (input (N, C, H, W), weight (O, C, k, k), stride, padding, width, channel layout)
        let shapes = [
            ([2, 1, 28, 28], [6, 1, 5, 5], 1, 2, Width::Widest, false),
            ([2, 6, 14, 14], [16, 6, 5, 5], 1, 0, Width::Narrow, true),
            ([2, 1, 28, 28], [6, 1, 5, 5], 1, 0, Width::Narrow, false),
            ([2, 6, 12, 12], [16, 6, 5, 5], 1, 0, Width::Narrow, false),
            ([2, 16, 28, 28], [16, 16, 3, 3], 1, 1, Width::Widest, true),
            ([2, 1, 28, 28], [16, 1, 3, 3], 1, 1, Width::Widest, false),
        ];
        for (input, weight, stride, padding, expected, in_channels) in shapes {
            let g = Conv2dGeometry::new(&input, &weight, stride, padding).unwrap();
            let (plan, width) = Plan::choose(&g, level, Choice::FewestLanes);
            assert_eq!(width, expected, "{input:?} {weight:?}");
            let layout = channels::worthwhile_for_weights(&plan, width, level);
            assert_eq!(layout.is_some(), in_channels, "layout {input:?} {weight:?}");
            // The plain rule: narrow whenever it computes fewer lanes.
            let lanes = |lanes: usize| Plan::new(&g, lanes).plane();
            let fewer = if lanes(8) < lanes(16) {
                Width::Narrow
            } else {
                Width::Widest
            };
            if weight[2] == 5 {
                assert_eq!(width, fewer, "LeNet's {input:?} {weight:?}");
            } else {
                assert_eq!(fewer, Width::Narrow, "a near tie {input:?} {weight:?}");
            }
        }
    }

    /// Which input gradients are computed as forward passes: same-size stride-1 convolutions
    /// with 8 or more input channels only.
    #[test]
    fn same_size_input_gradients_take_the_forward_form() {
        // (input (N, C, H, W), weight (O, C, k, k), stride, padding, forward form)
        let shapes = [
            ([2, 16, 28, 28], [16, 16, 3, 3], 1, 1, true),
            ([2, 64, 7, 7], [64, 64, 3, 3], 1, 1, true),
            ([2, 8, 9, 9], [3, 8, 5, 5], 1, 2, true),
            ([2, 1, 28, 28], [16, 1, 3, 3], 1, 1, false),
            ([2, 1, 28, 28], [6, 1, 5, 5], 1, 2, false),
            ([2, 6, 14, 14], [16, 6, 5, 5], 1, 0, false),
            ([2, 16, 28, 28], [32, 16, 3, 3], 2, 1, false),
            ([2, 16, 28, 28], [16, 16, 3, 3], 1, 0, false),
        ];
        for (input, weight, stride, padding, expected) in shapes {
            let g = Conv2dGeometry::new(&input, &weight, stride, padding).unwrap();
            let w = vec![0.0; weight.iter().product()];
            let form = same_size_transpose(&g, &w);
            assert_eq!(
                form.is_some(),
                expected,
                "{input:?} {weight:?} s{stride} p{padding}"
            );
            if let Some((t, _)) = form {
                assert_eq!(t.output_shape(), g.input_shape(), "{input:?} {weight:?}");
            }
        }
    }

    /// The flipped, transposed weights: `W'[c][o][i][j] = W[o][c][k−1−i][k−1−j]`.
    #[test]
    fn same_size_weights_are_transposed_and_flipped() {
        let (o, c, k) = (3, 8, 3);
        let g = Conv2dGeometry::new(&[1, c, 5, 5], &[o, c, k, k], 1, 1).unwrap();
        let w: Vec<f32> = (0..o * c * k * k).map(|v| v as f32).collect();
        let (_, flipped) = same_size_transpose(&g, &w).unwrap();
        for (oc, ic, i, j) in [(0, 0, 0, 0), (2, 7, 1, 2), (1, 3, 2, 0)] {
            let at = ((ic * o + oc) * k + i) * k + j;
            let from = ((oc * c + ic) * k + (k - 1 - i)) * k + (k - 1 - j);
            assert_eq!(flipped[at], w[from], "o {oc} c {ic} ({i}, {j})");
        }
    }

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.normal()).collect()
    }

    /// The forward pass, and the input gradient with enough input channels, give the same bits
    /// at either vector width (so their width may follow the CPU's costs); with one input
    /// channel the input gradient does not. LeNet's, LeNet-BN's and ResNet-20's shapes.
    #[test]
    fn forward_and_input_gradient_do_not_depend_on_the_width() {
        if SimdLevel::detected() < SimdLevel::Avx512 {
            eprintln!("only AVX-512 has two widths; nothing to compare on this CPU");
            return;
        }
        let level = SimdLevel::Avx512;
        // (input (N, C, H, W), weight (O, C, k, k), stride, padding)
        let shapes = [
            ([3, 1, 28, 28], [6, 1, 5, 5], 1, 2),
            ([3, 6, 14, 14], [16, 6, 5, 5], 1, 0),
            ([3, 1, 28, 28], [6, 1, 5, 5], 1, 0),
            ([3, 6, 12, 12], [16, 6, 5, 5], 1, 0),
            ([2, 16, 28, 28], [16, 16, 3, 3], 1, 1),
            ([2, 16, 28, 28], [32, 16, 3, 3], 2, 1),
            ([2, 32, 14, 14], [64, 32, 3, 3], 2, 1),
            ([2, 64, 7, 7], [64, 64, 3, 3], 1, 1),
            ([2, 16, 28, 28], [32, 16, 1, 1], 2, 0),
        ];
        let mut rng = Rng::seed_from_u64(5);
        for (input, weight, stride, padding) in shapes {
            let g = Conv2dGeometry::new(&input, &weight, stride, padding).unwrap();
            let x = values(input.iter().product(), &mut rng);
            let w = values(weight.iter().product(), &mut rng);
            let b = values(g.out_channels, &mut rng);
            let dy = values(g.output_shape().iter().product(), &mut rng);
            let run = |lanes: usize, width: Width| {
                let plan = Plan::new(&g, lanes);
                let mut y = vec![MaybeUninit::new(0.0f32); dy.len()];
                forward_with(&plan, level, width, &x, &w, Some(&b), &mut y);
                // SAFETY: the forward pass writes every output value.
                let y: Vec<u32> = y
                    .iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect();
                let mut dx = vec![MaybeUninit::new(f32::NAN); x.len()];
                backward_input_with(&plan, level, width, &dy, &w, &mut dx);
                // SAFETY: the input gradient writes every value (over the NaNs put there).
                let dx: Vec<u32> = dx
                    .iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect();
                (y, dx)
            };
            let (narrow, wide) = (run(8, Width::Narrow), run(16, Width::Widest));
            assert!(narrow.0 == wide.0, "forward {input:?} {weight:?} s{stride}");
            // The rule that lets the input gradient's width follow the CPU, checked both ways.
            let distinct = distinct_tap_channels(level, input[1]);
            assert_eq!(
                narrow.1 == wide.1,
                distinct,
                "input gradient {input:?} {weight:?} s{stride}"
            );
        }
    }
}
