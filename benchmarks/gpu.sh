#!/usr/bin/env bash
# The GPU targets in one command (under 9 minutes), for a machine with PyTorch (CUDA); Ray and a
# network are not needed. The package's light dependencies (zarr, numcodecs, donfig,
# google-crc32c, omegaconf, dask, partd, locket, tqdm, ...) are installed from WHEELS_DIR when given
# and missing.
#   benchmarks/gpu.sh IMAGES_DIR [OUT_DIR [extra benchmarks/gpu.py options]]
#   benchmarks/gpu.sh --smoke [OUT_DIR [options]]   # everything tiny: the plumbing, on a CPU
# IMAGES_DIR holds DIV2K 01.png and the photographs safelanding_5120x2880.jpg and
# fallenleaf_2560x1600.jpg. The target table is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
needs="import zarr, numcodecs, omegaconf, yaml, dask, tqdm, PIL, torch"
if [ -n "${WHEELS_DIR:-}" ] && ! "$python" -c "$needs" 2>/dev/null; then
    "$python" -m pip install --quiet --no-index --find-links "$WHEELS_DIR" "$WHEELS_DIR"/*.whl
fi
if ! "$python" -c "$needs"; then
    echo "error: a dependency is missing (see above); give WHEELS_DIR=FOLDER of wheels" >&2
    exit 2
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$python" -c "import torch; print('torch', torch.__version__, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
if [ "${1:-}" = "--smoke" ]; then
    out=${2:-runs/gpu-bench-smoke}
    exec "$python" benchmarks/gpu.py --smoke --out "$out" "${@:3}"
fi
images=${1:?usage: benchmarks/gpu.sh IMAGES_DIR [OUT_DIR [options]] | --smoke [OUT_DIR [options]]}
out=${2:-runs/gpu-bench}
exec "$python" benchmarks/gpu.py --images "$images" --out "$out" "${@:3}"
