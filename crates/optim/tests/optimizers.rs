//! Optimizers against hand-computed first steps and simple convergence.

use norma_autograd::Param;
use norma_optim::{
    Adam, AdamConfig, OptimError, Optimizer, OptimizerKind, OptimizerState, ParamState, Sgd,
    SgdConfig,
};
use norma_tensor::Tensor;

fn param(v: &[f32]) -> Param {
    Param::new(Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
}

/// Sets the gradient of `p` to `g` by back-propagating Σ p·g.
fn set_grad(p: &Param, g: &[f32]) {
    p.zero_grad();
    let gv = norma_autograd::Var::constant(Tensor::from_vec(&[g.len()], g.to_vec()).unwrap());
    p.var()
        .mul(&gv)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
}

fn values(p: &Param) -> Vec<f32> {
    p.value().to_vec()
}

fn close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn plain_sgd_steps_by_lr_times_gradient() {
    let p = param(&[1.0, -2.0]);
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    set_grad(&p, &[0.2, -0.4]);
    opt.step().unwrap();
    close(&values(&p), &[0.9, -1.8]);
}

#[test]
fn sgd_momentum_nesterov_and_weight_decay_first_steps() {
    // Momentum 0.9, dampening 0: b1 = g1, b2 = 0.9·b1 + g2.
    let p = param(&[1.0]);
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
    set_grad(&p, &[1.0]);
    opt.step().unwrap(); // p = 1 − 0.1·1 = 0.9
    set_grad(&p, &[2.0]);
    opt.step().unwrap(); // b = 0.9 + 2 = 2.9, p = 0.9 − 0.29 = 0.61
    close(&values(&p), &[0.61]);

    // Nesterov: update with g + momentum·b.
    let p = param(&[1.0]);
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig {
            nesterov: true,
            ..cfg
        },
    )
    .unwrap();
    set_grad(&p, &[1.0]);
    opt.step().unwrap(); // b = 1, step 1 + 0.9 = 1.9 → p = 0.81
    close(&values(&p), &[0.81]);

    // Weight decay adds wd·p to the gradient: g = 1 + 0.1·2 = 1.2 → p = 2 − 0.12.
    let p = param(&[2.0]);
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig {
            lr: 0.1,
            weight_decay: 0.1,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    set_grad(&p, &[1.0]);
    opt.step().unwrap();
    close(&values(&p), &[1.88]);
}

#[test]
fn zero_gradient_and_no_gradient_leave_plain_sgd_parameters_unchanged() {
    let p = param(&[0.3, -0.7]);
    let untouched = param(&[5.0]);
    let mut opt = Sgd::new(
        vec![p.clone(), untouched.clone()],
        SgdConfig {
            lr: 1.0,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    set_grad(&p, &[0.0, 0.0]);
    opt.step().unwrap();
    assert_eq!(values(&p), vec![0.3, -0.7]);
    assert_eq!(values(&untouched), vec![5.0]);
}

#[test]
fn adam_first_two_steps_by_hand() {
    // Step 1: m = 0.1·g, v = 0.001·g², m̂ = g, v̂ = g² → p −= lr·g/(|g| + eps) ≈ lr·sign(g).
    let p = param(&[1.0, 1.0]);
    let mut opt = Adam::new(
        vec![p.clone()],
        AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        },
    )
    .unwrap();
    set_grad(&p, &[0.5, -2.0]);
    opt.step().unwrap();
    close(&values(&p), &[0.9, 1.1]);
    // Step 2 with g = 1 on the first value: m = 0.9·0.05 + 0.1 = 0.145, v = 0.999·0.00025 + 0.001 = 0.00124975
    // m̂ = 0.145/0.19 = 0.763158, v̂ = 0.00124975/0.001999 = 0.625188, step = 0.1·0.763158/0.790688.
    set_grad(&p, &[1.0, -2.0]);
    opt.step().unwrap();
    let want = 0.9 - 0.1 * 0.763_157_9 / (0.625_187_6f64.sqrt() + 1e-8) as f32;
    close(&values(&p)[..1], &[want]);
}

#[test]
fn adamw_decays_weights_directly() {
    let p = param(&[2.0]);
    let cfg = AdamConfig {
        lr: 0.1,
        ..AdamConfig::adamw()
    };
    let mut opt = Adam::new(vec![p.clone()], cfg).unwrap();
    set_grad(&p, &[1.0]);
    opt.step().unwrap();
    // p·(1 − 0.1·0.01) − 0.1·1/(1 + 1e-8)
    close(&values(&p), &[2.0 * 0.999 - 0.1]);
}

#[test]
fn sgd_and_adam_converge_on_a_convex_quadratic() {
    // f(p) = Σ a_i (p_i − c_i)² with different curvatures.
    let (a, c) = ([1.0f32, 4.0, 0.5], [3.0f32, -1.0, 2.0]);
    type Build = Box<dyn Fn(Vec<Param>) -> Box<dyn Optimizer>>;
    let make: Vec<Build> = vec![
        Box::new(|ps| {
            Box::new(
                Sgd::new(
                    ps,
                    SgdConfig {
                        lr: 0.1,
                        ..SgdConfig::default()
                    },
                )
                .unwrap(),
            )
        }),
        Box::new(|ps| {
            Box::new(
                Sgd::new(
                    ps,
                    SgdConfig {
                        lr: 0.05,
                        momentum: 0.9,
                        nesterov: true,
                        ..SgdConfig::default()
                    },
                )
                .unwrap(),
            )
        }),
        Box::new(|ps| {
            Box::new(
                Adam::new(
                    ps,
                    AdamConfig {
                        lr: 0.05,
                        ..AdamConfig::default()
                    },
                )
                .unwrap(),
            )
        }),
    ];
    for build in make {
        let p = param(&[0.0, 0.0, 0.0]);
        let mut opt = build(vec![p.clone()]);
        for _ in 0..2000 {
            let g: Vec<f32> = values(&p)
                .iter()
                .zip(a.iter().zip(&c))
                .map(|(p, (a, c))| 2.0 * a * (p - c))
                .collect();
            set_grad(&p, &g);
            opt.step().unwrap();
        }
        close(
            &values(&p)
                .iter()
                .map(|v| (v * 1e3).round() / 1e3)
                .collect::<Vec<_>>(),
            &c,
        );
    }
}

#[test]
fn invalid_settings_are_rejected() {
    let ps = || vec![param(&[1.0])];
    for lr in [-0.1, f64::NAN, f64::INFINITY] {
        let err = Sgd::new(
            ps(),
            SgdConfig {
                lr,
                ..SgdConfig::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, OptimError::Config { name: "lr", .. }),
            "{err}"
        );
    }
    assert!(Sgd::new(
        ps(),
        SgdConfig {
            momentum: 1.5,
            ..SgdConfig::default()
        }
    )
    .is_err());
    assert!(Sgd::new(
        ps(),
        SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        }
    )
    .is_err());
    assert!(Adam::new(
        ps(),
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        }
    )
    .is_err());
    let mut opt = Sgd::new(ps(), SgdConfig::default()).unwrap();
    assert!(opt.set_lr(-1.0).is_err());
    assert!(opt.set_lr(0.5).is_ok());
    assert_eq!(opt.lr(), 0.5);
}

