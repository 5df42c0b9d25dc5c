//! The normalization layers against PyTorch 2.15 evaluated in float64.
//!
//! PyTorch ran `nn.GroupNorm` (which calls `F.group_norm`), `nn.LayerNorm` and
//! `nn.BatchNorm1d/2d` (train mode) in float64 on float32 inputs and parameters, so its results
//! are the exact values for the very numbers norma sees (to ~1e-16). norma's layers compute
//! forward output and dx, dγ, dβ for a random output gradient through autograd (the input is a
//! leaf `Param`, the loss Σ y·dy).
//!
//! - **Group norm** on images (2, 4, 3, 3) with G = 1 (layer norm with a per-channel affine),
//!   2, and 4 = C (instance norm), and on features (3, 6) with G = 2; **layer norm** over one
//!   trailing dimension (3, 5) and over three (2, 2, 3, 3). Each on the whole batch and on its
//!   first sample alone (a batch of one).
//! - **Batch norm where float32 loses precision** (issue 14): inputs of mean −3000 and spread
//!   0.01 (4, 3, 4, 4); two values per channel (2, 8); an output gradient equal to the normalized
//!   output, dy = x̂ (2, 3, 4, 4). PyTorch's own float32 kernels, on the same inputs, are off by
//!   (of each tensor's largest value) y 3.4e-3, dx 1.5e-3, dγ 1.7e-2 at mean −3000; dx 1.9e-3
//!   with two values per channel; dx 1.1e-1 (and dβ, whose true value is ~2e-7, by 1.8) with
//!   dy = x̂. The snippet records these next to each case in the data file.
//!
//! `tests/data/torch_norm_values.rs` is the output of this snippet (run with the venv of
//! `scripts/setup-torch-venv.sh`: `python snippet.py > crates/layers/tests/data/torch_norm_values.rs`):
//!
//! ```python
//! import torch
//! from torch import nn
//! torch.manual_seed(10)
//! def arr(t, digits):
//!     vals = [f"{v:.{digits}e}" for v in t.detach().reshape(-1).tolist()]
//!     return "&[\n" + "".join(f"    {', '.join(vals[i:i + 4])},\n" for i in range(0, len(vals), 4)) + "]"
//! def struct(ty, fields, digits):
//!     body = "".join(f"{k}: {f'&{list(v)}' if isinstance(v, tuple) else arr(v, digits)},\n" for k, v in fields)
//!     return f"{ty} {{\n{body}}}"
//! def draw(x, affine, dy=None):
//!     """An input: float32 x, dy, γ, β."""
//!     dy = torch.randn(x.shape) if dy is None else dy
//!     return {"shape": tuple(x.shape), "x": x, "dy": dy, "gamma": torch.randn(affine) * 0.5 + 1, "beta": torch.randn(affine)}
//! def grads(make, inp, dtype):
//!     """y, dx, dγ, dβ of the layer make() in dtype (train mode) at the float32 input."""
//!     layer = make().to(dtype)
//!     with torch.no_grad():
//!         layer.weight.copy_(inp["gamma"]), layer.bias.copy_(inp["beta"])
//!     x = inp["x"].to(dtype).requires_grad_(True)
//!     y = layer(x)
//!     return [y, *torch.autograd.grad(y, (x, layer.weight, layer.bias), inp["dy"].to(dtype))]
//! def truth(make, inp):
//!     """The float64 results, after a comment with float32's error relative to each largest value."""
//!     t, f = grads(make, inp, torch.float64), grads(make, inp, torch.float32)
//!     errs = ", ".join(f"{n} {((a.double() - b).abs().max() / b.abs().max()).item():.1e}"
//!                      for n, a, b in zip(("y", "dx", "dγ", "dβ"), f, t))
//!     return f"// PyTorch float32 is off by: {errs}\n" + struct("Truth", zip(("y", "dx", "dgamma", "dbeta"), t), 11)
//! out = ["//! Printed by the snippet in tests/torch_norm_fixtures.rs.", "use super::{Input, Truth};"]
//! def emit(name, inp, layers):
//!     out.append(f"pub const {name}_INPUT: Input = {struct('Input', inp.items(), 8)};")
//!     for suffix, make in layers.items():
//!         if isinstance(make(), nn.modules.batchnorm._BatchNorm):
//!             out.append(f"pub const {name}{suffix}: Truth =\n{truth(make, inp)};")
//!         else:   # group and layer norm: the whole batch, then its first sample alone
//!             first = dict(inp, shape=(1, *inp["shape"][1:]), x=inp["x"][:1], dy=inp["dy"][:1])
//!             out.append(f"pub const {name}{suffix}: [Truth; 2] = [\n{truth(make, inp)},\n{truth(make, first)},\n];")
//! emit("GN_IMG", draw(torch.randn(2, 4, 3, 3) * 2 + 1, 4), {f"_G{g}": lambda g=g: nn.GroupNorm(g, 4) for g in (1, 2, 4)})
//! emit("GN_FEAT", draw(torch.randn(3, 6) * 2 + 1, 6), {"_G2": lambda: nn.GroupNorm(2, 6)})
//! emit("LN_1D", draw(torch.randn(3, 5) * 2 + 1, 5), {"": lambda: nn.LayerNorm(5)})
//! emit("LN_3D", draw(torch.randn(2, 2, 3, 3) * 2 + 1, (2, 3, 3)), {"": lambda: nn.LayerNorm((2, 3, 3))})
//! # Batch norm where a float32 evaluation loses precision: mean -3000 with spread 0.01, two values
//! # per channel, and an output gradient equal to the normalized output.
//! x = (torch.randn(4, 3, 4, 4, dtype=torch.float64) * 0.01 - 3000).float()
//! emit("BN_OFFSET", draw(x, 3), {"": lambda: nn.BatchNorm2d(3)})
//! emit("BN_TWO", draw(torch.randn(2, 8) * 2 + 0.5, 8), {"": lambda: nn.BatchNorm1d(8)})
//! x = torch.randn(2, 3, 4, 4) * 3 + 4
//! xhat = nn.functional.batch_norm(x.double(), None, None, training=True, eps=1e-5).float()
//! emit("BN_XHAT", draw(x, 3, dy=xhat), {"": lambda: nn.BatchNorm2d(3)})
//! print("\n".join(out))
//! ```
//!
//! **Tolerances**, relative to the largest value of each tensor (y, dx, dγ or dβ):
//!
//! - group and layer norm: 1e-6, about 8 f32 ulps of a value of size 1. norma computes in f32
//!   with f64 statistics, so each result carries a few roundings of its own size (measured: at
//!   most 3e-7, on dx of the batch of one of group norm on features); PyTorch's float64 adds
//!   nothing at this scale, and its float32 is within 1e-6 too on these ordinary inputs. A wrong
//!   formula, group or reduction axis is off by O(1).
//! - the batch-norm cases: 1e-5, the kernels' exactness guarantee (`norma-kernels`'
//!   `tests/exactness.rs`), 100 to 10 000 times tighter than PyTorch's float32 errors above
//!   (measured: at most 6.4e-8, on dx at mean −3000).

