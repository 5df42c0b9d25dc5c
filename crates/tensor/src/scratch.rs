//! Per-thread scratch buffers for kernels that need temporary matrices (im2col).
//!
//! A training step runs the same kernels with the same shapes hundreds of times; allocating
//! and zeroing the unrolled matrices each time cost a tenth of a convolution. Each thread
//! keeps its buffers and hands them out again. Callers must write every element they read.

use std::cell::RefCell;

thread_local! {
    static BUFFERS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `N` buffers of the given lengths. Contents are unspecified (left over from an
/// earlier use): every element must be written before it is read.
pub fn with_buffers<const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    // Take the buffers out rather than borrowing the cell: `f` may run nested rayon work on
    // this thread, which may ask for buffers again (it then gets fresh ones).
    let mut bufs: Vec<Vec<f32>> = BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    bufs.resize_with(N.max(bufs.len()), Vec::new);
    for (buf, &len) in bufs.iter_mut().zip(&lens) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
    let result = {
        let mut iter = bufs.iter_mut().zip(lens);
        let slices: [&mut [f32]; N] = std::array::from_fn(|_| {
            let (buf, len) = iter.next().expect("N buffers");
            &mut buf[..len]
        });
        f(slices)
    };
    BUFFERS.with(|b| {
        let mut cell = b.borrow_mut();
        if cell.is_empty() {
            *cell = bufs;
        }
    });
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
            (a.as_ptr() as usize, a.len(), b.len())
        });
        let second = with_buffers([3, 2], |[a, b]| (a.as_ptr() as usize, a.len(), b.len()));
        assert_eq!((first.1, first.2), (4, 2));
        assert_eq!((second.1, second.2), (3, 2));
        assert_eq!(first.0, second.0, "the first buffer is reused");
        // Nested use gets its own buffers.
        with_buffers([2], |[outer]| {
            outer.fill(5.0);
            with_buffers([2], |[inner]| inner.fill(7.0));
            assert_eq!(outer, &[5.0, 5.0]);
        });
    }
}
