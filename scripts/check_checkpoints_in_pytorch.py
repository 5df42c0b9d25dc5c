#!/usr/bin/env python3
"""Do norma's checkpoints load into PyTorch, and compute the same there?

1. Runs norma's test `norma_checkpoints_for_pytorch` (crates/layers/tests/torch_interop.rs) with
   NORMA_EXPORT_DIR set: it saves every model of the LeNet family -- lenet, lenet-bn, lenet-gn,
   lenet-ln; sigmoid or ReLU; normalization before or after the activation -- after two SGD
   steps, with its eval-mode outputs on 4 inputs; and `deep_checkpoints_for_pytorch` (same file)
   saves the deep networks likewise -- resnet8 and plain8 with no, batch, group and layer norm,
   resnet14 with batch norm (`resnet8-batch.safetensors`, ...).
2. Builds each model's PyTorch mirror (scripts/norma_models.py; `build_deep` for the deep
   networks), loads norma's file with
   load_state_dict(strict=True) -- no missing, unexpected or misshapen tensor -- and compares
   norma's eval-mode outputs with PyTorch's evaluation of the same weights in float64.

The reference is float64 because both float32 evaluations can be off by more than 1e-5 where a
normalization divides by a small spread: with ReLU before group norm, a group that ReLU mostly
zeroes has a spread of ~0.007, which amplifies the float32 rounding of the convolution before it
~140-fold (seen: lenet-gn_relu_after, norma 3.8e-5 and PyTorch float32 1.6e-5 from float64). A
mirror built differently is off by far more than --tol (1e-4): measured, another group count in
one layer 4e-3 to 7e-2, a normalization on the other side of its activation 0.3 to 4.4. The table
shows PyTorch float32's own difference from float64 for comparison.

Run from the repository root with the venv that scripts/setup-torch-venv.sh makes:

    /tmp/norma-torch-venv/bin/python scripts/check_checkpoints_in_pytorch.py
    /tmp/norma-torch-venv/bin/python scripts/check_checkpoints_in_pytorch.py --dir DIR --no-export

Exits with status 1 if a file does not load strictly or an output of norma differs from float64
by more than --tol.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import torch
    from safetensors.torch import load_file

    from norma_models import build, build_deep
except ImportError as e:
    sys.exit(f"error: {e}; run with the venv of scripts/setup-torch-venv.sh (see --help)")

REPO = Path(__file__).resolve().parents[1]


def export(directory: Path) -> None:
    """Has norma write its checkpoints into `directory`."""
    cmd = ["cargo", "test", "-p", "norma-layers", "--release", "--test", "torch_interop", "--",
           "--exact", "norma_checkpoints_for_pytorch", "deep_checkpoints_for_pytorch"]
    env = dict(os.environ, NORMA_EXPORT_DIR=str(directory))
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")


def check(weights: Path, tol: float) -> tuple[str, str, bool]:
    """Loads one checkpoint into its PyTorch mirror: (variant, verdict, ok)."""
    variant = weights.name.removesuffix(".safetensors")
    if variant.startswith(("resnet", "plain")):
        model = build_deep(variant)
    else:
        model_name, activation, placement = variant.split("_")
        model = build(model_name, activation, placement)
    try:
        model.load_state_dict(load_file(weights), strict=True)
    except RuntimeError as e:
        return variant, f"load_state_dict(strict=True) failed: {e}", False
    io = load_file(weights.with_name(f"{variant}_io.safetensors"))
    model.eval()
    with torch.no_grad():
        out32 = model(io["input"]).double()
        out64 = model.double()(io["input"].double())
    ours = (io["output"].double() - out64).abs().max().item()
    theirs = (out32 - out64).abs().max().item()
    verdict = (f"{len(model.state_dict()):3d} tensors, strict load ok, max |output - float64|: "
               f"norma {ours:.1e}, PyTorch float32 {theirs:.1e}")
    return variant, verdict, ours <= tol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="folder for norma's files (default: a new temporary folder)")
    ap.add_argument("--no-export", action="store_true", help="check the files already in --dir, do not run cargo")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest difference of norma's outputs from float64 accepted (default 1e-4)")
    args = ap.parse_args()
    if args.no_export and args.dir is None:
        ap.error("--no-export needs --dir")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="norma-checkpoints-"))
    directory.mkdir(parents=True, exist_ok=True)
    if not args.no_export:
        export(directory)
    files = sorted(p for p in directory.glob("*.safetensors") if not p.name.endswith("_io.safetensors"))
    if not files:
        sys.exit(f"error: no checkpoint in {directory}")
    torch.set_num_threads(2)
    failures = 0
    for weights in files:
        variant, verdict, ok = check(weights, args.tol)
        failures += not ok
        print(f"{variant:<26} {verdict}{'' if ok else '  <-- FAILED'}")
    print(f"{len(files) - failures} of {len(files)} checkpoints load into PyTorch with strict=True "
          f"and give norma's outputs within {args.tol:g} of float64 ({directory})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
