//! The communicator of a job of one process.

use std::fmt;

use crate::{CommError, Communicator};

/// A job of one process: sums and broadcasts leave buffers as they are, so code written for
/// K processes runs unchanged (and bit for bit as without a communicator) on one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<(), CommError> {
        Ok(())
    }

    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<(), CommError> {
        Ok(())
    }

    fn broadcast_f32(&self, root: usize, _buf: &mut [f32]) -> Result<(), CommError> {
        check_root(root, 1)
    }

    fn broadcast_f64(&self, root: usize, _buf: &mut [f64]) -> Result<(), CommError> {
        check_root(root, 1)
    }

    fn broadcast_bytes(&self, root: usize, _buf: &mut [u8]) -> Result<(), CommError> {
        check_root(root, 1)
    }

    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }

    fn abort(&self, code: i32, reason: &dyn fmt::Display) -> ! {
        eprintln!("norma: {reason}");
        std::process::exit(code)
    }

    fn describe(&self) -> String {
        "a single process".to_string()
    }
}

/// Checks that `root` is one of `size` processes.
pub(crate) fn check_root(root: usize, size: usize) -> Result<(), CommError> {
    if root < size {
        Ok(())
    } else {
        Err(CommError::Root { root, size })
    }
}