#[test]
fn saved_state_resumes_the_exact_trajectory() {
    let run = |split: Option<usize>| {
        let p = param(&[1.0, -1.0]);
        let make = |ps: Vec<Param>| -> Vec<Box<dyn Optimizer>> {
            vec![
                Box::new(
                    Sgd::new(
                        ps.clone(),
                        SgdConfig {
                            lr: 0.1,
                            momentum: 0.9,
                            ..SgdConfig::default()
                        },
                    )
                    .unwrap(),
                ),
                Box::new(
                    Adam::new(
                        ps,
                        AdamConfig {
                            lr: 0.1,
                            ..AdamConfig::default()
                        },
                    )
                    .unwrap(),
                ),
            ]
        };
        let mut opts = make(vec![p.clone()]);
        for step in 0..6 {
            if Some(step) == split {
                // Restart from saved state into fresh optimizers.
                let saved: Vec<_> = opts.iter().map(|o| o.state()).collect();
                opts = make(vec![p.clone()]);
                for (o, s) in opts.iter_mut().zip(&saved) {
                    o.load_state(s).unwrap();
                }
            }
            for o in &mut opts {
                set_grad(&p, &[values(&p)[0] - 0.5, step as f32]);
                o.step().unwrap();
            }
        }
        values(&p)
    };
    assert_eq!(run(None), run(Some(3)));
    let mut sgd = Sgd::new(vec![param(&[1.0])], SgdConfig::default()).unwrap();
    let bad = OptimizerState {
        kind: OptimizerKind::Sgd,
        params: vec![ParamState::Velocity(Tensor::zeros(&[2]))],
    };
    assert!(sgd.load_state(&bad).is_err());
}
