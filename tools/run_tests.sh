#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent) and run the whole test suite on CPU.
#   bash tools/run_tests.sh                 # everything, slow tests included
#   bash tools/run_tests.sh -m "not slow"   # quick subset; any pytest arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/bootstrap.sh
exec "$AHS_PYTHON" -m pytest "$@"
