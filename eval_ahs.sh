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
# OUTPUT/config_eval.yaml (a training run's OUTPUT/config.yaml is left as it was); an earlier
# evaluation's results there move to OUTPUT/previous/<time>/ first.
# Relative paths are the caller's folder's (CONFIG and WEIGHTS: else the repository's); the
# default OUTPUT is the repository's output/eval/<config name>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/user_paths.sh"
if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" >&2
    exit 2
fi
CONFIG="$(ahs_user_path "$1" repo)"; WEIGHTS="$(ahs_user_path "$2" repo)"
OUTPUT="${3:+$(ahs_user_path "$3")}"
OUTPUT="${OUTPUT:-output/eval/$(basename "$CONFIG" .yaml)}"
shift $(( $# < 3 ? $# : 3 ))
ahs_user_opts "$@"; set -- ${AHS_OPTS[@]+"${AHS_OPTS[@]}"}
cd "$AHS_REPO_DIR"
source tools/bootstrap.sh
cmd=("$AHS_PYTHON" tools/eval_benchmarks.py --config-file "$CONFIG" --weights "$WEIGHTS"
     --output "$OUTPUT" --num-gpus "${NUM_GPUS:-1}" --vis "${VIS:-0}")
[ -n "${BENCHMARKS:-}" ] && cmd+=(--benchmarks "$BENCHMARKS")
[ "${SKIP_MISSING:-0}" = "1" ] && cmd+=(--skip-missing)
cmd+=("$@")
echo "+ ${cmd[*]}"
"${cmd[@]}"
