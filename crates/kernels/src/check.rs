//! Every check of the kernels' inputs, in one place. The public functions call them once, at
//! the edge, and hand checked values to crate-private bodies.

use ndarray::ArrayViewD;

use crate::group_norm::GroupShape;
use crate::layout::BnShape;
use crate::KernelError;

/// The (N, C, S) view of a batch-norm input: (N, C) → S = 1; (N, C, L) → S = L;
/// (N, C, H, W) → S = H·W.
pub(crate) fn bn_shape(dims: &[usize]) -> Result<BnShape, KernelError> {
    let (batch, channels, spatial) = match *dims {
        [n, c] => (n, c, 1),
        [n, c, l] => (n, c, l),
        [n, c, h, w] => (n, c, h * w),
        _ => {
            return Err(KernelError::UnsupportedShape {
                shape: dims.to_vec(),
            })
        }
    };
    Ok(BnShape {
        batch,
        channels,
        spatial,
    })
}

/// The values of `x`, if it is contiguous row-major.
pub(crate) fn contiguous<'a>(x: &'a ArrayViewD<'_, f32>) -> Result<&'a [f32], KernelError> {
    x.as_slice().ok_or_else(|| KernelError::NotContiguous {
        shape: x.shape().to_vec(),
    })
}

/// A batch-norm input's (N, C, S) shape and its values.
pub(crate) fn bn_input<'a>(
    x: &'a ArrayViewD<'_, f32>,
) -> Result<(BnShape, &'a [f32]), KernelError> {
    let shape = bn_shape(x.shape())?;
    Ok((shape, contiguous(x)?))
}

/// An output gradient `dy` has the shape of the forward input `x`.
fn same_shape(x: &ArrayViewD<'_, f32>, dy: &ArrayViewD<'_, f32>) -> Result<(), KernelError> {
    if x.shape() == dy.shape() {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch {
            name: "output gradient",
            expected: x.shape().to_vec(),
            got: dy.shape().to_vec(),
        })
    }
}

/// A forward input `x` and its output gradient `dy`: one shape, both contiguous.
pub(crate) fn with_gradient<'a>(
    x: &'a ArrayViewD<'_, f32>,
    dy: &'a ArrayViewD<'_, f32>,
) -> Result<(&'a [f32], &'a [f32]), KernelError> {
    same_shape(x, dy)?;
    Ok((contiguous(x)?, contiguous(dy)?))
}

/// A batch-norm forward input and its output gradient.
pub(crate) fn bn_with_gradient<'a>(
    x: &'a ArrayViewD<'_, f32>,
    dy: &'a ArrayViewD<'_, f32>,
) -> Result<(BnShape, &'a [f32], &'a [f32]), KernelError> {
    same_shape(x, dy)?;
    let (shape, xs) = bn_input(x)?;
    Ok((shape, xs, contiguous(dy)?))
}

/// An optional per-channel (or per-element) vector has `expected` values.
pub(crate) fn length<T>(
    expected: usize,
    name: &'static str,
    v: Option<&[T]>,
) -> Result<(), KernelError> {
    match v {
        Some(v) if v.len() != expected => Err(KernelError::ChannelLength {
            name,
            expected,
            got: v.len(),
        }),
        _ => Ok(()),
    }
}

/// eps is finite and non-negative.
pub(crate) fn eps(eps: f32) -> Result<(), KernelError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(KernelError::Argument {
            name: "eps",
            reason: format!("must be finite and non-negative, got {eps}"),
        })
    }
}

/// Running statistics of `c` channels: lengths, a finite mean, a finite non-negative variance,
/// a finite non-negative eps.
pub(crate) fn running(
    c: usize,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Result<(), KernelError> {
    length(c, "running_mean", Some(running_mean))?;
    length(c, "running_var", Some(running_var))?;
    self::eps(eps)?;
    if let Some(channel) = running_mean.iter().position(|m| !m.is_finite()) {
        return Err(KernelError::InvalidStatistic {
            name: "running_mean",
            channel,
            value: running_mean[channel] as f64,
        });
    }
    if let Some(channel) = running_var
        .iter()
        .position(|v| !(v.is_finite() && *v >= 0.0))
    {
        return Err(KernelError::InvalidStatistic {
            name: "running_var",
            channel,
            value: running_var[channel] as f64,
        });
    }
    Ok(())
}

/// Batch statistics from known moments: as many variances as means, at least two values per
/// channel, a good eps, finite means and finite non-negative variances.
pub(crate) fn moments(
    count: usize,
    mean: &[f64],
    var: &[f64],
    eps: f32,
) -> Result<(), KernelError> {
    length(mean.len(), "var", Some(var))?;
    if count < 2 {
        return Err(KernelError::TooFewValues { count });
    }
    self::eps(eps)?;
    if let Some(channel) =
        (0..mean.len()).find(|&c| !(mean[c].is_finite() && var[c].is_finite() && var[c] >= 0.0))
    {
        return Err(KernelError::InvalidStatistic {
            name: "batch statistics",
            channel,
            value: if mean[channel].is_finite() {
                var[channel]
            } else {
                mean[channel]
            },
        });
    }
    Ok(())
}

/// A shift of one finite value per channel.
pub(crate) fn shift(channels: usize, shift: &[f32]) -> Result<(), KernelError> {
    length(channels, "shift", Some(shift))?;
    match shift.iter().position(|v| !v.is_finite()) {
        Some(channel) => Err(KernelError::InvalidStatistic {
            name: "shift",
            channel,
            value: shift[channel] as f64,
        }),
        None => Ok(()),
    }
}

/// (N, C, S) with G groups from a group-norm input shape (N, C, ...): C > 0, no zero
/// position, G > 0 dividing C.
pub(crate) fn group_shape(dims: &[usize], groups: usize) -> Result<GroupShape, KernelError> {
    if dims.len() < 2 || dims[1] == 0 || dims[2..].contains(&0) {
        return Err(KernelError::UnsupportedShape {
            shape: dims.to_vec(),
        });
    }
    let channels = dims[1];
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(KernelError::Groups { channels, groups });
    }
    Ok(GroupShape {
        batch: dims[0],
        channels,
        spatial: dims[2..].iter().product(),
        groups,
    })
}

/// (N', D, 1) with one group from a layer-norm input shape: `normalized_shape` non-empty, with
/// no zero, and the trailing dimensions of the input.
pub(crate) fn layer_shape(
    dims: &[usize],
    normalized_shape: &[usize],
) -> Result<GroupShape, KernelError> {
    let k = normalized_shape.len();
    if k == 0
        || normalized_shape.contains(&0)
        || dims.len() < k
        || dims[dims.len() - k..] != *normalized_shape
    {
        return Err(KernelError::NormalizedShape {
            shape: dims.to_vec(),
            normalized_shape: normalized_shape.to_vec(),
        });
    }
    Ok(GroupShape {
        batch: dims[..dims.len() - k].iter().product(),
        channels: normalized_shape.iter().product(),
        spatial: 1,
        groups: 1,
    })
}

/// Group statistics that belong to an input of `shape`: `groups` groups of `count` values,
/// and `means` (one per sample and group) covering its batch.
pub(crate) fn group_stats(
    shape: GroupShape,
    groups: usize,
    count: usize,
    means: usize,
) -> Result<(), KernelError> {
    let (n, g, m) = (shape.batch, shape.groups, shape.group_len());
    if groups != g || count != m || means != n * g {
        return Err(KernelError::ShapeMismatch {
            name: "group statistics",
            expected: vec![n, g, m],
            got: vec![means / groups.max(1), groups, count],
        });
    }
    Ok(())
}
