"""Where the datasets are."""
import os
from typing import Optional

from ..utils.paths import default_dataset_root, not_a_folder

# The environment variable naming the datasets root, as in detectron2 and CAT-Seg.
DATASETS_ENV = "DETECTRON2_DATASETS"


def dataset_root(root: Optional[str] = None) -> str:
    """``root``, else ``$DETECTRON2_DATASETS``, else ``./datasets`` when the current folder has
    one, else the repository's ``datasets/`` (:func:`cat_seg.utils.paths.default_dataset_root`:
    the synthetic dataset is then the same from any folder)."""
    if root is not None:
        return root
    return os.getenv(DATASETS_ENV) or default_dataset_root()


def check_dataset_root(root: Optional[str] = None) -> str:
    """The datasets root (:func:`dataset_root`) when it is a folder or does not exist yet (the
    synthetic dataset is generated there); ``NotADirectoryError`` with one line naming it and
    where it came from when it is a file."""
    path = dataset_root(root)
    problem = not_a_folder(path)
    if problem:
        source = "--root" if root is not None else (
            f"${DATASETS_ENV}" if os.getenv(DATASETS_ENV) else "the default root")
        raise NotADirectoryError(f"the dataset root {path} ({source}){problem}; set "
                                 f"{DATASETS_ENV} to the folder that holds the datasets "
                                 "(datasets/README.md)")
    return path
