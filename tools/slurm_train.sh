#!/usr/bin/env bash
# Multi-node training on SLURM: one task per node, each task starts NUM_GPUS processes.
#
#   sbatch --nodes 2 --gpus-per-node 4 tools/slurm_train.sh [CONFIG] [OUTPUT] [KEY VALUE ...]
#
# CONFIG defaults to configs/vitb_384_ahs.yaml, OUTPUT to output/<config name> (it must be on a
# file system every node sees: checkpoints, logs, and --resume after a requeue read it).
# Node 0 (the first host of the allocation) hosts the rendezvous at tcp://<node 0>:$MASTER_PORT.
# SOLVER.IMS_PER_BATCH is the global batch over all nodes and GPUs.
# See docs/multi_node.md.
#SBATCH --job-name=ahs-seg
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --requeue
#SBATCH --output=slurm-%j.out
set -euo pipefail
# sbatch runs a copy of this script from the spool folder: go to the folder it was submitted from.
cd "${SLURM_SUBMIT_DIR:-$(dirname "${BASH_SOURCE[0]}")/..}"

CONFIG="${1:-configs/vitb_384_ahs.yaml}"
OUTPUT="${2:-output/$(basename "$CONFIG" .yaml)}"
shift $(( $# < 2 ? $# : 2 ))
if [ ! -f "$CONFIG" ]; then
    echo "slurm_train.sh: config file $CONFIG does not exist (configs/ lists the shipped ones)" >&2
    exit 2
fi
if [ -z "${SLURM_JOB_ID:-}" ]; then
    echo "slurm_train.sh: not inside a SLURM allocation; submit it with sbatch (see the header)" >&2
    exit 2
fi

NUM_MACHINES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
# Processes per node: the GPUs SLURM gave each node, else every visible GPU.
NUM_GPUS="${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
if [ "$NUM_GPUS" -lt 1 ]; then
    echo "slurm_train.sh: no GPU on the node; request some with --gpus-per-node" >&2
    exit 2
fi
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
# A port derived from the job id, so two jobs sharing a node do not collide.
MASTER_PORT="${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 20000 ))}"
mkdir -p "$OUTPUT"

# Resume from OUTPUT/last_checkpoint whenever one exists (a requeued or restarted job); checkpoints
# are written atomically, so a node killed mid-save never leaves a file --resume would pick up.
RESUME_FLAG=()
[ -f "$OUTPUT/last_checkpoint" ] && RESUME_FLAG=(--resume)

echo "slurm_train.sh: $NUM_MACHINES node(s) x $NUM_GPUS GPU(s), rendezvous tcp://$MASTER_ADDR:$MASTER_PORT"
# One task per node; SLURM_NODEID (0 .. N-1) is that node's machine rank. The single quotes keep
# it unexpanded here: each task reads its own value. The config options (KEY VALUE ...) come last:
# train_net.py takes everything after them as config options.
srun --ntasks="$NUM_MACHINES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
    bash -c 'source tools/bootstrap.sh && exec "$AHS_PYTHON" train_net.py \
        --machine-rank "$SLURM_NODEID" "$@"' _ \
    --config-file "$CONFIG" --num-gpus "$NUM_GPUS" --num-machines "$NUM_MACHINES" \
    --dist-url "tcp://$MASTER_ADDR:$MASTER_PORT" "${RESUME_FLAG[@]}" OUTPUT_DIR "$OUTPUT" "$@"
