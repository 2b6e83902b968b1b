"""The parts a model is measured by (tools/analyze_model.py, cat_seg.analysis.measure): the one
place that names them.

Parts are found by module type: ``CLIP`` (the ``CLIPBackbone`` without its adapters), ``adapters``
(H-CLIP's OFT adapters), ``head`` (the config's SEM_SEG_HEAD class), ``HPA``, ``SDR``, ``AFR``, and
``other``. :func:`enabled_modules` says which AHS modules a config switches on.
"""
from typing import Dict

PARTS = ("CLIP", "adapters", "head", "HPA", "SDR", "AFR", "other")
# Parts a test-time forward does not use: adapters are folded into CLIP's weights in eval mode,
# HPA and SDR are training-only regularisers.
NOT_USED_AT_INFERENCE = ("adapters", "HPA", "SDR")


def part_types(cfg) -> Dict[str, tuple]:
    """Part name -> the module classes that make it up (see the module docstring)."""
    from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

    from ..modeling.clip import CLIPBackbone
    from ..modeling.clip.oft import HCLIPOrthogonalAdapter
    from ..modeling.hyperspherical_innovations import AFR, HPA, SDR

    return {"adapters": (HCLIPOrthogonalAdapter,), "HPA": (HPA,), "SDR": (SDR,), "AFR": (AFR,),
            "head": (SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME),),
            "CLIP": (CLIPBackbone,)}


def enabled_modules(cfg) -> Dict[str, bool]:
    """AHS module name -> whether ``cfg`` switches it on."""
    head = cfg.MODEL.SEM_SEG_HEAD
    return {"HPA": head.USE_PROTOTYPE_ALIGNMENT, "SDR": head.USE_SELF_DISTILLATION,
            "AFR": head.USE_FEATURE_RECTIFICATION}
