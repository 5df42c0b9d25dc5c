#!/usr/bin/env python3
"""norma's normalization kernels against PyTorch's, at LeNet's shapes (batch 256), on this machine.

For each thread count (default 2, then 1), in one invocation:

1. norma: `cargo bench -p norma-kernels --bench batch_norm --bench group_norm` (criterion,
   `--output-format bencher`, which prints each benchmark's median) with RAYON_NUM_THREADS set,
   for the four shapes LeNet normalizes: (256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84);
2. PyTorch, in this process with torch.set_num_threads: F.batch_norm (train forward with the
   running-statistics update, as nn.BatchNorm does; train forward + backward; eval forward),
   F.group_norm with LeNet-GN's group counts (2, 4, 4, 4) and F.layer_norm over every dimension
   but the batch (LeNet-LN), each forward (under no_grad) and forward + backward (autograd.grad
   of x, weight and bias for a fixed output gradient); median over blocks of calls;

and prints a table: shape, op, PyTorch µs, norma µs (and norma's effective GB/s: forward counts
2 x numel x 4 bytes, forward + backward 5 x numel x 4), and the ratio PyTorch / norma (above 1:
norma is faster).

Both sides run with glibc's mmap disabled (MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=68719476736; the script restarts itself with them when they are missing),
so that neither pays page faults for fresh output buffers. Run from the repository root with the
venv that scripts/setup-torch-venv.sh makes; on a shared machine, under the benchmark lock:

    flock /tmp/norma-cargo.lock /tmp/norma-torch-venv/bin/python scripts/bench_norm_vs_pytorch.py --threads 2
    flock /tmp/norma-cargo.lock /tmp/norma-torch-venv/bin/python scripts/bench_norm_vs_pytorch.py --threads 1

Each thread count takes about two minutes (--measurement-time sets the seconds per benchmark on
both sides; --markdown prints the table for docs/batch-norm.md).

`--layers` compares whole layers instead (`cargo bench -p norma-layers --bench norm_layers`:
Module::forward and the autograd backward with a fixed output gradient) for the layers built on
those kernels — BatchNorm, Batch Renormalization (past its warm-up: r_max 3, d_max 5), ghost batch
norm (ghosts of 16), frozen batch norm, InstanceNorm2d, RMSNorm — against PyTorch modules:
nn.BatchNorm, nn.InstanceNorm2d and nn.RMSNorm where PyTorch has the layer, and for the others
the usual PyTorch code: Batch Renormalization written out from Ioffe (2017) with r and d
detached, ghost batch norm as F.batch_norm on each chunk of 16 samples (composer's
GhostBatchNorm), frozen batch norm as torchvision's FrozenBatchNorm2d (x · scale + shift).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"error: {e}; run with the venv of scripts/setup-torch-venv.sh (see --help)")

REPO = Path(__file__).resolve().parents[1]
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84)]
GN_GROUPS = {shape: groups for shape, groups in zip(SHAPES, (2, 4, 4, 4))}  # LeNet-GN's
# (norma's criterion group prefix, function name) -> the op's name in the table.
OPS = {
    ("batch_norm", "train forward"): "BN train forward",
    ("batch_norm", "train forward+backward"): "BN train fwd+bwd",
    ("batch_norm", "eval forward"): "BN eval forward",
    ("group_norm", "forward"): "GN forward",
    ("group_norm", "forward+backward"): "GN fwd+bwd",
    ("layer_norm", "forward"): "LN forward",
    ("layer_norm", "forward+backward"): "LN fwd+bwd",
}
BENCH_LINE = re.compile(r"^test (\w+) \[([\d, ]+)\][^/]*/(.+?) \.\.\. bench:\s+([\d,]+) ns/iter")


@dataclass
class Row:
    shape: tuple[int, ...]
    op: str
    torch_us: float
    norma_us: float

    @property
    def ratio(self) -> float:
        return self.torch_us / self.norma_us

    @property
    def norma_gbps(self) -> float:
        numel = 1
        for d in self.shape:
            numel *= d
        factor = 5 if "bwd" in self.op or "backward" in self.op else 2
        return factor * numel * 4 / (self.norma_us * 1e-6) / 1e9


def run_bench(cmd: list[str], threads: int) -> str:
    """criterion's stdout of `cmd` run with RAYON_NUM_THREADS=threads; exits on failure."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def norma_medians(threads: int, warm_up: float, measure: float) -> dict[tuple[tuple[int, ...], str], float]:
    """Median µs of each of norma's benchmarks at LeNet's shapes, keyed by (shape, op)."""
    shapes = "|".join(re.escape(str(list(s))) for s in SHAPES)
    cmd = ["cargo", "bench", "-p", "norma-kernels", "--bench", "batch_norm", "--bench", "group_norm", "--",
           "--output-format", "bencher", "--warm-up-time", str(warm_up), "--measurement-time", str(measure),
           f"^(batch|group|layer)_norm ({shapes})"]
    stdout = run_bench(cmd, threads)
    medians = {}
    for line in stdout.splitlines():
        m = BENCH_LINE.match(line)
        if m and (m[1], m[3]) in OPS:
            shape = tuple(int(d) for d in m[2].split(","))
            medians[(shape, OPS[(m[1], m[3])])] = int(m[4].replace(",", "")) / 1e3
    if len(medians) != len(SHAPES) * len(OPS):
        sys.exit(f"error: expected {len(SHAPES) * len(OPS)} results from criterion, parsed {len(medians)}:\n"
                 f"{stdout}")
    return medians


