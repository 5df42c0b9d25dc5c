//! safetensors checkpoints: round trip and every kind of bad file (PyTorch interop is in
//! `torch_interop.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use norma_autograd::{no_grad, Var};
use norma_layers::checkpoint::{self, CheckpointError, Problem, StateValue};
use norma_layers::models::{self, Activation};
use norma_layers::{Module, Sequential};
use norma_tensor::{Rng, Tensor};

fn lenet_bn(seed: u64) -> Sequential {
    models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(seed)).unwrap()
}

fn eval_logits(net: &mut Sequential, x: &Tensor) -> Tensor {
    net.eval();
    no_grad(|| net.forward(&Var::constant(x.clone())))
        .unwrap()
        .value()
        .clone()
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lenet-bn.safetensors");
    let mut a = lenet_bn(1);
    // Move the running statistics away from their initial values first.
    a.forward(&Var::constant(Tensor::rand_uniform(
        &[8, 1, 28, 28],
        0.0,
        1.0,
        &mut Rng::seed_from_u64(9),
    )))
    .unwrap();
    checkpoint::save(&a, &path).unwrap();
    let mut b = lenet_bn(2);
    checkpoint::load(&b, &path).unwrap();
    let x = Tensor::rand_uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut Rng::seed_from_u64(3));
    assert_eq!(eval_logits(&mut a, &x), eval_logits(&mut b, &x));
    assert_eq!(checkpoint::state_dict(&a), checkpoint::state_dict(&b));
    // No temporary file is left next to the checkpoint.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["lenet-bn.safetensors"]);
}

/// Writes a modified copy of a valid LeNet-BN state dict and returns the load error.
fn load_error(edit: impl FnOnce(&mut BTreeMap<String, StateValue>)) -> CheckpointError {
    let net = lenet_bn(0);
    let mut state = checkpoint::state_dict(&net);
    edit(&mut state);
    let bytes = checkpoint::to_bytes(&state).unwrap();
    checkpoint::load_bytes(&lenet_bn(0), &bytes, Path::new("edited.safetensors")).unwrap_err()
}

fn problems(err: CheckpointError) -> Vec<Problem> {
    match err {
        CheckpointError::Mismatch { problems, .. } => problems,
        other => panic!("expected a mismatch, got {other}"),
    }
}

#[test]
fn wrong_shape_missing_extra_and_wrong_dtype_are_each_reported() {
    let p = problems(load_error(|s| {
        s.insert(
            "fc1.weight".into(),
            StateValue::F32(Tensor::zeros(&[120, 400])),
        );
    }));
    assert_eq!(
        p,
        [Problem::Shape {
            name: "fc1.weight".into(),
            expected: vec![120, 256],
            found: vec![120, 400]
        }]
    );
    let p = problems(load_error(|s| {
        s.remove("bn3.running_var");
    }));
    assert_eq!(p, [Problem::Missing("bn3.running_var".into())]);
    let p = problems(load_error(|s| {
        s.insert("fc4.weight".into(), StateValue::F32(Tensor::zeros(&[1])));
    }));
    assert_eq!(p, [Problem::Unexpected("fc4.weight".into())]);
    let p = problems(load_error(|s| {
        s.insert("conv1.bias".into(), StateValue::I64(3));
    }));
    assert!(
        matches!(&p[..], [Problem::Dtype { name, expected: "F32", .. }] if name == "conv1.bias"),
        "{p:?}"
    );

    // All problems at once, in one error, and nothing is applied.
    let net = lenet_bn(0);
    let before = checkpoint::state_dict(&net);
    let mut state = before.clone();
    state.remove("conv1.weight");
    state.insert("extra".into(), StateValue::I64(1));
    state.insert("fc3.bias".into(), StateValue::F32(Tensor::ones(&[11])));
    state.insert("fc2.bias".into(), StateValue::F32(Tensor::ones(&[84])));
    let err = checkpoint::load_bytes(
        &net,
        &checkpoint::to_bytes(&state).unwrap(),
        Path::new("x.safetensors"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("3 problems")
            && msg.contains("missing conv1.weight")
            && msg.contains("unexpected extra"),
        "{msg}"
    );
    assert_eq!(checkpoint::state_dict(&net), before);
}

#[test]
fn impossible_values_are_refused_naming_the_tensor() {
    let p = problems(load_error(|s| {
        let mut w = Tensor::zeros(&[6, 1, 5, 5]);
        w.as_slice_mut()[3] = f32::NAN;
        w.as_slice_mut()[7] = f32::INFINITY;
        s.insert("conv1.weight".into(), StateValue::F32(w));
    }));
    assert_eq!(
        p,
        [Problem::Invalid {
            name: "conv1.weight".into(),
            reason: "2 of 150 values are NaN or infinite".into()
        }]
    );
    let err = load_error(|s| {
        let mut v = Tensor::ones(&[120]);
        v.as_slice_mut()[0] = -0.5;
        s.insert("bn3.running_var".into(), StateValue::F32(v));
    });
    assert_eq!(
        err.to_string(),
        "checkpoint edited.safetensors does not fit the model (1 problem): \
         bn3.running_var: 1 negative variances"
    );
    let p = problems(load_error(|s| {
        s.insert("bn1.num_batches_tracked".into(), StateValue::I64(-3));
    }));
    assert!(matches!(&p[..], [Problem::Invalid { name, .. }] if name == "bn1.num_batches_tracked"));
}

#[test]
fn other_float_types_are_named_in_the_error() {
    let net = lenet_bn(0);
    let mut state = checkpoint::state_dict(&net);
    state.remove("fc3.bias");
    let mut bytes_f64 = Vec::new();
    for v in [0.0f64; 10] {
        bytes_f64.extend(v.to_le_bytes());
    }
    let owned = checkpoint::to_bytes(&state).unwrap();
    let file = safetensors::SafeTensors::deserialize(&owned).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file.tensors();
    views.push((
        "fc3.bias".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![10], &bytes_f64)
            .unwrap(),
    ));
    let bytes = safetensors::serialize(views, None).unwrap();
    let err = checkpoint::load_bytes(&net, &bytes, Path::new("f64.safetensors")).unwrap_err();
    assert!(
        err.to_string()
            .contains("fc3.bias: dtype F64 in the file, F32 in the model"),
        "{err}"
    );
}

