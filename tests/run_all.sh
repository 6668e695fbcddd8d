#!/usr/bin/env bash
# The whole test suite: the Rust workspace, then the Python package
# (built from crates/optimist-py and installed with pip) and its pytest suite.
# Needs python3 with torch, pytorch-optimizer, schedulefree, pytest and maturin (or network
# access for pip to fetch maturin). With CI=true a skipped test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# The property tests (proptest) draw their inputs from this seed, so that a
# run is reproducible; set PROPTEST_RNG_SEED (and PROPTEST_CASES) to explore
# other inputs.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261205}"
echo "== cargo test --release --workspace (PROPTEST_RNG_SEED=$PROPTEST_RNG_SEED)"
cargo test --release --workspace

if ! python3 -c "import torch, pytorch_optimizer, schedulefree, pytest, maturin" >/dev/null 2>&1; then
  echo "== installing the Python test dependencies from PyPI (torch, pytorch-optimizer, schedulefree, maturin, pytest)"
  python3 -m pip install --quiet "torch==2.15.0" "pytorch-optimizer==4.1.0" "schedulefree==1.4.1" "maturin>=1.5,<2" pytest numpy
fi

echo "== pip install ./crates/optimist-py"
if python3 -c "import maturin" >/dev/null 2>&1; then
  # maturin already installed: build without fetching the build backend.
  python3 -m pip install --quiet --no-build-isolation ./crates/optimist-py
else
  python3 -m pip install --quiet ./crates/optimist-py
fi

echo "== pytest crates/optimist-py/tests"
# Run from outside the source tree so that the installed package is tested.
tests_dir="$(pwd)/crates/optimist-py/tests"
(cd "${TMPDIR:-/tmp}" && timeout 900 python3 -m pytest -q -p no:cacheprovider "$tests_dir")