// The f32 inputs are printed with 9 significant digits: enough to round-trip every f32 exactly.
#![allow(clippy::excessive_precision)]

#[rustfmt::skip]
#[path = "data/torch_norm_values.rs"]
mod torch;

use norma_autograd::{Param, Var};
use norma_layers::{BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, Module, Result};
use norma_tensor::Tensor;
use torch::*;

/// Group and layer norm (see the module docs).
const ORDINARY: f64 = 1e-6;
/// Batch norm on the inputs where float32 loses precision (see the module docs).
const EXACT: f64 = 1e-5;

/// An input, its output gradient and the layer's parameters, as PyTorch drew them (f32).
pub struct Input {
    shape: &'static [usize],
    x: &'static [f32],
    dy: &'static [f32],
    gamma: &'static [f32],
    beta: &'static [f32],
}

/// PyTorch's float64 results on an [`Input`].
pub struct Truth {
    y: &'static [f64],
    dx: &'static [f64],
    dgamma: &'static [f64],
    dbeta: &'static [f64],
}

/// y, dx, dγ, dβ of `layer` (in training mode) on the first `samples` samples of `input`,
/// through autograd with the loss Σ y·dy.
fn run(layer: &mut dyn Module, input: &Input, samples: usize) -> [Vec<f32>; 4] {
    let params = layer.named_parameters();
    let param = |name: &str| &params.iter().find(|(k, _)| k == name).expect(name).1;
    let (weight, bias) = (param("weight"), param("bias"));
    for (p, values) in [(weight, input.gamma), (bias, input.beta)] {
        let value = Tensor::from_vec(&p.shape(), values.to_vec()).unwrap();
        p.set_value(value).unwrap();
    }
    let shape = [&[samples], &input.shape[1..]].concat();
    let len = input.x.len() / input.shape[0] * samples;
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

/// A fresh layer from `make` on the first `samples` samples of `input`, against `truth` within
/// `tolerance`.
fn check<M: Module>(
    make: impl Fn() -> Result<M>,
    (input, samples): (&Input, usize),
    truth: &Truth,
    tolerance: f64,
) {
    let mut layer = make().unwrap();
    let got = run(&mut layer, input, samples);
    let want = [truth.y, truth.dx, truth.dgamma, truth.dbeta];
    for ((name, got), want) in ["y", "dx", "dgamma", "dbeta"].iter().zip(&got).zip(want) {
        let err = rel_error(got, want);
        assert!(
            err <= tolerance,
            "{} on {} samples of {:?}: {name} off by {err:.2e} of its largest value",
            layer.describe(),
            samples,
            input.shape
        );
    }
}

/// Group or layer norm on the whole batch and on its first sample.
fn check_with_batch_of_one<M: Module>(
    make: impl Fn() -> Result<M>,
    input: &Input,
    [batch, one]: &[Truth; 2],
) {
    check(&make, (input, input.shape[0]), batch, ORDINARY);
    check(&make, (input, 1), one, ORDINARY);
}

#[test]
fn group_norm_on_images_matches_pytorch_for_one_some_and_every_channel_per_group() {
    for (groups, truth) in [(1, &GN_IMG_G1), (2, &GN_IMG_G2), (4, &GN_IMG_G4)] {
        check_with_batch_of_one(|| GroupNorm::new(groups, 4), &GN_IMG_INPUT, truth);
    }
}

#[test]
fn group_norm_on_features_matches_pytorch() {
    check_with_batch_of_one(|| GroupNorm::new(2, 6), &GN_FEAT_INPUT, &GN_FEAT_G2);
}

#[test]
fn layer_norm_over_one_and_three_trailing_dimensions_matches_pytorch() {
    check_with_batch_of_one(|| LayerNorm::new(&[5]), &LN_1D_INPUT, &LN_1D);
    check_with_batch_of_one(|| LayerNorm::new(&[2, 3, 3]), &LN_3D_INPUT, &LN_3D);
}

#[test]
fn batch_norm_is_exact_at_a_large_offset_with_a_small_spread() {
    check(
        || BatchNorm2d::new(3),
        (&BN_OFFSET_INPUT, BN_OFFSET_INPUT.shape[0]),
        &BN_OFFSET,
        EXACT,
    );
}

#[test]
fn batch_norm_is_exact_with_two_values_per_channel() {
    check(
        || BatchNorm1d::new(8),
        (&BN_TWO_INPUT, BN_TWO_INPUT.shape[0]),
        &BN_TWO,
        EXACT,
    );
}

#[test]
fn batch_norm_is_exact_when_the_output_gradient_is_the_normalized_output() {
    check(
        || BatchNorm2d::new(3),
        (&BN_XHAT_INPUT, BN_XHAT_INPUT.shape[0]),
        &BN_XHAT,
        EXACT,
    );
}
