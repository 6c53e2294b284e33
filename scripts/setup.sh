#!/usr/bin/env bash
# Sets up binsight on a fresh machine: system data (as root, where apt exists), .venv, torch, the package.
#   scripts/setup.sh VENV                       -> venv + package + test extras + Fashion-MNIST
#   scripts/setup.sh VENV --test-system-deps    -> only the system packages the tests need (Chromium)
set -euo pipefail
venv=${1:-.venv}
mode=${2:-}

apt_install() {  # apt_install CHECK_PATH PACKAGE...: install with apt when CHECK_PATH is missing
    local check=$1; shift
    [ -e "$check" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        if [ -z "${BINSIGHT_APT_UPDATED:-}" ]; then apt-get update -qq; export BINSIGHT_APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "note: $check is missing and apt is not usable here; install $* yourself" >&2
    fi
}

if [ "$mode" = "--test-system-deps" ]; then
    apt_install /usr/bin/chromium chromium
    exit 0
fi

apt_install /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz dataset-fashion-mnist

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first, pinned to the local CPU build; pyproject.toml only gives a range that this satisfies.
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q -e ".[test]"
