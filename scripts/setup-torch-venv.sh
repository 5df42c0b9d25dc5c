#!/usr/bin/env bash
# Makes the Python venv that norma's PyTorch scripts run in (scripts/*.py and
# crates/layers/tests/data/*.py): torch, numpy and safetensors at the versions the fixtures and
# benchmarks in this repository were made with.
#
#   scripts/setup-torch-venv.sh            # makes /tmp/norma-torch-venv
#   NORMA_TORCH_VENV=~/venvs/torch scripts/setup-torch-venv.sh
#
# then run a script with "$NORMA_TORCH_VENV/bin/python" (by default
# /tmp/norma-torch-venv/bin/python). An existing venv is reused; pip only installs what is
# missing or at another version.
#
# PyPI's torch 2.15.0 for Linux x86-64 is the CUDA build: it pulls in ~3 GB of NVIDIA
# libraries, but runs on the CPU when there is no GPU, which is all norma's scripts use (they
# compare against PyTorch's CPU kernels).
set -euo pipefail

VENV=${NORMA_TORCH_VENV:-/tmp/norma-torch-venv}
PYTHON=${PYTHON:-python3}

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found (set PYTHON to a Python 3.10+ interpreter)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || {
        echo "error: could not make a venv in $VENV (Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    }
fi
"$VENV/bin/pip" install --quiet "torch==2.15.0" "numpy==2.4.6" "safetensors==0.8.0"
"$VENV/bin/python" -c "import torch, numpy, safetensors; \
print('torch', torch.__version__, '| numpy', numpy.__version__, '| safetensors', safetensors.__version__, \
'| CPU threads', torch.get_num_threads())"
echo "venv ready: $VENV/bin/python"