#[test]
fn truncated_and_missing_files_are_format_and_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    checkpoint::save(&lenet_bn(0), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 100, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = checkpoint::load(&lenet_bn(0), &path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Format { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("net.safetensors"));
    }
    let err = checkpoint::load(&lenet_bn(0), &dir.path().join("absent.safetensors")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
}

#[test]
fn a_failed_save_leaves_neither_a_partial_file_nor_a_temporary() {
    let dir = tempfile::tempdir().unwrap();
    // The final name is taken by a non-empty directory: the rename fails.
    let target = dir.path().join("taken.safetensors");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(checkpoint::save(&lenet_bn(0), &target).is_err());
    assert!(target.join("keep").exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["taken.safetensors"]);
    // A folder that does not exist: an I/O error, nothing created.
    let err =
        checkpoint::save(&lenet_bn(0), &dir.path().join("no/such/dir/x.safetensors")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
}

#[test]
fn a_checkpoint_without_num_batches_tracked_loads_with_zero() {
    let mut state = checkpoint::state_dict(&lenet_bn(0));
    state.retain(|k, _| !k.ends_with("num_batches_tracked"));
    let net = lenet_bn(1);
    checkpoint::load_bytes(
        &net,
        &checkpoint::to_bytes(&state).unwrap(),
        Path::new("v1.safetensors"),
    )
    .unwrap();
    assert_eq!(
        checkpoint::state_dict(&net)["bn2.num_batches_tracked"],
        StateValue::I64(0)
    );
}

/// A huge (sparse) file, a device and a FIFO are refused before anything is read: loading one
/// used to read it whole (12 GB for a 12 GB file) or block forever.
#[test]
fn huge_files_devices_and_fifos_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.safetensors");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(12 << 30)
        .unwrap();
    let err = checkpoint::load(&lenet_bn(0), &huge).unwrap_err();
    assert!(matches!(err, CheckpointError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is 12884901888 bytes, more than the"),
        "{err}"
    );

    let zero = dir.path().join("zero.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = checkpoint::load(&lenet_bn(0), &zero).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is a named pipe, socket or device, not a regular file"),
        "{err}"
    );

    let fifo = dir.path().join("fifo.safetensors");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = checkpoint::load(&lenet_bn(0), &fifo).unwrap_err();
    assert!(matches!(err, CheckpointError::Refused { .. }), "{err}");

    // The bound is above every real checkpoint of the model.
    let path = dir.path().join("net.safetensors");
    checkpoint::save(&lenet_bn(0), &path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let bound = checkpoint::max_file_len(&checkpoint::state_dict(&lenet_bn(0)));
    assert!(len < bound && bound < len + (1 << 20), "{len} vs {bound}");
    checkpoint::load(&lenet_bn(1), &path).unwrap();
}
