#!/usr/bin/env bash
# Build the peer-benchmark environment OUTSIDE the repository: suite2p (torch, CPU) next to an
# editable blockreg, so that one run of benchmarks/bench_core.py measures both side by side.
# Peers never enter the project's own dependencies. Idempotent: re-running only fills gaps.
#
#   bash benchmarks/peers_env.sh            # creates/updates /work/peers-venv
#   PEERS_VENV=/some/where bash benchmarks/peers_env.sh
set -euo pipefail

VENV="${PEERS_VENV:-/work/peers-venv}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

# A plain venv (no --system-site-packages): the peers' pins must not leak into the project's env.
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip

have() { "$VENV/bin/python" - "$@" <<'PY'
import importlib.metadata as md, sys
name, version = sys.argv[1], sys.argv[2]
try:
    sys.exit(0 if md.version(name) == version else 1)
except md.PackageNotFoundError:
    sys.exit(1)
PY
}

# suite2p imports cellpose.transforms, which imports torchvision. These exact versions are the ones
# pip on Python 3.11 finds on this machine's disk (a newer torch would be a multi-GB download).
if ! have torch 2.14.1 || ! have torchvision 0.29.1; then
    "${PIP[@]}" install "torch==2.14.1" "torchvision==0.29.1"
fi

# suite2p/cellpose declare GUI and other heavy requirements that registration never touches, so
# they go in without deps and we add only what their registration import path needs.
if ! have suite2p 1.1.0 || ! have cellpose 4.2.1.1; then
    "${PIP[@]}" install --no-deps "suite2p==1.1.0" "cellpose==4.2.1.1"
fi
"${PIP[@]}" install natsort numba scikit-learn scikit-image tifffile fastremap \
    opencv-python-headless rastermap roifile fill-voids segment-anything tqdm pytest \
    "numpy>=2.0,<2.5" "scipy>=1.13,<1.18"

# blockreg itself, editable, so the benchmark always measures the working tree.
"${PIP[@]}" install -e "$REPO"

"$VENV/bin/python" -c "import suite2p, torch, blockreg; from suite2p.registration import register; print('peers env ok: suite2p', suite2p.__version__ if hasattr(suite2p, '__version__') else '?', 'torch', torch.__version__)"
