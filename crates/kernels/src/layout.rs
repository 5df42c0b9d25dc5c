//! How an input is split into work: the (N, C, S) view, the piece sizes, and the parallel
//! drivers every kernel is built from.
//!
//! - [`fill`]: a new array written in parallel pieces, each piece a [`Kernel`] that may also
//!   return a result (group and layer norm's whole-group pieces, and [`map_channels`]).
//! - [`channel_sums`]: per channel, N f64 sums of a per-element term over all N·S values.
//! - [`map_channels`]: a new array written elementwise with per-channel constants.
//!
//! Work is cut into pieces whose boundaries depend only on the shape, never on the number of
//! threads, and partial sums are combined in piece order: results are bitwise identical on 1 or
//! 64 threads. Each piece runs through [`dispatch`], so the loops use the widest vector
//! instructions of the CPU.
//!
//! Two cuts, chosen by the spatial size S:
//! - **planes** (S ≥ [`PLANE_PATH_MIN`], NCHW images): channel c's values are N contiguous
//!   planes of S values. A reduction piece is a run of planes of one channel, so a channel with
//!   few planes' worth of work (LeNet's 6 channels) is still spread over all cores.
//! - **rows** ((N, C) features, tiny images): a piece is a run of rows holding every channel;
//!   per-channel accumulators run along the row, which vectorizes across channels.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::sums::{self, Term};
use norma_simd::{dispatch, Kernel, Simd, SimdLevel, Width};

/// Values of one reduction or map piece: ~64 KiB of f32, a few µs of work.
pub(crate) const PIECE: usize = 1 << 14;
/// Row pieces carry a C-long accumulator each; larger pieces keep the final combine cheap.
pub(crate) const ROW_PIECE: usize = 1 << 16;
/// Smallest spatial size reduced plane by plane.
const PLANE_PATH_MIN: usize = 16;
/// Inputs with fewer values run on the calling thread: handing them to rayon's workers and
/// waiting for them costs more than the work (the pieces, and so the results, are the same).
const PARALLEL_MIN: usize = 1 << 17;

/// Whether the pieces of an input of `len` values go to rayon's workers. Not for small inputs,
/// nor with a pool of one thread: a caller outside the pool would then hand every call to the
/// one worker and sleep until it is done (a futex wake-up and wait per call, a quarter of the
/// time of a 256 Ki-value group norm on one thread).
pub(crate) fn in_parallel(len: usize) -> bool {
    len >= PARALLEL_MIN && rayon::current_num_threads() > 1
}

/// `[f(0), f(1), …, f(count − 1)]`, on rayon's workers when `parallel` ([`in_parallel`]), else
/// on the calling thread: the same pieces either way, so the same results.
fn pieces<T: Send>(count: usize, parallel: bool, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if parallel {
        (0..count).into_par_iter().map(f).collect()
    } else {
        (0..count).map(f).collect()
    }
}

/// A batch-norm input seen as (N, C, S): batch, channels, spatial positions per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl BnShape {
    /// M: how many values each channel's statistics are taken over (N·S).
    pub fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    fn plane_path(&self) -> bool {
        self.spatial >= PLANE_PATH_MIN
    }

    /// Samples per map piece (and per row-path reduction piece).
    fn rows_per_piece(&self) -> usize {
        let row_len = (self.channels * self.spatial).max(1);
        if self.plane_path() {
            (PIECE / row_len).max(1)
        } else {
            (ROW_PIECE / row_len).max(1)
        }
    }
}

/// For each channel, the N sums of `term(x, y, k[channel])` over the channel's N·S values.
/// `x` and `y` have the input's shape (the same slice twice when only one is needed).
pub(crate) fn channel_sums<const N: usize>(
    level: SimdLevel,
    shape: BnShape,
    x: &[f32],
    y: &[f32],
    k: &[f64],
    term: impl Term<N>,
) -> Vec<[f64; N]> {
    let (n, c, s) = (shape.batch, shape.channels, shape.spatial);
    assert!(x.len() == shape.len() && y.len() == shape.len() && k.len() == c);
    let mut totals = vec![[0.0f64; N]; c];
    if shape.len() == 0 {
        return totals;
    }
    let parallel = in_parallel(shape.len());
    if shape.plane_path() {
        let per_piece = (PIECE / s).max(1);
        let pieces_per_channel = n.div_ceil(per_piece);
        let partial: Vec<[f64; N]> = pieces(c * pieces_per_channel, parallel, |piece| {
            let (ch, j) = (piece / pieces_per_channel, piece % pieces_per_channel);
            let images = j * per_piece..((j + 1) * per_piece).min(n);
            let first = (images.start * c + ch) * s;
            let piece = PlaneSums {
                x: &x[first..],
                y: &y[first..],
                planes: images.len(),
                stride: c * s,
                len: s,
                k: k[ch],
                term,
            };
            dispatch(level, Width::Widest, piece)
        });
        for (ch, total) in totals.iter_mut().enumerate() {
            for p in &partial[ch * pieces_per_channel..(ch + 1) * pieces_per_channel] {
                for q in 0..N {
                    total[q] += p[q];
                }
            }
        }
    } else {
        let piece_len = shape.rows_per_piece() * c * s;
        let partial: Vec<[Vec<f64>; N]> = pieces(x.len().div_ceil(piece_len), parallel, |i| {
            let run = i * piece_len..((i + 1) * piece_len).min(x.len());
            let (x, y) = (&x[run.clone()], &y[run]);
            dispatch(
                level,
                Width::Widest,
                RowSums {
                    x,
                    y,
                    c,
                    s,
                    k,
                    term,
                },
            )
        });
        for acc in &partial {
            for (ch, total) in totals.iter_mut().enumerate() {
                for q in 0..N {
                    total[q] += acc[q][ch];
                }
            }
        }
    }
    totals
}

