//! The fault drill: a job whose last process fails while the others wait for it in a
//! collective, to show that the whole job ends within seconds with a message naming the
//! process, instead of hanging.
//!
//! ```text
//! cargo build --release -p norma-distributed --features mpi --example mpi_fault
//! mpirun --allow-run-as-root --oversubscribe -np 2 target/release/examples/mpi_fault <mode>
//! ```
//!
//! Modes (what the last process does at step 3; the others go on with their all-reduces):
//! - `ok`: nothing; every process finishes 20 steps and the job exits with 0 (the control).
//! - `error`: gets an error and calls `Communicator::abort(3, ...)`: exit status 3.
//! - `panic`: panics; the panic hook aborts the job.
//! - `exit`: exits with status 4 without finalizing MPI; mpirun ends the job.
//! - `crash`: dies of SIGABRT; mpirun ends the job.

use std::time::Duration;

use norma_distributed::{mpi_world, CommError, Communicator};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if !["ok", "error", "panic", "exit", "crash"].contains(&mode.as_str()) {
        eprintln!("usage: mpi_fault ok|error|panic|exit|crash");
        std::process::exit(2);
    }
    let comm = match mpi_world() {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("mpi_fault: {e}");
            std::process::exit(2);
        }
    };
    let failing = comm.rank() + 1 == comm.size() && mode != "ok";
    for step in 0..20 {
        if failing && step == 3 {
            fail(comm.as_ref(), &mode);
        }
        let mut buf = [1.0f64];
        if let Err(e) = comm.all_reduce_sum_f64(&mut buf) {
            comm.abort(1, &e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if comm.is_root() {
        println!("mpi_fault: all {} processes finished 20 steps", comm.size());
    }
}

fn fail(comm: &dyn Communicator, mode: &str) {
    match mode {
        "error" => {
            let e = CommError::PeerFailed {
                step: "the fault drill",
                failed: 1,
            };
            comm.abort(3, &format!("a made-up error at step 3 ({e})"));
        }
        "panic" => panic!("a made-up panic at step 3"),
        "exit" => std::process::exit(4),
        _ => std::process::abort(),
    }
}
