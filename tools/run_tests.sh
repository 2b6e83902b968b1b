#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent) and run the whole test suite on CPU.
#   bash tools/run_tests.sh                 # everything, slow tests included
#   bash tools/run_tests.sh -m "not slow"   # quick subset; any pytest arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/bootstrap.sh
# CI (CI=true) also runs the web demo's browser test: its extras are installed once (about 1 min,
# then a second's check) and the test may then not skip. Elsewhere it runs when gradio, playwright
# and Chromium are there (AHS_BROWSER_TESTS=1 installs them the same way) and skips otherwise.
if [ "${CI:-}" = "true" ] || [ "${AHS_BROWSER_TESTS:-}" = "1" ]; then
    if bash tools/setup_browser_test.sh; then
        export AHS_REQUIRE_BROWSER_TEST=1
    else
        echo "[run_tests] WARNING: browser-test set-up failed; tests/test_web_demo.py's browser" \
             "test will be skipped" >&2
    fi
fi
exec "$AHS_PYTHON" -m pytest "$@"
