//! Builds without the `mpi` feature: asking for MPI is a one-line error naming the feature,
//! and the single-process communicator works alone.
#![cfg(not(feature = "mpi"))]

use norma_distributed::{mpi_world, CommError, Communicator, SingleProcess};

/// One test: it changes the process's environment, which no other test here reads.
#[test]
fn asking_for_mpi_names_the_cargo_feature() {
    std::env::remove_var("OMPI_COMM_WORLD_SIZE");
    std::env::remove_var("PMI_SIZE");
    let e = mpi_world().err().expect("no MPI in this build");
    assert_eq!(e, CommError::MpiNotBuilt);
    let line = e.to_string();
    assert!(
        line.contains("`mpi`") && line.contains("--features mpi"),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");

    // Started by mpirun as one of three copies of a build without MPI: say so.
    std::env::set_var("OMPI_COMM_WORLD_SIZE", "3");
    let e = mpi_world().err().expect("no MPI in this build");
    std::env::remove_var("OMPI_COMM_WORLD_SIZE");
    assert_eq!(e, CommError::LaunchedWithoutMpi { size: 3 });
    assert!(e.to_string().contains("--features mpi"), "{e}");
}

#[test]
fn a_single_process_leaves_buffers_alone() {
    let comm = SingleProcess;
    let mut d = vec![1.5f64, -2.0];
    let mut f = vec![0.25f32];
    let mut b = vec![7u8, 8];
    comm.all_reduce_sum_f64(&mut d).unwrap();
    comm.all_reduce_sum_f32(&mut f).unwrap();
    comm.broadcast_bytes(0, &mut b).unwrap();
    comm.barrier().unwrap();
    assert_eq!((d, f, b), (vec![1.5, -2.0], vec![0.25], vec![7, 8]));
    assert!(comm.is_root());
    assert_eq!(
        comm.broadcast_f32(1, &mut [0.0]),
        Err(CommError::Root { root: 1, size: 1 })
    );
    assert_eq!(norma_distributed::global_count(&comm, 5), Ok(5));
    assert_eq!(
        norma_distributed::same_on_every_process(&comm, &[1.0]),
        Ok(true)
    );
}
