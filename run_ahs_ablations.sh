#!/usr/bin/env bash
# Train and evaluate the five ablations (baseline, HPA only, SDR only, AFR only, full) and write
# one table: the benchmarks' mIoU, their mean, added parameters and inference time vs baseline.
#
#   bash run_ahs_ablations.sh [NUM_GPUS] [OUTPUT_ROOT] [KEY VALUE ...]
#
# A run whose results.json exists is skipped (delete it to redo).
# ABLATIONS="baseline full" selects a subset; CONFIG_DIR (default configs/ablations) and PREFIX
# (default vitb_384_ahs) select the config files <CONFIG_DIR>/<PREFIX>_<name>.yaml.
# SEEDS="0 1 2" trains every ablation once per seed (config key SEED) into
# OUTPUT_ROOT/<name>/seed<k> and reports mean ± std over the seeds with the training-time ratio.
# The miniature study on the synthetic world (CPU, about 40 minutes on 2 cores):
#   CONFIG_DIR=configs/synthetic/ablations PREFIX=quickstart SEEDS="0 1 2" \
#       bash run_ahs_ablations.sh 1 output/ablations_synthetic
# Other variables (BENCHMARKS, SKIP_MISSING, NUM_MACHINES, ...) reach run_ahs.sh / eval_ahs.sh.
# Relative OUTPUT_ROOT and CONFIG_DIR are the caller's folder's (CONFIG_DIR: else the
# repository's); the default OUTPUT_ROOT is the repository's output/ablations.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/user_paths.sh"
NUM_GPUS="${1:-1}"
ROOT="${2:+$(ahs_user_path "$2")}"
ROOT="${ROOT:-output/ablations}"
shift $(( $# < 2 ? $# : 2 ))
ahs_user_opts "$@"; set -- ${AHS_OPTS[@]+"${AHS_OPTS[@]}"}
CONFIG_DIR="$(ahs_user_path "${CONFIG_DIR:-configs/ablations}" repo)"
cd "$AHS_REPO_DIR"
PREFIX="${PREFIX:-vitb_384_ahs}"
ABLATIONS="${ABLATIONS:-baseline hpa_only sdr_only afr_only full}"
SEEDS="${SEEDS:-}"

if [ -e "$CONFIG_DIR" ] && [ ! -d "$CONFIG_DIR" ]; then
    echo "run_ahs_ablations.sh: CONFIG_DIR $CONFIG_DIR is a file, not a folder; set CONFIG_DIR to the folder that holds ${PREFIX}_<name>.yaml (default configs/ablations)" >&2
    exit 2
fi
configs=()
for name in $ABLATIONS; do
    config="$CONFIG_DIR/${PREFIX}_${name}.yaml"
    if [ -d "$config" ]; then
        echo "run_ahs_ablations.sh: config file $config is a folder, not a file; set CONFIG_DIR and PREFIX so that <CONFIG_DIR>/<PREFIX>_<name>.yaml are files" >&2
        exit 2
    fi
    if [ ! -f "$config" ]; then
        echo "run_ahs_ablations.sh: config file $config does not exist (check CONFIG_DIR, PREFIX, ABLATIONS)" >&2
        exit 2
    fi
    configs+=("$config")
done
source tools/bootstrap.sh

run_one() {  # run_one CONFIG OUTPUT [KEY VALUE ...]
    local config="$1" out="$2"
    shift 2
    if [ -f "$out/results.json" ]; then
        echo "[ablations] $out: done already ($out/results.json), skipped"
        return 0
    fi
    echo "+ bash run_ahs.sh $config $NUM_GPUS $out $*"
    bash run_ahs.sh "$config" "$NUM_GPUS" "$out" "$@"
}

i=0
for name in $ABLATIONS; do
    if [ -z "$SEEDS" ]; then
        run_one "${configs[$i]}" "$ROOT/$name" "$@"
    else
        for seed in $SEEDS; do
            run_one "${configs[$i]}" "$ROOT/$name/seed$seed" "$@" SEED "$seed"
        done
    fi
    i=$((i + 1))
done

table=("$AHS_PYTHON" tools/ablation_table.py --root "$ROOT" --names $ABLATIONS
       --configs "${configs[@]}" --output "$ROOT/ablations.md")
[ -n "$SEEDS" ] && table+=(--seeds $SEEDS)
table+=(--opts "$@")
echo "+ ${table[*]}"
"${table[@]}"
