//! `cargo xtask eval`: accuracy, per-class accuracy and confusion matrix of saved weights on
//! the test set, and optionally the predicted class of every test image.

use std::fmt::Write as _;
use std::path::PathBuf;

use norma_layers::checkpoint;
use norma_tensor::Rng;

use crate::common::{
    accuracy, load_data, predict, setup_threads, ActivationChoice, DataArgs, ModelChoice,
};
use crate::{report, Error};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The architecture the weights belong to.
    #[arg(long, value_enum)]
    pub model: ModelChoice,
    /// Weights and buffers (safetensors, PyTorch state_dict names), e.g. runs/<t>/lenet-bn.safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    /// Activation the model was trained with.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Write the predicted class of each test image to this file, one per line, in test order.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> Result<(), Error> {
    setup_threads(args.threads)?;
    if !args.weights.is_file() {
        return Err(Error::Usage(format!(
            "--weights {}: no such file",
            args.weights.display()
        )));
    }
    // The initialisation is overwritten by the checkpoint; the seed does not matter.
    let mut model = args
        .model
        .kind()
        .build(args.activation.activation(), &mut Rng::seed_from_u64(0))?;
    checkpoint::load(&model, &args.weights)?;
    let data = load_data(args.data.dataset, args.data.data_dir.as_deref(), None)?;
    let predicted = predict(&mut model, &data.test)?;
    let labels = data.test.labels();
    println!("{}", report_text(&predicted, labels, data.class_names()));
    if let Some(path) = &args.predictions {
        let text: String = predicted.iter().map(|p| format!("{p}\n")).collect();
        report::write_file(path, text.as_bytes())?;
        eprintln!("predictions written to {}", path.display());
    }
    Ok(())
}

/// Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted).
pub fn report_text(predicted: &[usize], labels: &[usize], names: &[&str]) -> String {
    let k = names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&p, &l) in predicted.iter().zip(labels) {
        if p < k && l < k {
            confusion[l][p] += 1;
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "test accuracy {:.4} ({} images)\n",
        accuracy(predicted, labels),
        labels.len()
    );
    let _ = writeln!(s, "{:<12} {:>8} {:>7}", "class", "accuracy", "images");
    for (c, name) in names.iter().enumerate() {
        let total: usize = confusion[c].iter().sum();
        let acc = confusion[c][c] as f64 / total.max(1) as f64;
        let _ = writeln!(s, "{name:<12} {acc:>8.4} {total:>7}");
    }
    let _ = writeln!(
        s,
        "\nconfusion matrix (rows: true class, columns: predicted class)"
    );
    let _ = write!(s, "{:<12}", "");
    for c in 0..k {
        let _ = write!(s, "{c:>6}");
    }
    let _ = writeln!(s);
    for (c, row) in confusion.iter().enumerate() {
        let _ = write!(
            s,
            "{:<12}",
            format!("{c} {}", names[c].chars().take(9).collect::<String>())
        );
        for v in row {
            let _ = write!(s, "{v:>6}");
        }
        let _ = writeln!(s);
    }
    s
}
