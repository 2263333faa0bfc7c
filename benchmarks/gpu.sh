#!/usr/bin/env bash
# On a CUDA machine: the CUDA tests, then every network's GPU throughput (benchmarks/gpu.py), one table.
# Installs and downloads nothing; runs this checkout (PYTHONPATH), with whatever python3 holds PyTorch.
# The tests read the sample data from ../shared/data (AERIALSEG_SHARED points elsewhere: copy it along).
# About 5 minutes on an H100-class card (the benchmark stops adding rows after --budget seconds).
# Usage: bash benchmarks/gpu.sh [budget seconds, default 300]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to PyTorch')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# The CUDA-marked tests: all of them where the GIS stack (rasterio) is installed, else those of the networks.
if python3 -c "import rasterio" 2>/dev/null; then tests=tests; else
    echo "rasterio is not installed here: running the CUDA tests that need no rasters (tests/models)"; tests=tests/models
fi
timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda "$tests"
tests_status=$?

timeout $(( ${1:-300} + 120 )) python3 benchmarks/gpu.py --budget "${1:-300}"
bench_status=$?
echo "CUDA tests exit status: $tests_status; benchmark exit status: $bench_status"
exit $(( tests_status || bench_status ))
