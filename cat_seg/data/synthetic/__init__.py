"""Built-in synthetic dataset: procedurally drawn scenes of named classes.

16 seen classes (train and val splits) and 6 held-out classes with their own val split and
vocabulary, generated on first use under ``$DETECTRON2_DATASETS/synthetic``. Importing this
package registers ``synthetic_seen_train``, ``synthetic_seen_val`` and ``synthetic_unseen_val``.
"""
from cat_seg.data.synthetic.classes import SEEN_CLASSES, UNSEEN_CLASSES, SyntheticClass
from cat_seg.data.synthetic.register import (
    SYNTHETIC_DATASETS,
    load_synthetic_split,
    register_synthetic_datasets,
)
from cat_seg.data.synthetic.scenes import render_scene
from cat_seg.data.synthetic.storage import ensure_synthetic_dataset, generator_fingerprint

__all__ = [
    "SEEN_CLASSES",
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
