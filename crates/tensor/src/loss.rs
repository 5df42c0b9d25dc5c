//! Log-softmax and cross-entropy with integer class labels.

use crate::{Result, Tensor, TensorError};

impl Tensor {
    fn rows(&self, op: &'static str) -> Result<(usize, usize)> {
        self.expect_rank(op, 2)?;
        let (n, k) = (self.shape()[0], self.shape()[1]);
        if k == 0 {
            return Err(TensorError::shape(
                op,
                "need at least one class",
                &[self.shape()],
            ));
        }
        Ok((n, k))
    }

    /// Row-wise log-softmax of (N, K) logits: `x − max − ln Σ exp(x − max)` (stable for large
    /// logits).
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (_, k) = self.rows("log_softmax")?;
        let mut out = self.clone();
        for row in out.as_slice_mut().chunks_exact_mut(k) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
            // (x − max) first: exact for the largest logits, whatever their magnitude.
            let log_sum = sum.ln();
            row.iter_mut().for_each(|x| *x = (*x - max) - log_sum);
        }
        Ok(out)
    }

    /// Gradient of [`Tensor::log_softmax`]: `self` is the output gradient, `output` the
    /// log-softmax values; `dx = dy − softmax · Σ dy` per row.
    pub fn log_softmax_backward(&self, output: &Tensor) -> Result<Tensor> {
        let (_, k) = output.rows("log_softmax_backward")?;
        self.expect_shape("log_softmax_backward", output.shape())?;
        let mut dx = self.clone();
        for (d, y) in dx
            .as_slice_mut()
            .chunks_exact_mut(k)
            .zip(output.as_slice().chunks_exact(k))
        {
            let total: f32 = d.iter().sum();
            d.iter_mut()
                .zip(y)
                .for_each(|(d, &y)| *d -= y.exp() * total);
        }
        Ok(dx)
    }

    fn check_labels(&self, op: &'static str, labels: &[usize]) -> Result<(usize, usize)> {
        let (n, k) = self.rows(op)?;
        if labels.len() != n {
            return Err(TensorError::shape(
                op,
                format!("{} labels for {n} rows of logits", labels.len()),
                &[self.shape()],
            ));
        }
        if n == 0 {
            return Err(TensorError::shape(
                op,
                "cannot average over an empty batch",
                &[self.shape()],
            ));
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
            return Err(TensorError::Label {
                op,
                label,
                row,
                classes: k,
            });
        }
        Ok((n, k))
    }

    /// Mean cross-entropy of (N, K) logits against class indices:
    /// `−(1/N) Σ_n log_softmax(x_n)[label_n]` (PyTorch's `CrossEntropyLoss`, mean reduction).
    pub fn cross_entropy(&self, labels: &[usize]) -> Result<f32> {
        let (n, k) = self.check_labels("cross_entropy", labels)?;
        let logp = self.log_softmax()?;
        // Accumulate in f64: the mean of N terms should not depend on their order.
        let total: f64 = logp
            .as_slice()
            .chunks_exact(k)
            .zip(labels)
            .map(|(row, &l)| -(row[l] as f64))
            .sum();
        Ok((total / n as f64) as f32)
    }

    /// Gradient of [`Tensor::cross_entropy`] with respect to the logits, scaled by `grad`:
    /// `grad · (softmax(x) − onehot(label)) / N`.
    pub fn cross_entropy_backward(&self, labels: &[usize], grad: f32) -> Result<Tensor> {
        let (n, k) = self.check_labels("cross_entropy_backward", labels)?;
        let mut dx = self.log_softmax()?;
        let scale = grad / n as f32;
        for (row, &l) in dx.as_slice_mut().chunks_exact_mut(k).zip(labels) {
            row.iter_mut().for_each(|x| *x = x.exp());
            row[l] -= 1.0;
            row.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn log_softmax_rows_normalize_and_survive_large_logits() {
        let x = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 1000., 1000., 1000.]).unwrap();
        let y = x.log_softmax().unwrap();
        for row in y.as_slice().chunks(3) {
            let s: f32 = row.iter().map(|v| v.exp()).sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        assert!((y.as_slice()[3] + 3f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_k() {
        let x = Tensor::zeros(&[4, 10]);
        let l = x.cross_entropy(&[0, 3, 9, 1]).unwrap();
        assert!((l - 10f32.ln()).abs() < 1e-6);
        let g = x.cross_entropy_backward(&[0, 3, 9, 1], 1.0).unwrap();
        assert!((g.as_slice()[0] - (0.1 - 1.0) / 4.0).abs() < 1e-7);
        assert!((g.as_slice()[1] - 0.1 / 4.0).abs() < 1e-7);
    }

    #[test]
    fn label_errors_name_row_and_label() {
        let x = Tensor::zeros(&[2, 3]);
        let e = x.cross_entropy(&[0, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cross_entropy: label 3 at row 1 is out of range for 3 classes"
        );
        assert!(x.cross_entropy(&[0]).is_err());
        assert!(Tensor::zeros(&[0, 3]).cross_entropy(&[]).is_err());
    }
}
