#!/usr/bin/env python3
"""Do norma's training steps give PyTorch's weights?

1. Builds d2l's LeNet-BN (or LeNet) in PyTorch, Xavier-uniform weights from a seed, and saves
   its state_dict as `init.safetensors`.
2. Runs `cargo xtask train-lenet --model M --init init.safetensors --no-shuffle --steps K`
   (plain SGD, mean cross-entropy, batch 256, batches in file order).
3. Trains the PyTorch model on the same K batches with torch.optim.SGD.
4. Compares every tensor of the two state_dicts (weights and running statistics) and loads
   norma's file back into PyTorch with load_state_dict(strict=True).

For a deep network (`--model resnet8-batch`, `plain20-none`, ...: norma's `models::DeepNet`
names) the same comparison runs on norma's side through the example
crates/layers/examples/deep_steps.rs instead of xtask: the PyTorch network of
scripts/norma_models.py's `build_deep` with norma's initialisation (`init_deep`: He-normal
fan-out convolutions), SGD with momentum (--momentum, default 0.9; lr default 0.05), batches of
--batch (default 128) images in file order, handed to norma in a safetensors file; it also
compares the losses of every step.

Run from the repository root with the venv that scripts/setup-torch-venv.sh makes:

    /tmp/norma-torch-venv/bin/python scripts/compare_with_pytorch.py --model lenet-bn --steps 50
    /tmp/norma-torch-venv/bin/python scripts/compare_with_pytorch.py --model resnet8-batch --steps 20

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

    from norma_models import build, build_deep, init_deep, parse_deep
except ImportError as e:
    sys.exit(f"error: {e}; run with the venv of scripts/setup-torch-venv.sh (see --help)")


def idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(raw, np.uint8, offset=8)


def model_name(name: str) -> str:
    """`lenet`, `lenet-bn` or a name `parse_deep` accepts."""
    if name in ("lenet", "lenet-bn"):
        return name
    try:
        parse_deep(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return name


def fashion_mnist(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images (N, 1, 28, 28) in [0, 1] and labels, in file order."""
    def find(name: str) -> Path:
        for candidate in (data_dir / name, data_dir / f"{name}.gz"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(name)

    images = torch.from_numpy(idx(find("train-images-idx3-ubyte")).astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    labels = torch.from_numpy(idx(find("train-labels-idx1-ubyte")).astype(np.int64))
    return images, labels


def report(ours: dict, theirs: dict, header: str) -> float:
    """Prints every tensor's difference; returns the worst relative one."""
    print(header)
    print(f"{'tensor':<36} {'max |diff|':>12} {'max |value|':>12} {'rel':>10}")
    worst = 0.0
    for key, t in theirs.items():
        a, b = ours[key].double(), t.double()
        diff = (a - b).abs().max().item()
        scale = b.abs().max().item()
        worst = max(worst, diff / max(scale, 1e-12))
        print(f"{key:<36} {diff:>12.3e} {scale:>12.3e} {diff / max(scale, 1e-12):>10.2e}")
    print(f"worst relative difference {worst:.3e}")
    return worst


def train_torch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace,
                lr: float) -> list[float]:
    """`args.steps` SGD steps with momentum on the batches in order, in the model's dtype."""
    dtype = next(model.parameters()).dtype
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum)
    model.train()
    losses = []
    for step in range(args.steps):
        x = images[step * args.batch:(step + 1) * args.batch].to(dtype)
        y = labels[step * args.batch:(step + 1) * args.batch]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def compare_deep(args: argparse.Namespace) -> None:
    """The deep-network comparison (see the module docstring).

    A ReLU network with batch norm does not train reproducibly in float32: its batch norms'
    beta gradients are sums over N*H*W values that nearly cancel (the next batch norm removes
    the mean again), and ReLUs switching on or off make rounding differences grow from step to
    step. So the same PyTorch network is also trained in float64 from the same weights, and
    each tensor is shown with norma's and PyTorch float32's difference from it: norma matches
    PyTorch when its distance to float64 is of the size of PyTorch's own."""
    lr = args.lr if args.lr is not None else 0.05
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    model = build_deep(args.model)
    init_deep(model)
    work = Path(tempfile.mkdtemp(prefix="norma-vs-torch-"))
    init = work / "init.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, init)
    model64 = build_deep(args.model).double()
    model64.load_state_dict(model.state_dict())
    images, labels = fashion_mnist(args.data_dir)
    count = args.steps * args.batch
    images, labels = images[:count].contiguous(), labels[:count]
    batches = work / "batches.safetensors"
    save_file({"images": images, "labels": labels.float()}, batches)
    out = work / "norma.safetensors"
    cmd = ["cargo", "run", "--release", "-q", "-p", "norma-layers", "--example", "deep_steps", "--",
           "--net", args.model, "--init", str(init), "--batches", str(batches), "--batch", str(args.batch),
           "--steps", str(args.steps), "--lr", str(lr), "--momentum", str(args.momentum), "--out", str(out)]
    run = subprocess.run(cmd, check=True, capture_output=True, text=True)
    norma_losses = [float(line.split()[-1]) for line in run.stdout.splitlines() if line.startswith("step ")]
    if len(norma_losses) != args.steps:
        sys.exit(f"error: norma printed {len(norma_losses)} losses for {args.steps} steps")
    torch_losses = train_torch(model, images, labels, args, lr)
    f64_losses = train_torch(model64, images, labels, args, lr)

    ours, theirs, exact = load_file(out), model.state_dict(), model64.state_dict()
    print(f"{args.model}, {args.steps} SGD steps at lr {lr}, momentum {args.momentum}, batch {args.batch}, "
          f"batches in file order; max |diff| / max |value| of each tensor")
    print(f"{'tensor':<38} {'norma-torch32':>13} {'norma-torch64':>13} {'torch32-torch64':>15}")
    worst = [0.0, 0.0, 0.0]
    sq = [0.0, 0.0, 0.0]
    total = 0.0
    for key, t in exact.items():
        a, b, c = ours[key].double(), theirs[key].double(), t.double()
        scale = max(c.abs().max().item(), 1e-12)
        rel = [(a - b).abs().max().item() / scale, (a - c).abs().max().item() / scale,
               (b - c).abs().max().item() / scale]
        worst = [max(w, r) for w, r in zip(worst, rel)]
        if t.is_floating_point():
            sq = [q + d for q, d in zip(sq, [((a - b) ** 2).sum().item(), ((a - c) ** 2).sum().item(),
                                              ((b - c) ** 2).sum().item()])]
            total += (c ** 2).sum().item()
        print(f"{key:<38} {rel[0]:>13.2e} {rel[1]:>13.2e} {rel[2]:>15.2e}")
    print(f"{'worst tensor':<38} {worst[0]:>13.2e} {worst[1]:>13.2e} {worst[2]:>15.2e}")
    whole = [(q / total) ** 0.5 for q in sq]
    print(f"{'whole state, ||diff|| / ||value||':<38} {whole[0]:>13.2e} {whole[1]:>13.2e} {whole[2]:>15.2e}")
    print(f"{'step':>4} {'norma loss':>12} {'torch32 loss':>12} {'torch64 loss':>12}")
    for step, (a, b, c) in enumerate(zip(norma_losses, torch_losses, f64_losses), 1):
        print(f"{step:>4} {a:>12.6f} {b:>12.6f} {c:>12.6f}")
    check = build_deep(args.model)
    check.load_state_dict(ours, strict=True)
    print("norma's checkpoint loads into PyTorch with load_state_dict(strict=True)")
    print(f"after {args.steps} steps: worst tensor {worst[0]:.3e} from PyTorch float32; from float64 norma "
          f"{worst[1]:.3e}, PyTorch float32 {worst[2]:.3e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=model_name, default="lenet-bn",
                    help="lenet, lenet-bn, or a deep network: resnet<6n+2>-<norm>, plain<6n+2>-<norm>")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--momentum", type=float, default=0.9, help="deep networks only (default 0.9)")
    ap.add_argument("--batch", type=int, default=128, help="deep networks only (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = ap.parse_args()
    if args.model not in ("lenet", "lenet-bn"):
        compare_deep(args)
        return
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

    images, labels = fashion_mnist(args.data_dir)
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
    report(ours, model.state_dict(),
           f"{args.model}, {args.steps} SGD steps at lr {lr}, batches in file order")
    check = build(args.model)
    check.load_state_dict(ours, strict=True)
    print("norma's checkpoint loads into PyTorch with load_state_dict(strict=True)")


if __name__ == "__main__":
    main()
