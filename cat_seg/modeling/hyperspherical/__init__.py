"""The AHS modules, one per file, their plug-in contract and what they share.

Importing this package registers HPA, SDR and AFR with :data:`AHS_MODULE_REGISTRY`, in that order
(the build order, hence the parameter order: a new module is imported after them). The short
names the design documents use live in :mod:`cat_seg.modeling.hyperspherical_innovations`.
"""
from .contract import (
    AHS_MODULE_REGISTRY,
    AHSContext,
    AHSModule,
    add_ahs_module_configs,
    ahs_module_classes,
    build_ahs_modules,
)
from .prototype_alignment import HypersphericalPrototypeAlignment  # noqa: I001  (registration order)
from .self_distillation import SelfDistillationRegularizer
from .feature_rectification import AdaptiveFeatureRectification

__all__ = [
    "AHS_MODULE_REGISTRY",
    "AHSContext",
    "AHSModule",
    "AdaptiveFeatureRectification",
    "HypersphericalPrototypeAlignment",
    "SelfDistillationRegularizer",
    "add_ahs_module_configs",
    "ahs_module_classes",
    "build_ahs_modules",
]
