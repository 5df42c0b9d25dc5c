//! 2-D convolution (cross-correlation, as in PyTorch) and its two gradients.
//!
//! Every convolution runs directly on the image ([`direct`]): the receptive field of a vector
//! of outputs is read in place at fixed offsets, with run-time-dispatched SIMD kernels; a stride
//! above 1 first splits the image into its stride × stride phases, so that consecutive outputs
//! read consecutive values again. The batch is split over rayon in pieces fixed by the shapes
//! and partial weight gradients are summed in piece order, so results do not depend on the
//! number of threads.

mod direct;

use crate::{Result, Tensor, TensorError};

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

    /// Multiply-adds of the forward pass (for GFLOP/s reports: FLOPs = 2 × this).
    pub fn forward_macs(&self) -> usize {
        self.batch * self.out_channels * self.out_pixels() * self.patch_len()
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
        let (x, w, b) = (
            self.as_slice(),
            weight.as_slice(),
            bias.map(Tensor::as_slice),
        );
        // Both paths write every output value once.
        Ok(Tensor::from_fill(&g.output_shape(), |out| {
            direct::forward(&g, x, w, b, out)
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
        let (dy, w) = (self.as_slice(), weight.as_slice());
        // The pass writes every input-gradient value once.
        Ok(Tensor::from_fill(&g.input_shape(), |dx| {
            direct::backward_input(&g, dy, w, dx)
        }))
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
        let (x, dy) = (input.as_slice(), self.as_slice());
        let (dw, db) = direct::backward_params(&g, x, dy);
        Ok((
            Tensor::from_parts(weight_shape, dw),
            Tensor::from_parts(&[g.out_channels], db),
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
}
