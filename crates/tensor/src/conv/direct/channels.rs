//! The output-channel layout of the direct convolution, for the forward pass and the weight
//! gradient: vectors hold output channels instead of output pixels.
//!
//! With few output columns per row (LeNet's 10 × 10 outputs on 14 × 14 images), pixel vectors
//! carry many lanes that no output maps to (136 lanes per 100 outputs). With 16 output
//! channels, a vector of channels has none:
//!
//! - forward: `y[o-vector][p] = Σ_t x[tap_t + pos_p] · Wᵀ[t][o-vector]`, a broadcast tile whose
//!   rows are output pixels (of any samples of the task) and depth the taps; the tile's
//!   (pixel, channel) block is then scattered into the (O, OH, OW) planes;
//! - weight gradient: `dWᵀ[t][o-vector] = Σ_n Σ_p x_n[tap_t + pos_p] · dyᵀ_n[p][o-vector]`, a
//!   broadcast tile whose rows are taps and depth the pixels, on the transposed gradient; no
//!   lane sums are needed at the end.
//!
//! [`worthwhile`] and [`worthwhile_for_weights`] decide from the lanes each layout computes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Choice, Plan, SAMPLES_PER_TASK};
use crate::microkernel::{
    broadcast_tile, broadcast_tile_into, channel_tile_shape, dot_tile_shape, padded,
    pick_channel_tile, tile_shape, Gather, Strided, TileFn,
};
use crate::scratch::with_buffers;
use norma_simd::{dispatch, vector_shape, Kernel, Simd, SimdLevel, Width};

/// How much cheaper (in lanes computed) the channel layout must be to be used by the forward
/// pass: it also scatters its results into planes.
const MARGIN: f64 = 0.9;

/// The channel layout's vector width on `level` for the forward pass, when its vectors weigh
/// less by `choice` than those of `plan`'s pixel layout.
pub(super) fn worthwhile(
    plan: &Plan,
    plan_width: Width,
    level: SimdLevel,
    choice: Choice,
) -> Option<Width> {
    let g = &plan.g;
    let (lanes, registers) = vector_shape(level, Width::Widest);
    let vectors = g.out_channels.div_ceil(lanes);
    let (_, nv) = channel_tile_shape(registers, vectors);
    let channels = g.out_h * g.out_w * padded(g.out_channels, nv * lanes) / lanes
        * choice.unit(level, Width::Widest);
    let (_, pixel_registers) = vector_shape(level, plan_width);
    let (mr, _) = tile_shape(pixel_registers, g.out_channels, plan.count());
    let pixels = padded(g.out_channels, mr) * plan.count() * choice.unit(level, plan_width);
    ((channels as f64) < MARGIN * pixels as f64).then_some(Width::Widest)
}

/// The channel layout's vector width on `level` for the weight gradient, when it computes
/// fewer lanes than `plan`'s pixel layout (by lanes: the result depends on the layout, which
/// must follow from the shapes and the level only).
///
/// Both count the vector products of their tiles, padding included: the channel layout's rows
/// are taps (padded to its tile's rows: the stem's 9 taps fill 9 of 24) and its vectors output
/// channels; the pixel layout's dot tiles pad output channels and taps. Its tiles now run as
/// fast per lane as the pixel layout's dot products (16→16 at 28×28: 4.3–4.4 ms either way on
/// Zen 5, 1 thread), so no margin is asked for the transposed gradient it first writes.
pub(super) fn worthwhile_for_weights(
    plan: &Plan,
    plan_width: Width,
    level: SimdLevel,
) -> Option<Width> {
    let g = &plan.g;
    let taps = g.patch_len();
    let (lanes, registers) = vector_shape(level, Width::Widest);
    let vectors = g.out_channels.div_ceil(lanes);
    let (mr, nv) = channel_tile_shape(registers, vectors);
    let channels = padded(taps, mr) * g.out_h * g.out_w * padded(vectors, nv) * lanes;
    let (pixel_lanes, pixel_registers) = vector_shape(level, plan_width);
    let (dot_rows, dot_taps) = dot_tile_shape(pixel_registers, g.out_channels, taps);
    let pixels =
        padded(g.out_channels, dot_rows) * padded(taps, dot_taps) * plan.count() * pixel_lanes;
    (channels < pixels).then_some(Width::Widest)
}

