#!/usr/bin/env python
"""Pretrain the tiny CLIP (AHS-Tiny/16) contrastively on captioned scenes of the synthetic world.

    python tools/pretrain_clip.py --output pretrained/ahs_tiny16_synthetic.pt [--resume]

What CLIP's web pretraining is to CAT-Seg, this is to the synthetic quick start: image–text pairs
naming *every* class of the synthetic world (the 16 seen and the 6 held-out), symmetric InfoNCE with
a learnable temperature (cat_seg.modeling.clip.pretraining), OpenAI's BPE tokenizer, AdamW with
warm-up and cosine decay. Deterministic for a seed: the model is initialised from it and batch k
is a pure function of (seed, k), so a run resumed with --resume ends with the same weights as an
uninterrupted one.

Writes --output: an open_clip state dict (packed in_proj attention weights, fp16 by default) that
MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS loads like any local file; WORK_DIR/last.pt (resume state, every
--checkpoint-every steps) and WORK_DIR/log.jsonl (one line per step). Unless --no-eval, it then
prints the zero-shot figures of the written file (tools/zero_shot_clip.py's).
The training is cat_seg.engine.clip_pretraining's; this script parses the arguments.
"""
import argparse

from cat_seg.engine.clip_pretraining import export, train
from cat_seg.evaluation.synthetic_zero_shot import report_zero_shot
from cat_seg.utils.console import prepare_entry_point


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--output", default="pretrained/ahs_tiny16_synthetic.pt",
                        help="open_clip state dict to write")
    parser.add_argument("--work-dir", default="output/pretrain_clip",
                        help="resume state and per-step log")
    parser.add_argument("--resume", action="store_true", help="continue from WORK_DIR/last.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=128,
                        help="crop side = CLIP input side (the quick start's CLIP_RESOLUTION)")
    parser.add_argument("--scenes", type=int, default=4000, help="scenes in the bank")
    parser.add_argument("--scene-size", type=int, default=192)
    parser.add_argument("--min-scale", type=float, default=0.05,
                        help="smallest crop area, as a fraction of a scene")
    parser.add_argument("--dense-loss-weight", type=float, default=0.5,
                        help="weight of the same loss on the mean patch embedding (0: off)")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16",
                        help="storage precision of --output")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--stop-after", type=int, default=0,
                        help="stop (checkpointed) after this many steps of this process, e.g. to "
                             "fit a time slot; --resume continues (0: run to --steps)")
    parser.add_argument("--no-eval", action="store_true", help="skip the zero-shot figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "warmup", "resolution", "scenes", "scene_size",
                 "checkpoint_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (a contrastive loss needs negatives)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    model = train(args)
    if model is None:  # --stop-after: nothing to export yet
        return
    export(model, args)
    if not args.no_eval:
        report_zero_shot(args.output, args.resolution)


if __name__ == "__main__":
    prepare_entry_point()
    main()
