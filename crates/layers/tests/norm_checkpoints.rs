//! Every new normalization inside one `Sequential`: trained (an SGD step after each batch),
//! saved to a checkpoint file, loaded into a model built from another seed, and the two agree
//! bit for bit (state and outputs, in eval and training mode).

use norma_autograd::Var;
use norma_layers::checkpoint::{load, save, state_dict};
use norma_layers::{
    BatchNormConfig, BatchRenorm2d, Buffer, Conv2d, Conv2dConfig, Flatten, FrozenBatchNorm2d,
    GhostBatchNorm2d, InstanceNorm2d, InstanceNormConfig, Linear, Module, RenormConfig, RmsNorm,
    Sequential,
};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

fn model(seed: u64) -> Sequential {
    let mut rng = Rng::seed_from_u64(seed);
    let renorm = RenormConfig {
        warmup_steps: 1,
        r_max_at: 3,
        d_max_at: 3,
        ..RenormConfig::default()
    };
    let affine = InstanceNormConfig {
        affine: true,
        ..InstanceNormConfig::default()
    };
    let frozen = FrozenBatchNorm2d::new(4).unwrap();
    for (_, b) in frozen.named_buffers() {
        if let Buffer::F32(t) = b {
            t.set(Tensor::rand_uniform(&[4], 0.5, 2.0, &mut rng))
                .unwrap();
        }
    }
    Sequential::new()
        .with(
            "conv",
            Conv2d::new(1, 4, 3, Conv2dConfig::default(), &mut rng).unwrap(),
        )
        .with(
            "brn",
            BatchRenorm2d::with_config(4, BatchNormConfig::default(), renorm).unwrap(),
        )
        .with("gbn", GhostBatchNorm2d::new(4, 2).unwrap())
        .with("inorm", InstanceNorm2d::with_config(4, affine).unwrap())
        .with("frozen", frozen)
        .with("flatten", Flatten)
        .with("fc", Linear::new(4 * 4 * 4, 5, &mut rng).unwrap())
        .with("rms", RmsNorm::new(&[5]).unwrap())
}

#[test]
fn trained_state_survives_a_checkpoint_file() {
    let mut a = model(1);
    let mut sgd = Sgd::new(
        a.parameters(),
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let mut rng = Rng::seed_from_u64(2);
    for _ in 0..4 {
        sgd.zero_grad();
        let x = Var::constant(Tensor::rand_normal(&[4, 1, 6, 6], 0.5, 1.0, &mut rng));
        let loss = a.forward(&x).unwrap().cross_entropy(&[0, 1, 2, 3]).unwrap();
        loss.backward().unwrap();
        sgd.step().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("norms.safetensors");
    save(&a, &path).unwrap();
    let mut b = model(99);
    assert_ne!(state_dict(&a), state_dict(&b));
    load(&b, &path).unwrap();
    assert_eq!(state_dict(&a), state_dict(&b));
    let keys: Vec<String> = state_dict(&a).into_keys().collect();
    for key in [
        "brn.num_batches_tracked",
        "gbn.running_var",
        "inorm.weight",
        "frozen.running_mean",
        "frozen.weight",
        "rms.weight",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    let x = Var::constant(Tensor::rand_normal(&[4, 1, 6, 6], 0.5, 1.0, &mut rng));
    let out = |m: &mut Sequential| m.forward(&x).unwrap().value().to_vec();
    assert_eq!(out(&mut a), out(&mut b), "training mode");
    a.eval();
    b.eval();
    assert_eq!(out(&mut a), out(&mut b), "eval mode");
}
