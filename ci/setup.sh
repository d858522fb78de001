#!/usr/bin/env bash
# Set up q2-aam on Debian/Ubuntu without conda: Debian's QIIME 2 2022.11 packages, a venv that
# sees them, the CPU build of torch, and this package in editable mode.  Idempotent and quiet
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="qiime q2-types q2cli q2-feature-table q2-sample-classifier q2-diversity-lib q2templates python3-unifrac unifrac-tools python3-venv"
# the browser tests open every visualization in Debian's Chromium (driven by Playwright)
APT_PKGS="$APT_PKGS chromium"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV=.venv
STAMP="$VENV/.q2-aam-setup-done"

missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV (sees Debian's QIIME 2)" >&2
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"

if [ ! -f "$STAMP" ] || [ setup.py -nt "$STAMP" ] || [ ci/setup.sh -nt "$STAMP" ]; then
  # torch first and pinned: an unpinned torch pulls several GB of CUDA wheels
  "$PY" -c "import torch" 2>/dev/null || { echo "[setup] installing torch==$TORCH_VERSION" >&2;
    "$PY" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"; }
  echo "[setup] installing q2-aam (editable) + test tools" >&2
  # --no-deps for the scientific stack: Debian's numpy/pandas/scipy/skbio/biom/h5py must stay
  "$PY" -m pip install -q --disable-pip-version-check safetensors tqdm pytest hypothesis pyflakes \
    playwright
  # the Greengenes 13_8 sequences and tree (CC BY-SA 3.0) that shipped_encoder/build_corpus.py maps
  # the corpus's OTU IDs to; an sdist that unpacks ~150 MB (the build and its tests only)
  "$PY" -m pip install -q --disable-pip-version-check --no-deps qiime-default-reference==0.1.3
  # compat mode: a plain path entry, so packages added later are found without reinstalling
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --config-settings editable_mode=compat -e .
  # q2cli's entry point inside the venv
  cat > "$VENV/bin/qiime" <<LAUNCH
#!$(pwd)/$VENV/bin/python
import sys
from q2cli.__main__ import qiime
sys.exit(qiime())
LAUNCH
  chmod +x "$VENV/bin/qiime"
  # guard: pip must not have shadowed Debian's scientific stack
  for mod in numpy pandas scipy skbio biom h5py; do
    loc=$("$PY" -c "import $mod, os; print(os.path.dirname($mod.__file__))")
    case "$loc" in
      /usr/lib/python3/dist-packages*) ;;
      *) echo "[setup] ERROR: $mod is imported from $loc, not Debian's QIIME 2 stack; remove it from $VENV" >&2; exit 1;;
    esac
  done
  "$VENV/bin/qiime" dev refresh-cache >/dev/null 2>&1 || true
  touch "$STAMP"
fi

# q2cli caches every action's signature: refresh it whenever the plugin's parameters may have
# changed (they are derived from aam_engine/config.py), or `qiime aam ...` rejects new names
CACHE_STAMP="$VENV/.q2-aam-cli-cache"
if [ ! -f "$CACHE_STAMP" ] || [ -n "$(find q2_aam aam_engine/config.py -newer "$CACHE_STAMP" -name '*.py' 2>/dev/null | head -1)" ]; then
  "$VENV/bin/qiime" dev refresh-cache >/dev/null 2>&1 || true
  touch "$CACHE_STAMP"
fi
