//! The `report.html` of a `train-lenet` run: what was compared, the final comparison, the
//! curves, every epoch, and the configuration.

use crate::html::Page;
use crate::plot::Figure;
use crate::report::{self, RunRecord};
use crate::train::TrainConfig;
use crate::Error;

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
         every epoch. Train loss and accuracy are means over the epoch's batches in training \
         mode; test accuracy is measured in eval mode.",
    );
    page.heading("Final comparison")
        .table(report::summary(records));
    if let Some(curves) = curves {
        page.figure("the training curves", curves);
    }
    page.heading("Every epoch")
        .table(report::epochs_table(records));
    page.config(config);
    page
}
