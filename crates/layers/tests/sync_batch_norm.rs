//! Synchronized batch norm without MPI: on one process it is batch norm bit for bit, and on
//! K threads standing in for K processes (`norma_distributed::testing::run_group`) it matches
//! one process on the global batch. The same scenarios run under mpirun in
//! `sync_batch_norm_mpi.rs`.

mod sync_scenarios;

use std::rc::Rc;

use norma_autograd::{Param, Var};
use norma_distributed::testing::run_group;
use norma_distributed::{Communicator, SingleProcess};
use norma_layers::checkpoint::state_dict;
use norma_layers::models::{self, Activation};
use norma_layers::{convert_sync_batch_norm, BatchNorm1d, BatchNorm2d, BatchNormConfig, Module};
use norma_tensor::{Rng, Tensor};
use sync_scenarios::Verdict;

fn on_groups(scenario: fn(&Rc<dyn Communicator>) -> Verdict) {
    for size in 1..=3 {
        for (rank, verdict) in run_group(size, |comm| scenario(&comm))
            .into_iter()
            .enumerate()
        {
            if let Err(why) = verdict {
                panic!("thread {rank} of {size}: {why}");
            }
        }
    }
}

#[test]
fn threads_match_one_process() {
    on_groups(sync_scenarios::layer_matches_one_process);
}

#[test]
fn one_value_per_channel_is_the_batch_norm_error() {
    on_groups(sync_scenarios::one_value_per_channel_is_the_batch_norm_error);
}

#[test]
fn a_failing_thread_fails_every_thread() {
    on_groups(sync_scenarios::a_failing_process_fails_every_process);
}

#[test]
fn data_parallel_gradients_match_one_process() {
    on_groups(sync_scenarios::data_parallel_gradients_match_one_process);
}

/// Outputs, dx, dγ, dβ and buffers of three training steps and an eval pass, as bits.
fn trace(m: &mut dyn Module, shape: &[usize], mean: f32) -> Vec<Vec<u32>> {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let mut out = Vec::new();
    for s in 0..3 {
        let x = Param::new(Tensor::rand_normal(
            shape,
            mean,
            2.0,
            &mut Rng::seed_from_u64(s),
        ));
        let w = Tensor::rand_normal(shape, 0.0, 1.0, &mut Rng::seed_from_u64(50 + s));
        let y = m.forward(&x.var()).unwrap();
        y.mul(&Var::constant(w))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        out.push(bits(y.value().as_slice()));
        out.push(bits(x.grad().unwrap().as_slice()));
        for p in m.parameters() {
            out.push(bits(p.grad().unwrap().as_slice()));
            p.zero_grad();
        }
    }
    m.eval();
    let x = Var::constant(Tensor::rand_normal(
        shape,
        mean,
        2.0,
        &mut Rng::seed_from_u64(9),
    ));
    out.push(bits(m.forward(&x).unwrap().value().as_slice()));
    for (_, v) in state_dict(m) {
        out.push(format!("{v:?}").bytes().map(u32::from).collect());
    }
    out
}

#[test]
fn on_a_single_process_it_is_batch_norm_bit_for_bit() {
    let cumulative = BatchNormConfig {
        momentum: None,
        ..BatchNormConfig::default()
    };
    for (shape, mean) in [
        (vec![6, 3], 0.5),
        (vec![8, 2], 1e4),
        (vec![3, 2, 5], -2.0),
        (vec![4, 3, 5, 5], 1.0),
    ] {
        for config in [BatchNormConfig::default(), cumulative] {
            let make = || -> Box<dyn Module> {
                if shape.len() == 4 {
                    Box::new(BatchNorm2d::with_config(shape[1], config).unwrap())
                } else {
                    Box::new(BatchNorm1d::with_config(shape[1], config).unwrap())
                }
            };
            let mut plain = make();
            let mut synced = make();
            assert_eq!(
                convert_sync_batch_norm(synced.as_mut(), Rc::new(SingleProcess)),
                [""]
            );
            assert_eq!(
                trace(plain.as_mut(), &shape, mean),
                trace(synced.as_mut(), &shape, mean),
                "{shape:?} mean {mean}"
            );
        }
    }
}

#[test]
fn converting_a_model_keeps_names_handles_and_training() {
    let build = || models::lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(3)).unwrap();
    let (mut plain, mut synced) = (build(), build());
    let params_before = synced.parameters();
    let names = convert_sync_batch_norm(&mut synced, Rc::new(SingleProcess));
    assert_eq!(names, ["bn1", "bn2", "bn3", "bn4"]);
    assert!(synced
        .parameters()
        .iter()
        .zip(&params_before)
        .all(|(a, b)| a.ptr_eq(b)));
    let keys = |m: &dyn Module| state_dict(m).into_keys().collect::<Vec<_>>();
    assert_eq!(keys(&plain), keys(&synced), "PyTorch's state_dict names");
    let description = synced.describe();
    assert!(
        description.contains("(bn1): SyncBatchNorm(6, eps=0.00001, momentum=0.1, affine=true"),
        "{description}"
    );
    assert!(!description.contains("BatchNorm2d"), "{description}");

    let images = Tensor::rand_normal(&[4, 1, 28, 28], 0.5, 1.0, &mut Rng::seed_from_u64(4));
    for m in [&mut plain, &mut synced] {
        let loss = m
            .forward(&Var::constant(images.clone()))
            .unwrap()
            .cross_entropy(&[1, 2, 3, 4])
            .unwrap();
        loss.backward().unwrap();
    }
    let grads = |m: &dyn Module| sync_scenarios::flat_grads(m);
    assert_eq!(
        grads(&plain),
        grads(&synced),
        "a single process changes nothing"
    );
    assert_eq!(
        format!("{:?}", state_dict(&plain)),
        format!("{:?}", state_dict(&synced))
    );
}

#[test]
fn evaluation_does_not_communicate() {
    // A group of two threads where only thread 0 evaluates: it must not wait for thread 1.
    let outputs = run_group(2, |comm| {
        let mut bn = BatchNorm1d::new(3).unwrap().synchronized(comm.clone());
        bn.eval();
        if comm.rank() == 0 {
            let x = Var::constant(Tensor::ones(&[1, 3]));
            Some(bn.forward(&x).unwrap().value().to_vec())
        } else {
            None
        }
    });
    assert_eq!(outputs[0].as_deref().map(<[f32]>::len), Some(3));
}
