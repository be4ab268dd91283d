#!/usr/bin/env bash
# The GPU benchmark in one command, for a machine with PyTorch (CUDA) and the package's light
# dependencies (numpy, zarr, numcodecs, omegaconf, pillow, dask); Ray is not needed.
#   benchmarks/gpu.sh IMAGES_DIR [OUT_DIR]      IMAGES_DIR holds 01.png (DIV2K), kodim01.png and safelanding_5120x2880.jpg
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:?usage: benchmarks/gpu.sh IMAGES_DIR [OUT_DIR]}
out=${2:-runs/gpu-bench}
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} python3 benchmarks/gpu.py --images "$images" --out "$out"
