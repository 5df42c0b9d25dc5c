//! The register-blocked inner loops that every product-like kernel (matrix product, the three
//! convolution passes) is built on, written once over [`Simd`].
//!
//! - [`broadcast_tile`]: an MR × (NV vectors) block of `Σ_k a(r, k) · b_k[pos_v ..]`, where each
//!   `a(r, k)` is a scalar broadcast to all lanes and `b_k` is a row of the streamed operand,
//!   found through [`Rows`] (a stride for a matrix, an offset table for the taps of a
//!   convolution read straight from the image).
//! - [`dot_step`]: one vector step of MR × NT dot products `Σ_p a_r[p] · b_t[p]`, whose lanes
//!   are summed only at the end (weight gradients, where the reduction is long).
//!
//! The tile sizes are chosen for the level's register count (see [`pick_tile`]): the
//! accumulators, the streamed vectors and one broadcast must fit in the registers.

use norma_simd::Simd;

/// Where row `k` of a streamed operand starts.
pub(crate) trait Rows: Copy {
    /// # Safety
    /// `k` must be a row of the operand (the kernels only ask for `k < depth`).
    unsafe fn row(self, k: usize) -> *const f32;
}

/// Row `k` at `base + k · stride`.
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    pub base: *const f32,
    pub stride: usize,
}

impl Rows for Strided {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller keeps `k` among the operand's rows, so the offset stays inside it.
        unsafe { self.base.add(k * self.stride) }
    }
}

/// Row `k` at `base + offsets[k]` (the taps of a convolution, read from the image).
#[derive(Clone, Copy)]
pub(crate) struct Offsets<'a> {
    pub base: *const f32,
    pub offsets: &'a [usize],
}

impl Rows for Offsets<'_> {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        debug_assert!(k < self.offsets.len());
        // SAFETY: `k < offsets.len()` (caller), and the offsets point inside the image.
        unsafe { self.base.add(*self.offsets.get_unchecked(k)) }
    }
}

/// The broadcast operand: element `(r, k)` of an MR-row block.
pub(crate) trait Broadcast: Copy {
    /// # Safety
    /// `r` < MR and `k` < the block's depth.
    unsafe fn get(self, r: usize, k: usize) -> f32;
}

/// A block packed depth-major: `(r, k)` at `ptr[k · MR + r]` (weights, packed once per call).
#[derive(Clone, Copy)]
pub(crate) struct Packed<const MR: usize> {
    pub ptr: *const f32,
}

impl<const MR: usize> Broadcast for Packed<MR> {
    #[inline(always)]
    unsafe fn get(self, r: usize, k: usize) -> f32 {
        // SAFETY: the panel holds depth × MR values and `(r, k)` is inside it (caller).
        unsafe { *self.ptr.add(k * MR + r) }
    }
}

/// A block read in place: `(r, k)` at `rows[r][k · step]`.
#[derive(Clone, Copy)]
pub(crate) struct InPlace<const MR: usize> {
    pub rows: [*const f32; MR],
    pub step: usize,
}

impl<const MR: usize> Broadcast for InPlace<MR> {
    #[inline(always)]
    unsafe fn get(self, r: usize, k: usize) -> f32 {
        // SAFETY: each row pointer addresses `depth` values `step` apart (caller).
        unsafe { *self.rows[r].add(k * self.step) }
    }
}

/// A block gathered from the image: `(r, k)` at `rows[r][offsets[k]]` (row r is an output pixel
/// and k a tap, or row r a tap and k an output pixel).
#[derive(Clone, Copy)]
pub(crate) struct Gather<'a, const MR: usize> {
    pub rows: [*const f32; MR],
    pub offsets: &'a [usize],
}

impl<const MR: usize> Broadcast for Gather<'_, MR> {
    #[inline(always)]
    unsafe fn get(self, r: usize, k: usize) -> f32 {
        debug_assert!(k < self.offsets.len());
        // SAFETY: `k < offsets.len()` (caller) and row r plus every offset is inside the image.
        unsafe { *self.rows[r].add(*self.offsets.get_unchecked(k)) }
    }
}

/// `acc[r][v] = Σ_{k < depth} a(r, k) · b.row(k)[pos[v] .. pos[v] + LANES]`.
///
/// # Safety
/// For every `k < depth` and `v`, `b.row(k) + pos[v] .. + LANES` must be readable and
/// `a.get(r, k)` valid for `r < MR`.
#[inline(always)]
pub(crate) unsafe fn broadcast_tile<
    S: Simd,
    A: Broadcast,
    B: Rows,
    const MR: usize,
    const NV: usize,
