#!/usr/bin/env python
"""Zero-shot figures of a CLIP alone (no segmentation training) on the synthetic benchmarks.

    python tools/zero_shot_clip.py [--weights pretrained/ahs_tiny16_synthetic.pt] [--json OUT.json]

For Syn-seen (synthetic_seen_val, 16 classes) and Syn-unseen (synthetic_unseen_val, the 6 held-out
classes), with the quick start's CLIP (AHS-Tiny/16 at 128 px, prompt "A photo of a {} in the scene"):

* dense mIoU: frozen CLIP, argmax over the classes of the patch–text cosine of the project's cost
  volume, whole image at CLIP's resolution (cat_seg.evaluation.zero_shot.dense_zero_shot);
* image top-1: single-class crops classified by CLIP's image embedding, balanced over classes,
  among the benchmark's own names and among all 22 names of the world;
* chance: the expected mIoU of uniformly random predictions on the same labels.
"""
import argparse
import os

from cat_seg.evaluation.synthetic_zero_shot import report_zero_shot
from cat_seg.utils.console import prepare_entry_point


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--weights", default="pretrained/ahs_tiny16_synthetic.pt",
                        help="CLIP weights (a local open_clip state dict, or 'random')")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.weights != "random" and not os.path.isfile(args.weights):
        raise SystemExit(f"[zero_shot_clip] {args.weights} does not exist; pass a CLIP state dict "
                         "(tools/pretrain_clip.py writes one) or 'random'")
    return report_zero_shot(args.weights, args.resolution, args.json)


if __name__ == "__main__":
    prepare_entry_point()
    main()
