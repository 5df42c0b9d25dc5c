//! The training floor: one model's run and everything a step needs, for every experiment.
//!
//! - [`spec`]: [`spec::RunSpec`], what defines a run, and its batches;
//! - [`model_run`]: [`model_run::ModelRun`], a model with its optimizer, with the one training
//!   step ([`model_run::ModelRun::step_with`]), evaluation and prediction;
//! - [`step`]: what every step shares: the forward half and the [`step::Strategy`] that brings
//!   the gradient together, alone or as a process of a data-parallel job ([`data_parallel`]);
//! - [`divergence`]: when a step has diverged, and how a finished run ended;
//! - [`precise`]: precise batch-norm statistics for evaluation;
//! - [`snapshot`]: a model's weights and buffers, put back bit for bit;
//! - [`setup`]: the thread pool and the data.
//!
//! It sits on [`crate::cli`] (a spec is phrased in the command line's choices) and
//! [`crate::output`] (records and files); neither imports it.

pub mod data_parallel;
pub mod divergence;
pub mod model_run;
pub mod precise;
pub mod setup;
pub mod snapshot;
pub mod spec;
pub mod step;
