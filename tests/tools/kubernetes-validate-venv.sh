#!/usr/bin/env bash
# Creates (once) a Python venv with PyPI's kubernetes-validate, which the render_schema test uses
# to check every rendered Kubernetes object against the official schema of its version, offline.
# Usage: tests/tools/kubernetes-validate-venv.sh [VENV_DIR]; prints the venv's bin directory.
set -euo pipefail
venv="${1:-${KUBEFORGE_VALIDATE_VENV:-$HOME/.cache/kubeforge/kubernetes-validate}}"
version=1.37.0
if [[ ! -x "$venv/bin/kubernetes-validate" ]] ||
   ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$version')" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version"
fi
echo "$venv/bin"
