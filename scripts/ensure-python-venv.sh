#!/usr/bin/env bash
# Make `python3 -m venv` work: on Debian the venv module (ensurepip) lives in the
# separate python3-venv package. Idempotent and silent when it already works.
set -euo pipefail

PYTHON="${1:-python3}"

probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
if "$PYTHON" -m venv "$probe/venv" >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "error: '$PYTHON -m venv' does not work; install python3-venv as root:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y python3-venv" >&2
    exit 1
fi

echo "ensure-python-venv: installing python3-venv" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
