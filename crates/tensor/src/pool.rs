//! 2-D average and max pooling over NCHW tensors (no padding), with their gradients.
//!
//! Every (n, c) plane is independent, so planes are split over rayon and each output is
//! written by exactly one task. Average pooling is compiled for each SIMD level, with a copy of
//! its loops for LeNet's 2×2 windows that the compiler vectorizes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::{Result, Tensor, TensorError};
use norma_simd::{dispatch, Kernel, Simd, SimdLevel, Width};

/// Planes handled per rayon task (LeNet: 6 or 16 channels per sample).
const PLANES_PER_TASK: usize = 64;

/// Window size and stride of one pooling, validated against an input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolGeometry {
    planes: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    out_h: usize,
    out_w: usize,
}

impl PoolGeometry {
    fn new(op: &'static str, shape: &[usize], kernel: usize, stride: usize) -> Result<Self> {
        if shape.len() != 4 {
            return Err(TensorError::shape(
                op,
                "expected an input (N, C, H, W)",
                &[shape],
            ));
        }
        if kernel == 0 || stride == 0 {
            return Err(TensorError::Argument {
                op,
                reason: format!("kernel ({kernel}) and stride ({stride}) must be at least 1"),
            });
        }
        let (h, w) = (shape[2], shape[3]);
        if kernel > h || kernel > w {
            return Err(TensorError::shape(
                op,
                format!("a {kernel}x{kernel} window does not fit the input"),
                &[shape],
            ));
        }
        Ok(PoolGeometry {
            planes: shape[0] * shape[1],
            height: h,
            width: w,
            kernel,
            stride,
            out_h: (h - kernel) / stride + 1,
            out_w: (w - kernel) / stride + 1,
        })
    }

    fn output_shape(&self, shape: &[usize]) -> [usize; 4] {
        [shape[0], shape[1], self.out_h, self.out_w]
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Calls `f(output index, input index of the window's top-left corner)` for each output.
    #[inline]
    fn for_each_window(&self, mut f: impl FnMut(usize, usize)) {
        for oy in 0..self.out_h {
            for ox in 0..self.out_w {
                f(
                    oy * self.out_w + ox,
                    oy * self.stride * self.width + ox * self.stride,
                );
            }
        }
    }

    /// Averages one plane `x` into `y` (`kernel` and `stride` equal to the geometry's; passed
    /// separately so that a call with constants compiles to a vectorized loop). Column sums
    /// first, then across: `((x00 + x10) + (x01 + x11)) / 4` for 2×2 windows.
    #[inline(always)]
    fn avg_plane(&self, kernel: usize, stride: usize, x: &[f32], y: &mut [MaybeUninit<f32>]) {
        let scale = 1.0 / (kernel * kernel) as f32;
        for (oy, y_row) in y.chunks_exact_mut(self.out_w).enumerate() {
            let rows = &x[oy * stride * self.width..];
            for (ox, y) in y_row.iter_mut().enumerate() {
                let mut sum = 0.0;
                for j in 0..kernel {
                    let mut column = 0.0;
                    for i in 0..kernel {
                        column += rows[i * self.width + ox * stride + j];
                    }
                    sum += column;
                }
                y.write(sum * scale);
            }
        }
    }

    /// The gradient of [`Self::avg_plane`] when windows tile the plane (`kernel` = stride): every
    /// input of window (oy, ox) gets `dy[oy, ox] / k²`; rows and columns no window reaches get 0.
    #[inline(always)]
    fn avg_spread_plane(&self, kernel: usize, dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
        let scale = 1.0 / (kernel * kernel) as f32;
        let covered = self.out_w * kernel;
        for (row, dx_row) in dx.chunks_exact_mut(self.width).enumerate() {
            let oy = row / kernel;
            if oy >= self.out_h {
                dx_row.iter_mut().for_each(|d| {
                    d.write(0.0);
                });
                continue;
            }
            let dy_row = &dy[oy * self.out_w..][..self.out_w];
            for (window, &g) in dx_row[..covered].chunks_exact_mut(kernel).zip(dy_row) {
                window.iter_mut().for_each(|d| {
                    d.write(g * scale);
                });
            }
            dx_row[covered..].iter_mut().for_each(|d| {
                d.write(0.0);
            });
        }
    }

    /// Runs `f(input plane, output plane)` on every plane pair, in parallel.
    fn planes_par<A: Sync, B: Send>(
        &self,
        input: &[A],
        output: &mut [B],
        in_len: usize,
        out_len: usize,
        f: impl Fn(&[A], &mut [B]) + Sync,
    ) {
        self.tasks_par(input, output, in_len, out_len, |src, dst| {
            for (s, d) in src.chunks_exact(in_len).zip(dst.chunks_exact_mut(out_len)) {
                f(s, d);
            }
        });
    }

    /// Runs `f(input planes, output planes)` on groups of [`PLANES_PER_TASK`] planes, in
    /// parallel.
    fn tasks_par<A: Sync, B: Send>(
        &self,
        input: &[A],
        output: &mut [B],
        in_len: usize,
        out_len: usize,
        f: impl Fn(&[A], &mut [B]) + Sync,
    ) {
        input
            .par_chunks(PLANES_PER_TASK * in_len)
            .zip(output.par_chunks_mut(PLANES_PER_TASK * out_len))
            .for_each(|(src, dst)| f(src, dst));
    }
}

/// Average pooling (or, `backward`, its gradient when windows tile the input) of the planes of
/// one task, compiled for each SIMD level.
struct AvgPlanes<'a> {
    g: &'a PoolGeometry,
    backward: bool,
    src: &'a [f32],
    dst: &'a mut [MaybeUninit<f32>],
}

