#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one command (about 5-10 minutes on one H100/H200):
#
#   bash tools/gpu_check.sh [OUTPUT_DIR]          # default output/gpu_check
#
# 1. ViT-B/16 @ 384 H-CLIP: inference of one view, new vocabulary, fp32 training step, peak memory
# 2. training steps under fp16 autocast + GradScaler and under bf16 autocast (same config)
# 3. evaluation throughput with the test protocol (640² image: 4 sliding 384² crops + a global
#    view, POOLING_SIZES [1, 1]) at ViT-B/16 @ 384 and ViT-L/14 @ 336: seconds per image
# 4. precision: the same model on the CPU in fp32 (whose outputs equal CAT-Seg's) against the GPU
#    in fp32 (TF32 off), bf16 and fp16: max score difference and changed pixels
# Everything is printed and kept under OUTPUT_DIR (*.json, *.md, gpu_check.md = all tables in
# order, ready to paste under a dated heading of docs/benchmarks.md). CLIP has random weights:
# costs depend on the architecture only, and nothing is downloaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-output/gpu_check}"
mkdir -p "$OUT"
source tools/bootstrap.sh
PY="$AHS_PYTHON"
REPORT="$OUT/gpu_check.md"
export PYTHONUNBUFFERED=1

"$PY" - <<'PY' | tee "$REPORT"
import datetime, torch
if not torch.cuda.is_available():
    raise SystemExit("tools/gpu_check.sh needs a CUDA GPU (torch.cuda.is_available() is False)")
print(f"## {datetime.date.today()} — {torch.cuda.get_device_name(0)} "
      f"(torch {torch.__version__}, CUDA {torch.version.cuda})\n")
PY

step() {  # step TITLE NAME ARGS... : one analyze_model run, its markdown appended to the report
    local title="$1" name="$2"
    shift 2
    echo "+ analyze_model $*" >&2
    "$PY" tools/analyze_model.py --device cuda --json "$OUT/$name.json" \
        --markdown "$OUT/$name.md" "$@"
    printf '\n### %s\n\n' "$title" >> "$REPORT"
    cat "$OUT/$name.md" >> "$REPORT"
}

VITB=configs/vitb_384_hclip.yaml
VITL=configs/vitl_336_hclip.yaml
PROTOCOL=(TEST.SLIDING_WINDOW True MODEL.SEM_SEG_HEAD.POOLING_SIZES "[1, 1]")

step "ViT-B/16 @ 384, fp32: one view, training step, peak memory" vitb_fp32 \
    --config-file "$VITB" --warmup 3 --iters 20 --train-warmup 2 --train-iters 5
step "ViT-B/16 @ 384, training step under fp16 autocast + GradScaler" vitb_train_fp16 \
    --config-file "$VITB" --no-inference --no-flops --train-warmup 2 --train-iters 5 \
    --opts SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION float16
step "ViT-B/16 @ 384, training step under bf16 autocast" vitb_train_bf16 \
    --config-file "$VITB" --no-inference --no-flops --train-warmup 2 --train-iters 5 \
    --opts SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION bfloat16
step "ViT-B/16 @ 384, selective activation checkpointing (CLIP and head): training memory" \
    vitb_train_ckpt --config-file "$VITB" --no-inference --no-flops --train-warmup 2 \
    --train-iters 5 --opts MODEL.SEM_SEG_HEAD.CLIP_ACTIVATION_CHECKPOINTING selective \
    MODEL.SEM_SEG_HEAD.ACTIVATION_CHECKPOINTING selective
step "Test protocol (sliding window), ViT-B/16 @ 384: one 640² image" vitb_eval \
    --config-file "$VITB" --image-size 640 --no-train --no-flops --warmup 3 --iters 10 \
    --opts "${PROTOCOL[@]}"
step "Test protocol (sliding window), ViT-L/14 @ 336: one 640² image" vitl_eval \
    --config-file "$VITL" --image-size 640 --no-train --no-flops --warmup 3 --iters 10 \
    --opts "${PROTOCOL[@]}"
step "Test protocol, ViT-B/16 @ 384, 847 classes (A-847's vocabulary size)" vitb_eval_847 \
    --config-file "$VITB" --image-size 640 --num-classes 847 --no-train --no-flops --warmup 2 \
    --iters 5 --opts "${PROTOCOL[@]}"

printf '\n### Precision: GPU against CPU fp32 (ViT-B/16 @ 384, test protocol)\n\n' >> "$REPORT"
"$PY" tools/precision_check.py --config-file "$VITB" --device cuda --images 2 --image-size 640 \
    --opts "${PROTOCOL[@]}" | tee -a "$REPORT"
echo "[gpu_check] report: $REPORT"
