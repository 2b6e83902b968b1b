"""The parts a model is measured by (tools/analyze_model.py, cat_seg.analysis.measure).

Parts are found by module type: ``CLIP`` (the ``CLIPBackbone`` without its adapters), ``adapters``
(H-CLIP's OFT adapters), ``head`` (the config's SEM_SEG_HEAD class), one part per registered AHS
module (its ``short_name``: ``HPA``, ``SDR``, ``AFR``, ... read off the registry, so a new module
is measured without a change here), and ``other``.
"""
from typing import Dict, Tuple

from ..modeling.hyperspherical import ahs_module_classes


def parts() -> Tuple[str, ...]:
    """Every part name, in table order."""
    return ("CLIP", "adapters", "head", *(cls.short_name for cls in ahs_module_classes()), "other")


def not_used_at_inference() -> Tuple[str, ...]:
    """Parts a test-time forward does not use: the adapters (folded into CLIP's weights in eval
    mode) and the AHS modules without a feature hook (training-only losses, e.g. HPA and SDR)."""
    return ("adapters", *(cls.short_name for cls in ahs_module_classes()
                          if not cls.has_feature_hook()))


def part_types(cfg) -> Dict[str, tuple]:
    """Part name -> the module classes that make it up, most specific part first."""
    from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

    from ..modeling.clip import CLIPBackbone
    from ..modeling.clip.oft import HCLIPOrthogonalAdapter

    return {"adapters": (HCLIPOrthogonalAdapter,),
            **{cls.short_name: (cls,) for cls in ahs_module_classes()},
            "head": (SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME),),
            "CLIP": (CLIPBackbone,)}


def enabled_modules(cfg) -> Dict[str, bool]:
    """AHS module short name -> whether ``cfg`` switches it on."""
    return {cls.short_name: cls.is_enabled(cfg) for cls in ahs_module_classes()}
