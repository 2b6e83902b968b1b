"""Zero-shot figures of a CLIP alone (no segmentation training) on the synthetic benchmarks
(tools/zero_shot_clip.py; tools/pretrain_clip.py prints them for the CLIP it wrote).

For Syn-seen (synthetic_seen_val, 16 classes) and Syn-unseen (synthetic_unseen_val, the 6 held-out
classes): dense mIoU of the frozen CLIP (:func:`cat_seg.evaluation.zero_shot.dense_zero_shot`),
image top-1 on single-class crops among the benchmark's own names and among all 22 names of the
world, and the chance level.
"""
import json
import logging

from ..data import register_synthetic_datasets
from ..data.synthetic.image_text import ALL_CLASSES
from ..modeling.clip.architectures import TINY_NAME
from ..modeling.clip.backbone import CLIPBackbone
from .zero_shot import dense_zero_shot, image_zero_shot

logger = logging.getLogger(__name__)

SYNTHETIC_BENCHMARKS = {"Syn-seen": "synthetic_seen_val", "Syn-unseen": "synthetic_unseen_val"}


def zero_shot_figures(backbone) -> dict:
    """benchmark -> {dense_mIoU, chance_mIoU, image_top1, image_top1_all, per_class}."""
    all_names = [c.name for c in ALL_CLASSES]
    figures = {}
    for bench, dataset in SYNTHETIC_BENCHMARKS.items():
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


def report_zero_shot(weights: str, resolution: int = 128, json_path: str = "") -> dict:
    """The figures of the tiny CLIP (AHS-Tiny/16) with ``weights`` (a local open_clip state dict,
    or "random") at ``resolution``, logged as a table; also written to ``json_path`` if given."""
    register_synthetic_datasets()
    backbone = CLIPBackbone(architecture=TINY_NAME, weights=weights,
                            resolution=resolution, finetune="frozen").eval()
    figures = zero_shot_figures(backbone)
    logger.info(f"[zero_shot_clip] {weights}, frozen CLIP, no segmentation training:")
    logger.info(format_table(figures))
    for bench, f in figures.items():
        per_class = ", ".join(f"{k} {v:.0f}" for k, v in f["image_top1_per_class"].items())
        logger.info(f"[zero_shot_clip] {bench} image top-1 per class: {per_class}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(figures, f, indent=2)
    return figures
