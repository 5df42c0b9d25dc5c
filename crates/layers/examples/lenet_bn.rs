//! `norma-layers` for a user of the crate: build LeNet with batch norm, take a few SGD steps on
//! random data, save the weights as safetensors (PyTorch `state_dict` names), load them into a
//! fresh model and check that it predicts the same.
//!
//! ```sh
//! cargo run --release -p norma-layers --example lenet_bn
//! ```

use norma_autograd::{no_grad, Var};
use norma_layers::models::{lenet_bn, Activation};
use norma_layers::{checkpoint, Module};
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::seed_from_u64(0);
    let mut net = lenet_bn(Activation::Sigmoid, &mut rng)?;
    println!("{}", net.describe());

    // A fixed batch of 32 random "images" with random labels.
    let images = Tensor::rand_uniform(&[32, 1, 28, 28], 0.0, 1.0, &mut rng);
    let labels: Vec<usize> = (0..32).map(|_| rng.below(10)).collect();

    let config = SgdConfig {
        lr: 1.0,
        ..SgdConfig::default()
    };
    let mut sgd = Sgd::new(net.parameters(), config)?;
    for step in 1..=5 {
        sgd.zero_grad();
        let loss = net
            .forward(&Var::constant(images.clone()))?
            .cross_entropy(&labels)?;
        loss.backward()?;
        sgd.step()?;
        println!("step {step}: loss {:.4}", loss.value().item()?);
    }

    // Save, then load into a model built from another seed.
    let dir = std::env::temp_dir().join(format!("norma-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("lenet-bn.safetensors");
    checkpoint::save(&net, &path)?;
    let mut copy = lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(99))?;
    checkpoint::load(&copy, &path)?;

    net.eval();
    copy.eval();
    let a = no_grad(|| net.forward(&Var::constant(images.clone())))?;
    let b = no_grad(|| copy.forward(&Var::constant(images.clone())))?;
    let diff = a.value().max_abs_diff(b.value())?;
    println!("reloaded model's eval logits differ by {diff}");
    std::fs::remove_dir_all(&dir)?;
    if diff != 0.0 {
        return Err("the reloaded model predicts differently".into());
    }
    Ok(())
}