>(
    s: S,
    depth: usize,
    a: A,
    b: B,
    pos: &[usize; NV],
) -> [[S::V; NV]; MR] {
    let mut acc = [[s.zero(); NV]; MR];
    // SAFETY: the caller's contract.
    unsafe { broadcast_tile_into(s, depth, a, b, pos, &mut acc) };
    acc
}

/// [`broadcast_tile`] added onto `acc`.
///
/// # Safety
/// As [`broadcast_tile`].
#[inline(always)]
pub(crate) unsafe fn broadcast_tile_into<
    S: Simd,
    A: Broadcast,
    B: Rows,
    const MR: usize,
    const NV: usize,
>(
    s: S,
    depth: usize,
    a: A,
    b: B,
    pos: &[usize; NV],
    acc: &mut [[S::V; NV]; MR],
) {
    for k in 0..depth {
        // SAFETY: the caller's contract covers every row `k < depth` at every position.
        let row = unsafe { b.row(k) };
        // Plain loops, not closures: closures may be compiled apart from the dispatched entry
        // point, without its instruction set, and then cannot inline the vector instructions.
        let mut bv = [s.zero(); NV];
        for (bv, &p) in bv.iter_mut().zip(pos) {
            *bv = unsafe { s.load(row.add(p)) };
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: `r < MR`, `k < depth`.
            let ar = s.splat(unsafe { a.get(r, k) });
            for (acc_rv, &bv) in acc_r.iter_mut().zip(&bv) {
                *acc_rv = s.mul_add(ar, bv, *acc_rv);
            }
        }
    }
}

/// One vector step of MR × NT dot products: `acc[r][t] += a[r][pa ..] · b[t][pb ..]` lane by lane.
///
/// # Safety
/// `a[r] + pa .. + LANES` and `b[t] + pb .. + LANES` must be readable.
#[inline(always)]
pub(crate) unsafe fn dot_step<S: Simd, const MR: usize, const NT: usize>(
    s: S,
    a: &[*const f32; MR],
    pa: usize,
    b: &[*const f32; NT],
    pb: usize,
    acc: &mut [[S::V; NT]; MR],
) {
    let mut bv = [s.zero(); NT];
    for (bv, b) in bv.iter_mut().zip(b) {
        // SAFETY: the caller guarantees the range.
        *bv = unsafe { s.load(b.add(pb)) };
    }
    // Each row of `a` is loaded just before its products: NT + 1 live vectors besides the
    // accumulators.
    for (acc_r, a) in acc.iter_mut().zip(a) {
        // SAFETY: the caller guarantees the range.
        let ar = unsafe { s.load(a.add(pa)) };
        for (acc_rt, &bt) in acc_r.iter_mut().zip(&bv) {
            *acc_rt = s.mul_add(ar, bt, *acc_rt);
        }
    }
}

/// The tile shape (MR rows, NV vectors) for rows that are output pixels and `vectors` vectors
/// of output channels: one or two vectors of channels per tile, as many pixels as registers
/// allow. The rows are gathered ([`Gather`]): the compiler issues every row's broadcast before
/// the products, so MR broadcasts are live beside the MR·NV accumulators. With two vectors,
/// 12 rows (24 accumulators + 12 broadcasts + 2 streamed vectors) spilled accumulators and row
/// pointers to the stack and ran the ResNet-20 convolutions at 32 and 64 channels at half the
/// speed of 8 rows (measured on Zen 5, 1 thread: 32→32 at 14×14 forward 4.1 → 2.6–2.8 ms,
/// weight gradient 3.8 → 2.6–2.7 ms). The shape changes no result: each value is one sum in
/// a fixed order whatever the tile.
pub(crate) fn channel_tile_shape(registers: usize, vectors: usize) -> (usize, usize) {
    match (registers >= 32, vectors) {
        (true, 1) => (24, 1),
        (true, _) => (8, 2),
        (false, 1) => (12, 1),
        (false, _) => (6, 2),
    }
}

