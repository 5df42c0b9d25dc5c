//! The LeNet family's checkpoints and PyTorch, both ways.
//!
//! - **PyTorch → norma**: `tests/data/lenet_{bn,gn,ln}_torch.safetensors` are `state_dict()`s of
//!   PyTorch modules that mirror norma's LeNet-BN, -GN and -LN (`scripts/norma_models.py`),
//!   trained for 5 SGD steps so that no tensor is at its initial value, with their eval-mode
//!   outputs on 4 inputs (`..._torch_io.safetensors`; both made by
//!   `tests/data/make_lenet_fixtures.py`). norma loads each into `ModelKind::build_placed` and must
//!   give PyTorch's outputs.
//!   `resnet8_batch_torch{,_io}.safetensors` do the same for PyTorch's ResNet-8-BN.
//! - **norma → PyTorch**: [`norma_checkpoints_for_pytorch`] saves every variant (normalization,
//!   activation, placement) with its eval outputs. `scripts/check_checkpoints_in_pytorch.py`
//!   has it write them into `NORMA_EXPORT_DIR` and loads each into the PyTorch mirror with
//!   `load_state_dict(strict=True)`, comparing PyTorch's outputs with norma's.
//!   [`deep_checkpoints_for_pytorch`] does the same for the deep networks (`resnet8-batch`,
//!   `plain8-layer`, ...; `models::DeepNet`), which the script loads into `build_deep`.
//!
//! Tolerance 1e-5 absolute on logits of size up to ~7: both sides compute in f32, with different
//! convolution and matrix-product algorithms (PyTorch's oneDNN, norma's direct convolution and GEMM), so they
//! differ by a few ulps per layer; measured differences are at most 1e-6 (a few ulps of the
//! largest logit). A wrong layer order, a
//! misplaced normalization or wrong group count is off by far more than 1e-2.

use std::path::{Path, PathBuf};

use norma_autograd::{no_grad, Var};
use norma_layers::checkpoint::{self, StateValue};
use norma_layers::models::{Activation, DeepNet, ModelKind, Placement};
use norma_layers::{Module, NormKind, Sequential};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
/// Largest logit difference from PyTorch (see the module docs).
const TOLERANCE: f32 = 1e-5;

fn eval_logits(net: &mut Sequential, x: &Tensor) -> Tensor {
    net.eval();
    no_grad(|| net.forward(&Var::constant(x.clone())))
        .unwrap()
        .value()
        .clone()
}

