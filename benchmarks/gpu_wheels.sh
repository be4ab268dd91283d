#!/usr/bin/env bash
# Wheels of the package's light dependencies for a GPU machine without a network, for
# benchmarks/gpu.sh's WHEELS_DIR (about 4 MB; PyTorch, NumPy and Pillow are taken as present there):
#   benchmarks/gpu_wheels.sh WHEELS_DIR [PYTHON_VERSION]   # e.g. 3.12, the GPU machine's Python
# Run it on a machine with a network; Linux x86-64 wheels for that Python version are fetched.
set -euo pipefail
out=${1:?usage: benchmarks/gpu_wheels.sh WHEELS_DIR [PYTHON_VERSION]}
version=${2:-3.12}
python=${PYTHON:-python3}
"$python" -m pip download --quiet --disable-pip-version-check --dest "$out" \
    --only-binary=:all: --python-version "$version" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    zarr==3.1.6 numcodecs==0.17.1 omegaconf==2.4.0 "dask>=2024.1" "tqdm>=4.66" pyyaml  # as checked
rm -f "$out"/numpy-*.whl  # the machine's own NumPy stays (PyTorch was built against it)
ls "$out"
