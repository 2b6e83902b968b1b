"""The vocabulary (class names the model is prompted with) of a registered dataset."""
from typing import List

from detectron2.data import MetadataCatalog


def dataset_vocabulary(dataset_name: str) -> List[str]:
    """``prompt_classes`` of a registered dataset, else its ``stuff_classes``.

    PAS-20b prompts with a wider vocabulary than the classes it scores (see
    :mod:`cat_seg.data.benchmarks`); every other dataset prompts with the classes it labels.
    Raises ``ValueError`` with the fix when the dataset declares neither.
    """
    metadata = MetadataCatalog.get(dataset_name)
    names = metadata.get("prompt_classes", None) or metadata.get("stuff_classes", None)
    if not names:
        raise ValueError(
            f"dataset {dataset_name!r} has no stuff_classes in its MetadataCatalog entry, so its "
            "vocabulary is unknown; register it (cat_seg.data) or call model.set_vocabulary")
    return list(names)
