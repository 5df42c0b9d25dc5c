//! `C = α·A·B + β·C` on the broadcast tile of [`crate::microkernel`], at the run-time level.
//!
//! A is read in place (rows broadcast one element at a time, any strides); B is read in place
//! when its rows are contiguous and packed into zero-padded column panels otherwise (and for the
//! last, partial panel). Rows of C are split into fixed blocks over rayon. Every element of C is
//! one dot product summed in k order, with FMA on AVX2 and AVX-512, so the result depends
//! neither on the number of threads nor on the vector width (the portable level rounds products
//! separately).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::microkernel::{broadcast_tile, padded, pick_tile, tile_shape, InPlace, Strided, TileFn};
use crate::scratch::with_buffers;
use norma_simd::{dispatch, vector_cost, vector_shape, Kernel, Simd, SimdLevel, Width};

/// Multiply-adds below which a product runs on the calling thread.
const SERIAL_WORK: usize = 1 << 18;
/// Row tiles per parallel task.
const TILES_PER_TASK: usize = 8;

/// `c = alpha · a · b + beta · c` on matrix views of any strides (transposes are free). When
/// `beta` is 0, `c` is not read.
///
/// ```
/// use ndarray::Array2;
/// let a = Array2::from_shape_vec((2, 3), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
/// let b = Array2::from_shape_vec((3, 1), vec![1.0f32, 1.0, 1.0]).unwrap();
/// let mut c = Array2::zeros((2, 1));
/// norma_tensor::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut())?;
/// assert_eq!(c.as_slice().unwrap(), &[6.0, 15.0]);
/// # Ok::<(), norma_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::Shape`] if the shapes do not agree (`a`: m×k, `b`: k×n, `c`: m×n).
pub fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 || c.dim() != (m, n) {
        return Err(TensorError::shape(
            "gemm",
            format!(
                "({m}, {k}) · ({k2}, {n}) does not fit an output of {:?}",
                c.dim()
            ),
            &[a.shape(), b.shape(), c.shape()],
        ));
    }
    gemm_in(alpha, a, b, beta, c);
    Ok(())
}

fn gemm_in(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "internal: gemm of ({m}, {k}) · ({k2}, {n}) does not fit an output of {:?}",
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    let natural = |s: &[isize]| s.iter().all(|&x| x >= 0);
    if !(natural(a.strides()) && natural(b.strides()) && natural(c.strides())) {
        // Reversed axes are rare enough to leave to ndarray.
        general_mat_mul(alpha, &a, &b, beta, &mut c);
        return;
    }
    let level = SimdLevel::current();
    let width = choose_width(level, m, n);
    let (lanes, registers) = vector_shape(level, width);
    let (mr, nv) = tile_shape(registers, m, n.div_ceil(lanes));
    let nr = nv * lanes;
    let panels = n.div_ceil(nr);
    // Whole panels of a row-major B are read where they are; the rest is packed.
    let in_place = if b.strides()[1] == 1 { n / nr } else { 0 };
    with_buffers([(panels - in_place) * k * nr], |[packed]| {
        pack_panels(&b, in_place, nr, packed);
        let packed = &*packed;
        let block = |a: ArrayView2<'_, f32>, c: ArrayViewMut2<'_, f32>| {
            let task = Block {
                a,
                b: b.view(),
                c,
                packed,
                nr,
                in_place,
                shape_rows: m,
                alpha,
                beta,
            };
            dispatch(level, width, task)
        };
        let rows_per_task = TILES_PER_TASK * mr;
        if m * n * k < SERIAL_WORK || m <= rows_per_task {
            block(a, c);
        } else {
            let a_blocks: Vec<_> = a.axis_chunks_iter(Axis(0), rows_per_task).collect();
            let c_blocks: Vec<_> = c.axis_chunks_iter_mut(Axis(0), rows_per_task).collect();
            a_blocks
                .into_par_iter()
                .zip(c_blocks)
                .for_each(|(a, c)| block(a, c));
        }
    });
}

/// On AVX-512, 8-lane vectors when they pad the columns less than 16-lane ones.
fn choose_width(level: SimdLevel, m: usize, n: usize) -> Width {
    // Vectors of one row of C, weighted by what one costs on this CPU; the result is the same
    // at either width.
    let cost = |width| {
        let (lanes, registers) = vector_shape(level, width);
        let vectors = padded(n, tile_shape(registers, m, n.div_ceil(lanes)).1 * lanes) / lanes;
        vectors * vector_cost(level, width)
    };
    if cost(Width::Narrow) < cost(Width::Widest) {
        Width::Narrow
    } else {
        Width::Widest
    }
}

/// Copies column panels `first..` of `b` (k × nr each, columns past n zero) into `out`.
fn pack_panels(b: &ArrayView2<'_, f32>, first: usize, nr: usize, out: &mut [f32]) {
    let (k, n) = b.dim();
    if k == 0 {
        return;
    }
    for (i, panel) in out.chunks_exact_mut(k * nr).enumerate() {
        let col0 = (first + i) * nr;
        let cols = nr.min(n - col0);
        for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
            for (j, d) in dst[..cols].iter_mut().enumerate() {
                *d = b[[kk, col0 + j]];
            }
            dst[cols..].fill(0.0);
        }
    }
}

