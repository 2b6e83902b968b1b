"""AHS-Seg: open-vocabulary semantic segmentation on detectron2.

Importing the package registers everything with detectron2, as its projects do:
the ``AHSSeg`` meta-architecture, the ``CATSegHead``, the benchmark and synthetic datasets.
"""
from .utils import quiet_imports  # noqa: F401  (first: detectron2 without its import warnings)
from . import data, evaluation  # noqa: F401  (dataset registration)
from .ahs_seg_model import AHSSeg
from .config import add_ahs_config, build_config
from .config_checks import check_config
from .predictor import SegmentationResult, Segmenter

__all__ = ["AHSSeg", "SegmentationResult", "Segmenter", "add_ahs_config", "build_config",
           "check_config"]
