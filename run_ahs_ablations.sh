#!/usr/bin/env bash
# Train and evaluate the five ablations (baseline, HPA only, SDR only, AFR only, full) and write
# one table: the benchmarks' mIoU, their mean, added parameters and inference time vs baseline.
#
#   bash run_ahs_ablations.sh [NUM_GPUS] [OUTPUT_ROOT] [KEY VALUE ...]
#
# A run whose OUTPUT_ROOT/<name>/results.json exists is skipped (delete it to redo).
# ABLATIONS="baseline full" selects a subset; CONFIG_DIR (default configs/ablations) and PREFIX
# (default vitb_384_ahs) select the config files <CONFIG_DIR>/<PREFIX>_<name>.yaml.
# Other variables (BENCHMARKS, SKIP_MISSING, NUM_MACHINES, ...) reach run_ahs.sh / eval_ahs.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
NUM_GPUS="${1:-1}"
ROOT="${2:-output/ablations}"
shift $(( $# < 2 ? $# : 2 ))
CONFIG_DIR="${CONFIG_DIR:-configs/ablations}"
PREFIX="${PREFIX:-vitb_384_ahs}"
ABLATIONS="${ABLATIONS:-baseline hpa_only sdr_only afr_only full}"
source tools/bootstrap.sh

configs=()
for name in $ABLATIONS; do
    config="$CONFIG_DIR/${PREFIX}_${name}.yaml"
    configs+=("$config")
    if [ -f "$ROOT/$name/results.json" ]; then
        echo "[ablations] $name: done already ($ROOT/$name/results.json), skipped"
        continue
    fi
    echo "+ bash run_ahs.sh $config $NUM_GPUS $ROOT/$name $*"
    bash run_ahs.sh "$config" "$NUM_GPUS" "$ROOT/$name" "$@"
done

table=("$AHS_PYTHON" tools/ablation_table.py --root "$ROOT" --names $ABLATIONS
       --configs "${configs[@]}" --output "$ROOT/ablations.md" --opts "$@")
echo "+ ${table[*]}"
"${table[@]}"
