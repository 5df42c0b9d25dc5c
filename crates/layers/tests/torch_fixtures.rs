//! BatchNorm1d/2d against values computed by PyTorch 2.15 (CPU, float32).
//!
//! Generated with this snippet (torch.manual_seed(19)); the constants below are its output:
//!
//! ```python
//! import torch
//! torch.manual_seed(19)
//! def fmt(name, t):
//!     vals = ", ".join(f"{v:.9e}" for v in t.detach().reshape(-1).tolist())
//!     return f"const {name}: &[f32] = &[{vals}];"
//! out = []
//! for tag, bn, shape in [("BN2D", torch.nn.BatchNorm2d(2), (3, 2, 2, 2)), ("BN1D", torch.nn.BatchNorm1d(3), (4, 3))]:
//!     with torch.no_grad():
//!         bn.weight.copy_(torch.randn(bn.num_features))
//!         bn.bias.copy_(torch.randn(bn.num_features))
//!     out.append(fmt(f"{tag}_GAMMA", bn.weight)); out.append(fmt(f"{tag}_BETA", bn.bias))
//!     bn.train()
//!     xs = [torch.randn(shape) * 2 + 1 for _ in range(3)]
//!     for i, x in enumerate(xs):
//!         out.append(fmt(f"{tag}_X{i}", x))
//!     x0 = xs[0].clone().requires_grad_(True)
//!     y0 = bn(x0)                                  # train forward, first running update
//!     dy = torch.randn(shape)
//!     dx, dg, db = torch.autograd.grad(y0, (x0, bn.weight, bn.bias), dy)
//!     for n, t in [("Y0", y0), ("DY", dy), ("DX", dx), ("DGAMMA", dg), ("DBETA", db)]:
//!         out.append(fmt(f"{tag}_{n}", t))
//!     with torch.no_grad():
//!         bn(xs[1]); bn(xs[2])                     # two more running updates
//!     out.append(fmt(f"{tag}_RUNNING_MEAN", bn.running_mean))
//!     out.append(fmt(f"{tag}_RUNNING_VAR", bn.running_var))
//!     out.append(f"const {tag}_BATCHES: i64 = {int(bn.num_batches_tracked)};")
//!     bn.eval()
//!     xe = torch.randn((1,) + shape[1:])           # a batch of one, eval mode
//!     out.append(fmt(f"{tag}_X_EVAL", xe))
//!     with torch.no_grad():
//!         out.append(fmt(f"{tag}_Y_EVAL", bn(xe)))
//! print("\n".join(out))
//! ```
//!
//! Tolerance 2e-6 absolute + 2e-6 relative: both sides compute in f32 with wider statistics;
//! the remaining differences are a few ulp of summation order.

// PyTorch printed 9 significant digits: enough to round-trip every f32 exactly.
#![allow(clippy::excessive_precision)]

use norma_autograd::{Param, Var};
use norma_layers::checkpoint::{state_dict, StateValue};
use norma_layers::{BatchNorm1d, BatchNorm2d, Module};
use norma_tensor::Tensor;