def norma_layer_medians(threads: int, warm_up: float, measure: float) -> dict[tuple[tuple[int, ...], str], float]:
    """Median µs of each of norma-layers' norm_layers benchmarks, keyed by (shape, function)."""
    cmd = ["cargo", "bench", "-p", "norma-layers", "--bench", "norm_layers", "--",
           "--output-format", "bencher", "--warm-up-time", str(warm_up), "--measurement-time", str(measure)]
    stdout = run_bench(cmd, threads)
    medians = {}
    for line in stdout.splitlines():
        m = BENCH_LINE.match(line)
        if m and m[1] == "norm_layers":
            shape = tuple(int(d) for d in m[2].split(","))
            medians[(shape, m[3])] = int(m[4].replace(",", "")) / 1e3
    if not medians:
        sys.exit(f"error: no results parsed from criterion:\n{stdout}")
    return medians


def torch_layer_ops(shape: tuple[int, ...]) -> dict[str, object]:
    """PyTorch's counterparts of norma's norm_layers benchmarks at one shape, keyed by the
    benchmark's function name."""
    from torch import nn

    torch.manual_seed(0)
    c, conv, eps = shape[1], len(shape) == 4, 1e-5
    dims, view = ((0, 2, 3), (1, c, 1, 1)) if conv else ((0,), (1, c))
    x = torch.randn(shape) * 2 + 3
    dy = torch.randn(shape)
    xg = x.clone().requires_grad_(True)

    def grads(f, params):
        return lambda: torch.autograd.grad(f(xg), (xg, *params), dy)

    def no_grad(f):
        def run():
            with torch.no_grad():
                f(x)
        return run

    class Renorm(nn.Module):
        """Ioffe (2017), Algorithm 1, with r and d treated as constants."""

        def __init__(self):
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
            self.register_buffer("running_mean", torch.zeros(c))
            self.register_buffer("running_var", torch.ones(c))

        def forward(self, inp):
            if not self.training:
                return F.batch_norm(inp, self.running_mean, self.running_var, self.weight, self.bias, False, 0.1, eps)
            mean, var = inp.mean(dims), inp.var(dims, unbiased=False)
            std, running_std = (var + eps).sqrt(), (self.running_var + eps).sqrt()
            r = (std.detach() / running_std).clamp(1 / 3, 3)
            d = ((mean.detach() - self.running_mean) / running_std).clamp(-5, 5)
            y = (inp - mean.reshape(view)) / std.reshape(view) * r.reshape(view) + d.reshape(view)
            with torch.no_grad():
                n = inp.numel() // c
                self.running_mean.lerp_(mean, 0.1)
                self.running_var.lerp_(var * n / (n - 1), 0.1)
            return y * self.weight.reshape(view) + self.bias.reshape(view)

    class Ghost(nn.BatchNorm1d):
        """composer's GhostBatchNorm: batch norm on each chunk of 16 samples."""

        def forward(self, inp):
            if not self.training:
                return F.batch_norm(inp, self.running_mean, self.running_var, self.weight, self.bias, False, 0.1, eps)
            return torch.cat([F.batch_norm(chunk, self.running_mean, self.running_var, self.weight, self.bias,
                                           True, 0.1, eps) for chunk in inp.split(16)])

    class Frozen(nn.Module):
        """torchvision's FrozenBatchNorm2d: fixed statistics and affine."""

        def __init__(self):
            super().__init__()
            for name, value in (("weight", torch.ones(c)), ("bias", torch.zeros(c)),
                                ("running_mean", torch.zeros(c)), ("running_var", torch.ones(c))):
                self.register_buffer(name, value)

        def forward(self, inp):
            scale = self.weight * (self.running_var + eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return inp * scale.reshape(view) + shift.reshape(view)

    layers = {
        "BatchNorm": nn.BatchNorm2d(c) if conv else nn.BatchNorm1d(c),
        "BatchRenorm": Renorm(),
        "GhostBatchNorm": Ghost(c),
        "FrozenBatchNorm": Frozen(),
        "RMSNorm": nn.RMSNorm(shape[1:]),
    }
    if conv:
        layers["InstanceNorm"] = nn.InstanceNorm2d(c)
    def in_mode(layer, training, f):
        """`f` with `layer` put in training or eval mode first (one module serves all three)."""
        def run():
            layer.train(training)
            return f()
        return run

    ops = {}
    for name, layer in layers.items():
        params = tuple(layer.parameters())
        ops[f"{name} train forward"] = in_mode(layer, True, no_grad(layer))
        ops[f"{name} train forward+backward"] = in_mode(layer, True, grads(layer, params))
        ops[f"{name} eval forward"] = in_mode(layer, False, no_grad(layer))
    return ops


def median_us(fn, seconds: float) -> float:
    """Median time of one call of `fn` in µs, over blocks of calls lasting >= 2 ms each."""
    end = time.perf_counter() + seconds / 4          # warm-up
    while time.perf_counter() < end:
        fn()
    t0 = time.perf_counter()
    fn()
    calls = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))
    per_call = []
    end = time.perf_counter() + seconds
    while len(per_call) < 15 or time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls)
    return statistics.median(per_call) * 1e6


