"""Semantic-segmentation metrics from a confusion matrix.

Convention: ``confusion[g, p]`` counts the labelled pixels whose ground truth is class ``g`` and
whose prediction is class ``p`` (shape (K, K), ignore-label pixels never enter it). Per class c:

    gt_c    = Σ_p confusion[c, p]            pixels of class c in the ground truth
    pred_c  = Σ_g confusion[g, c]            pixels predicted as class c
    tp_c    = confusion[c, c]
    union_c = gt_c + pred_c − tp_c
    IoU_c   = tp_c / union_c   (NaN when union_c = 0: the class is in neither GT nor prediction)
    ACC_c   = tp_c / gt_c      (NaN when gt_c = 0)

Two mIoU formulas are in common use and differ when a class is predicted but absent from the
ground truth (its IoU is 0):

* ``mIoU`` — detectron2 0.6's ``SemSegEvaluator`` (the formula the published CAT-Seg / H-CLIP
  numbers were computed with): ``Σ_{c: gt_c>0} IoU_c / #{c: gt_c + pred_c > 0}``. Because a
  class predicted but absent from the GT has IoU 0, this equals the mean IoU over the classes
  with ``union_c > 0`` (also mmsegmentation's ``nanmean`` of IoU).
* ``mIoU_gt`` — detectron2 ≥ 0.7's formula (commit f3c1bc19, July 2022, the one in
  ``sal-detectron2 0.7.2``): the mean IoU over the classes present in the ground truth,
  ``Σ_{c: gt_c>0} IoU_c / #{c: gt_c > 0}``. Never lower than ``mIoU``.

and, as in detectron2 (unchanged between 0.6 and 0.7):

* ``fwIoU = Σ_{c: gt_c>0} (gt_c / Σ gt) · IoU_c``
* ``mACC  = mean_{c: gt_c>0} ACC_c``
* ``pACC  = Σ tp / Σ gt``

and, to read a figure against, the **chance** level: the expected ``mIoU`` of a predictor that
draws every pixel's class uniformly from the K classes. With ``q_c = gt_c / Σ gt``, its expected
``tp_c = q_c·N/K``, ``pred_c = N/K``, so ``IoU_c = q_c / (1 + (K − 1)·q_c)``; every class is predicted,
so detectron2 0.6's formula divides by K: ``chance = Σ_c q_c / (1 + (K − 1)·q_c) / K``.

All reported in percent. Per-class ``IoU`` differs from detectron2's per-class dictionary in one
place only: a class predicted but absent from the ground truth shows 0.0 here (its true IoU,
which detectron2 0.6's mIoU already counts as 0) where detectron2 shows NaN.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of one confusion matrix; scalars in percent, per-class arrays (K,) in percent."""

    miou: float
    miou_gt: float
    fwiou: float
    macc: float
    pacc: float
    iou: np.ndarray
    acc: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray

    @property
    def chance_miou(self) -> float:
        """Expected mIoU of uniformly random predictions (see the module docstring), percent."""
        return chance_miou(self.gt_pixels)


def chance_miou(gt_pixels) -> float:
    """``100 · Σ_c q_c / (1 + (K − 1)·q_c) / K`` for per-class ground-truth pixel counts (K,)."""
    gt = np.asarray(gt_pixels, dtype=np.float64)
    if gt.ndim != 1 or gt.size == 0 or gt.sum() <= 0:
        raise ValueError("chance_miou needs a non-empty vector of pixel counts with a positive sum")
    q = gt / gt.sum()
    k = gt.size
    return float(100.0 * np.sum(q / (1.0 + (k - 1) * q)) / k)


def compute_metrics(confusion) -> SegmentationMetrics:
    """Compute the metrics of a (K, K) confusion matrix ``confusion[gt, pred]`` (see module doc).

    Raises ``ValueError`` when the matrix holds no labelled pixel: every metric would be 0/0,
    which means the evaluated set was empty or entirely ignore-labelled.
    """
    conf = np.asarray(confusion, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {conf.shape}")
    total = conf.sum()
    if total <= 0:
        raise ValueError(
            "the confusion matrix is empty: no labelled pixel was evaluated (the dataset is "
            "empty, or all its label pixels carry the ignore label)"
        )
    tp = np.diag(conf)
    gt = conf.sum(axis=1)
    pred = conf.sum(axis=0)
    union = gt + pred - tp
    in_gt = gt > 0
    in_union = union > 0

    iou = np.full(conf.shape[0], np.nan)
    iou[in_union] = tp[in_union] / union[in_union]
    acc = np.full(conf.shape[0], np.nan)
    acc[in_gt] = tp[in_gt] / gt[in_gt]

    return SegmentationMetrics(
        miou=float(100.0 * iou[in_gt].sum() / in_union.sum()),
        miou_gt=float(100.0 * iou[in_gt].mean()),
        fwiou=float(100.0 * np.sum(gt[in_gt] / total * iou[in_gt])),
        macc=float(100.0 * acc[in_gt].mean()),
        pacc=float(100.0 * tp.sum() / total),
        iou=100.0 * iou,
        acc=100.0 * acc,
        gt_pixels=gt.astype(np.int64),
        pred_pixels=pred.astype(np.int64),
    )
