//! Reshape, permute and transpose. Results are always contiguous.

use ndarray::IxDyn;

use crate::{Result, Tensor, TensorError};

impl Tensor {
    /// The same elements in row-major order under a new shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        self.clone().into_reshape(shape)
    }

    /// Like [`Tensor::reshape`], without copying the data.
    pub fn into_reshape(self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(TensorError::shape(
                "reshape",
                format!("cannot reshape {} elements into {shape:?}", self.len()),
                &[self.shape()],
            ));
        }
        let old = self.shape().to_vec();
        let array = self
            .into_array()
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| TensorError::shape("reshape", e.to_string(), &[&old]))?;
        Ok(Tensor::from_array(array))
    }

    /// Reorders the axes: axis `i` of the result is axis `axes[i]` of `self`.
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.ndim()];
        let valid = axes.len() == self.ndim()
            && axes
                .iter()
                .all(|&a| a < self.ndim() && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(TensorError::Axes {
                op: "permute",
                axes: axes.to_vec(),
                shape: self.shape().to_vec(),
            });
        }
        let view = self.view().permuted_axes(IxDyn(axes));
        Ok(Tensor::from_array(view.as_standard_layout().into_owned()))
    }

    /// The inverse permutation of `axes` (so that `x.permute(a)?.permute(&inverse(a))? == x`).
    pub fn inverse_permutation(axes: &[usize]) -> Vec<usize> {
        let mut inv = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            if a < inv.len() {
                inv[a] = i;
            }
        }
        inv
    }

    /// Transpose of a 2-D tensor.
    pub fn t(&self) -> Result<Tensor> {
        self.expect_rank("transpose", 2)?;
        self.permute(&[1, 0])
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn reshape_keeps_row_major_order() {
        let x = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let y = x.reshape(&[3, 2]).unwrap();
        assert_eq!(y.as_slice(), x.as_slice());
        let err = x.reshape(&[4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reshape: cannot reshape 6 elements into [4] (got shapes [[2, 3]])"
        );
    }

    #[test]
    fn permute_and_transpose() {
        let x = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(x.t().unwrap().as_slice(), &[1., 4., 2., 5., 3., 6.]);
        let y = Tensor::from_vec(&[2, 1, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        let p = y.permute(&[2, 0, 1]).unwrap();
        assert_eq!(p.shape(), &[3, 2, 1]);
        assert_eq!(p.as_slice(), &[0., 3., 1., 4., 2., 5.]);
        let back = p.permute(&Tensor::inverse_permutation(&[2, 0, 1])).unwrap();
        assert_eq!(back, y);
        assert!(y.permute(&[0, 0, 1]).is_err());
        assert!(y.permute(&[0, 1]).is_err());
        assert!(Tensor::zeros(&[2, 2, 2]).t().is_err());
    }
}