def torch_ops(shape: tuple[int, ...]) -> dict[str, object]:
    """The PyTorch calls timed for one shape, keyed by the op's name in the table."""
    torch.manual_seed(0)
    c = shape[1]
    x = torch.randn(shape) * 2 + 3
    dy = torch.randn(shape)
    xg = x.clone().requires_grad_(True)
    w, b = torch.rand(c) + 0.5, torch.rand(c) - 0.5
    wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    running_mean, running_var = torch.zeros(c), torch.ones(c)
    ln_shape = shape[1:]
    lw, lb = torch.rand(ln_shape) + 0.5, torch.rand(ln_shape) - 0.5
    lwg, lbg = lw.clone().requires_grad_(True), lb.clone().requires_grad_(True)
    groups = GN_GROUPS[shape]

    def no_grad(f):
        def run():
            with torch.no_grad():
                f()
        return run

    def grads(f, params):
        return lambda: torch.autograd.grad(f(), (xg, *params), dy)

    return {
        "BN train forward": no_grad(lambda: F.batch_norm(x, running_mean, running_var, w, b, True, 0.1, 1e-5)),
        "BN train fwd+bwd": grads(lambda: F.batch_norm(xg, running_mean, running_var, wg, bg, True, 0.1, 1e-5),
                                  (wg, bg)),
        "BN eval forward": no_grad(lambda: F.batch_norm(x, running_mean, running_var, w, b, False, 0.1, 1e-5)),
        "GN forward": no_grad(lambda: F.group_norm(x, groups, w, b, 1e-5)),
        "GN fwd+bwd": grads(lambda: F.group_norm(xg, groups, wg, bg, 1e-5), (wg, bg)),
        "LN forward": no_grad(lambda: F.layer_norm(x, ln_shape, lw, lb, 1e-5)),
        "LN fwd+bwd": grads(lambda: F.layer_norm(xg, ln_shape, lwg, lbg, 1e-5), (lwg, lbg)),
    }


def print_table(threads: int, rows: list[Row], markdown: bool) -> None:
    print(f"\n{threads} thread(s): PyTorch {torch.__version__} vs norma, medians; ratio = PyTorch / norma "
          "(above 1: norma is faster)")
    if markdown:
        print("\n| shape | op | PyTorch µs | norma µs (GB/s) | ratio |\n| --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r.shape} | {r.op} | {r.torch_us:.0f} | {r.norma_us:.0f} ({r.norma_gbps:.1f}) "
                  f"| **{r.ratio:.2f}×** |")
        return
    print(f"{'shape':<18} {'op':<18} {'PyTorch µs':>11} {'norma µs':>10} {'norma GB/s':>11} {'ratio':>7}")
    for r in rows:
        print(f"{str(r.shape):<18} {r.op:<18} {r.torch_us:>11.1f} {r.norma_us:>10.1f} {r.norma_gbps:>11.1f} "
              f"{r.ratio:>6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="thread counts (default: 2 1)")
    ap.add_argument("--measurement-time", type=float, default=2.0, help="seconds per benchmark (default 2)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--layers", action="store_true",
                    help="whole layers (renorm, ghost, frozen, instance, RMS, BN) instead of the GN/LN/BN kernels")
    args = ap.parse_args()
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **MALLOC_ENV))
    crate = "norma-layers" if args.layers else "norma-kernels"
    build = subprocess.run(["cargo", "bench", "-p", crate, "--no-run"], cwd=REPO,
                           capture_output=True, text=True)
    if build.returncode != 0:
        sys.exit(f"error: building norma's benches failed:\n{build.stderr[-3000:]}")
    for threads in args.threads:
        measured = norma_layer_medians if args.layers else norma_medians
        norma = measured(threads, args.measurement_time / 2, args.measurement_time)
        torch.set_num_threads(threads)
        rows = []
        for shape in SHAPES:
            ops = torch_layer_ops(shape) if args.layers else torch_ops(shape)
            for op, fn in ops.items():
                if (shape, op) not in norma:
                    continue  # a mode norma's layer does not have (frozen batch norm trains nothing)
                rows.append(Row(shape, op, median_us(fn, args.measurement_time), norma[(shape, op)]))
        print_table(threads, rows, args.markdown)


if __name__ == "__main__":
    main()
