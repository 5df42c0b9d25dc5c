//! Folding eval-mode batch norm into the layer before it, for inference.
//!
//! In eval mode a batch norm is a fixed per-channel affine map `y = x·s + t` with
//! `s = γ / sqrt(running_var + eps)` and `t = β − running_mean·s`. After a convolution or linear
//! layer with weight W and bias b it can be absorbed:
//!
//! ```text
//! W'[o] = W[o] · s[o]        b'[o] = b[o] · s[o] + t[o]
//! ```
//!
//! which is PyTorch's `fuse_conv_bn_eval` algebra: the folded model computes the same function
//! with one layer fewer.

use std::any::Any;

use norma_tensor::Tensor;

use crate::norm::batch_norm::as_batch_norm_mut;
use crate::{BasicBlock, Conv2d, LayerError, Linear, Module, Result, Sequential};

/// Returns `model` with every batch norm folded into the Conv2d or Linear right before it,
/// inside nested [`Sequential`]s and [`BasicBlock`]s too (a ResNet's stages, each block's two
/// convolutions and its projection shortcut). The result matches the eval-mode model up to
/// float32 rounding; convolutions built without a bias (as they are before a batch norm)
/// get one.
///
/// Errors when a batch norm does not follow a Conv2d/Linear, or has no running statistics.
pub fn fold_batch_norm(model: Sequential) -> Result<Sequential> {
    let mut out: Vec<(String, Box<dyn Module>)> = Vec::new();
    for (name, child) in model.into_children() {
        let mut child = fold_nested(child)?;
        let Some(bn) = as_batch_norm_mut(child.as_mut()) else {
            out.push((name, child));
            continue;
        };
        let bad = |reason: &str| LayerError::Config {
            layer: format!("fold_batch_norm at '{name}'"),
            reason: reason.to_string(),
        };
        let scale_shift = bn
            .eval_scale_shift()?
            .ok_or_else(|| bad("batch norm has no running statistics to fold"))?;
        let (prev_name, prev) = out
            .pop()
            .ok_or_else(|| bad("batch norm is the first layer; nothing to fold into"))?;
        let foldable = prev.is::<Conv2d>() || prev.is::<Linear>();
        if !foldable {
            return Err(bad(&format!(
                "batch norm follows '{prev_name}', which is not a Conv2d or Linear"
            )));
        }
        let folded = fold_into(prev, &scale_shift)?;
        out.push((prev_name, folded));
    }
    let mut seq = Sequential::new();
    for (name, child) in out {
        seq.push(name, child);
    }
    Ok(seq)
}

/// A nested [`Sequential`] or [`BasicBlock`] with its batch norms folded; any other layer as
/// it is.
fn fold_nested(child: Box<dyn Module>) -> Result<Box<dyn Module>> {
    if child.is::<Sequential>() {
        let seq = downcast::<Sequential>(child)?;
        Ok(Box::new(fold_batch_norm(*seq)?))
    } else if child.is::<BasicBlock>() {
        let block = downcast::<BasicBlock>(child)?;
        Ok(Box::new(block.map_sequentials(fold_batch_norm)?))
    } else {
        Ok(child)
    }
}

/// `layer` as the `T` it was checked to be.
fn downcast<T: Module>(layer: Box<dyn Module>) -> Result<Box<T>> {
    let any: Box<dyn Any> = layer;
    any.downcast::<T>().map_err(|_| LayerError::Config {
        layer: "fold_batch_norm".into(),
        reason: format!("expected a {}", std::any::type_name::<T>()),
    })
}

/// Scales each output channel of a Conv2d or Linear (the caller checked it is one).
fn fold_into(layer: Box<dyn Module>, scale_shift: &[(f32, f32)]) -> Result<Box<dyn Module>> {
    let fold = |weight: &Tensor, bias: Option<Tensor>| -> Result<(Tensor, Tensor)> {
        let out_channels = weight.shape()[0];
        if out_channels != scale_shift.len() {
            return Err(LayerError::Config {
                layer: "fold_batch_norm".into(),
                reason: format!(
                    "{} batch-norm channels after a layer with {out_channels} outputs",
                    scale_shift.len()
                ),
            });
        }
        let per = weight.len() / out_channels.max(1);
        let mut w = weight.clone();
        for (row, &(s, _)) in w.as_slice_mut().chunks_exact_mut(per).zip(scale_shift) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let b0 = bias.unwrap_or_else(|| Tensor::zeros(&[out_channels]));
        let b: Vec<f32> = b0
            .as_slice()
            .iter()
            .zip(scale_shift)
            .map(|(b, &(s, t))| b * s + t)
            .collect();
        Ok((w, Tensor::from_vec(&[out_channels], b)?))
    };
    let any: Box<dyn Any> = layer;
    match any.downcast::<Conv2d>() {
        Ok(conv) => {
            let (w, b) = fold(
                &conv.weight().value(),
                conv.bias().map(|b| Tensor::clone(&b.value())),
            )?;
            let (stride, padding) = conv.stride_padding();
            Ok(Box::new(Conv2d::from_tensors(w, Some(b), stride, padding)?))
        }
        Err(any) => {
            let lin = any.downcast::<Linear>().map_err(|_| LayerError::Config {
                layer: "fold_batch_norm".into(),
                reason: "can only fold into Conv2d or Linear".into(),
            })?;
            let (w, b) = fold(
                &lin.weight().value(),
                lin.bias().map(|b| Tensor::clone(&b.value())),
            )?;
            Ok(Box::new(Linear::from_tensors(w, Some(b))?))
        }
    }
}
