"""Confusion-matrix semantic-segmentation evaluation (+ the PAS-20b background variant)."""
from cat_seg.evaluation.background_evaluator import BackgroundSemSegEvaluator
from cat_seg.evaluation.build import build_sem_seg_evaluator
from cat_seg.evaluation.metrics import SegmentationMetrics, compute_metrics
from cat_seg.evaluation.sem_seg_evaluator import SemSegEvaluator, merge_confusion_matrices

__all__ = [
    "BackgroundSemSegEvaluator",
    "SegmentationMetrics",
    "SemSegEvaluator",
    "build_sem_seg_evaluator",
    "compute_metrics",
    "merge_confusion_matrices",
]
