"""Pick the evaluator a dataset's metadata asks for."""
from typing import Optional

from detectron2.data import MetadataCatalog

from cat_seg.evaluation.background_evaluator import BackgroundSemSegEvaluator
from cat_seg.evaluation.generalized import GeneralizedSemSegEvaluator
from cat_seg.evaluation.sem_seg_evaluator import SemSegEvaluator


def build_sem_seg_evaluator(dataset_name: str, output_dir: Optional[str] = None,
                            distributed: bool = True) -> SemSegEvaluator:
    """The evaluator of a semantic-segmentation dataset (``evaluator_type == "sem_seg"``).

    Datasets whose metadata has ``background_class`` (PAS-20b) get
    :class:`BackgroundSemSegEvaluator`, those with ``unseen_classes`` (the generalized protocol:
    Syn-gen, Syn-sel) :class:`GeneralizedSemSegEvaluator`, all others :class:`SemSegEvaluator`.
    """
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", None)
    if evaluator_type != "sem_seg":
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; AHS-Seg evaluates "
            "semantic segmentation only (evaluator_type 'sem_seg'). Is the dataset registered?"
        )
    if meta.get("background_class", None) is not None:
        cls = BackgroundSemSegEvaluator
    elif meta.get("unseen_classes", None):
        cls = GeneralizedSemSegEvaluator
    else:
        cls = SemSegEvaluator
    return cls(dataset_name, distributed=distributed, output_dir=output_dir)
