//! The `report.html` of a `train-lenet` run: what was compared, the final comparison, the
//! curves, every epoch, and the configuration.

use crate::error::Error;
use crate::output::html::Page;
use crate::output::plot::Figure;
use crate::output::report::{self, RunRecord};
use crate::train::{targets, TrainConfig};

/// The page of a run with these `records` and training `curves` (`None` before any epoch
/// ended).
pub fn page(
    config: &TrainConfig,
    records: &[RunRecord],
    curves: Option<Result<Figure, Error>>,
) -> Page {
    let names: Vec<&str> = records.iter().map(|r| r.model.as_str()).collect();
    let mut page = Page::new(format!("train-lenet: {}", names.join(" vs ")));
    page.text(
        "LeNet and LeNet-BN (d2l.ai) on the training set, evaluated on the test set after \
         every epoch. Test accuracy is measured in eval mode, for LeNet-BN both with the \
         moving averages of the batch statistics kept during training and with precise \
         statistics recomputed from training batches after the epoch.",
    );
    page.heading("Final comparison")
        .table(report::summary(records))
        .text(report::eval_train_note());
    if let Some(note) = report::accuracy_note(records) {
        page.text(note);
    }
    if let Some(curves) = curves {
        page.figure("the training curves", curves);
    }
    page.heading("Epochs to a test accuracy")
        .text(
            "The first epoch from which each model's test accuracy stays at or above 0.80, \
             0.85 and 0.87 until the last epoch run (a single crossing followed by a drop does \
             not count; the brief: plain LeNet needs about 20 epochs for 85 %, LeNet-BN 10 for \
             87 %).",
        )
        .table(targets::epochs_to_target(records));
    page.heading("Train - test accuracy gap")
        .text(
            "Train accuracy minus test accuracy, both of the weights at the end of the epoch \
             in eval mode with the same batch-norm statistics (precise for LeNet-BN): train \
             accuracy on the fixed training subset, not the training-mode mean over the \
             epoch, whose weights move and whose batch norm uses batch statistics (records \
             written before the subset was measured fall back to that mean). The brief says \
             batch norm reduces overfitting.",
        )
        .table(targets::gap_table(records));
    page.heading("Every epoch")
        .table(report::epochs_table(records));
    page.config(config);
    page
}