const BN2D_GAMMA: &[f32] = &[-2.095970791e-03, -2.836181521e-01];
const BN2D_BETA: &[f32] = &[-2.790602148e-01, -2.098841906e+00];
const BN2D_X0: &[f32] = &[
    -2.392790318e+00,
    6.109661579e+00,
    8.027750850e-01,
    -5.142161846e-01,
    9.241375923e-01,
    5.018601418e-01,
    -1.196318865e+00,
    8.898208141e-01,
    -3.653132439e+00,
    -4.639937401e+00,
    1.394523144e+00,
    1.462203622e+00,
    1.782578707e+00,
    -1.089039803e+00,
    2.371950746e-01,
    3.216515064e+00,
    1.907302976e+00,
    4.812158346e-01,
    2.873681545e+00,
    2.344058990e+00,
    1.017831802e+00,
    1.832825065e+00,
    -1.498974562e-01,
    4.855356216e+00,
];
const BN2D_X1: &[f32] = &[
    -1.120007992e+00,
    -1.935733080e+00,
    -1.202120066e+00,
    -1.091123343e+00,
    -1.788470268e+00,
    1.879673600e+00,
    5.459157228e-01,
    9.471386671e-02,
    -1.385003328e-01,
    3.113673210e+00,
    -2.718561888e-01,
    3.521106005e+00,
    -9.521925449e-02,
    4.430348873e-01,
    4.987314939e-01,
    1.720093250e+00,
    4.052970886e+00,
    3.580983400e+00,
    1.546782851e-01,
    1.901790500e-01,
    -4.690217972e-01,
    -5.193502903e-01,
    8.644436598e-01,
    -4.435364008e-01,
];
const BN2D_X2: &[f32] = &[
    7.861574888e-01,
    2.130513430e+00,
    8.445186019e-01,
    6.463798285e-01,
    7.853549719e-01,
    3.369497061e+00,
    1.257450581e+00,
    -7.566388845e-01,
    2.779685497e+00,
    1.075989962e+00,
    8.094667196e-01,
    8.813542724e-01,
    -3.292773247e+00,
    1.454124928e+00,
    8.555725813e-01,
    -6.492015123e-01,
    1.727526784e-01,
    -6.568788290e-01,
    -3.311110735e-01,
    3.188778400e+00,
    2.478212833e+00,
    -5.783528090e-01,
    8.106811643e-01,
    3.192700863e+00,
];
const BN2D_Y0: &[f32] = &[
    -2.769208550e-01,
    -2.831772268e-01,
    -2.792722583e-01,
    -2.783031762e-01,
    -2.073905945e+00,
    -2.001002073e+00,
    -1.707819939e+00,
    -2.067981482e+00,
    -2.759934664e-01,
    -2.752673328e-01,
    -2.797076702e-01,
    -2.797574699e-01,
    -2.222111464e+00,
    -1.726341128e+00,
    -1.955308914e+00,
    -2.469673395e+00,
    -2.800849974e-01,
    -2.790356278e-01,
    -2.807960808e-01,
    -2.804063857e-01,
    -2.090081930e+00,
    -2.230786324e+00,
    -1.888479352e+00,
    -2.752611160e+00,
];
const BN2D_DY: &[f32] = &[
    8.662887216e-01,
    1.664175242e-01,
    -4.643037319e-01,
    -2.748311460e-01,
    -4.758197665e-01,
    -7.227372527e-01,
    2.153788656e-01,
    -9.522989392e-01,
    1.129703879e+00,
    3.799384832e-01,
    2.555098057e+00,
    -4.023034275e-01,
    -2.105464190e-01,
    2.455675453e-01,
    -9.712809324e-01,
    4.382712245e-01,
    6.769627333e-01,
    -7.627457976e-01,
    -8.736663461e-01,
    2.109142542e+00,
    -2.628612518e-01,
    9.060570002e-01,
    4.755032957e-01,
    -2.615197659e+00,
];
const BN2D_DX: &[f32] = &[
    -2.480639087e-04,
    4.378956510e-05,
    6.471634842e-04,
    5.423061084e-04,
    3.218851611e-02,
    9.405918419e-02,
    9.477868676e-03,
    1.160139143e-01,
    -4.088170826e-04,
    1.687797630e-04,
    -1.590132131e-03,
    5.842362298e-04,
    -5.272554979e-02,
    -6.223616074e-04,
    1.490287930e-01,
    -2.300797701e-01,
    -2.216009743e-04,
    8.752047434e-04,
    8.940371335e-04,
    -1.286903629e-03,
    -8.846991695e-03,
    -2.477910221e-01,
    -8.311282843e-02,
    2.224102765e-01,
];
const BN2D_DGAMMA: &[f32] = &[-1.219075561e+00, -5.202967167e+00];
const BN2D_DBETA: &[f32] = &[5.105701447e+00, -3.929964066e+00];
const BN2D_RUNNING_MEAN: &[f32] = &[2.108205259e-01, 1.814254671e-01];
const BN2D_RUNNING_VAR: &[f32] = &[2.009767532e+00, 1.413449526e+00];
const BN2D_BATCHES: i64 = 3;
const BN2D_X_EVAL: &[f32] = &[
    -5.560355186e-01,
    2.883569300e-01,
    -9.278603643e-02,
    1.482756853e+00,
    -7.362278104e-01,
    1.247043133e+00,
    4.398892820e-02,
    -7.122514248e-01,
];
const BN2D_Y_EVAL: &[f32] = &[
    -2.779264450e-01,
    -2.791748345e-01,
    -2.786113322e-01,
    -2.809407115e-01,
    -1.879929185e+00,
    -2.353052616e+00,
    -2.066055298e+00,
    -1.885648966e+00,
];
const BN1D_GAMMA: &[f32] = &[-1.055552721e+00, -7.771920562e-01, 1.301753163e+00];
const BN1D_BETA: &[f32] = &[-4.576042295e-01, 4.217705429e-01, -6.299572587e-01];
const BN1D_X0: &[f32] = &[
    1.481275558e-01,
    1.197871208e+00,
    3.175376177e+00,
    2.020670414e+00,
    2.310534954e+00,
    3.784219742e+00,
    2.910233974e+00,
    1.995926142e+00,
    4.369089603e+00,
    1.981296539e+00,
    1.866095662e+00,
    -1.769899368e+00,
];
const BN1D_X1: &[f32] = &[
    2.606801033e+00,
    1.349208355e+00,
    1.813027620e+00,
    -6.348310709e-01,
    4.213951111e+00,
    3.557240009e+00,
    -3.635996580e-01,
    -1.778887033e+00,
    2.208957672e+00,
    1.516514182e+00,
    -2.322385311e+00,
    -4.544516802e-01,
];
const BN1D_X2: &[f32] = &[
    3.928431511e+00,
    3.398601532e+00,
    -3.185557127e-01,
    1.535585523e+00,
    5.846738338e+00,
    1.810456157e+00,
    1.573068857e+00,
    -1.916627884e-01,
    2.682818890e+00,
    3.971325159e+00,
    1.909037709e+00,
    1.605089307e+00,
];
const BN1D_Y0: &[f32] = &[
    1.241120577e+00,
    1.656532764e+00,
    -2.105098367e-01,
    -7.261176705e-01,
    -4.743792713e-01,
    1.145308912e-01,
    -1.660666943e+00,
    1.281421334e-01,
    4.267728627e-01,
    -6.847526431e-01,
    3.767862916e-01,
    -2.850623131e+00,
];
const BN1D_DY: &[f32] = &[
    -1.151796103e+00,
    2.615418911e+00,
    6.131418049e-02,
    8.023866266e-02,
    1.804540604e-01,
    -1.115109444e+00,
    3.702817857e-01,
    -1.307303786e+00,
    1.280456662e+00,
    -1.381289124e+00,
    7.717189193e-01,
    -1.525406003e+00,
];
const BN1D_DX: &[f32] = &[
    -1.817757338e-01,
    -5.824925900e-01,
    7.603967190e-02,
    -4.977234006e-01,
    -1.690524101e+00,
    -6.527783275e-01,
    -3.376429677e-01,
    2.790610313e+00,
    5.293343663e-01,
    1.017142057e+00,
    -5.175933242e-01,
    4.740432650e-02,
];
const BN1D_DGAMMA: &[f32] = &[1.998805285e+00, -4.396408081e+00, 3.023650408e+00];
const BN1D_DBETA: &[f32] = &[-2.082564831e+00, 2.260288000e+00, -1.298744559e+00];
const BN1D_RUNNING_MEAN: &[f32] = &[4.884918332e-01, 4.562115073e-01, 4.983680546e-01];
const BN1D_RUNNING_VAR: &[f32] = &[1.245045066e+00, 2.220516920e+00, 1.781263709e+00];
const BN1D_BATCHES: i64 = 3;
const BN1D_X_EVAL: &[f32] = &[-4.891626537e-01, 3.092487156e-01, -4.953956902e-01];
const BN1D_Y_EVAL: &[f32] = &[4.672451913e-01, 4.984197617e-01, -1.599231005e+00];

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-6 + 2e-6 * w.abs(),
            "{what}[{i}]: {g} vs PyTorch {w}"
        );
    }
}

