//! The activation-statistics recorder against a direct computation on a small model.

use norma_autograd::{no_grad, Var};
use norma_layers::{ActivationStats, Linear, Module, Sequential, Sigmoid, Summary};
use norma_tensor::{Rng, Tensor};

#[test]
fn percentiles_follow_the_nearest_rank_rule() {
    // 1..=101 shuffled: rank round(p/100·100) of the sorted values.
    let mut values: Vec<f32> = (1..=101).map(|v| v as f32).collect();
    values.reverse();
    values.swap(3, 77);
    let s = Summary::of(&values).unwrap();
    assert_eq!((s.p15, s.p50, s.p85), (16.0, 51.0, 86.0));
    assert_eq!(s.mean, 51.0);
    assert!((s.std - (850.0f64).sqrt()).abs() < 1e-9, "{}", s.std);
    assert_eq!(Summary::of(&[]), None);
}

#[test]
fn the_recorder_sees_every_kth_training_pass_of_the_pre_activations() {
    let mut rng = Rng::seed_from_u64(3);
    let w1 = Tensor::rand_normal(&[5, 4], 0.0, 1.0, &mut rng);
    let b1 = Tensor::rand_normal(&[5], 0.0, 1.0, &mut rng);
    let mut net = Sequential::new()
        .with(
            "fc1",
            Linear::from_tensors(w1.clone(), Some(b1.clone())).unwrap(),
        )
        .with("act1", Sigmoid)
        .with("fc2", Linear::new(5, 3, &mut rng).unwrap())
        .with("act2", Sigmoid);
    let mut reference = Linear::from_tensors(w1, Some(b1)).unwrap();
    let stats = ActivationStats::attach_to_activations(&mut net, 3).unwrap();
    let mut want = vec![];
    for pass in 1..=7 {
        let x = Tensor::rand_normal(&[16, 4], 0.5, 2.0, &mut rng);
        net.forward(&Var::constant(x.clone())).unwrap();
        // Evaluation passes (no graph) are not training steps.
        no_grad(|| net.forward(&Var::constant(x.clone()))).unwrap();
        if pass % 3 == 1 {
            let pre = no_grad(|| reference.forward(&Var::constant(x))).unwrap();
            want.push((pass, Summary::of(pre.value().as_slice()).unwrap()));
        }
    }
    let stats = stats.borrow();
    let act1: Vec<_> = stats
        .records()
        .iter()
        .filter(|r| r.layer == "act1")
        .collect();
    assert_eq!(act1.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 4, 7]);
    for (record, (step, summary)) in act1.iter().zip(&want) {
        assert_eq!(record.step, *step);
        assert_eq!(record.summary, *summary, "step {step}");
    }
    assert_eq!(
        stats.records().iter().filter(|r| r.layer == "act2").count(),
        3
    );
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut rng = Rng::seed_from_u64(1);
    let mut net = Sequential::new().with("fc", Linear::new(2, 2, &mut rng).unwrap());
    assert!(
        ActivationStats::attach_to_activations(&mut net, 2).is_err(),
        "no activation"
    );
    let mut net = net.with("act", Sigmoid);
    assert!(ActivationStats::attach(&mut net, &["nope".into()], 1)
        .unwrap_err()
        .to_string()
        .contains("no child named 'nope'"));
    assert!(ActivationStats::attach_to_activations(&mut net, 0).is_err());
    let stats = ActivationStats::attach_to_activations(&mut net, 1).unwrap();
    let held = stats.borrow();
    let err = net
        .forward(&Var::constant(Tensor::ones(&[2, 2])))
        .unwrap_err();
    assert!(err.to_string().contains("borrowed elsewhere"), "{err}");
    drop(held);
    net.forward(&Var::constant(Tensor::ones(&[2, 2]))).unwrap();
}
