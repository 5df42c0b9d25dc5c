//! 2-D convolution (cross-correlation, as in PyTorch) lowered to GEMM through im2col.
//!
//! The receptive fields of a group of B samples are unrolled side by side into one matrix
//! `cols` of shape (C·kh·kw, B·OH·OW) (sample j in columns j·OH·OW ..), so that each GEMM
//! covers B samples; with Y and dY gathered the same way as (O, B·OH·OW):
//!
//! - forward:          `Y = W · cols + b`          (O, C·kh·kw)·(C·kh·kw, B·OH·OW)
//! - weight gradient:  `dW = Σ_groups dY · colsᵀ`, `db = Σ dY`
//! - input gradient:   `dx = col2im(Wᵀ · dY)`
//!
//! B is chosen from the shapes alone so that `cols` stays cache-sized (LeNet: 4 to 6). Groups
//! are split over rayon; per-group partial weight gradients are added in group order, so
//! results do not depend on the number of threads.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use ndarray::linalg::general_mat_mul;

use crate::scratch::with_buffers;
use crate::{Result, Tensor, TensorError};

/// Floats of the unrolled matrix per group: 256 KiB, about half of an L2 cache.
const COLS_PER_GROUP: usize = 1 << 16;
/// Upper bound on samples per group, so even tiny images leave work for every thread.
const MAX_GROUP: usize = 16;