fn f32_tensor(state: &std::collections::BTreeMap<String, StateValue>, name: &str) -> Tensor {
    match &state[name] {
        StateValue::F32(t) => t.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn pytorch_checkpoints_of_lenet_bn_gn_ln_load_and_match_pytorch_eval_outputs() {
    for kind in ModelKind::NORMALIZED {
        let stem = kind.name().replace('-', "_");
        let mut net = kind
            .build_placed(
                Activation::Sigmoid,
                Placement::BeforeActivation,
                &mut Rng::seed_from_u64(0),
            )
            .unwrap();
        let weights = Path::new(DATA).join(format!("{stem}_torch.safetensors"));
        checkpoint::load(&net, &weights).unwrap();
        let io_path = Path::new(DATA).join(format!("{stem}_torch_io.safetensors"));
        let io = checkpoint::from_bytes(&std::fs::read(io_path).unwrap()).unwrap();
        let got = eval_logits(&mut net, &f32_tensor(&io, "input"));
        let diff = got.max_abs_diff(&f32_tensor(&io, "output")).unwrap();
        assert!(
            diff < TOLERANCE,
            "{}: differs from PyTorch by {diff}",
            kind.name()
        );
        if kind == ModelKind::LenetBn {
            let state = checkpoint::state_dict(&net);
            assert_eq!(state["bn1.num_batches_tracked"], StateValue::I64(5));
        }
    }
}

/// `tests/data/resnet8_batch_torch.safetensors`: PyTorch's ResNet-8-BN (`build_deep` of
/// scripts/norma_models.py, He init, 5 SGD steps; `make_lenet_fixtures.py --models
/// resnet8-batch`) loads into `models::resnet(8, NormKind::Batch)` and gives PyTorch's eval
/// outputs, within the same 1e-5 as the LeNet files.
#[test]
fn pytorch_checkpoint_of_resnet8_bn_loads_and_matches_pytorch_eval_outputs() {
    let mut net =
        norma_layers::models::resnet(8, NormKind::Batch, &mut Rng::seed_from_u64(0)).unwrap();
    checkpoint::load(
        &net,
        &Path::new(DATA).join("resnet8_batch_torch.safetensors"),
    )
    .unwrap();
    let io_path = Path::new(DATA).join("resnet8_batch_torch_io.safetensors");
    let io = checkpoint::from_bytes(&std::fs::read(io_path).unwrap()).unwrap();
    let got = eval_logits(&mut net, &f32_tensor(&io, "input"));
    let diff = got.max_abs_diff(&f32_tensor(&io, "output")).unwrap();
    assert!(
        diff < TOLERANCE,
        "resnet8-batch differs from PyTorch by {diff}"
    );
    let state = checkpoint::state_dict(&net);
    assert_eq!(
        state["layer2.0.shortcut.1.num_batches_tracked"],
        StateValue::I64(5)
    );
}

/// A model of the LeNet family, named as `scripts/check_checkpoints_in_pytorch.py` reads it:
/// `<model>_<activation>_<placement>` (plain LeNet has no normalization to place: `before`).
struct Variant {
    model: ModelKind,
    activation: Activation,
    placement: Placement,
}

impl Variant {
    fn all() -> Vec<Variant> {
        let mut out = Vec::new();
        for activation in [Activation::Sigmoid, Activation::Relu] {
            out.push(Variant {
                model: ModelKind::Lenet,
                activation,
                placement: Placement::BeforeActivation,
            });
            for model in ModelKind::NORMALIZED {
                for placement in [Placement::BeforeActivation, Placement::AfterActivation] {
                    out.push(Variant {
                        model,
                        activation,
                        placement,
                    });
                }
            }
        }
        out
    }

    fn name(&self) -> String {
        let model = self.model.name();
        format!("{model}_{}_{}", self.activation, self.placement)
    }

    fn build(&self, seed: u64) -> Sequential {
        let rng = &mut Rng::seed_from_u64(seed);
        self.model
            .build_placed(self.activation, self.placement, rng)
            .unwrap()
    }
}

/// Two SGD steps on random images, so that affine parameters and running statistics move away
/// from their initial values (a file of ones and zeros would hide a mix-up of γ and β).
fn train_two_steps(net: &mut Sequential, lr: f64, rng: &mut Rng) {
    let mut sgd = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    for step in 0..2 {
        let x = Tensor::rand_uniform(&[16, 1, 28, 28], 0.0, 1.0, rng);
        let labels: Vec<usize> = (0..16).map(|i| (i * 7 + step) % 10).collect();
        sgd.zero_grad();
        let logits = net.forward(&Var::constant(x)).unwrap();
        logits.cross_entropy(&labels).unwrap().backward().unwrap();
        sgd.step().unwrap();
    }
}

/// `NORMA_EXPORT_DIR` when set, else a temporary folder (kept while the first value lives).
fn export_dir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("NORMA_EXPORT_DIR").map_or(temp.path().to_path_buf(), PathBuf::from);
    (temp, dir)
}

/// Saves `net` as `<name>.safetensors` with `<name>_io.safetensors` ('input' and norma's
/// eval-mode 'output' on it) into `dir`; returns the file and the output.
fn export(net: &mut Sequential, name: &str, input: &Tensor, dir: &Path) -> (PathBuf, Tensor) {
    let output = eval_logits(net, input);
    let path = dir.join(format!("{name}.safetensors"));
    checkpoint::save(net, &path).unwrap();
    let io = [
        ("input".to_string(), StateValue::F32(input.clone())),
        ("output".to_string(), StateValue::F32(output.clone())),
    ];
    let io_path = dir.join(format!("{name}_io.safetensors"));
    checkpoint::write_atomic(&io_path, &checkpoint::to_bytes(&io.into()).unwrap()).unwrap();
    (path, output)
}

/// Every variant, trained two steps, saved as `<name>.safetensors` with `<name>_io.safetensors`
/// ('input' (4, 1, 28, 28) and norma's eval-mode 'output' (4, 10)) into `NORMA_EXPORT_DIR` when
/// set, else into a temporary folder; each file must load into a fresh model of its kind and
/// give the same outputs bit for bit.
#[test]
fn norma_checkpoints_for_pytorch() {
    let (_temp, dir) = export_dir();
    let rng = &mut Rng::seed_from_u64(14);
    let input = Tensor::rand_uniform(&[4, 1, 28, 28], 0.0, 1.0, rng);
    for variant in Variant::all() {
        let mut net = variant.build(1);
        train_two_steps(&mut net, 0.5, rng);
        let (path, output) = export(&mut net, &variant.name(), &input, &dir);
        let mut fresh = variant.build(2);
        checkpoint::load(&fresh, &path).unwrap();
        assert_eq!(
            eval_logits(&mut fresh, &input),
            output,
            "{}",
            variant.name()
        );
    }
}

/// The deep networks, ResNet and plain, of depth 8 with every normalization (and ResNet-14
/// with batch norm, two blocks a stage), trained two steps and saved like
/// [`norma_checkpoints_for_pytorch`]'s files (`resnet8-batch.safetensors`, ...); each must load
/// into a fresh network and give the same outputs bit for bit.
#[test]
fn deep_checkpoints_for_pytorch() {
    let (_temp, dir) = export_dir();
    let rng = &mut Rng::seed_from_u64(15);
    let input = Tensor::rand_uniform(&[4, 1, 28, 28], 0.0, 1.0, rng);
    let mut nets: Vec<DeepNet> = Vec::new();
    for residual in [true, false] {
        for norm in NormKind::ALL {
            nets.push(DeepNet {
                residual,
                depth: 8,
                norm,
            });
        }
    }
    nets.push(DeepNet {
        residual: true,
        depth: 14,
        norm: NormKind::Batch,
    });
    for spec in nets {
        let mut net = spec.build(&mut Rng::seed_from_u64(1)).unwrap();
        // A smaller step than LeNet's: the networks without a normalization take lr 0.5 badly.
        train_two_steps(&mut net, 0.05, rng);
        let (path, output) = export(&mut net, &spec.name(), &input, &dir);
        let mut fresh = spec.build(&mut Rng::seed_from_u64(2)).unwrap();
        checkpoint::load(&fresh, &path).unwrap();
        assert_eq!(eval_logits(&mut fresh, &input), output, "{spec}");
    }
}
