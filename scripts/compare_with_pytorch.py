#!/usr/bin/env python3
"""Do norma's training steps give PyTorch's weights?

1. Builds d2l's LeNet-BN (or LeNet) in PyTorch, Xavier-uniform weights from a seed, and saves
   its state_dict as `init.safetensors`.
2. Runs `cargo xtask train-lenet --model M --init init.safetensors --no-shuffle --steps K`
   (plain SGD, mean cross-entropy, batch 256, batches in file order).
3. Trains the PyTorch model on the same K batches with torch.optim.SGD.
4. Compares every tensor of the two state_dicts (weights and running statistics) and loads
   norma's file back into PyTorch with load_state_dict(strict=True).

Run from the repository root with the venv that scripts/setup-torch-venv.sh makes:

    /tmp/norma-torch-venv/bin/python scripts/compare_with_pytorch.py --model lenet-bn --steps 50

The PyTorch models are those of scripts/norma_models.py. scripts/check_checkpoints_in_pytorch.py
checks the strict loading for every model of the LeNet family (lenet-gn, lenet-ln, ReLU, ...),
which `cargo xtask train-lenet` does not train.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from torch import nn

    from norma_models import build
except ImportError as e:
    sys.exit(f"error: {e}; run with the venv of scripts/setup-torch-venv.sh (see --help)")


def idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(raw, np.uint8, offset=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lenet", "lenet-bn"], default="lenet-bn")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = ap.parse_args()
    lr = args.lr if args.lr is not None else (1.0 if args.model == "lenet-bn" else 0.9)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    model = build(args.model)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)

    work = Path(tempfile.mkdtemp(prefix="norma-vs-torch-"))
    init = work / "init.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, init)
    out = work / "norma"
    cmd = ["cargo", "xtask", "train-lenet", "--model", args.model, "--init", str(init), "--no-shuffle",
           "--steps", str(args.steps), "--lr", str(lr), "--out", str(out), "--data-dir", str(args.data_dir)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def find(name: str) -> Path:
        for candidate in (args.data_dir / name, args.data_dir / f"{name}.gz"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(name)

    images = torch.from_numpy(idx(find("train-images-idx3-ubyte")).astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    labels = torch.from_numpy(idx(find("train-labels-idx1-ubyte")).astype(np.int64))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for step in range(args.steps):
        x = images[step * 256:(step + 1) * 256]
        y = labels[step * 256:(step + 1) * 256]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ours = load_file(out / f"{args.model}.safetensors")
    theirs = model.state_dict()
    print(f"{args.model}, {args.steps} SGD steps at lr {lr}, batches in file order")
    print(f"{'tensor':<26} {'max |diff|':>12} {'max |value|':>12} {'rel':>10}")
    worst = 0.0
    for name, t in theirs.items():
        a, b = ours[name].double(), t.double()
        diff = (a - b).abs().max().item()
        scale = b.abs().max().item()
        worst = max(worst, diff / max(scale, 1e-12))
        print(f"{name:<26} {diff:>12.3e} {scale:>12.3e} {diff / max(scale, 1e-12):>10.2e}")
    print(f"worst relative difference {worst:.3e}")
    check = build(args.model)
    check.load_state_dict(ours, strict=True)
    print("norma's checkpoint loads into PyTorch with load_state_dict(strict=True)")


if __name__ == "__main__":
    main()