/// A new array of shape `dims` (holding `shape`'s values) with
/// `out_i = f(x_i, y_i, [consts[0][c], consts[1][c], …])`, c the channel of i. Each constant
/// slice has one value per channel (C values, shared by every sample) or one per sample and
/// channel (N·C values, sample n's at `n·C ..`).
pub(crate) fn map_channels<const K: usize, E, F>(
    level: SimdLevel,
    shape: BnShape,
    dims: IxDyn,
    x: &[f32],
    y: &[f32],
    consts: [&[E]; K],
    f: F,
) -> ArrayD<f32>
where
    E: Copy + Sync,
    F: Fn(f32, f32, [E; K]) -> f32 + Sync + Copy,
{
    let (c, s, n) = (shape.channels, shape.spatial, shape.batch);
    assert!(x.len() == shape.len() && y.len() == shape.len());
    assert!(consts.iter().all(|k| k.len() == c || k.len() == n * c));
    // How far each constant slice moves from one sample to the next.
    let strides: [usize; K] = std::array::from_fn(|j| if consts[j].len() == c { 0 } else { c });
    // Each sample is a row of C·S values; pieces are runs of whole samples.
    let rows = shape.rows_per_piece();
    let piece = MapRows {
        rows,
        c,
        s,
        consts,
        strides,
        f,
    };
    fill(
        level,
        dims,
        x,
        y,
        rows * c * s,
        in_parallel(shape.len()),
        &piece,
    )
    .0
}

/// One piece of [`fill`]: `run` writes the piece's slots from the matching runs of x and y.
///
/// # Safety
/// `run` must initialise every slot of `out`: [`fill`] assumes the array initialised.
pub(crate) unsafe trait FillPiece: Sync {
    type Output: Send;

    /// Piece `index`, compiled with the instructions of `simd`. Implementations are
    /// `#[inline(always)]` (see [`Kernel`]).
    fn run<S: Simd>(
        &self,
        simd: S,
        index: usize,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        y: &[f32],
    ) -> Self::Output;
}

/// A new array of shape `dims` written in parallel pieces of `piece_len` values: piece i (the
/// slots `i·piece_len ..` and the same runs of `x` and `y`, shorter at the end) is written by
/// `piece.run(…, i, …)` through [`dispatch`] at `level`, and the pieces' results are returned
/// in piece order. `parallel`: whether the pieces run on rayon's workers ([`in_parallel`]) or
/// one after the other on the calling thread (same pieces, same results).
pub(crate) fn fill<P: FillPiece>(
    level: SimdLevel,
    dims: IxDyn,
    x: &[f32],
    y: &[f32],
    piece_len: usize,
    parallel: bool,
    piece: &P,
) -> (ArrayD<f32>, Vec<P::Output>) {
    let mut out = ArrayD::<f32>::uninit(dims);
    let slots = out
        .as_slice_mut()
        .expect("a freshly allocated array is contiguous");
    assert!(x.len() == slots.len() && y.len() == slots.len());
    let run = |index: usize, out: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32]| {
        let job = Job {
            piece,
            index,
            out,
            x,
            y,
        };
        dispatch(level, Width::Widest, job)
    };
    let results = if slots.is_empty() {
        Vec::new()
    } else if parallel {
        slots
            .par_chunks_mut(piece_len)
            .zip(x.par_chunks(piece_len).zip(y.par_chunks(piece_len)))
            .enumerate()
            .map(|(index, (out, (x, y)))| run(index, out, x, y))
            .collect()
    } else {
        slots
            .chunks_mut(piece_len)
            .zip(x.chunks(piece_len).zip(y.chunks(piece_len)))
            .enumerate()
            .map(|(index, (out, (x, y)))| run(index, out, x, y))
            .collect()
    };
    // SAFETY: (par_)chunks_mut hands every slot to exactly one piece, and FillPiece::run
    // initialises every slot it is given (the trait's contract).
    (unsafe { out.assume_init() }, results)
}

/// One piece of [`fill`] as a [`Kernel`].
struct Job<'a, P> {
    piece: &'a P,
    index: usize,
    out: &'a mut [MaybeUninit<f32>],
    x: &'a [f32],
    y: &'a [f32],
}

