//! What `eval-mode` shows: its table (text and HTML), the failures under it, the page's
//! introduction, and `eval-mode.csv`.

use std::fmt::Write as _;

use crate::error::Error;
use crate::eval_mode::{EvalModeArgs, Overwritten, Results, DEFAULT_EPOCHS};
use crate::output::run_dir::RunDir;
use crate::output::table::Table;

fn percent(f: f64) -> String {
    format!("{:.1} %", 100.0 * f)
}

/// Rows: eval mode (stored and precise statistics, any batch size), then training mode per
/// batch size.
pub fn table(r: &Results, args: &EvalModeArgs) -> Table {
    let mut t = Table::new([
        "mode",
        "statistics",
        "test batch size",
        "test accuracy (mean over orders)",
        "lowest-highest",
        "class depends on the company",
        "class differs from eval mode alone",
    ]);
    let sizes = args
        .batch_sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let eval_varies = r
        .eval
        .iter()
        .map(|o| o.depends_on_company)
        .fold(0.0f64, f64::max);
    let eval_differs = r
        .eval
        .iter()
        .map(|o| o.differs_from_alone)
        .fold(0.0f64, f64::max);
    t.row([
        "eval".to_string(),
        "stored in the weights".into(),
        "any".into(),
        format!("{:.4}", r.eval_stored),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    let (reference, acc) = match r.eval_precise {
        Some((acc, k)) => (format!("precise ({k} training batches)"), acc),
        None => ("stored in the weights".to_string(), r.eval_stored),
    };
    t.row([
        "eval".to_string(),
        reference,
        format!("each of {sizes}"),
        format!("{acc:.4}"),
        "-".into(),
        percent(eval_varies),
        percent(eval_differs),
    ]);
    let training = r
        .train
        .iter()
        .map(|o| ("training", "each batch's own", o))
        .chain(
            r.train_by_class
                .iter()
                .map(|o| ("training, sorted by class", "each batch's own", o)),
        );
    for (mode, statistics, o) in training {
        let mut row = vec![
            mode.to_string(),
            statistics.into(),
            o.batch_size.to_string(),
        ];
        match &o.error {
            Some(_) => row.extend([
                "fails (see below)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
            None => {
                let (lo, hi) = o.range();
                row.extend([
                    format!("{:.4}", o.mean_accuracy()),
                    format!("{lo:.4}-{hi:.4}"),
                    percent(o.depends_on_company),
                    percent(o.differs_from_alone),
                ]);
            }
        }
        t.row(row);
    }
    for (statistics, o) in overwritten(r) {
        t.row([
            "eval, after a training-mode pass".to_string(),
            statistics.into(),
            o.batch_size.to_string(),
            o.eval_accuracy
                .map_or("fails (see below)".into(), |a| format!("{a:.4}")),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    t
}

/// The eval-mode outcomes after a training-mode pass, each with what overwrote the statistics.
fn overwritten(r: &Results) -> impl Iterator<Item = (&'static str, &Overwritten)> {
    let shuffled = r
        .overwritten
        .iter()
        .map(|o| ("overwritten by shuffled test batches", o));
    let sorted = r
        .overwritten_by_class
        .iter()
        .map(|o| ("overwritten by class-sorted test batches", o));
    shuffled.chain(sorted)
}

/// Why training mode failed at some batch sizes, one line each.
pub fn failures(r: &Results) -> String {
    r.train
        .iter()
        .filter_map(|o| {
            let e = o.error.as_ref()?;
            Some(format!(
                "training mode with batches of {}: {e}\n",
                o.batch_size
            ))
        })
        .collect()
}

/// The page's introduction.
pub fn describe(args: &EvalModeArgs) -> String {
    let model = match &args.weights {
        Some(w) => format!("LeNet-BN with the weights of {}", w.display()),
        None => format!(
            "LeNet-BN trained for {} epochs (seed {}, d2l's recipe; its run is in model/)",
            args.epochs.unwrap_or(DEFAULT_EPOCHS),
            args.seed
        ),
    };
    format!(
        "{model}, predicting the 10,000 test images. Eval mode normalizes with fixed statistics, \
         so an image's class never depends on the other images in its batch. Training mode \
         (forgetting model.eval()) normalizes each batch with its own mean and variance: the \
         test set is cut into batches of each size in {} random orders, and an image's class \
         can change with the images it shares a batch with. 'Class depends on the company': \
         images whose class is not the same in all orders; 'differs from eval mode alone': \
         predictions that differ from the image's class when it is predicted alone in eval \
         mode with the reference statistics of the second row. 'Sorted by class': the same \
         with the test set grouped by class, so that each batch holds one or two classes (a \
         stream that is not shuffled): the worst case of training mode. 'After a training-mode \
         pass': the test set went through training mode in batches of that size, shuffled or \
         sorted by class, without the running statistics being restored (in PyTorch, \
         forgetting model.eval() also overwrites them, momentum 0.1 per batch), then eval mode \
         predicts with what is left: after a sorted pass, mostly the last classes' statistics.",
        args.orders
    )
}

/// `eval-mode.csv`: one line per mode and batch size.
pub fn write_csv(dir: &RunDir, r: &Results) -> Result<(), Error> {
    let mut csv = String::from(
        "mode,batch_size,mean_accuracy,lowest,highest,depends_on_company,differs_from_alone,error\n",
    );
    for (mode, outcomes) in [
        ("eval", &r.eval),
        ("train", &r.train),
        ("train-by-class", &r.train_by_class),
    ] {
        for o in outcomes {
            let (lo, hi) = o.range();
            let num = |v: f64| {
                if o.error.is_some() {
                    String::new()
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(
                csv,
                "{mode},{},{},{},{},{},{},{}",
                o.batch_size,
                num(o.mean_accuracy()),
                num(lo),
                num(hi),
                num(o.depends_on_company),
                num(o.differs_from_alone),
                o.error.as_deref().unwrap_or("").replace([',', '\n'], ";")
            );
        }
    }
    for (mode, outcomes) in [
        ("eval-after-train-pass", &r.overwritten),
        ("eval-after-sorted-pass", &r.overwritten_by_class),
    ] {
        for o in outcomes {
            let acc = o.eval_accuracy.map_or(String::new(), |a| a.to_string());
            let error = o.error.as_deref().unwrap_or("").replace([',', '\n'], ";");
            let _ = writeln!(csv, "{mode},{},{acc},{acc},{acc},,,{error}", o.batch_size);
        }
    }
    dir.write("eval-mode.csv", csv.as_bytes())
}
