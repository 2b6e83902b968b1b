#!/usr/bin/env bash
# Evaluate a trained model on the zero-shot benchmarks with the test protocol.
#
#   bash eval_ahs.sh CONFIG WEIGHTS [OUTPUT] [KEY VALUE ...]
#
# Variables: BENCHMARKS   comma-separated short names (default: the config's TEST.BENCHMARKS,
#                         i.e. A-847,PC-459,A-150,PC-59,PAS-20,PAS-20b; Syn-seen,Syn-unseen are the
#                         built-in synthetic sets)
#            SKIP_MISSING=1  evaluate what is there instead of stopping at a missing benchmark
#            NUM_GPUS     processes for evaluation (default 1)
#            VIS          pictures to save per benchmark under OUTPUT/vis (default 0)
# Writes OUTPUT/results.md, OUTPUT/results.json, OUTPUT/sem_seg_per_class_<dataset>.csv and
# OUTPUT/config_eval.yaml (a training run's OUTPUT/config.yaml is left as it was).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ $# -lt 2 ]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
CONFIG="$1"; WEIGHTS="$2"; OUTPUT="${3:-output/eval/$(basename "$CONFIG" .yaml)}"
shift $(( $# < 3 ? $# : 3 ))
source tools/bootstrap.sh
cmd=("$AHS_PYTHON" tools/eval_benchmarks.py --config-file "$CONFIG" --weights "$WEIGHTS"
     --output "$OUTPUT" --num-gpus "${NUM_GPUS:-1}" --vis "${VIS:-0}")
[ -n "${BENCHMARKS:-}" ] && cmd+=(--benchmarks "$BENCHMARKS")
[ "${SKIP_MISSING:-0}" = "1" ] && cmd+=(--skip-missing)
cmd+=("$@")
echo "+ ${cmd[*]}"
"${cmd[@]}"
