#!/usr/bin/env bash
# Install what the browser test of the web demo (tests/test_web_demo.py) needs, once:
# gradio + playwright (the [demo] and [test] extras: requirements-demo.txt, requirements-test.txt)
# into $AHS_PYTHON and Debian's chromium.
# Idempotent: when both are there it only checks (about a second). The first install took
# about 1 min on a 2-core machine (apt 50 s, pip 15 s). Needs root and apt-get for Chromium;
# anywhere else install a Chromium yourself and point AHS_CHROMIUM at it.
#   source tools/bootstrap.sh && bash tools/setup_browser_test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${AHS_PYTHON:-python3}"

have_extras="import importlib.util as u, sys; sys.exit(not (u.find_spec('gradio') and u.find_spec('playwright')))"
if ! "$py" -c "$have_extras"; then
    echo "[browser-test] pip install -r requirements-demo.txt -r requirements-test.txt into $py" >&2
    "$py" -m pip install --quiet -r requirements-demo.txt -r requirements-test.txt \
        2> >(grep -v "WARNING: Location" >&2)
fi

chromium="${AHS_CHROMIUM:-$(command -v chromium || echo /usr/bin/chromium)}"
if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
        echo "[browser-test] no Chromium at $chromium and no root apt-get to install it;" \
             "install one and set AHS_CHROMIUM=/path/to/chromium" >&2
        exit 1
    fi
    echo "[browser-test] apt-get install chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
fi
echo "[browser-test] ready: $("$chromium" --version 2>/dev/null | head -1)" >&2
