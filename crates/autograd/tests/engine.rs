//! The graph engine: accumulation, graph reuse, no_grad, frozen parameters, and the errors an
//! extension operation can trigger.

use norma_autograd::{no_grad, AutogradError, Backward, BackwardContext, Param, Result, Var};
use norma_tensor::Tensor;

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).unwrap()
}

#[test]
fn a_value_used_twice_gets_both_gradients() {
    // L = Σ (x·x + x) → dL/dx = 2x + 1.
    let p = Param::new(t(&[3], &[1., 2., 3.]));
    let x = p.var();
    x.mul(&x)
        .unwrap()
        .add(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(p.grad().unwrap().as_slice(), &[3., 5., 7.]);
}

#[test]
fn gradients_accumulate_over_backward_calls_until_zero_grad() {
    let p = Param::new(t(&[2], &[1., 2.]));
    for _ in 0..2 {
        p.var()
            .mul_scalar(3.0)
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    }
    assert_eq!(p.grad().unwrap().as_slice(), &[6., 6.]);
    p.zero_grad();
    assert!(p.grad().is_none());
}

#[test]
fn backward_needs_a_scalar() {
    let p = Param::new(t(&[2], &[1., 2.]));
    let err = p.var().exp().backward().unwrap_err();
    assert_eq!(err, AutogradError::NotScalar { shape: vec![2] });
}

#[test]
fn backward_with_an_output_gradient_equals_backward_of_the_weighted_sum() {
    let x = t(&[2, 3], &[1.0, -2.0, 3.0, 0.5, 4.0, -1.0]);
    let dy = t(&[2, 3], &[0.1, 2.0, -1.0, 3.0, 0.0, 7.0]);
    let (a, b) = (Param::new(x.clone()), Param::new(x));
    let y = |p: &Param| p.var().mul(&p.var()).unwrap().sigmoid();
    y(&a).backward_with(dy.clone()).unwrap();
    y(&b)
        .mul(&Var::constant(dy))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (ga, gb) = (a.grad().unwrap(), b.grad().unwrap());
    for (u, v) in ga.as_slice().iter().zip(gb.as_slice()) {
        assert!((u - v).abs() <= 1e-6 * (1.0 + v.abs()), "{ga:?} vs {gb:?}");
    }
    let err = y(&a).backward_with(Tensor::zeros(&[3, 2])).unwrap_err();
    assert!(
        matches!(err, AutogradError::OutputGradShape { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("[2, 3]") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
}

#[test]
fn no_grad_records_nothing_and_restores_recording() {
    let p = Param::new(t(&[2], &[1., 2.]));
    let y = no_grad(|| p.var().sigmoid().sum_all().unwrap());
    assert!(!y.requires_grad());
    assert!(y.backward().is_ok()); // a constant: nothing to do
    assert!(p.grad().is_none());
    assert!(p.var().sigmoid().requires_grad());
}

#[test]
fn constants_and_frozen_parameters_get_no_gradient() {
    let frozen = Param::new(t(&[2], &[1., 2.]));
    frozen.set_requires_grad(false);
    let live = Param::new(t(&[2], &[3., 4.]));
    let c = Var::constant(t(&[2], &[5., 6.]));
    let loss = frozen
        .var()
        .mul(&live.var())
        .unwrap()
        .mul(&c)
        .unwrap()
        .sum_all()
        .unwrap();
    loss.backward().unwrap();
    assert!(frozen.grad().is_none());
    assert_eq!(live.grad().unwrap().as_slice(), &[5., 12.]);
}

#[test]
fn parameters_outlive_the_graph_and_see_updates() {
    let p = Param::new(t(&[1], &[2.]));
    for step in 0..3 {
        p.zero_grad();
        let loss = p.var().mul(&p.var()).unwrap().sum_all().unwrap();
        loss.backward().unwrap();
        let g = p.grad().unwrap().clone();
        assert_eq!(
            g.as_slice()[0],
            2.0 * p.value().as_slice()[0],
            "step {step}"
        );
        p.update(|v| v.axpy(-0.25, &g)).unwrap().unwrap();
    }
    assert_eq!(p.value().as_slice(), &[0.25]);
    assert!(p.set_value(Tensor::zeros(&[2])).is_err());
}

struct BadCount;
impl Backward for BadCount {
    fn name(&self) -> &'static str {
        "bad_count"
    }
    fn backward(&self, _ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![])
    }
}

struct BadShape;
impl Backward for BadShape {
    fn name(&self) -> &'static str {
        "bad_shape"
    }
    fn backward(&self, _ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(Tensor::zeros(&[5]))])
    }
}

#[test]
fn extension_operations_with_inconsistent_gradients_are_reported() {
    let p = Param::new(t(&[2], &[1., 2.]));
    let x = p.var();
    let y = Var::from_op(&[&x], x.value().clone(), BadCount);
    let err = y.sum_all().unwrap().backward().unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad_count: backward returned 0 gradients for 1 inputs"
    );
    let y = Var::from_op(&[&x], x.value().clone(), BadShape);
    let err = y.sum_all().unwrap().backward().unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad_shape: gradient for input 0 has shape [5], but the input has shape [2]"
    );
}

#[test]
fn the_first_convolution_computes_no_input_gradient() {
    // Records which inputs a backward was asked for.
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Spy(Rc<RefCell<Vec<bool>>>);
    impl Backward for Spy {
        fn name(&self) -> &'static str {
            "spy"
        }
        fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
            *self.0.borrow_mut() = (0..ctx.num_inputs()).map(|i| ctx.needs_grad(i)).collect();
            (0..ctx.num_inputs())
                .map(|i| ctx.grad_if(i, || Ok(Tensor::zeros(ctx.input(i).shape()))))
                .collect()
        }
    }
    let seen = Rc::new(RefCell::new(vec![]));
    let data = Var::constant(t(&[2], &[1., 2.]));
    let w = Param::new(t(&[2], &[1., 1.]));
    let y = Var::from_op(&[&data, &w.var()], t(&[2], &[0., 0.]), Spy(seen.clone()));
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(*seen.borrow(), vec![false, true]);
}
