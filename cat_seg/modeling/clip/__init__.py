"""CLIP backbone (open_clip based) with H-CLIP's OFT adapters; see :mod:`.backbone`."""
from .backbone import FINETUNE_MODES, CLIPBackbone, build_clip_backbone
from .checkpoint import convert_clip_state_dict

__all__ = ["CLIPBackbone", "build_clip_backbone", "convert_clip_state_dict", "FINETUNE_MODES"]