/// Output pixels `(oy, ox)` as positions `oy · Wq + ox` of a phase plane, in output order.
fn pixels(plan: &Plan) -> Vec<usize> {
    let (oh, ow, wq) = (plan.g.out_h, plan.g.out_w, plan.wq);
    (0..oh)
        .flat_map(|oy| (0..ow).map(move |ox| oy * wq + ox))
        .collect()
}

/// Output channels rounded up to whole tiles of `width` at `level`.
fn channels_padded(plan: &Plan, level: SimdLevel, width: Width) -> usize {
    let (lanes, registers) = vector_shape(level, width);
    let vectors = plan.g.out_channels.div_ceil(lanes);
    padded(
        plan.g.out_channels,
        channel_tile_shape(registers, vectors).1 * lanes,
    )
}

/// Writes `conv2d(x, w) + bias` into every element of `out` (N, O, OH, OW).
pub(super) fn forward(
    plan: &Plan,
    level: SimdLevel,
    width: Width,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let (o, k) = (plan.g.out_channels, plan.taps.len());
    let cols = channels_padded(plan, level, width);
    // Wᵀ (taps × channels), channels past O zero.
    let mut weights = vec![0.0f32; k * cols];
    for (t, row) in weights.chunks_exact_mut(cols).enumerate() {
        for (ch, v) in row[..o].iter_mut().enumerate() {
            *v = w[ch * k + t];
        }
    }
    let mut padded_bias = vec![0.0f32; cols];
    if let Some(bias) = bias {
        padded_bias[..o].copy_from_slice(bias);
    }
    let bias = padded_bias.as_slice();
    let pixels = pixels(plan);
    let (sin, sout) = (plan.sample_in(), plan.sample_out());
    let image_len = plan.image_scratch();
    x.par_chunks(SAMPLES_PER_TASK * sin)
        .zip(out.par_chunks_mut(SAMPLES_PER_TASK * sout))
        .for_each(|(x, y)| {
            let samples = x.len() / sin;
            with_buffers([samples * image_len], |[images]| {
                let images: &[f32] = if plan.in_place_input {
                    x
                } else {
                    for (x, image) in x.chunks_exact(sin).zip(images.chunks_exact_mut(image_len)) {
                        plan.fill_image(x, image);
                    }
                    images
                };
                let task = Forward {
                    plan,
                    pixels: &pixels,
                    images,
                    weights: &weights,
                    cols,
                    bias,
                    y,
                };
                dispatch(level, width, task);
            })
        });
}

struct Forward<'a> {
    plan: &'a Plan,
    pixels: &'a [usize],
    /// The task's images, one after the other.
    images: &'a [f32],
    weights: &'a [f32],
    cols: usize,
    /// The bias, `cols` values (zeros past O, or all zeros without a bias).
    bias: &'a [f32],
    y: &'a mut [MaybeUninit<f32>],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let vectors = self.plan.g.out_channels.div_ceil(S::LANES);
        pick_channel_tile(S::REGISTERS, vectors, WithSimd { s, task: self });
    }
}

struct WithSimd<S, T> {
    s: S,
    task: T,
}

