//! Where one model's training stands. Saved with every checkpoint, so that a resumed run
//! continues exactly: same batches, same accumulated metrics.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::output::report::{RunRecord, Status};
use crate::run::spec::RunSpec;

/// The training state of one model besides its weights and optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0-based epoch in progress.
    pub epoch: usize,
    /// Steps already taken in that epoch.
    pub step_in_epoch: usize,
    /// Steps taken in total.
    pub global_step: u64,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub epoch_seconds: f64,
    pub last_finite_loss: Option<f64>,
    pub record: RunRecord,
}

impl Progress {
    /// Nothing trained yet.
    pub fn fresh(spec: &RunSpec) -> Progress {
        Progress {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            epoch_seconds: 0.0,
            last_finite_loss: None,
            record: RunRecord {
                model: spec.model.name().to_string(),
                lr: spec.lr,
                status: Status::Pending,
                epochs: Vec::new(),
                final_test_acc: None,
                final_test_acc_precise: None,
                precise_bn_batches: None,
                final_test_loss: None,
                final_eval_train_acc: None,
                final_eval_train_loss: None,
                max_batch_loss: 0.0,
            },
        }
    }

    /// True when `spec` asks for nothing more: the run diverged, or reached its step limit
    /// or its last epoch.
    pub fn finished(&self, spec: &RunSpec) -> bool {
        if self.record.status.diverged() {
            return true;
        }
        match spec.steps {
            Some(s) if self.global_step >= s => true,
            _ => self.epoch >= spec.epochs,
        }
    }

    /// How training ended, for a progress that is [`finished`](Self::finished) but whose
    /// status does not say so (saved at the end of the last epoch, before the final phase):
    /// the step limit when it was reached, else every epoch done.
    pub fn ending_without_status(&self, spec: &RunSpec) -> Status {
        match spec.steps {
            Some(s) if self.global_step >= s => Status::StepLimit {
                step: self.global_step,
            },
            _ => Status::Completed,
        }
    }

    /// Refuses a resumed `spec` that asks to stop before the point already reached: fewer
    /// steps than taken, or fewer epochs than done or started.
    pub fn check_reachable(&self, spec: &RunSpec) -> Result<(), Error> {
        let name = spec.model.name();
        if let Some(steps) = spec.steps {
            if steps < self.global_step {
                return Err(Error::Usage(format!(
                    "--steps {steps} is below the saved progress ({name} has taken {} steps); give at least {}",
                    self.global_step, self.global_step
                )));
            }
        }
        let reached = self.epoch + usize::from(self.step_in_epoch > 0);
        if spec.epochs < reached {
            return Err(Error::Usage(format!(
                "--epochs {} is below the saved progress ({name} has reached epoch {reached}); give at least {reached}",
                spec.epochs
            )));
        }
        Ok(())
    }
}
