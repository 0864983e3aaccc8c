#!/usr/bin/env bash
# Build mmcv 2.1.0 with its C++ ops for this machine's torch (no wheel on the registry fits
# torch 2.14), then install it. One-time; about 30 minutes on 2 cores.
#
#   bash tools/build_mmcv.sh [OUT_DIR]      # PY=.venv/bin/python by default
#
# What it does, and why:
#   * downloads the mmcv==2.1.0 sdist (the registry's; nothing else is fetched);
#   * replaces -std=c++14 / -std=c++17 in its setup.py with -std=c++20 (torch 2.14's headers
#     need C++20);
#   * builds with MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 against the torch already installed
#     (--no-build-isolation) and setuptools<70 (put first on PYTHONPATH for the build only: the
#     environment itself keeps setuptools>=77.0.3,<82, which torch and mmengine need);
#   * writes the wheel to OUT_DIR (default build/wheels) and installs it.
# `make install-mm` calls this only when no prebuilt wheel is found.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
OUT="${1:-build/wheels}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "[build_mmcv] one-time build of mmcv 2.1.0 with ops: about 30 minutes on 2 cores" >&2
"$PY" -m pip download --no-binary :all: --no-deps --no-build-isolation "mmcv==2.1.0" -d "$WORK/sdist"
tar -xzf "$WORK"/sdist/mmcv-2.1.0.tar.gz -C "$WORK"
SRC="$WORK/mmcv-2.1.0"
sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
if grep -q -- '-std=c++1[47]' "$SRC/setup.py"; then
  echo "[build_mmcv] could not switch every -std flag of setup.py to c++20" >&2
  exit 1
fi
"$PY" -m pip install --target "$WORK/build-tools" "setuptools<70" wheel
(
  cd "$SRC"
  PYTHONPATH="$WORK/build-tools${PYTHONPATH:+:$PYTHONPATH}" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
    MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel --no-build-isolation --no-deps . -w "$OUT"
)
"$PY" -m pip install --no-deps "$OUT"/mmcv-2.1.0-*.whl
"$PY" -c "import mmcv, mmcv.ops; print('[build_mmcv] mmcv', mmcv.__version__, 'with ops installed')"