impl<S: Simd> TileFn for WithSimd<S, Forward<'_>> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NV: usize>(self) {
        let WithSimd { s, task } = self;
        let (plan, pixels) = (task.plan, task.pixels);
        let (o, k, panel) = (plan.g.out_channels, plan.taps.len(), NV * S::LANES);
        assert_eq!(
            task.cols % panel,
            0,
            "internal: channels differ from the plan"
        );
        let p = pixels.len();
        let samples = task.y.len() / (o * p);
        let image_step = task.images.len() / samples;
        let total = samples * p;
        let y: *mut f32 = task.y.as_mut_ptr().cast();
        let mut pos = [0; NV];
        for (v, pos) in pos.iter_mut().enumerate() {
            *pos = v * S::LANES;
        }
        for c0 in (0..o).step_by(panel) {
            let b = Strided {
                base: task.weights[c0..].as_ptr(),
                stride: task.cols,
            };
            for i0 in (0..total).step_by(MR) {
                let valid = MR.min(total - i0);
                // Pixels past the end repeat the last one; they are not stored.
                let mut rows = [task.images.as_ptr(); MR];
                for (r, row) in rows.iter_mut().enumerate() {
                    let i = (i0 + r).min(total - 1);
                    *row = task.images[(i / p) * image_step + pixels[i % p]..].as_ptr();
                }
                let a = Gather {
                    rows,
                    offsets: &plan.taps,
                };
                // SAFETY: pixel position plus tap is inside the padded image (or the sample,
                // read in place); the weights hold k rows of `cols >= c0 + NV · LANES`.
                let acc = unsafe { broadcast_tile::<S, _, _, MR, NV>(s, k, a, b, &pos) };
                let stored = panel.min(o - c0);
                for (r, acc_r) in acc.iter().enumerate().take(valid) {
                    let mut lanes = [0.0f32; 32];
                    for (v, &value) in acc_r.iter().enumerate() {
                        // SAFETY: `lanes` holds NV · LANES <= 32 values; `bias` holds `cols`
                        // values, and `c0 + NV · LANES <= cols`.
                        unsafe {
                            let b = s.load(task.bias[c0 + v * S::LANES..].as_ptr());
                            s.store(lanes[v * S::LANES..].as_mut_ptr(), s.add(value, b));
                        }
                    }
                    let (n, q) = ((i0 + r) / p, (i0 + r) % p);
                    // Channel c0 + j of this pixel, planes p values apart.
                    let first = (n * o + c0) * p + q;
                    for (j, &value) in lanes[..stored].iter().enumerate() {
                        // SAFETY: sample `n < samples`, channel `c0 + j < O`, pixel `q < p`:
                        // inside the task's outputs, each written once.
                        unsafe { y.add(first + j * p).write(value) };
                    }
                }
            }
        }
    }
}

/// Adds the weight gradient (C·kh·kw, `cols`, transposed) of the task's samples onto
/// `partial`, for one task; `db` gets the per-channel sums of `dy`.
pub(super) struct BackwardParams<'a> {
    pub plan: &'a Plan,
    pub pixels: &'a [usize],
    pub images: &'a [f32],
    /// The samples' output gradients, transposed to (OH·OW, cols) each.
    pub gradients: &'a [f32],
    pub cols: usize,
    pub dw: &'a mut [f32],
    pub db: &'a mut [f32],
}

/// The weight gradient (O, C·kh·kw) and bias gradient (O) of `dy` for the input `x`.
pub(super) fn backward_params(
    plan: &Plan,
    level: SimdLevel,
    width: Width,
    x: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (o, k) = (plan.g.out_channels, plan.taps.len());
    let cols = channels_padded(plan, level, width);
    let pixels = pixels(plan);
    let p = pixels.len();
    let (sin, sout) = (plan.sample_in(), plan.sample_out());
    let image_len = plan.image_scratch();
    let group = plan.samples_per_partial();
    let tasks = plan.g.batch.div_ceil(group);
    with_buffers([tasks * k * cols, tasks * cols], |[dw_parts, db_parts]| {
        x.par_chunks(group * sin)
            .zip(dy.par_chunks(group * sout))
            .zip(dw_parts.par_chunks_mut(k * cols))
            .zip(db_parts.par_chunks_mut(cols))
            .for_each(|(((x, dy), dw), db)| {
                let samples = x.len() / sin;
                with_buffers(
                    [samples * image_len, samples * p * cols],
                    |[images, grads]| {
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
                        for (dy, t) in dy.chunks_exact(sout).zip(grads.chunks_exact_mut(p * cols)) {
                            transpose(dy, p, t, cols);
                        }
                        let task = BackwardParams {
                            plan,
                            pixels: &pixels,
                            images,
                            gradients: grads,
                            cols,
                            dw,
                            db,
                        };
                        dispatch(level, width, task);
                    },
                )
            });
        // Partials added in task order; dW comes out transposed.
        let mut dwt = vec![0.0f32; k * cols];
        for part in dw_parts.chunks_exact(k * cols) {
            dwt.iter_mut().zip(part).for_each(|(d, p)| *d += p);
        }
        let mut db = vec![0.0f32; cols];
        for part in db_parts.chunks_exact(cols) {
            db.iter_mut().zip(part).for_each(|(d, p)| *d += p);
        }
        let mut dw = vec![0.0f32; o * k];
        for (ch, row) in dw.chunks_exact_mut(k).enumerate() {
            for (t, v) in row.iter_mut().enumerate() {
                *v = dwt[t * cols + ch];
            }
        }
        db.truncate(o);
        (dw, db)
    })
}

