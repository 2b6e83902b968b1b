"""The generalized zero-shot protocol: seen and held-out classes in one vocabulary.

The zero-shot segmentation literature (ZS3Net, SPNet, ZegFormer, ZegCLIP on COCO-Stuff 156/15
and VOC 15/5) scores a model with the seen and the unseen names together, so that an unseen
pixel can be taken for a seen class — the failure a fine-tuned model is prone to. From one
confusion matrix ``confusion[gt, pred]`` over K classes, of which the set U is held out and
S = the rest:

    mIoU(S) = mean of IoU_c over c ∈ S with union_c > 0     (detectron2 0.6's rule, per group)
    mIoU(U) = mean of IoU_c over c ∈ U with union_c > 0
    hIoU    = 2 · mIoU(S) · mIoU(U) / (mIoU(S) + mIoU(U))   (0 when both are 0)
    bias    = Σ_{g ∈ U, p ∈ S} confusion[g, p] / Σ_{g ∈ U} gt_g
              the share of held-out pixels predicted as a seen class
    reverse = Σ_{g ∈ S, p ∈ U} confusion[g, p] / Σ_{g ∈ S} gt_g
              the share of seen pixels predicted as a held-out class

(IoU_c, gt_c, union_c as in :mod:`cat_seg.evaluation.metrics`; all in percent.) A class in
neither the ground truth nor the prediction has no IoU and does not count. A group with no
such class gives NaN for its mIoU and for hIoU; a group without ground-truth pixels gives NaN
for its share.

:class:`GeneralizedSemSegEvaluator` adds these figures to :class:`SemSegEvaluator`'s for every
dataset whose metadata has ``unseen_classes`` (the names of U).
"""
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from detectron2.data import MetadataCatalog

from cat_seg.evaluation.metrics import compute_metrics
from cat_seg.evaluation.sem_seg_evaluator import SemSegEvaluator


@dataclass(frozen=True)
class GeneralizedMetrics:
    """The generalized protocol's figures (percent; see the module docstring)."""

    miou_seen: float
    miou_unseen: float
    hiou: float
    unseen_as_seen: float
    seen_as_unseen: float


def harmonic_mean(seen: float, unseen: float) -> float:
    """``2·S·U / (S + U)``; 0 when both are 0, NaN when either is NaN."""
    if math.isnan(seen) or math.isnan(unseen):
        return float("nan")
    return 0.0 if seen + unseen == 0 else 2.0 * seen * unseen / (seen + unseen)


def _group_mean(iou: np.ndarray, members: np.ndarray) -> float:
    values = iou[members]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _share(confusion: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> float:
    total = confusion[rows].sum()
    return float(100.0 * confusion[np.ix_(rows, columns)].sum() / total) if total else float("nan")


def generalized_metrics(confusion, unseen: Sequence[bool]) -> GeneralizedMetrics:
    """The figures of a (K, K) confusion matrix ``[gt, pred]`` whose held-out classes are
    marked by the (K,) mask ``unseen`` (at least one class in each group)."""
    conf = np.asarray(confusion, dtype=np.float64)
    unseen = np.asarray(unseen, dtype=bool)
    if unseen.shape != (conf.shape[0],) or unseen.all() or not unseen.any():
        raise ValueError(f"the held-out mask must mark some but not all of the {conf.shape[0]} "
                         f"classes, got {unseen.tolist()}")
    iou = compute_metrics(conf).iou
    seen = ~unseen
    miou_seen, miou_unseen = _group_mean(iou, seen), _group_mean(iou, unseen)
    return GeneralizedMetrics(
        miou_seen=miou_seen,
        miou_unseen=miou_unseen,
        hiou=harmonic_mean(miou_seen, miou_unseen),
        unseen_as_seen=_share(conf, unseen, seen),
        seen_as_unseen=_share(conf, seen, unseen),
    )


class GeneralizedSemSegEvaluator(SemSegEvaluator):
    """:class:`SemSegEvaluator` plus the generalized protocol's figures.

    Reads ``unseen_classes`` (names, a subset of ``stuff_classes``) from the dataset's metadata.
    ``evaluate()`` adds ``mIoU_seen``, ``mIoU_unseen``, ``hIoU``, ``unseen_as_seen`` and
    ``seen_as_unseen`` (percent) to the ``sem_seg`` dictionary; the per-class CSV gains a
    ``group`` column (``seen`` / ``unseen``).
    """

    def __init__(self, dataset_name: str, **kwargs):
        super().__init__(dataset_name, **kwargs)
        held_out = list(MetadataCatalog.get(dataset_name).unseen_classes)
        unknown = sorted(set(held_out) - set(self.class_names))
        if unknown:
            raise ValueError(f"dataset {dataset_name!r}: its unseen_classes {unknown} are not in "
                             "its stuff_classes; fix its metadata")
        self.unseen = np.array([name in held_out for name in self.class_names])

    def evaluate(self):
        results = super().evaluate()
        if results is None:
            return None
        g = generalized_metrics(self.merged_confusion, self.unseen)
        results["sem_seg"].update(mIoU_seen=g.miou_seen, mIoU_unseen=g.miou_unseen, hIoU=g.hiou,
                                  unseen_as_seen=g.unseen_as_seen,
                                  seen_as_unseen=g.seen_as_unseen)
        return results

    def class_groups(self):
        """``seen`` / ``unseen`` per class: the per-class CSV's ``group`` column."""
        return ["unseen" if held_out else "seen" for held_out in self.unseen]


GENERALIZED_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "unseen_as_seen")


def format_generalized_table(results: dict) -> str:
    """Markdown table of the generalized figures of every benchmark of ``results`` (benchmark
    -> {"sem_seg": ..., optional "frozen_clip": ...}) that has them; "" when none has."""
    lines = []
    for name, result in results.items():
        for label, figures in (("", result.get("sem_seg") or {}),
                               (" frozen CLIP", result.get("frozen_clip") or {})):
            if all(key in figures for key in GENERALIZED_KEYS):
                cells = " | ".join(f"{figures[key]:.1f}" for key in GENERALIZED_KEYS)
                lines.append(f"| {name}{label} | {cells} |")
    if not lines:
        return ""
    return "\n".join(["| generalized protocol (one vocabulary) | mIoU(S) | mIoU(U) | hIoU | "
                      "held-out pixels predicted as seen (%) |", "|---|---|---|---|---|"] + lines)