impl Kernel for AvgPlanes<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let g = self.g;
        let (from, to) = if self.backward {
            (g.out_plane(), g.in_plane())
        } else {
            (g.in_plane(), g.out_plane())
        };
        for (x, y) in self
            .src
            .chunks_exact(from)
            .zip(self.dst.chunks_exact_mut(to))
        {
            // LeNet's 2×2 windows get a copy of the loops with the sizes known, which the
            // compiler vectorizes.
            match (self.backward, g.kernel, g.stride) {
                (false, 2, 2) => g.avg_plane(2, 2, x, y),
                (false, k, s) => g.avg_plane(k, s, x, y),
                (true, 2, _) => g.avg_spread_plane(2, x, y),
                (true, k, _) => g.avg_spread_plane(k, x, y),
            }
        }
    }
}

/// The result of [`Tensor::max_pool2d`]: the pooled values and, for each, the position of the
/// maximum inside its input plane (what the backward pass routes the gradient to).
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPoolOutput {
    pub output: Tensor,
    pub argmax: Vec<u32>,
}

impl Tensor {
    /// Average pooling with a square `kernel` window and `stride`:
    /// `y[n,c,i,j] = mean of x[n, c, i·s .. i·s+k, j·s .. j·s+k]`; (N, C, H, W) → (N, C, OH, OW).
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        let g = PoolGeometry::new("avg_pool2d", self.shape(), kernel, stride)?;
        let level = SimdLevel::current();
        // Every output is written once: one window each.
        Ok(Tensor::from_fill(&g.output_shape(self.shape()), |out| {
            g.tasks_par(
                self.as_slice(),
                out,
                g.in_plane(),
                g.out_plane(),
                |src, dst| {
                    let planes = AvgPlanes {
                        g: &g,
                        backward: false,
                        src,
                        dst,
                    };
                    dispatch(level, Width::Widest, planes);
                },
            );
        }))
    }

    /// Gradient of [`Tensor::avg_pool2d`]: `self` is the output gradient; each input position
    /// receives `dy / k²` from every window that contains it.
    pub fn avg_pool2d_backward(
        &self,
        input_shape: &[usize],
        kernel: usize,
        stride: usize,
    ) -> Result<Tensor> {
        let g = PoolGeometry::new("avg_pool2d_backward", input_shape, kernel, stride)?;
        self.expect_shape("avg_pool2d_backward", &g.output_shape(input_shape))?;
        let level = SimdLevel::current();
        if kernel == stride {
            // Windows tile the input: each input value is written once, with no accumulation.
            return Ok(Tensor::from_fill(input_shape, |dx| {
                g.tasks_par(
                    self.as_slice(),
                    dx,
                    g.out_plane(),
                    g.in_plane(),
                    |src, dst| {
                        let planes = AvgPlanes {
                            g: &g,
                            backward: true,
                            src,
                            dst,
                        };
                        dispatch(level, Width::Widest, planes);
                    },
                );
            }));
        }
        let mut dx = Tensor::zeros(input_shape);
        let scale = 1.0 / (kernel * kernel) as f32;
        g.planes_par(
            self.as_slice(),
            dx.as_slice_mut(),
            g.out_plane(),
            g.in_plane(),
            |dy, dx| {
                g.for_each_window(|o, corner| {
                    let v = dy[o] * scale;
                    for r in 0..kernel {
                        let row = corner + r * g.width;
                        dx[row..row + kernel].iter_mut().for_each(|d| *d += v);
                    }
                });
            },
        );
        Ok(dx)
    }

    /// Max pooling with a square `kernel` window and `stride`; (N, C, H, W) → (N, C, OH, OW).
    /// Ties go to the first maximum in row-major order; NaN propagates (as in PyTorch).
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Result<MaxPoolOutput> {
        let g = PoolGeometry::new("max_pool2d", self.shape(), kernel, stride)?;
        let out_shape = g.output_shape(self.shape());
        let mut argmax = vec![0u32; g.planes * g.out_plane()];
        g.planes_par(
            self.as_slice(),
            &mut argmax,
            g.in_plane(),
            g.out_plane(),
            |x, idx| {
                g.for_each_window(|o, corner| {
                    let mut best = corner;
                    for r in 0..kernel {
                        for c in 0..kernel {
                            let i = corner + r * g.width + c;
                            if x[i] > x[best] || x[i].is_nan() && !x[best].is_nan() {
                                best = i;
                            }
                        }
                    }
                    idx[o] = best as u32;
                });
            },
        );
        let x = self.as_slice();
        let (ip, op) = (g.in_plane(), g.out_plane());
        let values = argmax
            .iter()
            .enumerate()
            .map(|(o, &i)| x[(o / op) * ip + i as usize])
            .collect();
        Ok(MaxPoolOutput {
            output: Tensor::from_parts(&out_shape, values),
            argmax,
        })
    }

    /// Gradient of [`Tensor::max_pool2d`]: `self` is the output gradient, routed to each window's
    /// maximum (`argmax` from the forward pass).
    pub fn max_pool2d_backward(
        &self,
        argmax: &[u32],
        input_shape: &[usize],
        kernel: usize,
        stride: usize,
    ) -> Result<Tensor> {
        let g = PoolGeometry::new("max_pool2d_backward", input_shape, kernel, stride)?;
        self.expect_shape("max_pool2d_backward", &g.output_shape(input_shape))?;
        if argmax.len() != self.len() || argmax.iter().any(|&i| i as usize >= g.in_plane()) {
            return Err(TensorError::shape(
                "max_pool2d_backward",
                "argmax does not come from a max_pool2d of this input shape",
                &[input_shape, self.shape()],
            ));
        }
        let mut dx = Tensor::zeros(input_shape);
        let (ip, op) = (g.in_plane(), g.out_plane());
        let dy = self.as_slice();
        dx.as_slice_mut()
            .par_chunks_mut(PLANES_PER_TASK * ip)
            .enumerate()
            .for_each(|(task, dx_task)| {
                for (p, dx) in dx_task.chunks_exact_mut(ip).enumerate() {
                    let plane = task * PLANES_PER_TASK + p;
                    let range = plane * op..(plane + 1) * op;
                    for (&g, &i) in dy[range.clone()].iter().zip(&argmax[range]) {
                        dx[i as usize] += g;
                    }
                }
            });
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn avg_and_max_pool_small_example() {
        let x = Tensor::from_vec(&[1, 1, 2, 4], vec![1., 2., 3., 4., 5., 6., 8., 7.]).unwrap();
        let a = x.avg_pool2d(2, 2).unwrap();
        assert_eq!(a.shape(), &[1, 1, 1, 2]);
        assert_eq!(a.as_slice(), &[3.5, 5.5]);
        let m = x.max_pool2d(2, 2).unwrap();
        assert_eq!(m.output.as_slice(), &[6., 8.]);
        assert_eq!(m.argmax, vec![5, 6]);
        let dx = Tensor::from_vec(&[1, 1, 1, 2], vec![1., 2.])
            .unwrap()
            .max_pool2d_backward(&m.argmax, x.shape(), 2, 2)
            .unwrap();
        assert_eq!(dx.as_slice(), &[0., 0., 0., 0., 0., 1., 2., 0.]);
    }

    #[test]
    fn max_pool_propagates_nan() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1., f32::NAN, 3., 2.]).unwrap();
        assert!(x.max_pool2d(2, 2).unwrap().output.as_slice()[0].is_nan());
    }

    #[test]
    fn pooling_errors() {
        let x = Tensor::zeros(&[1, 1, 3, 3]);
        assert!(x.avg_pool2d(4, 1).is_err());
        assert!(x.avg_pool2d(2, 0).is_err());
        assert!(Tensor::zeros(&[3, 3]).max_pool2d(2, 2).is_err());
        let dy = Tensor::zeros(&[1, 1, 1, 1]);
        assert!(dy.max_pool2d_backward(&[99], x.shape(), 2, 2).is_err());
    }
}
