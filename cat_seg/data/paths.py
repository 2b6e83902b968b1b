"""Where the datasets are."""
import os
from typing import Optional

from ..utils.paths import default_dataset_root

# The environment variable naming the datasets root, as in detectron2 and CAT-Seg.
DATASETS_ENV = "DETECTRON2_DATASETS"


def dataset_root(root: Optional[str] = None) -> str:
    """``root``, else ``$DETECTRON2_DATASETS``, else ``./datasets`` when the current folder has
    one, else the repository's ``datasets/`` (:func:`cat_seg.utils.paths.default_dataset_root`:
    the synthetic dataset is then the same from any folder)."""
    if root is not None:
        return root
    return os.getenv(DATASETS_ENV) or default_dataset_root()
