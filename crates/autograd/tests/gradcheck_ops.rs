//! Every differentiable operation against central finite differences (see
//! `norma_autograd::gradcheck` for the tolerance and why), over random shapes and values.

use norma_autograd::gradcheck::{check, GradCheck};
use norma_autograd::{Result, Var};
use norma_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn cfg() -> GradCheck {
    GradCheck::default()
}

fn normal(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, &mut Rng::seed_from_u64(seed))
}

/// Values whose magnitude is in [low, high] with a random sign: keeps inputs away from kinks
/// (relu at 0) and poles (1/x at 0) by more than the finite-difference step.
fn away_from_zero(shape: &[usize], low: f32, high: f32, seed: u64) -> Tensor {
    let mut rng = Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let m = rng.uniform(low, high);
            if rng.next_f32() < 0.5 {
                -m
            } else {
                m
            }
        })
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn positive(shape: &[usize], seed: u64) -> Tensor {
    away_from_zero(shape, 0.5, 2.0, seed).map(f32::abs)
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 1..4)
}

/// A shape and a second shape that broadcasts against it (some axes 1, maybe fewer axes).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape_strategy().prop_flat_map(|s| {
        let n = s.len();
        (Just(s), prop::collection::vec(any::<bool>(), n), 0..=n).prop_map(|(s, ones, drop)| {
            let b: Vec<usize> = s
                .iter()
                .zip(&ones)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            (s, b[drop..].to_vec())
        })
    })
}

