"""How much faster is a norma training step than PyTorch's, on this machine, right now?

For each thread count, runs back to back (norma, PyTorch, norma, PyTorch, ...):

- norma: `cargo xtask bench --model M --threads T` (or a prebuilt binary, `--xtask PATH`):
  median wall time of one training step of LeNet / LeNet-BN at batch 256 (forward,
  cross-entropy, backward, SGD update) on the first 16 Fashion-MNIST training batches;
- PyTorch: the same step (same models, d2l's Xavier-uniform init, plain SGD at lr 0.9 / 1.0,
  mean cross-entropy, `zero_grad(set_to_none=True)`) on the same 16 batches, timed the same way
  (warm-up steps, then the median of the timed steps), in a fresh process with
  `torch.set_num_threads(T)`.

and prints each median and the ratio PyTorch ms / norma ms (above 1: norma is faster). Each
pair is repeated `--rounds` times and the ratio of the medians over rounds is reported.

Deep networks (`--model resnet20-batch --batch-size 128`, any name of scripts/norma_models.py's
`build_deep`) are timed the same way with SGD at lr 0.1 and momentum 0.9 (`cargo xtask bench
--net`; PyTorch's He-normal init as norma's), and the memory is compared too: norma's peak
resident memory while stepping (the whole process, its dataset already freed) against what the
steps add to PyTorch's process (its peak while stepping minus its resident size before the model
was built). Both peaks are Linux's VmHWM, reset through /proc/self/clear_refs before the steps.

Machines are shared: run it under the project's lock so that nothing compiles meanwhile,

    flock /tmp/norma-cargo.lock /tmp/norma-torch-venv/bin/python scripts/bench_vs_pytorch.py

Environment variables (NORMA_SIMD=avx2, ...) are passed through to norma unchanged; `--simd`
sets NORMA_SIMD for the norma runs only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

MODELS = ("lenet", "lenet-bn")
LR = {"lenet": 0.9, "lenet-bn": 1.0}
DEEP_LR, DEEP_MOMENTUM = 0.1, 0.9
BATCHES = 16


def is_deep(name: str) -> bool:
    return name not in MODELS


def model_name(name: str) -> str:
    """argparse type: lenet, lenet-bn or a deep network norma_models knows."""
    if name in MODELS:
        return name
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from norma_models import parse_deep
        parse_deep(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return name


def reset_peak() -> None:
    """Sets VmHWM back to the current resident size (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def status_mib(field: str) -> float:
    """VmRSS / VmHWM of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def read_idx(path: Path):
    import numpy as np

    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(raw, np.uint8, offset=8)


def find(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.exists():
            return candidate
    sys.exit(f"{name} not found in {data_dir}")


def torch_model(name: str):
    """d2l's LeNet / LeNet-BN, as norma builds them (sigmoid, 2x2 average pooling)."""
    from torch import nn

    bn = name == "lenet-bn"
    act, pool = nn.Sigmoid, lambda: nn.AvgPool2d(2, 2)
    layers = [("conv1", nn.Conv2d(1, 6, 5, padding=0 if bn else 2))]
    layers += [("bn1", nn.BatchNorm2d(6))] if bn else []
    layers += [("act1", act()), ("pool1", pool()), ("conv2", nn.Conv2d(6, 16, 5))]
    layers += [("bn2", nn.BatchNorm2d(16))] if bn else []
    layers += [("act2", act()), ("pool2", pool()), ("flatten", nn.Flatten())]
    layers += [("fc1", nn.Linear(256 if bn else 400, 120))]
    layers += [("bn3", nn.BatchNorm1d(120))] if bn else []
    layers += [("act3", act()), ("fc2", nn.Linear(120, 84))]
    layers += [("bn4", nn.BatchNorm1d(84))] if bn else []
    layers += [("act4", act()), ("fc3", nn.Linear(84, 10))]
    model = nn.Sequential(OrderedDict(layers))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
    return model


def torch_worker(args) -> None:
    """Times PyTorch's step in this process and prints one JSON line {model: median ms}."""
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    n = BATCHES * args.batch_size
    images = read_idx(find(args.data_dir, "train-images-idx3-ubyte"))[:n]
    labels = read_idx(find(args.data_dir, "train-labels-idx1-ubyte"))[:n]
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    batches = [(x[i:i + args.batch_size].contiguous(), y[i:i + args.batch_size].contiguous())
               for i in range(0, n, args.batch_size)]
    result = {}
    for name in args.model:
        before = status_mib("VmRSS")
        reset_peak()
        if is_deep(name):
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from norma_models import build_deep, init_deep
            model = build_deep(name)
            init_deep(model)
            opt = torch.optim.SGD(model.parameters(), lr=DEEP_LR, momentum=DEEP_MOMENTUM)
        else:
            model = torch_model(name)
            opt = torch.optim.SGD(model.parameters(), lr=LR[name])
        model.train()
        loss_fn = nn.CrossEntropyLoss()
        times = []
        for i in range(args.warmup + args.steps):
            xb, yb = batches[i % len(batches)]
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)
        result[name] = {"ms": statistics.median(times), "mib": status_mib("VmHWM") - before}
    print(json.dumps(result))


