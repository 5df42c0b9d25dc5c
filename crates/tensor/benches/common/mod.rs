//! What the tensor benches share.

use norma_tensor::SimdLevel;

/// The levels to time: `NORMA_BENCH_LEVELS` (comma-separated; names that are no level are
/// skipped), else every level this CPU has.
pub fn levels() -> Vec<SimdLevel> {
    match std::env::var("NORMA_BENCH_LEVELS") {
        Ok(list) => list
            .split(',')
            .filter_map(|name| SimdLevel::parse(name).ok())
            .collect(),
        Err(_) => SimdLevel::supported(),
    }
}