/// Shapes and hyper-parameters of one convolution, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Conv2dGeometry {
    /// Validates an input (N, C, H, W) and a weight (O, C, kh, kw) for the given stride and
    /// zero padding.
    pub fn new(input: &[usize], weight: &[usize], stride: usize, padding: usize) -> Result<Self> {
        let op = "conv2d";
        if input.len() != 4 || weight.len() != 4 {
            return Err(TensorError::shape(
                op,
                "expected input (N, C, H, W) and weight (O, C, kh, kw)",
                &[input, weight],
            ));
        }
        if input[1] != weight[1] {
            return Err(TensorError::shape(
                op,
                format!(
                    "input has {} channels but the weight expects {}",
                    input[1], weight[1]
                ),
                &[input, weight],
            ));
        }
        if stride == 0 {
            return Err(TensorError::Argument {
                op,
                reason: "stride must be at least 1".into(),
            });
        }
        if input[1] == 0 || weight[0] == 0 {
            return Err(TensorError::shape(
                op,
                "channel counts must be positive",
                &[input, weight],
            ));
        }
        let (kh, kw) = (weight[2], weight[3]);
        let (ph, pw) = (input[2] + 2 * padding, input[3] + 2 * padding);
        if kh == 0 || kw == 0 || kh > ph || kw > pw {
            return Err(TensorError::shape(
                op,
                format!("kernel {kh}x{kw} does not fit the padded input {ph}x{pw}"),
                &[input, weight],
            ));
        }
        Ok(Conv2dGeometry {
            batch: input[0],
            in_channels: input[1],
            height: input[2],
            width: input[3],
            out_channels: weight[0],
            kernel_h: kh,
            kernel_w: kw,
            stride,
            padding,
            out_h: (ph - kh) / stride + 1,
            out_w: (pw - kw) / stride + 1,
        })
    }

    /// Shape of the output (N, O, OH, OW).
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h, self.out_w]
    }

    /// Shape of the input (N, C, H, W).
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.height, self.width]
    }

    /// Shape of the weight (O, C, kh, kw).
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel_h,
            self.kernel_w,
        ]
    }

    /// Rows of the unrolled matrix: C·kh·kw.
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    fn in_pixels(&self) -> usize {
        self.height * self.width
    }

    /// Samples unrolled together into one GEMM (depends on the shapes only).
    fn group(&self) -> usize {
        (COLS_PER_GROUP / (self.patch_len() * self.out_pixels()).max(1)).clamp(1, MAX_GROUP)
    }

    /// Multiply-adds of the forward pass (for GFLOP/s reports: FLOPs = 2 × this).
    pub fn forward_macs(&self) -> usize {
        self.batch * self.out_channels * self.out_pixels() * self.patch_len()
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
        if self.stride == 1 && self.padding == 0 {
            return self.im2col_dense(x, cols, ld);
        }
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
                            copy_short(&mut line[x0..x1], &src[ix0..ix0 + (x1 - x0)]);
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

    /// For stride 1 with padding: the same convolution on an explicitly zero-padded input,
    /// whose unrolling has no bounds to check.
    fn padded_dense(&self) -> Option<Conv2dGeometry> {
        (self.stride == 1 && self.padding > 0).then(|| Conv2dGeometry {
            height: self.height + 2 * self.padding,
            width: self.width + 2 * self.padding,
            padding: 0,
            ..*self
        })
    }

    /// Copies one sample (C, H, W) into the interior of a zeroed (C, H + 2p, W + 2p) image.
    fn pad_into(&self, x: &[f32], image: &mut [f32]) {
        let (p, w, pw) = (self.padding, self.width, self.width + 2 * self.padding);
        let plane = (self.height + 2 * p) * pw;
        image.fill(0.0);
        for (src, dst) in x
            .chunks_exact(self.in_pixels())
            .zip(image.chunks_exact_mut(plane))
        {
            for (row, line) in src.chunks_exact(w).enumerate() {
                dst[(row + p) * pw + p..][..w].copy_from_slice(line);
            }
        }
    }

    /// Adds the interior of a padded (C, H + 2p, W + 2p) gradient image onto `dx` (C, H, W).
    fn unpad_add(&self, image: &[f32], dx: &mut [f32]) {
        let (p, w, pw) = (self.padding, self.width, self.width + 2 * self.padding);
        let plane = (self.height + 2 * p) * pw;
        for (dst, src) in dx
            .chunks_exact_mut(self.in_pixels())
            .zip(image.chunks_exact(plane))
        {
            for (row, line) in dst.chunks_exact_mut(w).enumerate() {
                line.iter_mut()
                    .zip(&src[(row + p) * pw + p..][..w])
                    .for_each(|(d, s)| *d += s);
            }
        }
    }

    /// [`Self::im2col`] for stride 1 without padding (LeNet-BN's convolutions): every row of
    /// `cols` is OH input rows, each shifted by the kernel offset; no bounds to check.
    fn im2col_dense(&self, x: &[f32], cols: &mut [f32], ld: usize) {
        let (w, ow, opix) = (self.width, self.out_w, self.out_pixels());
        let mut row = 0;
        for plane in x.chunks_exact(self.in_pixels()) {
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let dst = &mut cols[row * ld..row * ld + opix];
                    for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                        copy_short(line, &plane[(oy + ki) * w + kj..][..ow]);
                    }
                    row += 1;
                }
            }
        }
    }

    /// [`Self::col2im`] for stride 1 without padding.
    fn col2im_dense(&self, cols: &[f32], ld: usize, dx: &mut [f32]) {
        let (w, ow, opix) = (self.width, self.out_w, self.out_pixels());
        let mut row = 0;
        for plane in dx.chunks_exact_mut(self.in_pixels()) {
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let src = &cols[row * ld..row * ld + opix];
                    for (oy, line) in src.chunks_exact(ow).enumerate() {
                        let dst = &mut plane[(oy + ki) * w + kj..][..ow];
                        dst.iter_mut().zip(line).for_each(|(d, s)| *d += s);
                    }
                    row += 1;
                }
            }
        }
    }

    /// Adds unrolled gradient columns (rows `ld` apart, as written by [`Self::im2col`]) back
    /// onto one sample's input gradient `dx` (C, H, W): the transpose of `im2col`.
    fn col2im(&self, cols: &[f32], ld: usize, dx: &mut [f32]) {
        if self.stride == 1 && self.padding == 0 {
            return self.col2im_dense(cols, ld, dx);
        }
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

/// Copies a short run (an output row: 8 to 28 values in LeNet) with fixed-size vector moves;
/// `copy_from_slice` would call `memcpy`, whose call overhead dominates at this size.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().expect("chunks of 8");
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
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
    let padded = g.padded_dense();
    for j in 0..count {
        let sample = &x[(first + j) * in_len..(first + j + 1) * in_len];
        let dst = &mut cols[j * opix..];
        match &padded {
            // Stride 1 with padding: copy into a zero-bordered image, then unroll densely.
            Some(p) => with_buffers([p.in_channels * p.in_pixels()], |[image]| {
                g.pad_into(sample, image);
                p.im2col(image, dst, count * opix);
            }),
            None => g.im2col(sample, dst, count * opix),
        }
    }
}

