//! 2-D convolution (cross-correlation, as in PyTorch) lowered to GEMM through im2col.
//!
//! For each sample, the receptive fields are unrolled into a matrix `cols` of shape
//! (C·kh·kw, OH·OW); then
//!
//! - forward:          `y_n = W · cols_n + b`            (O, C·kh·kw)·(C·kh·kw, OH·OW)
//! - weight gradient:  `dW = Σ_n dy_n · cols_nᵀ`,  `db = Σ_n Σ_pixels dy_n`
//! - input gradient:   `dx_n = col2im(Wᵀ · dy_n)`
//!
//! Samples are split over rayon in fixed groups of [`SAMPLES_PER_TASK`]; each task unrolls into
//! one reused buffer. Per-task partial weight gradients are added in task order, so results do
//! not depend on the number of threads.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::matmul::gemm;
use crate::{Result, Tensor, TensorError};

/// Samples handled by one rayon task.
const SAMPLES_PER_TASK: usize = 8;

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

    /// Unrolls one sample `x` (C, H, W) into `cols` (C·kh·kw, OH·OW).
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (ow, opix) = (self.out_w, self.out_pixels());
        let mut row = 0;
        for c in 0..self.in_channels {
            let plane = &x[c * self.in_pixels()..(c + 1) * self.in_pixels()];
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let dst = &mut cols[row * opix..(row + 1) * opix];
                    let (x0, x1) = self.valid_out_cols(kj);
                    for oy in 0..self.out_h {
                        let line = &mut dst[oy * ow..(oy + 1) * ow];
                        let iy = self.source(oy, ki);
                        if iy < 0 || iy >= self.height as isize || x0 == x1 {
                            line.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * self.width..(iy as usize + 1) * self.width];
                        line[..x0].fill(0.0);
                        line[x1..].fill(0.0);
                        let ix0 = (x0 * self.stride + kj) - self.padding;
                        if self.stride == 1 {
                            line[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
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

    /// Adds the unrolled gradient `cols` (C·kh·kw, OH·OW) back onto one sample's input
    /// gradient `dx` (C, H, W): the transpose of [`Self::im2col`].
    fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        let (ow, opix) = (self.out_w, self.out_pixels());
        let mut row = 0;
        for c in 0..self.in_channels {
            let plane = &mut dx[c * self.in_pixels()..(c + 1) * self.in_pixels()];
            for ki in 0..self.kernel_h {
                for kj in 0..self.kernel_w {
                    let src = &cols[row * opix..(row + 1) * opix];
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

fn matrix(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("internal: buffer sized for the matrix")
}

fn matrix_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("internal: buffer sized for the matrix")
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
        let (k, opix, o) = (g.patch_len(), g.out_pixels(), g.out_channels);
        let mut out = Tensor::zeros(&g.output_shape());
        let w = matrix(weight.as_slice(), o, k);
        let x = self.as_slice();
        let in_len = g.in_channels * g.in_pixels();
        out.as_slice_mut()
            .par_chunks_mut(SAMPLES_PER_TASK * o * opix)
            .enumerate()
            .for_each(|(task, y_task)| {
                let mut cols = vec![0.0f32; k * opix];
                for (i, y) in y_task.chunks_exact_mut(o * opix).enumerate() {
                    let n = task * SAMPLES_PER_TASK + i;
                    g.im2col(&x[n * in_len..(n + 1) * in_len], &mut cols);
                    if let Some(b) = bias {
                        for (row, &bv) in y.chunks_exact_mut(opix).zip(b.as_slice()) {
                            row.fill(bv);
                        }
                    }
                    let beta = if bias.is_some() { 1.0 } else { 0.0 };
                    gemm(1.0, w, matrix(&cols, k, opix), beta, matrix_mut(y, o, opix));
                }
            });
        Ok(out)
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
        let (k, opix, o) = (g.patch_len(), g.out_pixels(), g.out_channels);
        let in_len = g.in_channels * g.in_pixels();
        let mut dx = Tensor::zeros(&g.input_shape());
        let wt = matrix(weight.as_slice(), o, k).reversed_axes();
        let dy = self.as_slice();
        dx.as_slice_mut()
            .par_chunks_mut(SAMPLES_PER_TASK * in_len)
            .enumerate()
            .for_each(|(task, dx_task)| {
                let mut cols = vec![0.0f32; k * opix];
                for (i, dx_n) in dx_task.chunks_exact_mut(in_len).enumerate() {
                    let n = task * SAMPLES_PER_TASK + i;
                    let dy_n = matrix(&dy[n * o * opix..(n + 1) * o * opix], o, opix);
                    gemm(1.0, wt, dy_n, 0.0, matrix_mut(&mut cols, k, opix));
                    g.col2im(&cols, dx_n);
                }
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
        let (k, opix, o) = (g.patch_len(), g.out_pixels(), g.out_channels);
        let in_len = g.in_channels * g.in_pixels();
        let (x, dy) = (input.as_slice(), self.as_slice());
        // One partial (dW, db) per task, summed below in task order.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..g.batch.div_ceil(SAMPLES_PER_TASK))
            .into_par_iter()
            .map(|task| {
                let mut cols = vec![0.0f32; k * opix];
                let mut dw = vec![0.0f32; o * k];
                let mut db = vec![0.0f32; o];
                let end = ((task + 1) * SAMPLES_PER_TASK).min(g.batch);
                for n in task * SAMPLES_PER_TASK..end {
                    g.im2col(&x[n * in_len..(n + 1) * in_len], &mut cols);
                    let dy_n = &dy[n * o * opix..(n + 1) * o * opix];
                    let cols_t = matrix(&cols, k, opix).reversed_axes();
                    gemm(
                        1.0,
                        matrix(dy_n, o, opix),
                        cols_t,
                        1.0,
                        matrix_mut(&mut dw, o, k),
                    );
                    for (acc, row) in db.iter_mut().zip(dy_n.chunks_exact(opix)) {
                        *acc += row.iter().sum::<f32>();
                    }
                }
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