fn ok(
    result: std::result::Result<(), norma_autograd::gradcheck::GradCheckError>,
) -> std::result::Result<(), TestCaseError> {
    result.map_err(|e| TestCaseError::fail(e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn add_sub_mul_broadcast((a, b) in broadcast_pair(), seed in any::<u64>()) {
        let inputs = [normal(&a, seed), normal(&b, seed ^ 1)];
        ok(check(|v| v[0].add(&v[1]), &inputs, &cfg()))?;
        ok(check(|v| v[1].sub(&v[0]), &inputs, &cfg()))?;
        ok(check(|v| v[0].mul(&v[1]), &inputs, &cfg()))?;
    }

    #[test]
    fn div_broadcast((a, b) in broadcast_pair(), seed in any::<u64>()) {
        let inputs = [normal(&a, seed), away_from_zero(&b, 0.5, 2.0, seed ^ 1)];
        ok(check(|v| v[0].div(&v[1]), &inputs, &cfg()))?;
    }

    #[test]
    fn scalar_ops(shape in shape_strategy(), c in -3.0f32..3.0, seed in any::<u64>()) {
        let inputs = [normal(&shape, seed)];
        ok(check(|v| Ok(v[0].add_scalar(c)), &inputs, &cfg()))?;
        ok(check(|v| Ok(v[0].mul_scalar(c)), &inputs, &cfg()))?;
        ok(check(|v| Ok(v[0].neg()), &inputs, &cfg()))?;
    }

    #[test]
    fn unary_functions(shape in shape_strategy(), seed in any::<u64>()) {
        let x = [normal(&shape, seed)];
        ok(check(|v| Ok(v[0].exp()), &x, &cfg()))?;
        ok(check(|v| Ok(v[0].sigmoid()), &x, &cfg()))?;
        ok(check(|v| Ok(v[0].tanh()), &x, &cfg()))?;
        ok(check(|v| Ok(v[0].relu()), &[away_from_zero(&shape, 0.05, 2.0, seed)], &cfg()))?;
        ok(check(|v| Ok(v[0].ln()), &[positive(&shape, seed)], &cfg()))?;
    }

    #[test]
    fn reductions(shape in shape_strategy(), seed in any::<u64>(), keep in any::<bool>(), pick in any::<u64>()) {
        let x = [normal(&shape, seed)];
        let axes: Vec<usize> = (0..shape.len()).filter(|a| pick >> a & 1 == 1).collect();
        ok(check(|v| v[0].sum_axes(&axes, keep), &x, &cfg()))?;
        ok(check(|v| v[0].mean_axes(&axes, keep), &x, &cfg()))?;
        ok(check(|v| v[0].sum_all(), &x, &cfg()))?;
        ok(check(|v| v[0].mean_all(), &x, &cfg()))?;
    }

    #[test]
    fn reshape_permute_transpose(a in 1usize..4, b in 1usize..4, c in 1usize..4, seed in any::<u64>()) {
        let x = [normal(&[a, b, c], seed)];
        ok(check(|v| v[0].reshape(&[c, a * b]), &x, &cfg()))?;
        ok(check(|v| v[0].permute(&[2, 0, 1]), &x, &cfg()))?;
        ok(check(|v| v[0].flatten(), &x, &cfg()))?;
        ok(check(|v| v[0].t(), &[normal(&[a, b], seed)], &cfg()))?;
    }

    #[test]
    fn matmul_and_linear(m in 1usize..5, k in 1usize..5, n in 1usize..5, seed in any::<u64>()) {
        ok(check(|v| v[0].matmul(&v[1]), &[normal(&[m, k], seed), normal(&[k, n], seed ^ 1)], &cfg()))?;
        let lin = [normal(&[m, k], seed), normal(&[n, k], seed ^ 2), normal(&[n], seed ^ 3)];
        ok(check(|v| v[0].linear(&v[1], Some(&v[2])), &lin, &cfg()))?;
        ok(check(|v| v[0].linear(&v[1], None), &lin[..2], &cfg()))?;
    }

    #[test]
    fn conv2d(
        n in 1usize..3, c in 1usize..3, o in 1usize..3, k in 1usize..4,
        stride in 1usize..3, pad in 0usize..3, extra in 0usize..4, seed in any::<u64>(),
    ) {
        let size = k.saturating_sub(2 * pad).max(1) + extra;
        let inputs = [normal(&[n, c, size, size + 1], seed), normal(&[o, c, k, k], seed ^ 1), normal(&[o], seed ^ 2)];
        ok(check(|v| v[0].conv2d(&v[1], Some(&v[2]), stride, pad), &inputs, &cfg()))?;
        ok(check(|v| v[0].conv2d(&v[1], None, stride, pad), &inputs[..2], &cfg()))?;
    }

    #[test]
    fn pooling(n in 1usize..3, c in 1usize..3, k in 1usize..4, stride in 1usize..4, extra in 0usize..4, seed in any::<u64>()) {
        let shape = [n, c, k + extra, k + extra + 1];
        ok(check(|v| v[0].avg_pool2d(k, stride), &[normal(&shape, seed)], &cfg()))?;
        // Distinct values 0.1 apart: a step of 0.01 never changes which element is the maximum.
        let count: usize = shape.iter().product();
        let mut values: Vec<f32> = (0..count).map(|i| i as f32 * 0.1).collect();
        Rng::seed_from_u64(seed).shuffle(&mut values);
        let x = Tensor::from_vec(&shape, values).unwrap();
        ok(check(|v| v[0].max_pool2d(k, stride), &[x], &cfg()))?;
    }

    #[test]
    fn log_softmax_and_cross_entropy(n in 1usize..5, k in 1usize..6, seed in any::<u64>()) {
        let x = [normal(&[n, k], seed).mul_scalar(3.0)];
        let mut rng = Rng::seed_from_u64(seed);
        let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
        ok(check(|v| v[0].log_softmax(), &x, &cfg()))?;
        ok(check(|v| v[0].cross_entropy(&labels), &x, &cfg()))?;
    }
}

#[test]
fn a_wrong_derivative_is_caught() {
    use norma_autograd::{Backward, BackwardContext};
    struct WrongSquare;
    impl Backward for WrongSquare {
        fn name(&self) -> &'static str {
            "wrong_square"
        }
        fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
            // d(x²)/dx is 2x; 1.9x must be rejected.
            Ok(vec![Some(
                ctx.input(0).mul_scalar(1.9).mul(ctx.grad_output())?,
            )])
        }
    }
    let square = |v: &[Var]| -> Result<Var> {
        let x = &v[0];
        Ok(Var::from_op(&[x], x.value().mul(x.value())?, WrongSquare))
    };
    let err = check(
        square,
        &[Tensor::from_vec(&[3], vec![1.0, -2.0, 3.0]).unwrap()],
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("finite difference"), "{err}");
}
