//! Learning-rate schedules, as a function of the epoch (or step) index.

/// How the learning rate changes over training; `lr(t)` for t = 0, 1, ... from a base rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// `lr(t) = base`.
    Constant,
    /// `lr(t) = base · gamma^⌊t / step_size⌋` (PyTorch's `StepLR`).
    Step { step_size: usize, gamma: f64 },
    /// `lr(t) = min_lr + (base − min_lr)·(1 + cos(π·t/total))/2` for t ≤ total, then `min_lr`
    /// (PyTorch's `CosineAnnealingLR` without restarts).
    Cosine { total: usize, min_lr: f64 },
}

impl Schedule {
    /// The learning rate at index `t` for base rate `base`.
    pub fn lr(&self, base: f64, t: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => base * gamma.powi((t / step_size.max(1)) as i32),
            Schedule::Cosine { total, min_lr } => {
                if total == 0 || t >= total {
                    min_lr
                } else {
                    let progress = t as f64 / total as f64;
                    min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.lr(0.5, 100), 0.5);
        let step = Schedule::Step {
            step_size: 3,
            gamma: 0.1,
        };
        assert_eq!(step.lr(1.0, 2), 1.0);
        assert!((step.lr(1.0, 3) - 0.1).abs() < 1e-12);
        assert!((step.lr(1.0, 7) - 0.01).abs() < 1e-12);
        let cos = Schedule::Cosine {
            total: 10,
            min_lr: 0.0,
        };
        assert_eq!(cos.lr(1.0, 0), 1.0);
        assert!((cos.lr(1.0, 5) - 0.5).abs() < 1e-12);
        assert_eq!(cos.lr(1.0, 10), 0.0);
        assert_eq!(cos.lr(1.0, 11), 0.0);
    }
}
