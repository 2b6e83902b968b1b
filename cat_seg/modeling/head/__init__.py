"""CAT-Seg's cost aggregation head; importing this package registers ``CATSegHead``."""
from .cat_seg_head import CATSegHead

__all__ = ["CATSegHead"]
