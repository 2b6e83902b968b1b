"""AHS-Seg's own modules: HPA, SDR and AFR, and the stable geodesic angle they share.

Each is a plain ``nn.Module`` built from the config with one line
(``Module(cfg, ...)``, detectron2's ``@configurable``) and switched on by one key:

==========================================  =======================================  =========================
module                                      switch (``MODEL.SEM_SEG_HEAD.*``)         used
==========================================  =======================================  =========================
:class:`HypersphericalPrototypeAlignment`   ``USE_PROTOTYPE_ALIGNMENT``               training only
:class:`SelfDistillationRegularizer`        ``USE_SELF_DISTILLATION``                 training only
:class:`AdaptiveFeatureRectification`       ``USE_FEATURE_RECTIFICATION``             training and inference
==========================================  =======================================  =========================

``HPA``, ``SDR`` and ``AFR`` are the short names the design documents use. How the model drives
them (the plug-in contract, and how to add a fourth): :mod:`cat_seg.modeling.hyperspherical.contract`.
"""
from .hyperspherical import (
    AdaptiveFeatureRectification,
    HypersphericalPrototypeAlignment,
    SelfDistillationRegularizer,
)
from .hyperspherical.geodesic import geodesic_angle
from .hyperspherical.patch_labels import PATCH_IGNORE, patch_labels

HPA = HypersphericalPrototypeAlignment
SDR = SelfDistillationRegularizer
AFR = AdaptiveFeatureRectification

__all__ = [
    "AFR",
    "HPA",
    "PATCH_IGNORE",
    "SDR",
    "AdaptiveFeatureRectification",
    "HypersphericalPrototypeAlignment",
    "SelfDistillationRegularizer",
    "geodesic_angle",
    "patch_labels",
]
