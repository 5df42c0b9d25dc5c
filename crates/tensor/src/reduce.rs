//! Sums and means over axes, and the reverse of broadcasting.

use ndarray::Axis;

use crate::elementwise::broadcast_shape;
use crate::{Result, Tensor, TensorError};

impl Tensor {
    fn check_axes(&self, op: &'static str, axes: &[usize]) -> Result<Vec<usize>> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != axes.len() || sorted.iter().any(|&a| a >= self.ndim()) {
            return Err(TensorError::Axes {
                op,
                axes: axes.to_vec(),
                shape: self.shape().to_vec(),
            });
        }
        Ok(sorted)
    }

    /// Sum over `axes`; with `keep_dims` the reduced axes stay with size 1.
    pub fn sum_axes(&self, axes: &[usize], keep_dims: bool) -> Result<Tensor> {
        let sorted = self.check_axes("sum_axes", axes)?;
        let mut array = self.array().clone();
        // Reduce from the last axis so earlier axis indices stay valid.
        for &axis in sorted.iter().rev() {
            array = array.sum_axis(Axis(axis));
            if keep_dims {
                array.insert_axis_inplace(Axis(axis));
            }
        }
        Ok(Tensor::from_array(array))
    }

    /// Mean over `axes`; with `keep_dims` the reduced axes stay with size 1.
    pub fn mean_axes(&self, axes: &[usize], keep_dims: bool) -> Result<Tensor> {
        let sorted = self.check_axes("mean_axes", axes)?;
        let count: usize = sorted.iter().map(|&a| self.shape()[a]).product();
        if count == 0 {
            return Err(TensorError::shape(
                "mean_axes",
                format!("cannot average over empty axes {axes:?}"),
                &[self.shape()],
            ));
        }
        Ok(self
            .sum_axes(axes, keep_dims)?
            .mul_scalar(1.0 / count as f32))
    }

    /// Sum of all elements.
    pub fn sum_all(&self) -> f32 {
        self.array().sum()
    }

    /// Mean of all elements (NaN for an empty tensor).
    pub fn mean_all(&self) -> f32 {
        self.sum_all() / self.len() as f32
    }

    /// Sums a broadcast result back down to `shape`: the gradient of broadcasting `shape`
    /// up to `self.shape()`.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let target = broadcast_shape("sum_to_shape", shape, self.shape())?;
        if target != self.shape() {
            return Err(TensorError::shape(
                "sum_to_shape",
                format!("shape {shape:?} does not broadcast to the tensor's shape"),
                &[self.shape()],
            ));
        }
        let lead = self.ndim() - shape.len();
        let axes: Vec<usize> = (0..self.ndim())
            .filter(|&a| a < lead || (shape[a - lead] == 1 && self.shape()[a] != 1))
            .collect();
        let summed = self.sum_axes(&axes, true)?;
        summed.reshape(shape)
    }

    /// Repeats the tensor along broadcast axes up to `shape` (numpy rules): the forward of
    /// what [`Tensor::sum_to_shape`] undoes.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let view = self
            .array()
            .broadcast(ndarray::IxDyn(shape))
            .ok_or_else(|| TensorError::Broadcast {
                op: "broadcast_to",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            })?;
        Ok(Tensor::from_array(view.to_owned()))
    }

    /// Index of the largest value in each row of a 2-D tensor (first one on ties).
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        self.expect_rank("argmax_rows", 2)?;
        let cols = self.shape()[1];
        if cols == 0 {
            return Err(TensorError::shape(
                "argmax_rows",
                "rows are empty",
                &[self.shape()],
            ));
        }
        Ok(self
            .as_slice()
            .chunks_exact(cols)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(shape, (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn sums_and_means_over_axes() {
        let x = iota(&[2, 3, 4]);
        let s = x.sum_axes(&[0, 2], false).unwrap();
        assert_eq!(s.shape(), &[3]);
        assert_eq!(s.as_slice(), &[60., 92., 124.]);
        let m = x.mean_axes(&[1], true).unwrap();
        assert_eq!(m.shape(), &[2, 1, 4]);
        assert_eq!(m.as_slice(), &[4., 5., 6., 7., 16., 17., 18., 19.]);
        assert_eq!(x.sum_all(), 276.0);
    }

    #[test]
    fn bad_axes_are_errors() {
        let x = iota(&[2, 3]);
        let err = x.sum_axes(&[2], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sum_axes: invalid axes [2] for a tensor of shape [2, 3]"
        );
        assert!(x.sum_axes(&[0, 0], false).is_err());
        assert!(Tensor::zeros(&[0, 3]).mean_axes(&[0], false).is_err());
    }

    #[test]
    fn sum_to_shape_undoes_broadcasting() {
        let g = Tensor::ones(&[2, 3, 4]);
        assert_eq!(g.sum_to_shape(&[4]).unwrap().as_slice(), &[6.; 4]);
        let s = g.sum_to_shape(&[3, 1]).unwrap();
        assert_eq!(s.shape(), &[3, 1]);
        assert_eq!(s.as_slice(), &[8.; 3]);
        assert!(g.sum_to_shape(&[5]).is_err());
    }

    #[test]
    fn broadcast_to_repeats_and_checks() {
        let x = Tensor::from_vec(&[2, 1], vec![1., 2.]).unwrap();
        let b = x.broadcast_to(&[3, 2, 2]).unwrap();
        assert_eq!(b.shape(), &[3, 2, 2]);
        assert_eq!(&b.as_slice()[..4], &[1., 1., 2., 2.]);
        assert!(x.broadcast_to(&[3, 3]).is_err());
    }

    #[test]
    fn argmax_takes_first_maximum() {
        let x = Tensor::from_vec(&[2, 3], vec![1., 3., 3., -1., -2., -0.5]).unwrap();
        assert_eq!(x.argmax_rows().unwrap(), vec![1, 2]);
    }
}