/// A block of rows of C, computed by one task.
struct Block<'a> {
    a: ArrayView2<'a, f32>,
    b: ArrayView2<'a, f32>,
    c: ArrayViewMut2<'a, f32>,
    packed: &'a [f32],
    nr: usize,
    in_place: usize,
    /// The rows of the whole product, which fixed the tile shape.
    shape_rows: usize,
    alpha: f32,
    beta: f32,
}

impl Kernel for Block<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let vectors = self.b.ncols().div_ceil(S::LANES);
        pick_tile(
            S::REGISTERS,
            self.shape_rows,
            vectors,
            Tiles { s, block: self },
        );
    }
}

struct Tiles<'a, S> {
    s: S,
    block: Block<'a>,
}

impl<S: Simd> TileFn for Tiles<'_, S> {
    type Output = ();
    #[inline(always)]
    fn call<const MR: usize, const NV: usize>(self) {
        let Tiles { s, mut block } = self;
        let lanes = S::LANES;
        assert_eq!(
            NV * lanes,
            block.nr,
            "internal: tile shape differs from the plan"
        );
        let ((rows, k), n) = (block.a.dim(), block.b.ncols());
        let [rsa, csa] = [0, 1].map(|i| block.a.strides()[i] as usize);
        let rsb = block.b.strides()[0] as usize;
        let [rsc, csc] = [0, 1].map(|i| block.c.strides()[i] as usize);
        let (a_ptr, b_ptr, c_ptr) = (block.a.as_ptr(), block.b.as_ptr(), block.c.as_mut_ptr());
        let pos: [usize; NV] = std::array::from_fn(|v| v * lanes);
        for panel in 0..n.div_ceil(block.nr) {
            let col0 = panel * block.nr;
            let b_rows = if panel < block.in_place {
                // SAFETY: `col0 + nr <= n`: the panel's columns are inside every row of B.
                Strided {
                    base: unsafe { b_ptr.add(col0) },
                    stride: rsb,
                }
            } else {
                let at = (panel - block.in_place) * k * block.nr;
                debug_assert!(at + k * block.nr <= block.packed.len());
                Strided {
                    base: block.packed[at..].as_ptr(),
                    stride: block.nr,
                }
            };
            for i0 in (0..rows).step_by(MR) {
                let valid = MR.min(rows - i0);
                // Rows past the end repeat the last one; their results are not stored.
                // SAFETY: `i0 + min(r, valid - 1) < rows`: the first element of a row of A.
                let a_rows: [*const f32; MR] =
                    std::array::from_fn(|r| unsafe { a_ptr.add((i0 + r.min(valid - 1)) * rsa) });
                // SAFETY: A's rows hold k elements `csa` apart; B's rows (in place or packed)
                // hold the `nr = NV · LANES` columns the positions address, for each of k rows.
                let acc = unsafe {
                    broadcast_tile::<S, _, _, MR, NV>(
                        s,
                        k,
                        InPlace {
                            rows: a_rows,
                            step: csa,
                        },
                        b_rows,
                        &pos,
                    )
                };
                for (r, acc_r) in acc.iter().enumerate().take(valid) {
                    for (v, &value) in acc_r.iter().enumerate() {
                        let col = col0 + v * lanes;
                        if col >= n {
                            break;
                        }
                        // SAFETY: row `i0 + r < rows` and columns `col .. col + cols <= n` of
                        // this block of C.
                        unsafe {
                            let dst = c_ptr.add((i0 + r) * rsc + col * csc);
                            store(
                                s,
                                value,
                                dst,
                                csc,
                                lanes.min(n - col),
                                block.alpha,
                                block.beta,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `dst[j · step] = alpha · value[j] + beta · dst[j · step]` for `j < count` (`dst` not read
/// when `beta` is 0).
///
/// # Safety
/// The `count` elements must be writable (and readable when `beta != 0`).
#[inline(always)]
unsafe fn store<S: Simd>(
    s: S,
    value: S::V,
    dst: *mut f32,
    step: usize,
    count: usize,
    alpha: f32,
    beta: f32,
) {
    let value = if alpha == 1.0 {
        value
    } else {
        s.mul(s.splat(alpha), value)
    };
    // SAFETY: the caller guarantees the `count` elements.
    unsafe {
        if step == 1 {
            let full = count == S::LANES;
            let value = if beta == 0.0 {
                value
            } else {
                let old = if full {
                    s.load(dst)
                } else {
                    s.load_partial(dst, count)
                };
                s.mul_add(s.splat(beta), old, value)
            };
            if full {
                s.store(dst, value);
            } else {
                s.store_partial(dst, value, count);
            }
        } else {
            let mut lanes = [0.0f32; 16];
            s.store(lanes.as_mut_ptr(), value);
            for (j, &v) in lanes[..count].iter().enumerate() {
                let d = dst.add(j * step);
                *d = if beta == 0.0 { v } else { v + beta * *d };
            }
        }
    }
}
