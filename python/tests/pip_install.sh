#!/bin/sh
# SPDX-License-Identifier: MIT
# pip_install.sh SRC WORK PYTHON - `pip install ./python` as a user runs it on
# Debian 12 (a venv that sees Debian's numpy; no PyPI: --no-build-isolation,
# --no-index), from a copy of the tree, then a round trip with the package.
set -eu
src=$1 work=$2 python=$3
rm -rf "$work"
mkdir -p "$work/tree"
cp -r "$src/include" "$src/src" "$src/python" "$work/tree/"
rm -rf "$work/tree/python/build" "$work/tree/python"/*.egg-info
"$python" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --no-build-isolation --no-index -q "$work/tree/python"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import numpy as np
import psyne
with psyne.Channel("memory://pip", capacity=1 << 16) as ch:
    a = ch.claim_array(np.float64, (2, 3))
    a[:] = np.arange(6).reshape(2, 3)
    a.send()
    with ch.receive(timeout=1.0) as msg:
        b = msg.array()
        assert b.shape == (2, 3) and b[1, 2] == 5.0
        del b
print("pip_install: psyne", psyne.__version__, "installed from", psyne.__file__)
PY
