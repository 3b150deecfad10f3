#!/usr/bin/env bash
# GPU check of minikto: the CuPy tests, then the step benchmark on CuPy against torch CUDA.
#
# Run from anywhere on a Linux machine with an NVIDIA GPU and a CUDA 12 driver:
#
#     bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check/
#
# It writes OUT_DIR/{env.txt,pytest_cupy.txt,bench_gpu.txt,bench_gpu.json}. Budget: under
# 10 minutes once the packages are installed (each stage has its own time limit).
# Set MINIKTO_SKIP_INSTALL=1 to use the packages already installed (an offline machine),
# MINIKTO_SKIP_TORCH=1 to leave torch out (the benchmark then times CuPy alone).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
status=0

say() { printf '\n== %s\n' "$*"; }

say "machine"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi not found"
  "$PY" --version
} 2>&1 | tee "$OUT/env.txt"

if [ "${MINIKTO_SKIP_INSTALL:-0}" != "1" ]; then
  say "install minikto with the test and gpu extras (cupy-cuda12x)"
  "$PY" -m pip install -q -e ".[test,gpu]" || echo "pip install failed; going on with what is installed"
fi

# CuPy compiles its kernels at run time (NVRTC). Without a CUDA toolkit on the machine it
# needs the toolkit's pip wheels, which CuPy 14 pulls in through its [ctk] extra.
cupy_works() {
  "$PY" -c "import cupy; x = cupy.arange(8.0); assert float((x * x).sum()) == 140.0" 2>/dev/null
}
if ! cupy_works && [ "${MINIKTO_SKIP_INSTALL:-0}" != "1" ]; then
  say "CuPy cannot compile a kernel; installing the CUDA toolkit wheels (cupy-cuda12x[ctk])"
  "$PY" -m pip install -q "cupy-cuda12x[ctk]>=13.0" || true
fi
if ! cupy_works; then
  echo "CuPy does not work on this machine:"
  "$PY" -c "import cupy; cupy.show_config(); cupy.arange(3).sum()" 2>&1 | tail -20
  exit 1
fi
"$PY" -c "import cupy; cupy.show_config()" >>"$OUT/env.txt" 2>&1

torch_cuda() {
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
}
if [ "${MINIKTO_SKIP_TORCH:-0}" != "1" ] && ! torch_cuda && [ "${MINIKTO_SKIP_INSTALL:-0}" != "1" ]; then
  say "install torch with CUDA for the comparison (the bench extra; PyPI's Linux wheel has CUDA)"
  timeout 240 "$PY" -m pip install -q -e ".[bench]" || echo "torch install failed: torch columns will be skipped"
fi
torch_cuda && "$PY" -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$OUT/env.txt"

say "tests on CuPy (the conftest runs every backend test on cupy when a GPU is present)"
timeout 200 "$PY" -m pytest -q -p no:cacheprovider -k cupy 2>&1 | tee "$OUT/pytest_cupy.txt"
test "${PIPESTATUS[0]}" -eq 0 || { echo "CuPy tests failed"; status=1; }

say "step benchmark: CuPy against torch CUDA on the same card"
timeout 240 "$PY" benchmarks/bench_step.py --backend cupy --sizes tiny,small,medium,large,xlarge \
  --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
test "${PIPESTATUS[0]}" -eq 0 || { echo "benchmark failed"; status=1; }

say "done: results in $OUT/ (exit status $status)"
exit "$status"