fn set(p: Option<&Param>, v: &[f32]) {
    p.unwrap()
        .set_value(Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
        .unwrap();
}

struct Case<'a> {
    shape: &'a [usize],
    gamma: &'a [f32],
    beta: &'a [f32],
    xs: [&'a [f32]; 3],
    y0: &'a [f32],
    dy: &'a [f32],
    dx: &'a [f32],
    dgamma: &'a [f32],
    dbeta: &'a [f32],
    running_mean: &'a [f32],
    running_var: &'a [f32],
    batches: i64,
    x_eval: &'a [f32],
    y_eval: &'a [f32],
}

fn check(bn: &mut dyn Module, weight: Option<&Param>, bias: Option<&Param>, c: Case<'_>) {
    set(weight, c.gamma);
    set(bias, c.beta);
    let x0 = Param::new(Tensor::from_vec(c.shape, c.xs[0].to_vec()).unwrap());
    let y0 = bn.forward(&x0.var()).unwrap();
    close(y0.value().as_slice(), c.y0, "train forward");
    let dy = Var::constant(Tensor::from_vec(c.shape, c.dy.to_vec()).unwrap());
    y0.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
    close(x0.grad().unwrap().as_slice(), c.dx, "dx");
    close(
        weight.unwrap().grad().unwrap().as_slice(),
        c.dgamma,
        "dgamma",
    );
    close(bias.unwrap().grad().unwrap().as_slice(), c.dbeta, "dbeta");
    for x in &c.xs[1..] {
        bn.forward(&Var::constant(
            Tensor::from_vec(c.shape, x.to_vec()).unwrap(),
        ))
        .unwrap();
    }
    let buffers = state_dict(&*bn);
    let get = |name: &str| buffers[name].clone();
    let tensor = |name: &str| match get(name) {
        StateValue::F32(t) => t,
        other => panic!("{name}: {other:?}"),
    };
    close(
        tensor("running_mean").as_slice(),
        c.running_mean,
        "running_mean",
    );
    close(
        tensor("running_var").as_slice(),
        c.running_var,
        "running_var",
    );
    assert_eq!(get("num_batches_tracked"), StateValue::I64(c.batches));
    bn.eval();
    let mut eval_shape = c.shape.to_vec();
    eval_shape[0] = 1;
    let ye = bn
        .forward(&Var::constant(
            Tensor::from_vec(&eval_shape, c.x_eval.to_vec()).unwrap(),
        ))
        .unwrap();
    close(ye.value().as_slice(), c.y_eval, "eval forward");
}

#[test]
fn batch_norm_2d_matches_pytorch() {
    let mut bn = BatchNorm2d::new(2).unwrap();
    let (w, b) = (bn.weight().cloned(), bn.bias().cloned());
    check(
        &mut bn,
        w.as_ref(),
        b.as_ref(),
        Case {
            shape: &[3, 2, 2, 2],
            gamma: BN2D_GAMMA,
            beta: BN2D_BETA,
            xs: [BN2D_X0, BN2D_X1, BN2D_X2],
            y0: BN2D_Y0,
            dy: BN2D_DY,
            dx: BN2D_DX,
            dgamma: BN2D_DGAMMA,
            dbeta: BN2D_DBETA,
            running_mean: BN2D_RUNNING_MEAN,
            running_var: BN2D_RUNNING_VAR,
            batches: BN2D_BATCHES,
            x_eval: BN2D_X_EVAL,
            y_eval: BN2D_Y_EVAL,
        },
    );
}

#[test]
fn batch_norm_1d_matches_pytorch() {
    let mut bn = BatchNorm1d::new(3).unwrap();
    let (w, b) = (bn.weight().cloned(), bn.bias().cloned());
    check(
        &mut bn,
        w.as_ref(),
        b.as_ref(),
        Case {
            shape: &[4, 3],
            gamma: BN1D_GAMMA,
            beta: BN1D_BETA,
            xs: [BN1D_X0, BN1D_X1, BN1D_X2],
            y0: BN1D_Y0,
            dy: BN1D_DY,
            dx: BN1D_DX,
            dgamma: BN1D_DGAMMA,
            dbeta: BN1D_DBETA,
            running_mean: BN1D_RUNNING_MEAN,
            running_var: BN1D_RUNNING_VAR,
            batches: BN1D_BATCHES,
            x_eval: BN1D_X_EVAL,
            y_eval: BN1D_Y_EVAL,
        },
    );
}
