//! The drift measure of `drift`: how far a distribution probed on fixed inputs moved between a
//! point after warm-up and the end of training, in units of its final 15–85 spread.
//!
//! With s(t) = p85(t) − p15(t) the spread at step t, t₀ the first probe at or after
//! [`WARMUP_FRACTION`] of the steps and T the last probe:
//!
//! - median shift = |p50(T) − p50(t₀)| / s(T)
//! - spread change = |s(T) − s(t₀)| / s(T)
//!
//! Both are 0 for a distribution that stayed put and 1 for a move as large as the final
//! spread. The first steps are left out because every model's inputs move most at the start,
//! with or without batch norm; what Ioffe & Szegedy's Figure 1 contrasts is the drift that
//! goes on after it. Dividing by the final spread makes models comparable whose inputs live
//! on other scales (a batch norm's output has spread ≈ 2; a small-weight MLP's much less).

use norma_layers::Summary;
use serde::Serialize;

/// Where the drift measure starts: the first probe at or after this fraction of the steps.
pub const WARMUP_FRACTION: f64 = 0.1;

/// The drift of one probed distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    /// t₀: the first probe after warm-up.
    pub from_step: usize,
    /// T: the last probe.
    pub to_step: usize,
    /// |p50(T) − p50(t₀)| / s(T).
    pub median_shift: f64,
    /// |s(T) − s(t₀)| / s(T).
    pub spread_change: f64,
}

fn spread(s: &Summary) -> f64 {
    s.p85 - s.p15
}

/// The drift of `records` ((step, summary) in step order) over a run of `steps` steps;
/// `None` without records. A final spread of 0 gives infinite (or NaN) measures, which the
/// json writes as null.
pub fn drift(records: &[(usize, Summary)], steps: usize) -> Option<Drift> {
    let end = records.last()?;
    let warmup = (WARMUP_FRACTION * steps as f64).ceil() as usize;
    let (from_step, first) = records
        .iter()
        .find(|(step, _)| *step >= warmup)
        .unwrap_or(end);
    let (to_step, last) = end;
    let scale = spread(last);
    Some(Drift {
        from_step: *from_step,
        to_step: *to_step,
        median_shift: (last.p50 - first.p50).abs() / scale,
        spread_change: (scale - spread(first)).abs() / scale,
    })
}

/// (step, (p50(t) − p50(t₀)) / s(T)) for every probe from t₀ on: the median shift as a curve
/// (signed), the line whose end is [`Drift::median_shift`].
pub fn median_path(records: &[(usize, Summary)], steps: usize) -> Vec<(f64, f64)> {
    let Some(d) = drift(records, steps) else {
        return Vec::new();
    };
    let at = |step: usize| records.iter().find(|(s, _)| *s == step).map(|r| r.1);
    let (Some(first), Some(last)) = (at(d.from_step), at(d.to_step)) else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|(s, _)| *s >= d.from_step)
        .map(|(s, m)| (*s as f64, (m.p50 - first.p50) / spread(&last)))
        .collect()
}

/// The mean of `drifts`' measures (a model's summary over its activations); `None` if empty.
pub fn mean(drifts: &[Drift]) -> Option<(f64, f64)> {
    if drifts.is_empty() {
        return None;
    }
    let n = drifts.len() as f64;
    Some((
        drifts.iter().map(|d| d.median_shift).sum::<f64>() / n,
        drifts.iter().map(|d| d.spread_change).sum::<f64>() / n,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p15: f64, p50: f64, p85: f64) -> Summary {
        Summary {
            p15,
            p50,
            p85,
            mean: p50,
            std: 1.0,
            count: 10,
        }
    }

    #[test]
    fn drift_starts_after_warm_up_and_is_in_units_of_the_final_spread() {
        let r = [
            (0, summary(-9.0, 5.0, 9.0)),
            (10, summary(-1.0, 0.0, 1.0)),
            (20, summary(0.0, 3.0, 4.0)),
            (100, summary(-2.0, -1.0, 2.0)),
        ];
        // Warm-up: 10 % of 100 steps, so t₀ = 10 (step 0's wild values do not count).
        let d = drift(&r, 100).unwrap();
        assert_eq!((d.from_step, d.to_step), (10, 100));
        // Median 0 → −1 over a final spread of 4; spread 2 → 4.
        assert_eq!(d.median_shift, 0.25);
        assert_eq!(d.spread_change, 0.5);
        let path = median_path(&r, 100);
        assert_eq!(path, [(10.0, 0.0), (20.0, 0.75), (100.0, -0.25)]);
        assert_eq!(drift(&[], 100), None);
        assert_eq!(mean(&[d, d]), Some((0.25, 0.5)));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn a_distribution_that_stays_put_has_no_drift() {
        let r = [(0, summary(-1.0, 0.0, 1.0)), (50, summary(-1.0, 0.0, 1.0))];
        let d = drift(&r, 50).unwrap();
        assert_eq!(
            (d.from_step, d.median_shift, d.spread_change),
            (50, 0.0, 0.0)
        );
    }
}
