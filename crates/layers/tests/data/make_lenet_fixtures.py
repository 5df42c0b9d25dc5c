#!/usr/bin/env python3
"""Makes the PyTorch-made checkpoints that tests/torch_interop.rs loads into norma.

For each model (LeNet-BN, -GN, -LN; sigmoid, normalization before the activation, built by
scripts/norma_models.py with norma's layer names), from torch.manual_seed(2024): PyTorch's default
initialisation, 5 SGD steps (lr 1.0) on random batches of 32, so that weights, affine parameters
and running statistics are away from their initial values; then it writes

    lenet_<bn|gn|ln>_torch.safetensors     the model's state_dict()
    lenet_<bn|gn|ln>_torch_io.safetensors  'input' (4, 1, 28, 28) and PyTorch's eval-mode 'output' (4, 10)

next to this script; likewise `--models resnet8-batch` (the deep network of norma's
`models::resnet(8, NormKind::Batch)`, scripts/norma_models.py's `build_deep`, with norma's He-normal
initialisation `init_deep` and 5 SGD steps at lr 0.05) writes resnet8_batch_torch{,_io}.safetensors.
Run from the repository root with the venv of scripts/setup-torch-venv.sh:

    /tmp/norma-torch-venv/bin/python crates/layers/tests/data/make_lenet_fixtures.py [--models lenet-gn ...]

The files are committed. This script replaces make_lenet_bn_fixture.py, whose LeNet-BN files it
reproduces byte for byte on the same machine; PyTorch's results differ between CPUs by ~2e-6
(the committed LeNet-BN pair was made on an AVX2 machine), which the test, comparing norma with the
io file made alongside, does not see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3] / "scripts"))

try:
    import torch
    from safetensors.torch import save_file
    from torch import nn

    from norma_models import NORMALIZED, build, build_deep, init_deep
except ImportError as e:
    sys.exit(f"error: {e}; run with the venv of scripts/setup-torch-venv.sh (see --help)")


# The deep networks this script makes files for (the LeNet family is NORMALIZED).
DEEP = ("resnet8-batch",)


def make(model_name: str) -> None:
    torch.manual_seed(2024)
    deep = model_name in DEEP
    model = build_deep(model_name) if deep else build(model_name)
    if deep:
        init_deep(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05 if deep else 1.0)
    for _ in range(5):
        x = torch.rand(32, 1, 28, 28)
        y = torch.randint(0, 10, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    inputs = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        outputs = model(inputs)
    stem = model_name.replace("-", "_")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, HERE / f"{stem}_torch.safetensors")
    save_file({"input": inputs, "output": outputs}, HERE / f"{stem}_torch_io.safetensors")
    print(f"{model_name}: {len(model.state_dict())} tensors -> {stem}_torch.safetensors, {stem}_torch_io.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=NORMALIZED + DEEP, default=list(NORMALIZED))
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in args.models:
        make(name)


if __name__ == "__main__":
    main()
