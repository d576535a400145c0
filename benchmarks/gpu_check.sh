#!/usr/bin/env bash
# The prepared GPU run of issue 10, one command from the repository root:
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine (about 4-5 minutes on one H200)
#   bash benchmarks/gpu_check.sh --fetch-wheels # beforehand, where PyPI is reachable: suite2p and
#                                               # its pure needs into .whl/ for a machine without
#                                               # network (carry .whl along)
#
# Steps, each under its own time limit so that one stuck step still leaves the others' figures:
#   1. install what is missing: CuPy for the driver's CUDA major version (nvidia-smi), torch with
#      CUDA and suite2p for the peer column (benchmarks/peers_env.sh, ../shared/reference/peers.md);
#      from .whl/ when it exists, else from PyPI; blockreg itself runs from the checkout
#      (PYTHONPATH), so the machine's numpy/scipy are used as they are;
#   2. the CuPy parity tests (tests/unit/reg/test_gpu_parity.py);
#   3. the GPU benchmark (benchmarks/bench_gpu.py): 2-D 512x512 grid 8x8 maxshift 15, then the
#      60x1080x1120 volume, grid (13,24,24), maxshift (3,30,30), with suite2p on CUDA;
#   4. the CPU figure of the volume (one volume, its own time limit).
# Everything lands in $OUT (the device tool's result folder) or benchmarks/out/gpu/:
# gpu_check.log, parity.txt, bench_gpu_2d.json, bench_gpu_3d.json, bench_gpu_3d_cpu.json, env.txt.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PY="${PYTHON:-python3}"
WHEELS="$REPO/.whl"

if [ "${1:-}" = "--fetch-wheels" ]; then
    # Python 3.12 manylinux wheels (the GPU image's Python); suite2p and cellpose without their
    # GUI/heavy requirements, as peers_env.sh installs them.
    mkdir -p "$WHEELS"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" \
        "suite2p==1.1.0" "cellpose==4.2.1.1" natsort fastremap roifile fill-voids rastermap \
        segment-anything
    du -sh "$WHEELS"
    exit 0
fi

OUT_DIR="${OUT:-$REPO/benchmarks/out/gpu}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
SITE=/tmp/blockreg-gpu-site
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$REPO/common:$REPO/tests:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
step() { echo; echo "=== $(( $(date +%s) - started ))s: $*"; }

have() { "$PY" -c "$1" >/dev/null 2>&1; }
install() {   # install NAME... from .whl/ if present, else from PyPI, into $SITE
    if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
            --find-links "$WHEELS" "$@"
    else
        "$PY" -m pip install -q --no-deps --target "$SITE" "$@"
    fi
}

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
    echo "no NVIDIA GPU (nvidia-smi failed): nothing to check"; exit 1; }
CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\)\..*/\1/p' | head -1)
echo "driver supports CUDA ${CUDA_MAJOR:-?}"

if ! have "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0"; then
    step "installing cupy-cuda${CUDA_MAJOR}x"
    timeout 240 "$PY" -m pip install -q --target "$SITE" "cupy-cuda${CUDA_MAJOR}x>=14" ||
        echo "could not install CuPy"
fi
if ! have "import torch; assert torch.cuda.is_available()"; then
    step "installing torch (CUDA) for suite2p"
    timeout 240 "$PY" -m pip install -q --target "$SITE" torch || echo "could not install torch"
fi
if ! have "from suite2p.registration import register"; then
    step "installing suite2p 1.1.0 (registration only, as peers_env.sh)"
    export -f install; export PY WHEELS SITE
    timeout 120 bash -c 'install "suite2p==1.1.0" "cellpose==4.2.1.1" natsort fastremap roifile \
        fill-voids rastermap segment-anything' ||
        echo "could not install suite2p: its column stays empty"
fi
"$PY" - <<'PY' | tee "$OUT_DIR/env.txt"
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "scipy", "cupy", "torch", "suite2p", "blockreg"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
    except Exception as exc:
        print(name, "MISSING", type(exc).__name__, exc)
import cupy
print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"])
PY

step "CuPy parity tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/unit/reg/test_gpu_parity.py \
    2>&1 | tee "$OUT_DIR/parity.txt"
echo "parity exit status ${PIPESTATUS[0]}"

step "GPU benchmark, 2-D 512x512"
timeout 120 "$PY" benchmarks/bench_gpu.py --cases 2d --out "$OUT_DIR/bench_gpu_2d.json"
echo "2-D exit status $?"

step "GPU benchmark, 60x1080x1120 volume"
timeout 150 "$PY" benchmarks/bench_gpu.py --cases 3d --skip-cpu --out "$OUT_DIR/bench_gpu_3d.json"
echo "3-D exit status $?"

step "CPU figure of the volume (one volume)"
timeout 90 "$PY" benchmarks/bench_gpu.py --cases 3d --skip-gpu --skip-suite2p \
    --out "$OUT_DIR/bench_gpu_3d_cpu.json"
echo "3-D CPU exit status $? (124 = its time limit: the CPU takes longer than 90 s a volume)"

step "done; figures in $OUT_DIR"
ls -l "$OUT_DIR"
