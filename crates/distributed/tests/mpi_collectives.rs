//! The MPI communicator, checked collectively under `mpirun -np K` (K = 1, 2, 3, ...): every
//! process runs these checks; see the crate docs for the command. Values are chosen so that
//! sums are exact in floating point unless stated otherwise.

use norma_distributed::testing::{run_checks, Checks};
use norma_distributed::{
    global_count, launcher_size, mpi_world, same_on_every_process, shard, CommError,
};

/// A small deterministic generator (splitmix64), so that every process can compute any
/// process's values.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn main() {
    let comm = match mpi_world() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpi_collectives: {e}");
            std::process::exit(1);
        }
    };
    run_checks(comm, |checks, _| all(checks));
}

fn all(checks: &mut Checks<'_>) {
    let c = checks.comm();
    let (rank, size) = (c.rank(), c.size());

    checks.check("rank and size are those mpirun gave", || {
        let expected = launcher_size().unwrap_or(1);
        if size == expected && rank < size {
            Ok(())
        } else {
            Err(format!("rank {rank} of {size}, launcher says {expected}"))
        }
    });

    checks.check("describe names the process", || {
        let d = c.describe();
        d.contains(&format!("process {rank} of {size}"))
            .then_some(())
            .ok_or(d)
    });

    checks.check("all-reduce sums f64 buffers exactly", || {
        let mut buf: Vec<f64> = (0..100).map(|i| ((rank + 1) * i) as f64 + 0.5).collect();
        c.all_reduce_sum_f64(&mut buf).map_err(|e| e.to_string())?;
        let k = size as f64;
        let want = |i: usize| i as f64 * k * (k + 1.0) / 2.0 + 0.5 * k;
        match (0..100).find(|&i| buf[i] != want(i)) {
            None => Ok(()),
            Some(i) => Err(format!("element {i}: {} instead of {}", buf[i], want(i))),
        }
    });

    checks.check("all-reduce sums f32 buffers exactly", || {
        let mut buf: Vec<f32> = (0..1000).map(|i| (rank * 1000 + i) as f32).collect();
        c.all_reduce_sum_f32(&mut buf).map_err(|e| e.to_string())?;
        let want = |i: usize| (0..size).map(|r| (r * 1000 + i) as f32).sum::<f32>();
        match (0..1000).find(|&i| buf[i] != want(i)) {
            None => Ok(()),
            Some(i) => Err(format!("element {i}: {} instead of {}", buf[i], want(i))),
        }
    });

    checks.check(
        "all-reduce of inexact sums gives every process the same bits, within 1e-15 of an ordered sum",
        || {
            let n = 10_000; // large enough for Open MPI's segmented algorithms
            let mut buf = values(rank as u64 + 1, n);
            c.all_reduce_sum_f64(&mut buf).map_err(|e| e.to_string())?;
            let all: Vec<Vec<f64>> = (0..size).map(|r| values(r as u64 + 1, n)).collect();
            // Rounding: K − 1 additions of values in [−1, 1], each off by at most 2⁻⁵³·K.
            for (i, got) in buf.iter().enumerate() {
                let want: f64 = all.iter().map(|v| v[i]).sum();
                if (got - want).abs() > 1e-15 * size as f64 {
                    return Err(format!("element {i}: {got} instead of {want}"));
                }
            }
            let as_f32: Vec<f32> = buf
                .iter()
                .flat_map(|v| {
                    let b = v.to_bits();
                    [f32::from_bits(b as u32), f32::from_bits((b >> 32) as u32)]
                })
                .collect();
            same_on_every_process(c, &as_f32)
                .map_err(|e| e.to_string())?
                .then_some(())
                .ok_or_else(|| "processes got different bits".to_string())
        },
    );

    checks.check("broadcast copies the root's buffers", || {
        for root in 0..size {
            let mut f = vec![rank as f32; 7];
            let mut d = vec![rank as f64 + 0.25; 3];
            let mut b = vec![rank as u8; 5];
            c.broadcast_f32(root, &mut f).map_err(|e| e.to_string())?;
            c.broadcast_f64(root, &mut d).map_err(|e| e.to_string())?;
            c.broadcast_bytes(root, &mut b).map_err(|e| e.to_string())?;
            if f != vec![root as f32; 7]
                || d != vec![root as f64 + 0.25; 3]
                || b != vec![root as u8; 5]
            {
                return Err(format!("root {root}: got {f:?} {d:?} {b:?}"));
            }
        }
        Ok(())
    });

    checks.check(
        "a broadcast from a root outside the job is refused on every process",
        || match c.broadcast_f32(size, &mut [0.0]) {
            Err(CommError::Root { root, size: s }) if root == size && s == size => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    checks.check("shards of 13 samples add up to 13 over the job", || {
        let local = shard(13, rank, size).len();
        match global_count(c, local) {
            Ok(13) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    checks.check(
        "same_on_every_process sees a difference on one process",
        || {
            let same = same_on_every_process(c, &[1.0, 2.0]).map_err(|e| e.to_string())?;
            let last_differs = if rank + 1 == size { 2.5 } else { 2.0 };
            let differ =
                same_on_every_process(c, &[1.0, last_differs]).map_err(|e| e.to_string())?;
            // With one process there is nothing to differ from.
            if same && differ == (size == 1) {
                Ok(())
            } else {
                Err(format!("identical: {same}, one differs: {differ}"))
            }
        },
    );

    checks.check("barrier returns", || c.barrier().map_err(|e| e.to_string()));

    checks.check("MPI cannot be initialized twice", || match mpi_world() {
        Err(CommError::AlreadyInitialized) => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(_) => Err("a second communicator".into()),
    });
}