/// Adds the unrolled gradient columns of sample `j` of a group (`ld` = count·OH·OW) onto its
/// input gradient `dx_n`.
fn fold_back(g: &Conv2dGeometry, cols: &[f32], ld: usize, dx_n: &mut [f32]) {
    match g.padded_dense() {
        Some(p) => with_buffers([p.in_channels * p.in_pixels()], |[image]| {
            image.fill(0.0);
            p.col2im(cols, ld, image);
            g.unpad_add(image, dx_n);
        }),
        None => g.col2im(cols, ld, dx_n),
    }
}

/// Rows of a GEMM operand padded to whole panels of matrixmultiply's 8-row kernel: with 6
/// output channels (LeNet's first convolution) every tile would otherwise take the slower
/// masked path.
fn padded(rows: usize) -> usize {
    rows.div_ceil(8) * 8
}

/// The (rows, cols) matrix `m` with zero rows appended up to [`padded`]`(rows)`.
fn padded_rows(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = m[..rows * cols].to_vec();
    out.resize(padded(rows) * cols, 0.0);
    out
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

impl Tensor {
    /// 2-D convolution: input (N, C, H, W), weight (O, C, kh, kw), optional bias (O)
    /// → output (N, O, OH, OW) with OH = (H + 2·padding − kh) / stride + 1.
    ///
    /// `y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x[n, c, i·stride + p − padding, j·stride + q − padding]`
    /// (zero outside the image).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        let g = Conv2dGeometry::new(self.shape(), weight.shape(), stride, padding)?;
        if let Some(b) = bias {
            if b.shape() != [g.out_channels] {
                return Err(TensorError::shape(
                    "conv2d",
                    format!("bias must have shape [{}]", g.out_channels),
                    &[self.shape(), weight.shape(), b.shape()],
                ));
            }
        }
        let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
        let rows = padded(o);
        let w = padded_rows(weight.as_slice(), o, k);
        let x = self.as_slice();
        // Every output value is written once by the scatter below.
        Ok(Tensor::from_fill(&g.output_shape(), |out| {
            out.par_chunks_mut(group * o * opix)
                .enumerate()
                .for_each(|(task, y)| {
                    let count = y.len() / (o * opix);
                    let n = count * opix;
                    with_buffers([k * n, rows * n], |[cols, prod]| {
                        unroll(&g, x, task * group, count, cols);
                        general_mat_mul(
                            1.0,
                            &matrix(&w, rows, k),
                            &matrix(cols, k, n),
                            0.0,
                            &mut matrix_mut(prod, rows, n),
                        );
                        // Scatter (O, count·P) back to (count, O, P), adding the bias.
                        for (j, y) in y.chunks_exact_mut(o * opix).enumerate() {
                            for (ch, row) in y.chunks_exact_mut(opix).enumerate() {
                                let src = &prod[ch * n + j * opix..][..opix];
                                let b = bias.map_or(0.0, |b| b.as_slice()[ch]);
                                row.iter_mut().zip(src).for_each(|(d, s)| {
                                    d.write(s + b);
                                });
                            }
                        }
                    });
                });
        }))
    }

    /// Gradient of [`Tensor::conv2d`] with respect to its input: `self` is the output gradient
    /// (N, O, OH, OW); returns (N, C, H, W) for the given input shape.
    pub fn conv2d_backward_input(
        &self,
        weight: &Tensor,
        input_shape: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        let g = Conv2dGeometry::new(input_shape, weight.shape(), stride, padding)?;
        self.expect_shape("conv2d_backward_input", &g.output_shape())?;
        let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
        let in_len = g.in_channels * g.in_pixels();
        let mut dx = Tensor::zeros(&g.input_shape());
        let wt = matrix(weight.as_slice(), o, k).reversed_axes();
        let dy = self.as_slice();
        dx.as_slice_mut()
            .par_chunks_mut(group * in_len)
            .enumerate()
            .for_each(|(task, dx)| {
                let count = dx.len() / in_len;
                let n = count * opix;
                with_buffers([o * n, k * n], |[dy_group, cols]| {
                    gather(dy, o, opix, task * group, count, dy_group);
                    general_mat_mul(
                        1.0,
                        &wt,
                        &matrix(dy_group, o, n),
                        0.0,
                        &mut matrix_mut(cols, k, n),
                    );
                    for (j, dx_n) in dx.chunks_exact_mut(in_len).enumerate() {
                        fold_back(&g, &cols[j * opix..], n, dx_n);
                    }
                });
            });
        Ok(dx)
    }

    /// Gradients of [`Tensor::conv2d`] with respect to weight and bias: `self` is the output
    /// gradient (N, O, OH, OW), `input` the forward input. Returns (dW (O, C, kh, kw), db (O)).
    pub fn conv2d_backward_params(
        &self,
        input: &Tensor,
        weight_shape: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<(Tensor, Tensor)> {
        let g = Conv2dGeometry::new(input.shape(), weight_shape, stride, padding)?;
        self.expect_shape("conv2d_backward_params", &g.output_shape())?;
        let (k, opix, o, group) = (g.patch_len(), g.out_pixels(), g.out_channels, g.group());
        let (x, dy) = (input.as_slice(), self.as_slice());
        // One partial (dW, db) per group, summed below in group order.
        let rows = padded(o);
        let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..g.batch.div_ceil(group))
            .into_par_iter()
            .map(|task| {
                let first = task * group;
                let count = group.min(g.batch - first);
                let n = count * opix;
                let mut dw = vec![0.0f32; rows * k];
                let db = with_buffers([k * n, rows * n], |[cols, dy_group]| {
                    unroll(&g, x, first, count, cols);
                    // Rows past O stay zero: they only pad the GEMM to whole 8-row panels.
                    dy_group[o * n..].fill(0.0);
                    gather(dy, o, opix, first, count, dy_group);
                    let cols_t = matrix(cols, k, n).reversed_axes();
                    general_mat_mul(
                        1.0,
                        &matrix(dy_group, rows, n),
                        &cols_t,
                        0.0,
                        &mut matrix_mut(&mut dw, rows, k),
                    );
                    dy_group[..o * n]
                        .chunks_exact(n)
                        .map(|row| row.iter().sum::<f32>())
                        .collect()
                });
                dw.truncate(o * k);
                (dw, db)
            })
            .collect();
        let mut dw = vec![0.0f32; o * k];
        let mut db = vec![0.0f32; o];
        for (pw, pb) in &partials {
            dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
        }
        Ok((
            Tensor::from_parts(weight_shape, dw),
            Tensor::from_parts(&[o], db),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_output_sizes() {
        let g = Conv2dGeometry::new(&[2, 1, 28, 28], &[6, 1, 5, 5], 1, 2).unwrap();
        assert_eq!(g.output_shape(), [2, 6, 28, 28]);
        let g = Conv2dGeometry::new(&[2, 6, 12, 12], &[16, 6, 5, 5], 1, 0).unwrap();
        assert_eq!(g.output_shape(), [2, 16, 8, 8]);
        let g = Conv2dGeometry::new(&[1, 1, 7, 7], &[1, 1, 3, 3], 2, 1).unwrap();
        assert_eq!(g.output_shape(), [1, 1, 4, 4]);
    }

    #[test]
    fn geometry_errors() {
        let e = Conv2dGeometry::new(&[2, 3, 8, 8], &[4, 2, 3, 3], 1, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("input has 3 channels but the weight expects 2"),
            "{e}"
        );
        assert!(Conv2dGeometry::new(&[2, 3, 8, 8], &[4, 3, 3, 3], 0, 0).is_err());
        assert!(Conv2dGeometry::new(&[2, 3, 2, 2], &[4, 3, 3, 3], 1, 0).is_err());
        assert!(Conv2dGeometry::new(&[2, 3, 8], &[4, 3, 3, 3], 1, 0).is_err());
        assert!(Conv2dGeometry::new(&[2, 0, 8, 8], &[4, 0, 3, 3], 1, 0).is_err());
        assert!(Conv2dGeometry::new(&[2, 3, 8, 8], &[0, 3, 3, 3], 1, 0).is_err());
    }

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