impl<P: FillPiece> Kernel for Job<'_, P> {
    type Output = P::Output;

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> P::Output {
        self.piece.run(simd, self.index, self.out, self.x, self.y)
    }
}

/// One reduction piece of the plane path: `planes` runs of `len` values, `stride` apart, of one
/// channel with constant `k`.
struct PlaneSums<'a, T, const N: usize> {
    x: &'a [f32],
    y: &'a [f32],
    planes: usize,
    stride: usize,
    len: usize,
    k: f64,
    term: T,
}

impl<const N: usize, T: Term<N>> Kernel for PlaneSums<'_, T, N> {
    type Output = [f64; N];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [f64; N] {
        let PlaneSums {
            x, y, stride, len, ..
        } = self;
        let planes = (0..self.planes).map(|p| {
            let plane = p * stride..p * stride + len;
            (&x[plane.clone()], &y[plane.clone()], &y[plane])
        });
        sums::run(simd, planes, self.k, self.term)
    }
}

/// One reduction piece of the row path: whole samples of C channels with S values each, into
/// per-channel accumulators.
struct RowSums<'a, T, const N: usize> {
    x: &'a [f32],
    y: &'a [f32],
    c: usize,
    s: usize,
    k: &'a [f64],
    term: T,
}

impl<const N: usize, T: Term<N>> Kernel for RowSums<'_, T, N> {
    type Output = [Vec<f64>; N];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [Vec<f64>; N] {
        let RowSums {
            x,
            y,
            c,
            s,
            k,
            term,
        } = self;
        let mut acc: [Vec<f64>; N] = std::array::from_fn(|_| vec![0.0f64; c]);
        if s == 1 {
            sums::rows(x, y, k, &mut acc, term);
        } else {
            for (xr, yr) in x.chunks_exact(c * s).zip(y.chunks_exact(c * s)) {
                for ch in 0..c {
                    let (xs, ys) = (&xr[ch * s..(ch + 1) * s], &yr[ch * s..(ch + 1) * s]);
                    let seg = [(xs, ys, ys)];
                    let t = sums::run(simd, seg.into_iter(), k[ch], term);
                    for q in 0..N {
                        acc[q][ch] += t[q];
                    }
                }
            }
        }
        acc
    }
}

/// The pieces of [`map_channels`]: runs of `rows` whole samples of C channels with S values
/// each.
struct MapRows<'a, const K: usize, E, F> {
    rows: usize,
    c: usize,
    s: usize,
    /// The constants of every sample.
    consts: [&'a [E]; K],
    /// 0 for constants shared by every sample, C for per-sample ones.
    strides: [usize; K],
    f: F,
}

// SAFETY: every row of the piece writes its C·S slots: by_channel_row writes out[0..C] (S = 1),
// the loop below every segment of every channel; pieces are whole rows (see map_channels).
unsafe impl<const K: usize, E, F> FillPiece for MapRows<'_, K, E, F>
where
    E: Copy + Sync,
    F: Fn(f32, f32, [E; K]) -> f32 + Copy + Sync,
{
    type Output = ();

    #[inline(always)]
    fn run<S: Simd>(&self, _: S, index: usize, out: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32]) {
        let MapRows {
            rows: per_piece,
            c,
            s,
            consts,
            strides,
            f,
        } = *self;
        let first = index * per_piece;
        let consts: [&[E]; K] = std::array::from_fn(|j| &consts[j][first * strides[j]..]);
        let row_len = c * s;
        let rows = out
            .chunks_exact_mut(row_len)
            .zip(x.chunks_exact(row_len))
            .zip(y.chunks_exact(row_len));
        for (r, ((o, xr), yr)) in rows.enumerate() {
            let consts: [&[E]; K] = std::array::from_fn(|j| &consts[j][r * strides[j]..]);
            if s == 1 {
                by_channel_row(o, xr, yr, consts, f);
            } else {
                let segments = o
                    .chunks_exact_mut(s)
                    .zip(xr.chunks_exact(s))
                    .zip(yr.chunks_exact(s));
                for (ch, ((o, xs), ys)) in segments.enumerate().take(c) {
                    let k: [E; K] = std::array::from_fn(|j| consts[j][ch]);
                    for ((o, &x), &y) in o.iter_mut().zip(xs).zip(ys) {
                        o.write(f(x, y, k));
                    }
                }
            }
        }
    }
}

/// One (N, C) row of [`map_channels`]: `out[c] = f(x[c], y[c], [k_0[c], …])`. Constants are
/// passed per kind (one slice each), which lets the loop over channels vectorize.
#[inline(always)]
fn by_channel_row<const K: usize, E, F>(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    y: &[f32],
    k: [&[E]; K],
    f: F,
) where
    E: Copy,
    F: Fn(f32, f32, [E; K]) -> f32,
{
    let n = out.len();
    let (x, y) = (&x[..n], &y[..n]);
    let k: [&[E]; K] = std::array::from_fn(|j| &k[j][..n]);
    for i in 0..n {
        out[i].write(f(x[i], y[i], std::array::from_fn(|j| k[j][i])));
    }
}