/// Runs `f` with the [`channel_tile_shape`].
#[inline(always)]
pub(crate) fn pick_channel_tile<F: TileFn>(registers: usize, vectors: usize, f: F) -> F::Output {
    match channel_tile_shape(registers, vectors) {
        (24, 1) => f.call::<24, 1>(),
        (8, 2) => f.call::<8, 2>(),
        (12, 1) => f.call::<12, 1>(),
        _ => f.call::<6, 2>(),
    }
}

/// A computation run with one of the tile shapes of [`pick_tile`] / [`pick_dot_tile`].
pub(crate) trait TileFn {
    type Output;
    fn call<const MR: usize, const NV: usize>(self) -> Self::Output;
}

/// Rows padded up to whole blocks of `mr`.
pub(crate) fn padded(rows: usize, mr: usize) -> usize {
    rows.div_ceil(mr) * mr
}

/// The broadcast-tile shapes (MR rows, NV vectors) of a level with `registers` vector
/// registers: MR·NV accumulators, NV streamed vectors and a broadcast must fit (with room for
/// the compiler's unrolling).
pub(crate) fn tile_shapes(registers: usize) -> &'static [(usize, usize)] {
    if registers >= 32 {
        &[(8, 3), (6, 4), (6, 3)]
    } else {
        &[(4, 3), (6, 2)]
    }
}

/// The shape of [`tile_shapes`] with at most `max_rows` rows (any if none has so few) that pads
/// `rows` × `vectors` outputs the least; ties go to the larger tile (fewer tiles to set up).
pub(crate) fn tile_shape_within(
    registers: usize,
    rows: usize,
    vectors: usize,
    max_rows: usize,
) -> (usize, usize) {
    let shapes = tile_shapes(registers);
    let fits = shapes.iter().any(|&(mr, _)| mr <= max_rows);
    let work = |&(mr, nv): &(usize, usize)| padded(rows, mr) * padded(vectors, nv);
    *shapes
        .iter()
        .filter(|&&(mr, _)| !fits || mr <= max_rows)
        .min_by_key(|&shape| (work(shape), usize::MAX - shape.0 * shape.1))
        .expect("every level has tile shapes")
}

/// [`tile_shape_within`] without a bound on the rows.
pub(crate) fn tile_shape(registers: usize, rows: usize, vectors: usize) -> (usize, usize) {
    tile_shape_within(registers, rows, vectors, usize::MAX)
}

/// Runs `f` with the [`tile_shape`] for `rows` × `vectors` outputs.
#[inline(always)]
pub(crate) fn pick_tile<F: TileFn>(
    registers: usize,
    rows: usize,
    vectors: usize,
    f: F,
) -> F::Output {
    pick_tile_shape(tile_shape(registers, rows, vectors), f)
}

/// Runs `f` with `shape`, one of the [`tile_shapes`].
#[inline(always)]
pub(crate) fn pick_tile_shape<F: TileFn>(shape: (usize, usize), f: F) -> F::Output {
    match shape {
        (8, 3) => f.call::<8, 3>(),
        (6, 4) => f.call::<6, 4>(),
        (6, 3) => f.call::<6, 3>(),
        (4, 3) => f.call::<4, 3>(),
        _ => f.call::<6, 2>(),
    }
}

/// The dot-tile shape (MR rows of `a`, NT rows of `b`) for `rows` × `cols` dot products:
/// MR·NT accumulators and MR + NT streamed vectors must fit; fewer padded products win.
pub(crate) fn dot_tile_shape(registers: usize, rows: usize, cols: usize) -> (usize, usize) {
    let work = |(mr, nt): (usize, usize)| padded(rows, mr) * padded(cols, nt);
    // The compiler unrolls the step loop twice: leave room for two steps' loads.
    let (a, b) = if registers >= 32 {
        ((6, 3), (4, 4))
    } else {
        ((3, 3), (4, 2))
    };
    if work(a) <= work(b) {
        a
    } else {
        b
    }
}

/// Runs `f` with the [`dot_tile_shape`] (NV = NT).
#[inline(always)]
pub(crate) fn pick_dot_tile<F: TileFn>(
    registers: usize,
    rows: usize,
    cols: usize,
    f: F,
) -> F::Output {
    match dot_tile_shape(registers, rows, cols) {
        (6, 3) => f.call::<6, 3>(),
        (4, 4) => f.call::<4, 4>(),
        (3, 3) => f.call::<3, 3>(),
        _ => f.call::<4, 2>(),
    }
}
