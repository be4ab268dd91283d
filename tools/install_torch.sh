#!/usr/bin/env bash
# Install the right build of PyTorch into a virtual environment, before the package itself
# (`make setup` runs it):
#
#   tools/install_torch.sh .venv/bin/python [auto|cpu|cuda]
#
# - an importable torch is kept, whatever its build: a CUDA build you installed is never
#   replaced (a CPU build on a machine with a GPU gets one line saying how to change it);
# - no torch, no GPU (or `cpu`): a CPU build, first from local wheels (pip's find-links, no
#   network), else from PyTorch's CPU index — never the multi-GB CUDA build;
# - no torch and a GPU (nvidia-smi lists one, or `cuda`): the default build from PyPI, which
#   on Linux is a CUDA build.
set -euo pipefail

python="$1"
want="${2:-auto}"
pip=("$python" -m pip install --quiet --disable-pip-version-check)
cpu_index="https://download.pytorch.org/whl/cpu"

if [[ "$want" == auto ]]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        want=cuda
    else
        want=cpu
    fi
fi

if build=$("$python" -c 'import torch; print(torch.__version__, torch.version.cuda or "cpu")' 2>/dev/null); then
    read -r version cuda <<<"$build"
    if [[ "$cuda" != cpu ]]; then
        echo "torch $version (CUDA $cuda) is installed: kept"
    elif [[ "$want" == cuda ]]; then
        echo "torch $version is a CPU build on a machine with a GPU: kept; for GPU training install a" \
            "CUDA build, e.g. $python -m pip install --force-reinstall torch" \
            "--index-url https://download.pytorch.org/whl/cu128"
    else
        echo "torch $version (CPU build) is installed: kept"
    fi
    exit 0
fi

if [[ "$want" == cuda ]]; then
    echo "installing torch from PyPI (a CUDA build) for this machine's GPU"
    "${pip[@]}" torch
elif "${pip[@]}" --no-index --no-deps torch 2>/dev/null; then
    # a local wheel (pip's find-links): torch itself offline, its dependencies as usual
    "${pip[@]}" torch
    echo "installed a CPU build of torch from local wheels"
else
    echo "installing a CPU build of torch from $cpu_index"
    "${pip[@]}" --retries 1 --timeout 30 torch --index-url "$cpu_index" --extra-index-url https://pypi.org/simple
fi
"$python" -c 'import torch; print("torch", torch.__version__, "installed:", "CUDA " + torch.version.cuda if torch.version.cuda else "CPU build")'
