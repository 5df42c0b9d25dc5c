//! Batch normalization: statistics over the batch (and spatial positions) per channel.
//!
//! - `statistics.rs`: the shifted partial sums of a (shard of a) batch and the mean and
//!   variance finished from them.
//! - `forward.rs`: training (batch statistics) and evaluation (running statistics) forward.
//! - `backward.rs`: the closed-form gradients of both modes.
//! - `running.rs`: the running-statistics update.

mod backward;
mod forward;
mod running;
mod statistics;

pub use backward::{backward_eval, backward_from_sums, backward_train, grad_sums, GradSums};
pub use forward::{eval_scale_shift, forward_eval, forward_train, normalize, TrainForward};
pub use running::update_running_stats;
pub use statistics::{partial_sums, BatchStats, PartialSums};
