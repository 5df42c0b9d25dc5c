//! norma's side of `scripts/compare_with_pytorch.py` for the deep networks: loads a network's
//! initial weights (a PyTorch `state_dict` saved as safetensors), takes `--steps` SGD steps on
//! the batches of a safetensors file in order, prints each step's loss and saves the trained
//! weights and running statistics.
//!
//! ```sh
//! cargo run --release -p norma-layers --example deep_steps -- --net resnet8-batch \
//!     --init init.safetensors --batches batches.safetensors --batch 128 --steps 20 \
//!     --lr 0.05 --momentum 0.9 --out norma.safetensors
//! ```
//!
//! The batches file holds `images` (K·B, 1, 28, 28) and `labels` (K·B) as float32 (class
//! indices 0–9); step k trains on rows k·B .. (k+1)·B. Mean cross-entropy, PyTorch's SGD
//! (momentum buffer `b = μb + g`, `w −= lr·b`), batch norm in training mode.

use std::collections::BTreeMap;
use std::path::PathBuf;

use norma_autograd::Var;
use norma_layers::checkpoint::{self, StateValue};
use norma_layers::models::DeepNet;
use norma_layers::Module;
use norma_optim::{Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};

type Error = Box<dyn std::error::Error>;

/// The command line, every option required.
struct Args {
    net: DeepNet,
    init: PathBuf,
    batches: PathBuf,
    batch: usize,
    steps: usize,
    lr: f64,
    momentum: f64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, Error> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        let name = key
            .strip_prefix("--")
            .ok_or_else(|| format!("expected an option --name, got '{key}'"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        values.insert(name.to_string(), value);
    }
    let mut take = |name: &str| {
        values
            .remove(name)
            .ok_or_else(|| format!("missing --{name} (see the example's docs)"))
    };
    let args = Args {
        net: take("net")?.parse()?,
        init: take("init")?.into(),
        batches: take("batches")?.into(),
        batch: take("batch")?.parse()?,
        steps: take("steps")?.parse()?,
        lr: take("lr")?.parse()?,
        momentum: take("momentum")?.parse()?,
        out: take("out")?.into(),
    };
    if let Some(extra) = values.keys().next() {
        return Err(format!("unknown option --{extra}").into());
    }
    Ok(args)
}

fn tensor(state: &BTreeMap<String, StateValue>, name: &str) -> Result<Tensor, Error> {
    match state.get(name) {
        Some(StateValue::F32(t)) => Ok(t.clone()),
        _ => Err(format!("the batches file has no float32 tensor '{name}'").into()),
    }
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let mut net = args.net.build(&mut Rng::seed_from_u64(0))?;
    checkpoint::load(&net, &args.init)?;
    let state = checkpoint::from_bytes(&checkpoint::read_checkpoint(&args.batches, 1 << 31)?)?;
    let images = tensor(&state, "images")?;
    let labels = tensor(&state, "labels")?;
    let pixels = 28 * 28;
    let needed = args.steps * args.batch;
    if images.shape() != [labels.len(), 1, 28, 28] || labels.len() < needed {
        return Err(format!(
            "images {:?} and labels {:?} must be (M, 1, 28, 28) and (M) with M >= steps * batch = {needed}",
            images.shape(),
            labels.shape()
        )
        .into());
    }
    let config = SgdConfig {
        lr: args.lr,
        momentum: args.momentum,
        ..SgdConfig::default()
    };
    let mut sgd = Sgd::new(net.parameters(), config)?;
    net.train();
    for step in 0..args.steps {
        let rows = step * args.batch..(step + 1) * args.batch;
        let x = Tensor::from_vec(
            &[args.batch, 1, 28, 28],
            images.as_slice()[rows.start * pixels..rows.end * pixels].to_vec(),
        )?;
        let y: Vec<usize> = labels.as_slice()[rows]
            .iter()
            .map(|&l| l as usize)
            .collect();
        if y.iter().any(|&l| l >= 10) {
            return Err(format!("step {step}: a label outside 0-9").into());
        }
        sgd.zero_grad();
        let loss = net.forward(&Var::constant(x))?.cross_entropy(&y)?;
        loss.backward()?;
        sgd.step()?;
        println!("step {} loss {:.8}", step + 1, loss.value().item()?);
    }
    checkpoint::save(&net, &args.out)?;
    Ok(())
}
