#!/usr/bin/env bash
# Train a model, then evaluate it with eval_ahs.sh.
#
#   bash run_ahs.sh [CONFIG] [NUM_GPUS] [OUTPUT] [KEY VALUE ...]
#
# CONFIG defaults to configs/vitb_384_ahs.yaml, NUM_GPUS to 1, OUTPUT to output/<config name>.
# Multi-node: set NUM_MACHINES, MACHINE_RANK and DIST_URL (tcp://HOST:PORT of rank 0) on every
# node (see docs/multi_node.md). RESUME=1 continues from OUTPUT/last_checkpoint.
# Evaluation variables (BENCHMARKS, SKIP_MISSING, VIS: pictures per benchmark, default 4) are
# passed on to eval_ahs.sh.
# Relative paths are the caller's folder's (CONFIG: else the repository's); the default OUTPUT is
# the repository's output/<config name>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/user_paths.sh"
CONFIG="$(ahs_user_path "${1:-configs/vitb_384_ahs.yaml}" repo)"
NUM_GPUS="${2:-1}"
OUTPUT="${3:+$(ahs_user_path "$3")}"
OUTPUT="${OUTPUT:-output/$(basename "$CONFIG" .yaml)}"
shift $(( $# < 3 ? $# : 3 ))
ahs_user_opts "$@"; set -- ${AHS_OPTS[@]+"${AHS_OPTS[@]}"}
cd "$AHS_REPO_DIR"
if [ -d "$CONFIG" ]; then
    echo "run_ahs.sh: config file $CONFIG is a folder, not a file; give a YAML file (configs/ lists the shipped ones)" >&2
    exit 2
elif [ ! -f "$CONFIG" ]; then
    echo "run_ahs.sh: config file $CONFIG does not exist (configs/ lists the shipped ones)" >&2
    exit 2
fi
source tools/bootstrap.sh

train=("$AHS_PYTHON" train_net.py --config-file "$CONFIG" --num-gpus "$NUM_GPUS"
       --num-machines "${NUM_MACHINES:-1}" --machine-rank "${MACHINE_RANK:-0}"
       --dist-url "${DIST_URL:-auto}")
[ "${RESUME:-0}" = "1" ] && train+=(--resume)
train+=(OUTPUT_DIR "$OUTPUT" "$@")
echo "+ ${train[*]}"
"${train[@]}"

if [ "${MACHINE_RANK:-0}" = "0" ]; then
    evaluate=(bash eval_ahs.sh "$CONFIG" "$OUTPUT/model_final.pth" "$OUTPUT" "$@")
    echo "+ NUM_GPUS=$NUM_GPUS VIS=${VIS:-4} ${evaluate[*]}"
    NUM_GPUS="$NUM_GPUS" VIS="${VIS:-4}" "${evaluate[@]}"
fi
