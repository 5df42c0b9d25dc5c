//! Synchronized batch norm over MPI: the scenarios of `sync_scenarios` run on every process of
//! `mpirun -np K` (K = 2 and 3 in CI; 13 samples over 3 processes do not divide evenly), each
//! process comparing its shard with the single-process reference. Needs the feature `mpi`; see
//! norma-distributed's docs for the command. Every process exits with 1 if any check failed on
//! any process, so that mpirun fails.

mod sync_scenarios;

use norma_distributed::mpi_world;
use norma_distributed::testing::run_checks;

fn main() {
    let comm = match mpi_world() {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("sync_batch_norm_mpi: {e}");
            std::process::exit(1);
        }
    };
    run_checks(comm, |checks, comm| {
        checks.check(
            "synchronized batch norm matches one process; local batch norm does not",
            || sync_scenarios::layer_matches_one_process(comm),
        );
        checks.check(
            "one value per channel over the job is batch norm's error",
            || sync_scenarios::one_value_per_channel_is_the_batch_norm_error(comm),
        );
        checks.check(
            "a failing process fails every process at the same layer",
            || sync_scenarios::a_failing_process_fails_every_process(comm),
        );
        checks.check(
            "data-parallel gradients (weighted losses, one all-reduce) match one process",
            || sync_scenarios::data_parallel_gradients_match_one_process(comm),
        );
    });
}