def run_torch(args, threads: int) -> dict:
    """{model: {"ms", "mib"}}; like norma's side, one process per deep network (a network's
    memory is measured from a process's resident size before it was built, which in a process
    that already stepped another network includes that network's freed but retained memory), one
    for the LeNets."""
    lenets = [m for m in args.model if not is_deep(m)]
    groups = [[m] for m in args.model if is_deep(m)] + ([lenets] if lenets else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = {}
    for models in groups:
        cmd = [sys.executable, __file__, "--torch-worker", "--threads", str(threads),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--data-dir", str(args.data_dir),
               "--model", *models]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def run_norma(args, threads: int) -> dict:
    """{model: {"ms": median step, "mib": peak resident memory}}; one process per deep network,
    one for the LeNets (their peak is the process's over both)."""
    lenets = [m for m in args.model if not is_deep(m)]
    invocations = [["--net", m] for m in args.model if is_deep(m)]
    if lenets:
        invocations.append(["--model", lenets[0] if len(lenets) == 1 else "both"])
    env = dict(os.environ)
    if args.simd:
        env["NORMA_SIMD"] = args.simd
    result = {}
    for which in invocations:
        cmd = args.xtask + ["bench", "--threads", str(threads), "--steps", str(args.steps),
                            "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                            "--data-dir", str(args.data_dir), *which]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        peak = re.search(r"^peak resident memory while stepping: ([0-9.]+) MiB", out, re.M)
        for line in out.splitlines():
            m = re.match(r"^(\S+)\s+([0-9.]+)\s", line)
            if m and m.group(1) in args.model:
                result[m.group(1)] = {"ms": float(m.group(2)),
                                      "mib": float(peak.group(1)) if peak else float("nan")}
    missing = set(args.model) - set(result)
    if missing:
        sys.exit(f"no timing for {missing} in the output of norma's bench")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", nargs="+", type=model_name, default=list(MODELS),
                    help="lenet, lenet-bn, or a deep network: resnet<6n+2>-<norm>, plain<6n+2>-<norm>")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="norma/PyTorch pairs per thread count")
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--xtask", default=None,
                    help="a built xtask binary (default: `cargo xtask`, which builds it first)")
    ap.add_argument("--simd", default=None, help="NORMA_SIMD for the norma runs (avx512, avx2, portable)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return
    args.model = list(dict.fromkeys(args.model))
    args.xtask = [args.xtask] if args.xtask else ["cargo", "xtask"]
    if args.xtask == ["cargo", "xtask"]:
        subprocess.run(["cargo", "build", "--release", "-p", "xtask"], check=True)

    print(f"batch {args.batch_size}, median of {args.steps} steps after {args.warmup} warm-up, "
          f"{args.rounds} rounds; NORMA_SIMD={args.simd or os.environ.get('NORMA_SIMD', '(auto)')}")
    print(f"{'model':<14} {'threads':>7} {'norma ms':>9} {'torch ms':>9} {'ratio':>6} "
          f"{'norma MiB':>10} {'torch +MiB':>11}   per round", flush=True)
    for threads in args.threads:
        norma = {m: [] for m in args.model}
        torch = {m: [] for m in args.model}
        for _ in range(args.rounds):
            for m, t in run_norma(args, threads).items():
                norma[m].append(t)
            for m, t in run_torch(args, threads).items():
                torch[m].append(t)
        for m in args.model:
            a = statistics.median(r["ms"] for r in norma[m])
            b = statistics.median(r["ms"] for r in torch[m])
            ours = statistics.median(r["mib"] for r in norma[m])
            theirs = statistics.median(r["mib"] for r in torch[m])
            rounds = " ".join(f"{t['ms'] / n['ms']:.2f}" for n, t in zip(norma[m], torch[m]))
            print(f"{m:<14} {threads:>7} {a:>9.2f} {b:>9.2f} {b / a:>5.2f}x {ours:>10.1f} {theirs:>11.1f}"
                  f"   {rounds}", flush=True)


if __name__ == "__main__":
    main()
