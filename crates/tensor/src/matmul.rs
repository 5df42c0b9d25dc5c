//! Matrix multiplication of 2-D tensors on [`crate::gemm`].

use ndarray::{ArrayView2, Ix2};

use crate::gemm::gemm;
use crate::{Result, Tensor, TensorError};

impl Tensor {
    pub(crate) fn as_matrix(&self, op: &'static str) -> Result<ArrayView2<'_, f32>> {
        self.view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| TensorError::shape(op, "expected a 2-D matrix", &[self.shape()]))
    }

    /// Matrix product of 2-D tensors: (m, k) · (k, n) → (m, n).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(false, other, false)
    }

    /// Matrix product with either operand transposed first:
    /// `op(self) · op(other)` where `op` transposes when its flag is set. No copy is made.
    pub fn matmul_t(
        &self,
        transpose_self: bool,
        other: &Tensor,
        transpose_other: bool,
    ) -> Result<Tensor> {
        let a = self.as_matrix("matmul")?;
        let b = other.as_matrix("matmul")?;
        let a = if transpose_self { a.reversed_axes() } else { a };
        let b = if transpose_other {
            b.reversed_axes()
        } else {
            b
        };
        if a.ncols() != b.nrows() {
            return Err(TensorError::shape(
                "matmul",
                format!(
                    "inner dimensions differ: ({}, {}) · ({}, {}) (transposed: {transpose_self}, {transpose_other})",
                    a.nrows(),
                    a.ncols(),
                    b.nrows(),
                    b.ncols()
                ),
                &[self.shape(), other.shape()],
            ));
        }
        let mut out = Tensor::zeros(&[a.nrows(), b.ncols()]);
        let c = out
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("internal: output is 2-D");
        gemm(1.0, a, b, 0.0, c)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Rng, Tensor};

    fn naive(a: &Tensor, b: &Tensor) -> Vec<f32> {
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a.as_slice()[i * k + p] as f64 * b.as_slice()[p * n + j] as f64;
                }
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn matmul_matches_naive_product_including_row_blocks() {
        let mut rng = Rng::seed_from_u64(0);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 2), (200, 37, 19)] {
            let a = Tensor::rand_normal(&[m, k], 0.0, 1.0, &mut rng);
            let b = Tensor::rand_normal(&[k, n], 0.0, 1.0, &mut rng);
            let c = a.matmul(&b).unwrap();
            for (x, y) in c.as_slice().iter().zip(naive(&a, &b)) {
                // f32 accumulation over k terms of unit scale: error grows like sqrt(k)·eps.
                assert!((x - y).abs() < 1e-4 * (k as f32).sqrt() * 4.0, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn transposed_operands() {
        let mut rng = Rng::seed_from_u64(1);
        let a = Tensor::rand_normal(&[4, 3], 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[5, 3], 0.0, 1.0, &mut rng);
        let want = a.matmul(&b.t().unwrap()).unwrap();
        let got = a.matmul_t(false, &b, true).unwrap();
        assert!(want.max_abs_diff(&got).unwrap() < 1e-6);
        let want = a.t().unwrap().matmul(&a).unwrap();
        let got = a.matmul_t(true, &a, false).unwrap();
        assert!(want.max_abs_diff(&got).unwrap() < 1e-6);
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let err = Tensor::zeros(&[2, 3])
            .matmul(&Tensor::zeros(&[2, 3]))
            .unwrap_err();
        assert!(err.to_string().contains("inner dimensions differ"), "{err}");
        assert!(err.to_string().contains("[[2, 3], [2, 3]]"), "{err}");
        assert!(Tensor::zeros(&[2]).matmul(&Tensor::zeros(&[2, 3])).is_err());
    }
}
