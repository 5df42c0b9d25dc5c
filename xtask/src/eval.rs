//! `cargo xtask eval`: accuracy, per-class accuracy and confusion matrix of saved weights on
//! the test set, and optionally the predicted class of every test image.

use std::fmt::Write as _;
use std::path::PathBuf;

use norma_layers::checkpoint;
use norma_tensor::Rng;

use norma_layers::models::ModelKind;

use crate::cli::choices::{build_model, model_parser, ActivationChoice, PlacementChoice};

use crate::cli::args::DataArgs;
use crate::error::Error;
use crate::output::files;
use crate::run::model_run::{accuracy, predict};
use crate::run::setup;

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The architecture the weights belong to.
    #[arg(long, value_parser = model_parser())]
    pub model: ModelKind,
    /// Weights and buffers (safetensors, PyTorch state_dict names), e.g.
    /// runs/TIMESTAMP/lenet-bn.safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    /// Activation the model was trained with.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationChoice,
    /// Where LeNet-BN's batch norms were when it trained (a checkpoint does not say: both
    /// placements have the same tensors).
    #[arg(long, value_enum, default_value = "before")]
    pub placement: PlacementChoice,
    #[command(flatten)]
    pub data: DataArgs,
    /// Write the predicted class of each test image to this file, one per line, in test order
    /// (an existing file is replaced; its folder must exist).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Worker threads, at most 8 per core [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Checks every path before the model or the data is loaded.
fn check(args: &EvalArgs) -> Result<(), Error> {
    files::check_input_file("--weights", &args.weights)?;
    if let Some(path) = &args.predictions {
        files::check_output_file("--predictions", path)?;
        let same = match (path.canonicalize(), args.weights.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(Error::Usage(format!(
                "--predictions {} is the --weights file; give another file name",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> Result<(), Error> {
    check(&args)?;
    setup::threads(args.threads)?;
    // The initialisation is overwritten by the checkpoint; the seed does not matter.
    let mut model = build_model(
        args.model,
        args.activation,
        args.placement,
        &mut Rng::seed_from_u64(0),
    )?;
    checkpoint::load(&model, &args.weights)?;
    let data = setup::load_data(args.data.dataset(), args.data.data_dir.as_deref(), None)?;
    let predicted = predict(&mut model, &data.test)?;
    let labels = data.test.labels();
    println!("{}", report_text(&predicted, labels, data.class_names()));
    if let Some(path) = &args.predictions {
        let text: String = predicted.iter().map(|p| format!("{p}\n")).collect();
        files::write_atomic(path, text.as_bytes())?;
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
    // Row labels "3 Dress" in full, padded to the longest.
    let row_labels: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(c, name)| format!("{c} {name}"))
        .collect();
    let width = row_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max("class".len());
    let _ = writeln!(s, "{:<width$} {:>8} {:>7}", "class", "accuracy", "images");
    for (c, label) in row_labels.iter().enumerate() {
        let total: usize = confusion[c].iter().sum();
        let acc = confusion[c][c] as f64 / total.max(1) as f64;
        let _ = writeln!(s, "{label:<width$} {acc:>8.4} {total:>7}");
    }
    let _ = writeln!(
        s,
        "\nconfusion matrix (rows: true class, columns: predicted class)"
    );
    let _ = write!(s, "{:<width$}", "");
    for c in 0..k {
        let _ = write!(s, "{c:>6}");
    }
    let _ = writeln!(s);
    for (label, row) in row_labels.iter().zip(&confusion) {
        let _ = write!(s, "{label:<width$}");
        for v in row {
            let _ = write!(s, "{v:>6}");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_shown_in_full_and_columns_align() {
        let names = ["T-shirt/top", "Ankle boot", "Bag"];
        let text = report_text(&[0, 1, 2, 1], &[0, 1, 2, 2], &names);
        assert!(text.contains("1 Ankle boot"), "{text}");
        assert!(text.contains("0 T-shirt/top"), "{text}");
        let matrix: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("confusion"))
            .skip(1)
            .collect();
        let width = matrix[0].len();
        assert!(
            matrix
                .iter()
                .filter(|l| !l.is_empty())
                .all(|l| l.len() == width),
            "{text}"
        );
    }
}
