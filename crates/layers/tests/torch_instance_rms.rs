//! InstanceNorm1d/2d and RMSNorm against PyTorch 2.15 evaluated in float64.
//!
//! PyTorch ran `nn.InstanceNorm1d/2d(affine=True)` and `nn.RMSNorm(eps=1e-6)` in float64 on
//! float32 inputs and parameters, so its results are the exact values for the numbers norma
//! sees (to ~1e-16). norma computes the output and dx, dγ (dβ) of Σ y·dy through autograd.
//! Tolerance: 1e-5 of each tensor's largest value (float32 rounding of O(1) values, and sums
//! over at most 27 values).
//!
//! `tests/data/torch_instance_rms_values.rs` is the output of this snippet (run with the venv of
//! `scripts/setup-torch-venv.sh`:
//! `python snippet.py > crates/layers/tests/data/torch_instance_rms_values.rs`):
//!
//! ```python
//! import torch
//! from torch import nn
//! torch.manual_seed(20)
//! def arr(t):
//!     vals = [f"{v:.11e}" for v in t.detach().reshape(-1).tolist()]
//!     return "&[\n" + "".join(f"    {', '.join(vals[i:i + 4])},\n" for i in range(0, len(vals), 4)) + "]"
//! out = ["//! Printed by the snippet in tests/torch_instance_rms.rs.", "use super::Case;"]
//! def emit(name, make, shape, affine_shape):
//!     x = torch.randn(shape) * 2 + 1
//!     dy = torch.randn(shape)
//!     gamma = torch.randn(affine_shape) * 0.5 + 1
//!     beta = torch.randn(affine_shape)
//!     layer = make().double()
//!     params = [layer.weight] + ([layer.bias] if getattr(layer, "bias", None) is not None else [])
//!     with torch.no_grad():
//!         layer.weight.copy_(gamma)
//!         if len(params) == 2:
//!             layer.bias.copy_(beta)
//!     xd = x.double().requires_grad_(True)
//!     y = layer(xd)
//!     g = torch.autograd.grad(y, [xd] + params, dy.double())
//!     fields = [("x", x), ("dy", dy), ("gamma", gamma), ("beta", beta if len(params) == 2 else torch.zeros(0)),
//!               ("y", y), ("dx", g[0]), ("dgamma", g[1]), ("dbeta", g[2] if len(params) == 2 else torch.zeros(0))]
//!     body = f"shape: &{list(shape)},\n" + "".join(f"{k}: {arr(v)},\n" for k, v in fields)
//!     out.append(f"pub const {name}: Case = Case {{\n{body}}};")
//! emit("INSTANCE_2D", lambda: nn.InstanceNorm2d(3, affine=True), (2, 3, 3, 3), 3)
//! emit("INSTANCE_1D", lambda: nn.InstanceNorm1d(3, affine=True), (2, 3, 5), 3)
//! emit("RMS_ROWS", lambda: nn.RMSNorm([5], eps=1e-6), (3, 5), 5)
//! emit("RMS_PLANES", lambda: nn.RMSNorm([2, 3], eps=1e-6), (2, 2, 2, 3), (2, 3))
//! print("\n".join(out))
//! ```

use norma_autograd::{Param, Var};
use norma_layers::{
    InstanceNorm1d, InstanceNorm2d, InstanceNormConfig, Module, RmsNorm, RmsNormConfig,
};
use norma_tensor::Tensor;

/// One fixture: the float32 inputs and PyTorch's float64 results.
pub struct Case {
    shape: &'static [usize],
    x: &'static [f64],
    dy: &'static [f64],
    gamma: &'static [f64],
    beta: &'static [f64],
    y: &'static [f64],
    dx: &'static [f64],
    dgamma: &'static [f64],
    dbeta: &'static [f64],
}

#[path = "data/torch_instance_rms_values.rs"]
mod values;

fn tensor(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_vec(shape, v.iter().map(|&a| a as f32).collect()).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs() / scale;
        assert!(
            err < 1e-5,
            "{what}[{i}]: {g} vs PyTorch {w} ({err:.1e} of the largest)"
        );
    }
}

/// Runs `layer` (parameters γ, then β if it has one) on the case and compares everything.
fn compare(name: &str, mut layer: impl Module, case: &Case, affine_shape: &[usize]) {
    let params = layer.parameters();
    params[0]
        .set_value(tensor(affine_shape, case.gamma))
        .unwrap();
    if params.len() == 2 {
        params[1]
            .set_value(tensor(affine_shape, case.beta))
            .unwrap();
    }
    let x = Param::new(tensor(case.shape, case.x));
    let y = layer.forward(&x.var()).unwrap();
    let dy = Var::constant(tensor(case.shape, case.dy));
    y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
    assert_close(&format!("{name} y"), y.value().as_slice(), case.y);
    assert_close(&format!("{name} dx"), x.grad().unwrap().as_slice(), case.dx);
    assert_close(
        &format!("{name} dγ"),
        params[0].grad().unwrap().as_slice(),
        case.dgamma,
    );
    if params.len() == 2 {
        assert_close(
            &format!("{name} dβ"),
            params[1].grad().unwrap().as_slice(),
            case.dbeta,
        );
    }
}

#[test]
fn instance_norm_matches_pytorch() {
    let affine = InstanceNormConfig {
        affine: true,
        ..InstanceNormConfig::default()
    };
    let layer = InstanceNorm2d::with_config(3, affine).unwrap();
    compare("InstanceNorm2d", layer, &values::INSTANCE_2D, &[3]);
    let layer = InstanceNorm1d::with_config(3, affine).unwrap();
    compare("InstanceNorm1d", layer, &values::INSTANCE_1D, &[3]);
}

#[test]
fn rms_norm_matches_pytorch() {
    let config = RmsNormConfig {
        eps: Some(1e-6),
        ..RmsNormConfig::default()
    };
    compare(
        "RMSNorm([5])",
        RmsNorm::with_config(&[5], config).unwrap(),
        &values::RMS_ROWS,
        &[5],
    );
    let layer = RmsNorm::with_config(&[2, 3], config).unwrap();
    compare("RMSNorm([2, 3])", layer, &values::RMS_PLANES, &[2, 3]);
}
