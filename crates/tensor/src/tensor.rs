//! The [`Tensor`] type: an owned, contiguous, row-major f32 array on top of `ndarray`.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

use crate::{Result, Rng, TensorError};

/// An n-dimensional f32 array, always stored contiguously in row-major (C) order.
///
/// The layout invariant lets every kernel work on plain slices; operations that would
/// produce a strided view (transpose, permute) copy into a fresh contiguous tensor.
///
/// ```
/// use norma_tensor::Tensor;
/// let t = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.])?;
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.sum_all(), 21.0);
/// # Ok::<(), norma_tensor::TensorError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor {
    array: ArrayD<f32>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` in row-major order.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let expected = shape.iter().product::<usize>();
        if data.len() != expected {
            return Err(TensorError::DataLength {
                op: "from_vec",
                shape: shape.to_vec(),
                len: data.len(),
                expected,
            });
        }
        let array =
            ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| TensorError::DataLength {
                op: "from_vec",
                shape: shape.to_vec(),
                len: expected,
                expected,
            })?;
        Ok(Tensor { array })
    }

    /// Wraps an ndarray array of any dimensionality (copied if it is not contiguous row-major).
    pub fn from_array<D: ndarray::Dimension>(array: ndarray::Array<f32, D>) -> Self {
        let array = array.into_dyn();
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        Tensor { array }
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor {
            array: ArrayD::from_elem(IxDyn(shape), value),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            array: ArrayD::zeros(IxDyn(shape)),
        }
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, 1.0)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self::full(&[], value)
    }

    /// Independent samples from U[low, high).
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, rng: &mut Rng) -> Self {
        let n = shape.iter().product();
        let data = (0..n).map(|_| rng.uniform(low, high)).collect();
        Self::from_parts(shape, data)
    }

    /// Independent samples from N(mean, std²).
    pub fn rand_normal(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Self {
        let n = shape.iter().product();
        let data = (0..n).map(|_| mean + std * rng.normal()).collect();
        Self::from_parts(shape, data)
    }

    /// A tensor of `shape` whose elements are all written by `fill`, without zeroing memory
    /// first (internal use: every caller is a pass that writes each element exactly once;
    /// the helpers in `parallel` assert that they cover the whole slice).
    pub(crate) fn from_fill(
        shape: &[usize],
        fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>]),
    ) -> Self {
        let n: usize = shape.iter().product();
        let mut data: Vec<f32> = Vec::with_capacity(n);
        fill(&mut data.spare_capacity_mut()[..n]);
        // SAFETY: `fill` initialised all `n` elements (see above), within the capacity.
        unsafe { data.set_len(n) };
        Self::from_parts(shape, data)
    }

    /// Builds a tensor whose data length is correct by construction (internal use).
    pub(crate) fn from_parts(shape: &[usize], data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            array: ArrayD::from_shape_vec(IxDyn(shape), data)
                .expect("internal: data length matches shape"),
        }
    }

    /// The size of each axis.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.array.ndim()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        self.array
            .as_slice()
            .expect("internal: tensors are always contiguous")
    }

    /// The elements in row-major order, mutable.
    pub fn as_slice_mut(&mut self) -> &mut [f32] {
        self.array
            .as_slice_mut()
            .expect("internal: tensors are always contiguous")
    }

    /// Copies the elements out in row-major order.
    pub fn to_vec(&self) -> Vec<f32> {
        self.as_slice().to_vec()
    }

    /// Moves the elements out in row-major order.
    pub fn into_vec(self) -> Vec<f32> {
        let (data, offset) = self.array.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        data
    }

    /// The underlying ndarray array.
    pub fn array(&self) -> &ArrayD<f32> {
        &self.array
    }

    /// A read-only ndarray view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        self.array.view()
    }

    /// A read-only view of `count` consecutive samples starting at sample `start`: the
    /// sub-tensor `[start .. start + count]` along the first dimension (PyTorch's
    /// `narrow(0, start, count)`), contiguous, without a copy.
    ///
    /// Errors: a rank-0 tensor, or a range past the first dimension.
    ///
    /// ```
    /// use norma_tensor::Tensor;
    /// let t = Tensor::from_vec(&[3, 2], vec![1., 2., 3., 4., 5., 6.])?;
    /// let v = t.samples(1, 2)?;
    /// assert_eq!(v.shape(), &[2, 2]);
    /// assert_eq!(v.as_slice(), Some(&[3., 4., 5., 6.][..]));
    /// assert!(t.samples(2, 2).is_err());
    /// # Ok::<(), norma_tensor::TensorError>(())
    /// ```
    pub fn samples(&self, start: usize, count: usize) -> Result<ArrayViewD<'_, f32>> {
        let shape = self.shape();
        let end = start.checked_add(count);
        match (shape.first(), end) {
            (Some(&n), Some(end)) if end <= n => {
                let per_sample: usize = shape[1..].iter().product();
                let mut sub = shape.to_vec();
                sub[0] = count;
                let values = &self.as_slice()[start * per_sample..end * per_sample];
                Ok(ArrayViewD::from_shape(IxDyn(&sub), values)
                    .expect("internal: a run of whole samples fills its shape"))
            }
            _ => Err(TensorError::shape(
                "samples",
                format!("samples {start}..{start}+{count} are not inside the first dimension"),
                &[shape],
            )),
        }
    }

    /// A mutable ndarray view (the layout stays contiguous: views cannot change it).
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, f32> {
        self.array.view_mut()
    }

    /// Moves out the underlying ndarray array.
    pub fn into_array(self) -> ArrayD<f32> {
        self.array
    }

    /// The single value of a one-element tensor (any shape with one element).
    pub fn item(&self) -> Result<f32> {
        if self.len() == 1 {
            Ok(self.as_slice()[0])
        } else {
            Err(TensorError::shape(
                "item",
                "expected a tensor with exactly one element",
                &[self.shape()],
            ))
        }
    }

    /// Checks that this tensor has exactly `shape`.
    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape() == shape {
            Ok(())
        } else {
            Err(TensorError::shape(
                op,
                format!("expected shape {shape:?}"),
                &[self.shape()],
            ))
        }
    }

    /// Checks that this tensor has `rank` axes.
    pub fn expect_rank(&self, op: &'static str, rank: usize) -> Result<()> {
        if self.ndim() == rank {
            Ok(())
        } else {
            Err(TensorError::shape(
                op,
                format!("expected a tensor with {rank} axes"),
                &[self.shape()],
            ))
        }
    }

    /// Largest absolute elementwise difference to `other` (shapes must match).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        if self.shape() != other.shape() {
            return Err(TensorError::shape(
                "max_abs_diff",
                "shapes must be equal",
                &[self.shape(), other.shape()],
            ));
        }
        Ok(self
            .as_slice()
            .iter()
            .zip(other.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max))
    }

    /// True if every element is finite (no NaN, no infinity).
    pub fn all_finite(&self) -> bool {
        self.as_slice().iter().all(|x| x.is_finite())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let data = self.as_slice();
        write!(f, "Tensor{:?} [", self.shape())?;
        for (i, x) in data.iter().take(SHOWN).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{x}")?;
        }
        if data.len() > SHOWN {
            write!(f, ", … ({} more)", data.len() - SHOWN)?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_views_of_whole_samples_and_ranges_are_checked() {
        let t = Tensor::from_vec(&[3, 2, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        let v = t.samples(2, 1).unwrap();
        assert_eq!(v.shape(), &[1, 2, 2]);
        assert_eq!(v.as_slice(), Some(&[8., 9., 10., 11.][..]));
        assert_eq!(t.samples(3, 0).unwrap().len(), 0);
        for (start, count) in [(0, 4), (3, 1), (usize::MAX, 2)] {
            let err = t.samples(start, count).unwrap_err().to_string();
            assert!(
                err.contains("samples") && err.contains("[3, 2, 2]"),
                "{err}"
            );
        }
        assert!(Tensor::scalar(1.0).samples(0, 0).is_err());
    }

    #[test]
    fn from_vec_checks_length() {
        let err = Tensor::from_vec(&[2, 3], vec![1.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "from_vec: 5 values do not fill shape [2, 3] (6 elements)"
        );
        assert!(Tensor::from_vec(&[2, 3], vec![1.0; 6]).is_ok());
    }

    #[test]
    fn from_array_makes_layout_contiguous() {
        let a = ndarray::Array2::from_shape_vec((2, 3), vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let t = Tensor::from_array(a.reversed_axes());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.as_slice(), &[1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn item_needs_one_element() {
        assert_eq!(Tensor::scalar(3.0).item(), Ok(3.0));
        assert!(Tensor::zeros(&[2]).item().is_err());
    }

    #[test]
    fn debug_shows_shape_and_leading_values() {
        let t = Tensor::zeros(&[3, 4]);
        assert_eq!(
            format!("{t:?}"),
            "Tensor[3, 4] [0, 0, 0, 0, 0, 0, 0, 0, … (4 more)]"
        );
    }
}
