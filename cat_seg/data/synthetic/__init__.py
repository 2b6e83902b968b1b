"""Built-in synthetic dataset: procedurally drawn scenes of named classes.

16 seen classes (train and val splits), 6 held-out classes with their own val split and
vocabulary, and the generalized and selection benchmarks built from them (:mod:`.register`),
generated on first use under ``$DETECTRON2_DATASETS/synthetic``. Importing this package registers
every dataset of ``SYNTHETIC_DATASETS``.
"""
from cat_seg.data.synthetic.classes import (
    ALL_CLASSES,
    SEEN_CLASSES,
    SELECTION_CLASSES,
    UNSEEN_CLASSES,
    SyntheticClass,
)
from cat_seg.data.synthetic.register import (
    SYNTHETIC_BENCHMARKS,
    SYNTHETIC_DATASETS,
    load_synthetic_split,
    register_synthetic_datasets,
)
from cat_seg.data.synthetic.scenes import render_scene
from cat_seg.data.synthetic.storage import ensure_synthetic_dataset, generator_fingerprint

__all__ = [
    "ALL_CLASSES",
    "SEEN_CLASSES",
    "SELECTION_CLASSES",
    "SYNTHETIC_BENCHMARKS",
    "SYNTHETIC_DATASETS",
    "UNSEEN_CLASSES",
    "SyntheticClass",
    "ensure_synthetic_dataset",
    "generator_fingerprint",
    "load_synthetic_split",
    "register_synthetic_datasets",
    "render_scene",
]

register_synthetic_datasets()
