//! Optimizer states: typed, written to and read from a safetensors file, and refused with a
//! named reason when they do not fit.

use norma_autograd::Param;
use norma_optim::{
    Adam, AdamConfig, OptimError, Optimizer, OptimizerKind, OptimizerState, ParamState, Sgd,
    SgdConfig, StateError,
};
use norma_tensor::Tensor;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

fn params() -> Vec<Param> {
    vec![
        Param::new(Tensor::from_vec(&[2], vec![1.0, -1.0]).unwrap()),
        Param::new(Tensor::from_vec(&[1, 3], vec![0.5, 2.0, -0.25]).unwrap()),
    ]
}

/// Gradient `scale·(p − 0.5)` on parameter 0, and on parameter 1 only when `both`.
fn set_grads(ps: &[Param], scale: f32, both: bool) {
    for (i, p) in ps.iter().enumerate() {
        p.zero_grad();
        if i == 0 || both {
            let g: Vec<f32> = p
                .value()
                .as_slice()
                .iter()
                .map(|v| scale * (v - 0.5))
                .collect();
            p.set_grad(Tensor::from_vec(p.value().shape(), g).unwrap())
                .unwrap();
        }
    }
}

fn optimizer(kind: OptimizerKind, ps: Vec<Param>) -> Box<dyn Optimizer> {
    let sgd = |momentum| SgdConfig {
        lr: 0.1,
        momentum,
        ..SgdConfig::default()
    };
    match kind {
        OptimizerKind::Sgd => Box::new(Sgd::new(ps, sgd(0.0)).unwrap()),
        OptimizerKind::SgdMomentum => Box::new(Sgd::new(ps, sgd(0.9)).unwrap()),
        OptimizerKind::Adam => Box::new(Adam::new(ps, AdamConfig::default()).unwrap()),
        OptimizerKind::AdamW => Box::new(Adam::new(ps, AdamConfig::adamw()).unwrap()),
    }
}

fn values(ps: &[Param]) -> Vec<Vec<f32>> {
    ps.iter().map(|p| p.value().to_vec()).collect()
}

#[test]
fn a_state_round_trips_through_its_file_and_resumes_bitwise() {
    for kind in OptimizerKind::ALL {
        let (ps, fresh_ps) = (params(), params());
        let mut opt = optimizer(kind, ps.clone());
        assert_eq!(opt.kind(), kind);
        // Parameter 1 misses the first step: Adam's step counts differ (2 and 1).
        for (step, both) in [(1.0, false), (2.0, true)] {
            set_grads(&ps, step, both);
            opt.step().unwrap();
        }
        let state = opt.state();
        assert_eq!(state.kind, kind);
        assert_eq!(state.params.len(), 2);
        let bytes = state.to_bytes().unwrap();
        let read = OptimizerState::from_bytes(&bytes).unwrap();
        assert_eq!(read, state, "{kind}");

        for (p, q) in fresh_ps.iter().zip(&ps) {
            p.set_value(Tensor::clone(&q.value())).unwrap();
        }
        let mut resumed = optimizer(kind, fresh_ps.clone());
        resumed.load_state(&read).unwrap();
        assert_eq!(resumed.state(), state, "{kind}");
        for scale in [3.0, -1.0] {
            set_grads(&ps, scale, true);
            set_grads(&fresh_ps, scale, true);
            opt.step().unwrap();
            resumed.step().unwrap();
        }
        assert_eq!(values(&ps), values(&fresh_ps), "{kind}: resumed bitwise");
    }
}

#[test]
fn the_file_records_the_kind_and_adams_step_counts_as_integers() {
    let ps = params();
    let mut opt = optimizer(OptimizerKind::Adam, ps.clone());
    for both in [false, true] {
        set_grads(&ps, 1.0, both);
        opt.step().unwrap();
    }
    let state = opt.state();
    assert!(matches!(
        state.params[..],
        [
            ParamState::Moments { step: 2, .. },
            ParamState::Moments { step: 1, .. }
        ]
    ));
    let bytes = state.to_bytes().unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["optimizer"], "adam");
    assert_eq!(metadata["parameters"], "2");
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let step = file.tensor("step.0").unwrap();
    assert_eq!((step.dtype(), step.shape()), (Dtype::I64, &[][..]));
    assert_eq!(step.data(), &2i64.to_le_bytes());
    assert_eq!(file.tensor("m.1").unwrap().shape(), &[1, 3]);
}

#[test]
fn a_state_of_another_kind_is_refused_naming_both_kinds() {
    let ps = params();
    let mut adam = optimizer(OptimizerKind::Adam, ps.clone());
    set_grads(&ps, 1.0, true);
    adam.step().unwrap();
    let adam_state = adam.state();
    for kind in [
        OptimizerKind::AdamW,
        OptimizerKind::Sgd,
        OptimizerKind::SgdMomentum,
    ] {
        let mut other = optimizer(kind, params());
        let before = other.state();
        let err = other.load_state(&adam_state).unwrap_err();
        assert_eq!(
            err,
            OptimError::State(StateError::Kind {
                expected: kind,
                found: OptimizerKind::Adam
            })
        );
        let message = err.to_string();
        assert!(
            message.contains("a adam state") && message.contains(&format!("a {kind} optimizer")),
            "{message}"
        );
        assert_eq!(other.state(), before, "a refused state changes nothing");
    }
}

#[test]
fn states_that_do_not_fit_the_parameters_are_refused_naming_what_is_wrong() {
    let mut adam = optimizer(OptimizerKind::Adam, params());
    let moments = |shape: &[usize]| ParamState::Moments {
        m: Tensor::zeros(shape),
        v: Tensor::zeros(shape),
        step: 1,
    };
    let state = |params| OptimizerState {
        kind: OptimizerKind::Adam,
        params,
    };
    let err = adam
        .load_state(&state(vec![ParamState::Empty]))
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::State(StateError::ParamCount {
            expected: 2,
            found: 1
        })
    );
    let err = adam
        .load_state(&state(vec![moments(&[2]), moments(&[3])]))
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::State(StateError::Shape {
            index: 1,
            buffer: "m",
            expected: vec![1, 3],
            found: vec![3]
        })
    );
    let velocity = ParamState::Velocity(Tensor::zeros(&[2]));
    let err = adam
        .load_state(&state(vec![velocity, ParamState::Empty]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::State(StateError::Slot {
                index: 0,
                found: "velocity",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn bytes_that_are_not_a_state_file_are_file_errors() {
    let err = OptimizerState::from_bytes(b"not safetensors").unwrap_err();
    assert!(matches!(err, StateError::File(_)), "{err}");
    // A safetensors file without the optimizer's metadata (as written before the kind was
    // recorded).
    let bytes = safetensors::serialize(
        Vec::<(&str, safetensors::tensor::TensorView<'_>)>::new(),
        None,
    )
    .unwrap();
    let err = OptimizerState::from_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("no optimizer kind"), "{err}");
}
