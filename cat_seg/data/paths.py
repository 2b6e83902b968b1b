"""Where the datasets are."""
import os
from typing import Optional

# The environment variable naming the datasets root, as in detectron2 and CAT-Seg.
DATASETS_ENV = "DETECTRON2_DATASETS"


def dataset_root(root: Optional[str] = None) -> str:
    """``root``, else ``$DETECTRON2_DATASETS``, else ``datasets`` (relative to the working dir)."""
    return root if root is not None else os.getenv(DATASETS_ENV, "datasets")
