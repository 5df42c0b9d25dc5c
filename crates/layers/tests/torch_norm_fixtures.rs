//! GroupNorm and LayerNorm against PyTorch 2.15 evaluated in float64.
//!
//! PyTorch ran `nn.GroupNorm` (which calls `F.group_norm`) and `nn.LayerNorm` in float64 on the
//! float32 inputs and parameters, so its results are the exact values for the very numbers norma
//! sees (to ~1e-16). Cases: group norm on images (2, 4, 3, 3) with G = 1 (layer norm with a
//! per-channel affine), 2, and 4 = C (instance norm); group norm on features (3, 6) with G = 2;
//! layer norm over one trailing dimension (3, 5) and over three (2, 2, 3, 3). Each is checked on
//! the whole batch and on its first sample alone (a batch of one): forward output, and dx, dγ, dβ
//! for a random output gradient, through autograd (the input is a leaf `Param`).
//!
//! `tests/data/torch_norm_values.rs` is the output of this snippet, run with the venv of
//! `scripts/setup-torch-venv.sh` (`python3 snippet.py > crates/layers/tests/data/torch_norm_values.rs`):
//!
//! ```python
//! import torch
//! from torch import nn
//! torch.manual_seed(10)
//! def arr(t, digits):
//!     vals = [f"{v:.{digits}e}" for v in t.detach().reshape(-1).tolist()]
//!     return "&[\n" + "".join(f"        {', '.join(vals[i:i + 4])},\n" for i in range(0, len(vals), 4)) + "    ]"
//! def const(name, ty, fields, digits):
//!     body = "".join(f"    {k}: {v if isinstance(v, str) else arr(v, digits)},\n" for k, v in fields)
//!     return f"pub const {name}: {ty} = {ty} {{\n{body}}};"
//! def grads(layer, x, dy):
//!     """y, dx, dγ, dβ of a float64 layer at the float32 x, dy."""
//!     x = x.double().requires_grad_(True)
//!     y = layer(x)
//!     return (y, *torch.autograd.grad(y, (x, layer.weight, layer.bias), dy.double()))
//! cases = [("GN_IMG", (2, 4, 3, 3), (4,), {"_G1": lambda: nn.GroupNorm(1, 4), "_G2": lambda: nn.GroupNorm(2, 4),
//!                                          "_G4": lambda: nn.GroupNorm(4, 4)}),
//!          ("GN_FEAT", (3, 6), (6,), {"_G2": lambda: nn.GroupNorm(2, 6)}),
//!          ("LN_1D", (3, 5), (5,), {"": lambda: nn.LayerNorm((5,))}),
//!          ("LN_3D", (2, 2, 3, 3), (2, 3, 3), {"": lambda: nn.LayerNorm((2, 3, 3))})]
//! out = ["//! Printed by the snippet in tests/torch_norm_fixtures.rs.", "use super::{Input, Truth};"]
//! for tag, shape, affine, layers in cases:
//!     x, dy = torch.randn(shape) * 2 + 1, torch.randn(shape)
//!     gamma, beta = torch.randn(affine) * 0.5 + 1, torch.randn(affine)
//!     out.append(const(tag + "_INPUT", "Input", [("shape", f"&{list(shape)}"), ("x", x), ("dy", dy), ("gamma", gamma), ("beta", beta)], 8))
//!     for key, make in layers.items():
//!         layer = make().double()
//!         with torch.no_grad():
//!             layer.weight.copy_(gamma), layer.bias.copy_(beta)
//!         y, dx, dg, db = grads(layer, x, dy)
//!         y1, dx1, dg1, db1 = grads(layer, x[:1], dy[:1])   # a batch of one: the first sample
//!         assert (y1 - y[:1]).abs().max() < 1e-14 and (dx1 - dx[:1]).abs().max() < 1e-14
//!         fields = [("y", y), ("dx", dx), ("dgamma", dg), ("dbeta", db), ("dgamma_one", dg1), ("dbeta_one", db1)]
//!         out.append(const(tag + key, "Truth", fields, 11))
//! print("\n".join(out))
//! ```
//!
//! **Tolerance**: 1e-6 of the largest value of each tensor (y, dx, dγ or dβ), about 8 f32 ulps
//! of a value of size 1. norma computes in f32 with f64 statistics, so each result carries a
//! few roundings of its own size (measured: at most 3e-7, on dx of the batch of one of
//! group norm on features); PyTorch's float64 values add nothing at this scale. A wrong formula,
//! a wrong group or a wrong reduction axis is off by O(1).