/// Writes the (O, p) planes `dy` transposed into the (p, cols) rows of `t`, zeros past O.
///
/// By blocks of 64 pixels, channel by channel within a block: each channel's pixels are read
/// in order and the block's rows (64 · cols values) stay in L1 while every channel writes
/// into them. Written channel by channel over all pixels, the rows left L1 between channels
/// and the transpose took a fifth of the 16→16 weight gradient's time at 28×28; pixel by
/// pixel, the O read streams did.
fn transpose(dy: &[f32], p: usize, t: &mut [f32], cols: usize) {
    const BLOCK: usize = 64;
    let o = dy.len() / p;
    for q0 in (0..p).step_by(BLOCK) {
        let n = BLOCK.min(p - q0);
        let rows = &mut t[q0 * cols..(q0 + n) * cols];
        for (ch, plane) in dy.chunks_exact(p).enumerate() {
            for (row, &g) in rows.chunks_exact_mut(cols).zip(&plane[q0..q0 + n]) {
                row[ch] = g;
            }
        }
        for row in rows.chunks_exact_mut(cols) {
            row[o..].fill(0.0);
        }
    }
}

impl Kernel for BackwardParams<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let vectors = self.plan.g.out_channels.div_ceil(S::LANES);
        pick_channel_tile(S::REGISTERS, vectors, WithSimd { s, task: self });
    }
}

impl<S: Simd> TileFn for WithSimd<S, BackwardParams<'_>> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NV: usize>(self) {
        let WithSimd { s, task } = self;
        let (plan, pixels, cols) = (task.plan, task.pixels, task.cols);
        let (o, k, panel) = (plan.g.out_channels, plan.taps.len(), NV * S::LANES);
        assert_eq!(cols % panel, 0, "internal: channels differ from the plan");
        let p = pixels.len();
        let samples = task.gradients.len() / (p * cols);
        let image_step = task.images.len() / samples;
        let mut pos = [0; NV];
        for (v, pos) in pos.iter_mut().enumerate() {
            *pos = v * S::LANES;
        }
        for c0 in (0..o).step_by(panel) {
            for t0 in (0..k).step_by(MR) {
                let mut acc = [[s.zero(); NV]; MR];
                for n in 0..samples {
                    let image = &task.images[n * image_step..];
                    // Taps past the end repeat the last one; they are not stored.
                    let mut rows = [image.as_ptr(); MR];
                    for (r, row) in rows.iter_mut().enumerate() {
                        *row = image[plan.taps[(t0 + r).min(k - 1)]..].as_ptr();
                    }
                    let a = Gather {
                        rows,
                        offsets: pixels,
                    };
                    let b = Strided {
                        base: task.gradients[n * p * cols + c0..].as_ptr(),
                        stride: cols,
                    };
                    // SAFETY: tap plus pixel position is inside the image; the sample's
                    // gradient holds p rows of `cols >= c0 + NV · LANES` values.
                    unsafe { broadcast_tile_into::<S, _, _, MR, NV>(s, p, a, b, &pos, &mut acc) };
                }
                for (r, acc_r) in acc.iter().enumerate().take(MR.min(k - t0)) {
                    for (v, &value) in acc_r.iter().enumerate() {
                        let at = (t0 + r) * cols + c0 + v * S::LANES;
                        // SAFETY: row `t0 + r < k` of the (k, cols) partial, LANES columns.
                        unsafe { s.store(task.dw[at..][..S::LANES].as_mut_ptr(), value) };
                    }
                }
            }
        }
        for (v, db) in task.db.chunks_exact_mut(S::LANES).enumerate() {
            let mut acc = s.zero();
            for row in task.gradients.chunks_exact(cols) {
                // SAFETY: each row holds `cols` values, a multiple of LANES.
                acc = s.add(acc, unsafe { s.load(row[v * S::LANES..].as_ptr()) });
            }
            // SAFETY: `db` holds LANES values.
            unsafe { s.store(db.as_mut_ptr(), acc) };
        }
    }
}
