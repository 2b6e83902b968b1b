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
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cat_seg.data import register_synthetic_datasets  # noqa: E402
from cat_seg.data.synthetic.image_text import ALL_CLASSES  # noqa: E402
from cat_seg.evaluation.zero_shot import dense_zero_shot, image_zero_shot  # noqa: E402
from cat_seg.modeling.clip.architectures import TINY_NAME  # noqa: E402
from cat_seg.modeling.clip.backbone import CLIPBackbone  # noqa: E402

BENCHMARKS = {"Syn-seen": "synthetic_seen_val", "Syn-unseen": "synthetic_unseen_val"}


def zero_shot_figures(backbone) -> dict:
    """benchmark -> {dense_mIoU, chance_mIoU, image_top1, image_top1_all, per_class}."""
    all_names = [c.name for c in ALL_CLASSES]
    figures = {}
    for bench, dataset in BENCHMARKS.items():
        dense = dense_zero_shot(backbone, dataset)
        own = image_zero_shot(backbone, dataset)
        wide = image_zero_shot(backbone, dataset, class_names=all_names)
        figures[bench] = {
            "dense_mIoU": dense["mIoU"], "dense_mIoU_gt": dense["mIoU_gt"],
            "chance_mIoU": dense["chance_mIoU"], "image_top1": own.top1,
            "image_top1_all": wide.top1, "image_top1_per_class": own.per_class,
            "image_crops": own.counts,
        }
    return figures


def format_table(figures: dict) -> str:
    lines = ["| benchmark | dense mIoU | chance mIoU | image top-1 (own names) | "
             "image top-1 (all 22 names) | crops |", "|---|---|---|---|---|---|"]
    for bench, f in figures.items():
        lines.append(f"| {bench} | {f['dense_mIoU']:.1f} | {f['chance_mIoU']:.1f} | "
                     f"{f['image_top1']:.1f} | {f['image_top1_all']:.1f} | "
                     f"{sum(f['image_crops'].values())} |")
    return "\n".join(lines)


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
    register_synthetic_datasets()
    backbone = CLIPBackbone(architecture=TINY_NAME, weights=args.weights,
                            resolution=args.resolution, finetune="frozen").eval()
    figures = zero_shot_figures(backbone)
    print(f"[zero_shot_clip] {args.weights}, frozen CLIP, no segmentation training:")
    print(format_table(figures))
    for bench, f in figures.items():
        per_class = ", ".join(f"{k} {v:.0f}" for k, v in f["image_top1_per_class"].items())
        print(f"[zero_shot_clip] {bench} image top-1 per class: {per_class}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
