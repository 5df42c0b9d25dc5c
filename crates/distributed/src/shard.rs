//! Splitting a global batch over the processes, and the helpers a data-parallel step needs on
//! top of the [`Communicator`].

use std::ops::Range;

use crate::{CommError, Communicator};

/// The samples of a global batch of `len` that process `rank` of `size` takes: contiguous
/// shards in rank order, the first `len % size` processes one sample more than the others
/// (13 over 3 processes: 0..5, 5..9, 9..13). A process gets an empty shard when `len < size`.
///
/// Returns an empty range for a `rank` outside `0..size` (or `size` 0).
///
/// ```
/// use norma_distributed::shard;
/// assert_eq!(shard(13, 0, 3), 0..5);
/// assert_eq!(shard(13, 2, 3), 9..13);
/// assert_eq!(shard(2, 2, 3), 2..2);
/// ```
pub fn shard(len: usize, rank: usize, size: usize) -> Range<usize> {
    if rank >= size {
        return len..len;
    }
    let (base, extra) = (len / size, len % size);
    let start = rank * base + rank.min(extra);
    let end = start + base + usize::from(rank < extra);
    start..end
}

/// The sum of `local` over every process (collective), exact: counts are sent as f64, exact
/// up to 2⁵³.
pub fn global_count(comm: &dyn Communicator, local: usize) -> Result<usize, CommError> {
    let mut buf = [local as f64];
    comm.all_reduce_sum_f64(&mut buf)?;
    Ok(buf[0] as usize)
}

/// Whether `values` are the same bits on every process (collective; every process gets the
/// same answer): process 0's values are broadcast, each process compares its own, and the
/// number of processes that differ is summed. For checking that replicated state (parameters,
/// running statistics) has not drifted apart.
pub fn same_on_every_process(comm: &dyn Communicator, values: &[f32]) -> Result<bool, CommError> {
    let mut root = values.to_vec();
    comm.broadcast_f32(0, &mut root)?;
    let differs = root
        .iter()
        .zip(values)
        .any(|(a, b)| a.to_bits() != b.to_bits());
    let mut count = [f64::from(u8::from(differs))];
    comm.all_reduce_sum_f64(&mut count)?;
    Ok(count[0] == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_and_differ_by_at_most_one() {
        for len in 0..40 {
            for size in 1..7 {
                let shards: Vec<Range<usize>> = (0..size).map(|r| shard(len, r, size)).collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[size - 1].end, len, "len {len} size {size}");
                for w in shards.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1);
                }
            }
        }
        assert_eq!(shard(5, 3, 3), 5..5, "a rank outside the job gets nothing");
        assert_eq!(shard(5, 0, 0), 5..5);
    }
}
