"""Registration of the synthetic splits in detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

=======================  ==============  ===================  ===========
dataset name             classes         default images       benchmark
=======================  ==============  ===================  ===========
synthetic_seen_train     16 seen         300                  Syn-seen
synthetic_seen_val       16 seen         50                   Syn-seen
synthetic_unseen_val     6 unseen        50                   Syn-unseen
=======================  ==============  ===================  ===========

Registering is cheap: the images are generated the first time a split's records are asked for
(``DatasetCatalog.get``), into ``<root>/synthetic``.
"""
import os
from functools import partial
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog

from cat_seg.data.paths import dataset_root
from cat_seg.data.synthetic.classes import SEEN_CLASSES, UNSEEN_CLASSES
from cat_seg.data.synthetic.scenes import IGNORE_LABEL
from cat_seg.data.synthetic.storage import (
    ensure_synthetic_dataset,
    image_path,
    label_path,
)

# dataset name -> (split, classes, benchmark column)
SYNTHETIC_DATASETS = {
    "synthetic_seen_train": ("seen_train", SEEN_CLASSES, "Syn-seen"),
    "synthetic_seen_val": ("seen_val", SEEN_CLASSES, "Syn-seen"),
    "synthetic_unseen_val": ("unseen_val", UNSEEN_CLASSES, "Syn-unseen"),
}

# What this module registered: dataset name -> (dataset_dir, counts); makes re-registration
# with the same arguments a no-op and with other arguments a replacement.
_registered: Dict[str, tuple] = {}


def load_synthetic_split(dataset_dir: str, split: str, counts: Dict[str, int]) -> List[dict]:
    """Records of one split (generating the dataset first if needed)."""
    manifest = ensure_synthetic_dataset(dataset_dir, counts)
    return [
        {
            "file_name": image_path(dataset_dir, split, i),
            "sem_seg_file_name": label_path(dataset_dir, split, i),
            "height": height,
            "width": width,
        }
        for i, (height, width) in enumerate(manifest["sizes"][split])
    ]


def register_synthetic_datasets(
    root: Optional[str] = None,
    *,
    num_train: int = 300,
    num_val: int = 50,
    num_unseen_val: int = 50,
) -> None:
    """Register the three synthetic splits with their data under ``<root>/synthetic``.

    root: datasets root; default ``$DETECTRON2_DATASETS``, else ``./datasets`` (made absolute
        now, so a later change of the working directory does not move the data).
    num_train, num_val, num_unseen_val: images in synthetic_seen_train / _seen_val / _unseen_val.

    Idempotent; calling it again with other arguments re-registers the three datasets.
    """
    dataset_dir = os.path.abspath(os.path.join(dataset_root(root), "synthetic"))
    counts = {"seen_train": num_train, "seen_val": num_val, "unseen_val": num_unseen_val}
    for name, (split, classes, benchmark) in SYNTHETIC_DATASETS.items():
        if _registered.get(name) == (dataset_dir, counts):
            continue
        if name in DatasetCatalog.list():
            if name not in _registered:
                raise ValueError(f"dataset {name!r} is already registered by other code")
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, partial(load_synthetic_split, dataset_dir, split, counts))
        MetadataCatalog.get(name).set(
            stuff_classes=[c.name for c in classes],
            stuff_colors=[list(c.color) for c in classes],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=os.path.join(dataset_dir, "images", split),
            sem_seg_root=os.path.join(dataset_dir, "annotations", split),
            benchmark=benchmark,
        )
        _registered[name] = (dataset_dir, dict(counts))
