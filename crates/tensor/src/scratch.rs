//! Per-thread scratch buffers for kernels that need temporary matrices (padded images, gradient
//! planes, partial sums).
//!
//! A training step runs the same kernels with the same shapes hundreds of times; allocating
//! and zeroing the unrolled matrices each time cost a tenth of a convolution. Each thread
//! keeps a free list of buffers and hands them out again. Callers must write every element
//! they read.

use std::cell::RefCell;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `N` buffers of the given lengths. Contents are unspecified (left over from an
/// earlier use): every element must be written before it is read.
///
/// Buffers are taken off this thread's free list (the cell is not borrowed while `f` runs, so
/// nested calls, including rayon work stolen by this thread, take other buffers) and put back
/// afterwards; they only ever grow, so in a steady state nothing is allocated.
pub fn with_buffers<const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    // The largest free buffers go to the largest requests, so that kernels asking for their
    // buffers in different orders do not make them grow (and be zeroed) again and again.
    let mut by_size: [usize; N] = std::array::from_fn(|i| i);
    by_size.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut bufs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        free.sort_by_key(Vec::len);
        for &i in &by_size {
            bufs[i] = free.pop().unwrap_or_default();
        }
    });
    for (buf, &len) in bufs.iter_mut().zip(&lens) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
    let result = {
        let mut iter = bufs.iter_mut().zip(lens);
        f(std::array::from_fn(|_| {
            let (buf, len) = iter.next().expect("one buffer per length");
            &mut buf[..len]
        }))
    };
    FREE.with(|free| free.borrow_mut().extend(bufs));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_the_requested_lengths_and_are_reused() {
        let first = with_buffers([4, 2], |[a, b]| {
            a.fill(1.0);
            b.fill(2.0);
            (a.as_ptr() as usize, b.as_ptr() as usize)
        });
        let second = with_buffers([3, 2], |[a, b]| {
            assert_eq!((a.len(), b.len()), (3, 2));
            (a.as_ptr() as usize, b.as_ptr() as usize)
        });
        assert_eq!(
            first, second,
            "the same buffers come back in the same roles"
        );
        // Nested use gets other buffers, and the outer ones survive it.
        with_buffers([2], |[outer]| {
            outer.fill(5.0);
            with_buffers([2], |[inner]| inner.fill(7.0));
            assert_eq!(outer, &[5.0, 5.0]);
        });
        let third = with_buffers([4, 2], |[a, b]| (a.as_ptr() as usize, b.as_ptr() as usize));
        assert_eq!(first, third);
    }
}
