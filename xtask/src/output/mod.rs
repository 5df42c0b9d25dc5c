//! The output floor: where and how results are written, shown and printed — the run folder
//! ([`run_dir`]), atomic files ([`files`]), `report.html` ([`html`]), charts ([`plot`]), tables
//! ([`table`]) and the per-epoch records and their formats ([`report`]). It imports nothing of
//! the command line, the training or the experiments.

pub mod files;
pub mod html;
pub mod plot;
pub mod report;
pub mod run_dir;
pub mod table;
