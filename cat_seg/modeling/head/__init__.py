"""Segmentation heads; importing this package registers them in ``SEM_SEG_HEADS_REGISTRY``.

* ``CATSegHead`` (default ``MODEL.SEM_SEG_HEAD.NAME``): CAT-Seg's cost aggregation.
* ``PatchTextMatchingHead``: the one-stage feature-matching baseline (patch-text cosine).
"""
from .cat_seg_head import CATSegHead
from .patch_text_matching_head import PatchTextMatchingHead

# The heads this project's meta-architecture can drive (the check of MODEL.SEM_SEG_HEAD.NAME).
HEADS = (CATSegHead.__name__, PatchTextMatchingHead.__name__)

__all__ = ["CATSegHead", "PatchTextMatchingHead", "HEADS"]
