"""Pick the evaluator a dataset's metadata asks for."""
from typing import Optional

from detectron2.data import MetadataCatalog

from cat_seg.evaluation.background_evaluator import BackgroundSemSegEvaluator
from cat_seg.evaluation.sem_seg_evaluator import SemSegEvaluator


def build_sem_seg_evaluator(dataset_name: str, output_dir: Optional[str] = None,
                            distributed: bool = True) -> SemSegEvaluator:
    """The evaluator of a semantic-segmentation dataset (``evaluator_type == "sem_seg"``).

    Datasets whose metadata has ``background_class`` (PAS-20b) get
    :class:`BackgroundSemSegEvaluator`, all others :class:`SemSegEvaluator`.
    """
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", None)
    if evaluator_type != "sem_seg":
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; AHS-Seg evaluates "
            "semantic segmentation only (evaluator_type 'sem_seg'). Is the dataset registered?"
        )
    cls = BackgroundSemSegEvaluator if meta.get("background_class", None) is not None \
        else SemSegEvaluator
    return cls(dataset_name, distributed=distributed, output_dir=output_dir)