// The f32 inputs are printed with 9 significant digits: enough to round-trip every f32 exactly.
#![allow(clippy::excessive_precision)]

#[rustfmt::skip]
#[path = "data/torch_norm_values.rs"]
mod torch;

use norma_autograd::{Param, Var};
use norma_layers::{GroupNorm, LayerNorm, Module, Result};
use norma_tensor::Tensor;
use torch::*;

/// Relative to the largest value of the tensor compared (see the module docs).
const TOLERANCE: f64 = 1e-6;

/// An input, its output gradient and the layer's parameters, as PyTorch drew them (f32).
pub struct Input {
    shape: &'static [usize],
    x: &'static [f32],
    dy: &'static [f32],
    gamma: &'static [f32],
    beta: &'static [f32],
}

/// PyTorch's float64 results for one layer: on the whole batch, and the parameter gradients on
/// the first sample alone (whose y and dx are the batch's first rows: a sample's result does
/// not depend on the others).
pub struct Truth {
    y: &'static [f64],
    dx: &'static [f64],
    dgamma: &'static [f64],
    dbeta: &'static [f64],
    dgamma_one: &'static [f64],
    dbeta_one: &'static [f64],
}

/// y, dx, dγ, dβ of `layer` on the first `n` samples of `input`, through autograd with the loss
/// Σ y·dy.
fn run(layer: &mut dyn Module, input: &Input, n: usize) -> [Vec<f32>; 4] {
    let params = layer.named_parameters();
    let param = |name: &str| &params.iter().find(|(k, _)| k == name).expect(name).1;
    let (weight, bias) = (param("weight"), param("bias"));
    for (p, values) in [(weight, input.gamma), (bias, input.beta)] {
        let value = Tensor::from_vec(&p.shape(), values.to_vec()).unwrap();
        p.set_value(value).unwrap();
    }
    let mut shape = input.shape.to_vec();
    let len = input.x.len() / shape[0] * n;
    shape[0] = n;
    let x = Param::new(Tensor::from_vec(&shape, input.x[..len].to_vec()).unwrap());
    let dy = Var::constant(Tensor::from_vec(&shape, input.dy[..len].to_vec()).unwrap());
    let y = layer.forward(&x.var()).unwrap();
    y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |p: &Param| p.grad().unwrap().as_slice().to_vec();
    [
        y.value().as_slice().to_vec(),
        grad(&x),
        grad(weight),
        grad(bias),
    ]
}

/// The largest difference from PyTorch relative to the largest value of the tensor.
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let largest = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    worst / largest
}

/// Fresh layers from `make` on the whole batch and on its first sample, against `truth`.
fn check<M: Module>(make: impl Fn() -> Result<M>, input: &Input, truth: &Truth) {
    let per_sample = input.x.len() / input.shape[0];
    let mut layer = make().unwrap();
    let what = layer.describe();
    let full = run(&mut layer, input, input.shape[0]);
    let one = run(&mut make().unwrap(), input, 1);
    let pairs = [
        ("y", &full[0], truth.y),
        ("dx", &full[1], truth.dx),
        ("dgamma", &full[2], truth.dgamma),
        ("dbeta", &full[3], truth.dbeta),
        ("y of a batch of one", &one[0], &truth.y[..per_sample]),
        ("dx of a batch of one", &one[1], &truth.dx[..per_sample]),
        ("dgamma of a batch of one", &one[2], truth.dgamma_one),
        ("dbeta of a batch of one", &one[3], truth.dbeta_one),
    ];
    for (name, got, want) in pairs {
        let err = rel_error(got, want);
        assert!(
            err <= TOLERANCE,
            "{what} on {:?}: {name} off by {err:.2e} of its largest value",
            input.shape
        );
    }
}

#[test]
fn group_norm_on_images_matches_pytorch_for_one_some_and_every_channel_per_group() {
    for (groups, truth) in [(1, &GN_IMG_G1), (2, &GN_IMG_G2), (4, &GN_IMG_G4)] {
        check(|| GroupNorm::new(groups, 4), &GN_IMG_INPUT, truth);
    }
}

#[test]
fn group_norm_on_features_matches_pytorch() {
    check(|| GroupNorm::new(2, 6), &GN_FEAT_INPUT, &GN_FEAT_G2);
}

#[test]
fn layer_norm_over_one_and_three_trailing_dimensions_matches_pytorch() {
    check(|| LayerNorm::new(&[5]), &LN_1D_INPUT, &LN_1D);
    check(|| LayerNorm::new(&[2, 3, 3]), &LN_3D_INPUT, &LN_3D);
}
