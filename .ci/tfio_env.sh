#!/usr/bin/env bash
# Second CI environment: TensorFlow 2.17 + tensorflow-io 0.37.1 (tensorflow-io's last release,
# whose kernels only load with TF 2.17), numpy < 2. Runs the data tests that exercise the
# in-graph tensorflow-io decoding path, and checks that the probe reports it as available.
#
# Needs only python3 (3.9-3.12; TF 2.17 has no wheels for 3.13) and network access to PyPI.
# Usage: .ci/tfio_env.sh [VENV_DIR]   (default: $TMPDIR/kerasep-venv-tfio; reused when it exists)
# Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${TMPDIR:-/tmp}/kerasep-venv-tfio}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
  "tensorflow-cpu==2.17.*" "tensorflow-io==0.37.1" "numpy<2" \
  "keras>=3.0,<3.12" scipy "soundfile>=0.12" tqdm pytest
# kerasep itself without its dependencies (the pins above replace them)
"$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT"

cd "$ROOT"
"$VENV/bin/python" - <<'PY'
import tensorflow as tf
from kerasep.data import tfio
ok, why = tfio.probe()
print("tensorflow", tf.__version__, "| tensorflow-io probe:", ok, why)
if not ok:
    raise SystemExit(f"tensorflow-io should load with TensorFlow {tf.__version__}: {why}")
PY
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/datasets/test_data_tfio.py
