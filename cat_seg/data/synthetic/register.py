"""Registration of the synthetic splits in detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

=========================  ===============================  ==============  ==========
dataset name               images (default count)           vocabulary      benchmark
=========================  ===============================  ==============  ==========
synthetic_seen_train       seen_train (300)                 16 seen         Syn-seen
synthetic_seen_val         seen_val (50)                    16 seen         Syn-seen
synthetic_unseen_val       unseen_val (50)                  6 held-out      Syn-unseen
synthetic_generalized_val  seen_val + unseen_val +          all 22          Syn-gen
                           mixed_val (50 + 50 + 50)
synthetic_selection_train  seen_train (300)                 13 training     Syn-sel
synthetic_selection_val    seen_val (50)                    16 seen         Syn-sel
=========================  ===============================  ==============  ==========

Two protocols (docs/benchmarks.md, "The generalized protocol"):

* **unseen-only** (Syn-unseen): held-out images scored with the held-out names alone, so a
  held-out pixel can never be taken for a seen class — the easier question;
* **generalized** (Syn-gen, Syn-sel): seen and held-out names in one vocabulary, as in ADE-150 or
  PASCAL-Context and in the zero-shot literature (ZS3Net, SPNet, ZegFormer, ZegCLIP). The metadata
  field ``unseen_classes`` names the held-out classes; the evaluator then reports mIoU(S),
  mIoU(U), their harmonic mean hIoU and the share of held-out pixels predicted as a seen class.

The **selection regime** trains on ``synthetic_selection_train`` (the 16 seen classes less the
three selection classes, whose pixels are ignored) and scores ``Syn-sel``: seen validation images
with the 16 seen names, the three selection classes as its "unseen" group. Anything that concerns
transfer is chosen there, so the six test held-out classes stay untouched by every choice.

Registering is cheap: the images are generated the first time a split's records are asked for
(``DatasetCatalog.get``), into ``<root>/synthetic``.
"""
import os
from functools import partial
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog

from cat_seg.data.paths import dataset_root
from cat_seg.data.synthetic.classes import (
    ALL_CLASSES,
    SEEN_CLASSES,
    SELECTION_CLASSES,
    SELECTION_TRAINING_CLASSES,
    UNSEEN_CLASSES,
)
from cat_seg.data.synthetic.scenes import IGNORE_LABEL
from cat_seg.data.synthetic.storage import (
    DERIVED_SPLITS,
    derived_label_path,
    derived_records,
    ensure_synthetic_dataset,
    image_path,
    label_path,
)

# dataset name -> (split whose labels it reads, vocabulary, benchmark column, held-out group).
# The held-out group (a tuple of classes) makes the dataset a generalized-protocol benchmark.
SYNTHETIC_DATASETS = {
    "synthetic_seen_train": ("seen_train", SEEN_CLASSES, "Syn-seen", ()),
    "synthetic_seen_val": ("seen_val", SEEN_CLASSES, "Syn-seen", ()),
    "synthetic_unseen_val": ("unseen_val", UNSEEN_CLASSES, "Syn-unseen", ()),
    "synthetic_generalized_val": ("generalized_val", ALL_CLASSES, "Syn-gen", UNSEEN_CLASSES),
    "synthetic_selection_train": ("selection_train", SELECTION_TRAINING_CLASSES, "Syn-sel", ()),
    "synthetic_selection_val": ("seen_val", SEEN_CLASSES, "Syn-sel", SELECTION_CLASSES),
}
# The validation datasets, by benchmark short name (what eval_ahs.sh's BENCHMARKS takes).
SYNTHETIC_BENCHMARKS = {
    "Syn-seen": "synthetic_seen_val",
    "Syn-unseen": "synthetic_unseen_val",
    "Syn-gen": "synthetic_generalized_val",
    "Syn-sel": "synthetic_selection_val",
}

# What this module registered: dataset name -> (dataset_dir, counts); makes re-registration
# with the same arguments a no-op and with other arguments a replacement.
_registered: Dict[str, tuple] = {}


def load_synthetic_split(dataset_dir: str, split: str, counts: Dict[str, int]) -> List[dict]:
    """Records of one split (generating the dataset first if needed)."""
    manifest = ensure_synthetic_dataset(dataset_dir, counts)
    if split in DERIVED_SPLITS:
        pairs = [(image_path(dataset_dir, source, i),
                  derived_label_path(dataset_dir, split, source, i), manifest["sizes"][source][i])
                 for source, i in derived_records(split, counts)]
    else:
        pairs = [(image_path(dataset_dir, split, i), label_path(dataset_dir, split, i), size)
                 for i, size in enumerate(manifest["sizes"][split])]
    return [{"file_name": image, "sem_seg_file_name": label, "height": height, "width": width}
            for image, label, (height, width) in pairs]


def register_synthetic_datasets(
    root: Optional[str] = None,
    *,
    num_train: int = 300,
    num_val: int = 50,
    num_unseen_val: int = 50,
    num_mixed_val: int = 50,
) -> None:
    """Register the synthetic datasets with their data under ``<root>/synthetic``.

    root: datasets root; default ``$DETECTRON2_DATASETS``, else ``./datasets`` (made absolute
        now, so a later change of the working directory does not move the data).
    num_train, num_val, num_unseen_val, num_mixed_val: images of the rendered splits seen_train,
        seen_val, unseen_val and mixed_val (the label-only splits reuse them).

    Idempotent; calling it again with other arguments re-registers every dataset.
    """
    dataset_dir = os.path.abspath(os.path.join(dataset_root(root), "synthetic"))
    counts = {"seen_train": num_train, "seen_val": num_val, "unseen_val": num_unseen_val,
              "mixed_val": num_mixed_val}
    for name, (split, classes, benchmark, held_out) in SYNTHETIC_DATASETS.items():
        if _registered.get(name) == (dataset_dir, counts):
            continue
        if name in DatasetCatalog.list():
            if name not in _registered:
                raise ValueError(f"dataset {name!r} is already registered by other code")
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, partial(load_synthetic_split, dataset_dir, split, counts))
        extra = {"unseen_classes": [c.name for c in held_out]} if held_out else {}
        # A label-only split's images lie in the folders of its source splits.
        images = "images" if split in DERIVED_SPLITS else os.path.join("images", split)
        MetadataCatalog.get(name).set(
            stuff_classes=[c.name for c in classes],
            stuff_colors=[list(c.color) for c in classes],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=os.path.join(dataset_dir, images),
            sem_seg_root=os.path.join(dataset_dir, "annotations", split),
            benchmark=benchmark,
            **extra,
        )
        _registered[name] = (dataset_dir, dict(counts))
