"""The plug-in contract of the AHS modules, and their registry.

An AHS module is an ``nn.Module`` that the meta-architecture (:class:`cat_seg.AHSSeg`) drives
through two optional methods, never by name:

* :meth:`AHSModule.feature_hook` ``(B,D,h,w) -> (B,D,h,w)``: rewrites the dense CLIP embeddings
  before the cost volume, in training *and* in every inference path (AFR);
* :meth:`AHSModule.losses` ``(AHSContext) -> {name: scalar}``: extra training losses (HPA, SDR,
  AFR's certainty loss), already weighted; never called at test time.

One training step, with the modules the config switches on, in registry order::

    features = backbone dense embeddings                      AHSContext.features
    for m with a feature hook:  x, state_m = m.feature_hook(x)  (input and state kept per module)
    logits = head(x, text, guidance)                          AHSContext.rectified = x
    losses = {"loss_sem_seg"} ∪ m.losses(context) for m with a hook, then for the others

(The losses of hook modules come first: that fixes the order in which the trainer sums them, the
one earlier releases used, so a seed gives the same numbers bit for bit.)

Adding a module is one new file: subclass :class:`AHSModule`, set its class attributes, register
it with ``@AHS_MODULE_REGISTRY.register()`` and import the file before the model is built (the
package imports HPA, SDR and AFR in :mod:`cat_seg.modeling.hyperspherical`). Its config keys live
in its :meth:`AHSModule.add_config`, which :func:`cat_seg.config.add_ahs_config` calls for every
registered module. Registration order is build order, hence the order of the parameters (and of
the gradient-norm sum when gradients are clipped): keep new modules after the existing ones.
"""
import dataclasses
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from detectron2.utils.registry import Registry
from torch import Tensor, nn

AHS_MODULE_REGISTRY = Registry("AHS_MODULE")
AHS_MODULE_REGISTRY.__doc__ = """
Registry of the AHS modules (subclasses of :class:`AHSModule`). Each is built when its switch
``MODEL.SEM_SEG_HEAD.<switch>`` is true, in registration order.
"""


@dataclasses.dataclass
class AHSContext:
    """What an AHS module may use to compute its training losses (one training step).

    Attributes:
        images: (B,3,R,R) the CLIP input of the step.
        features: (B,D,h,w) dense CLIP embeddings as the backbone returned them (before any hook).
        rectified: (B,D,h,w) the embeddings that entered the cost volume (after every hook).
        guidance: [(B,W,h,w), ...] the backbone's guidance features.
        text: (T,P,D) text embeddings of ``class_names`` (student CLIP, with gradients).
        targets: (B,H,W) class indices into ``class_names``, the ignore value where unlabelled.
        class_names: the training vocabulary.
        iteration: the trainer's iteration (schedules follow it, also across ``--resume``).
        backbone: the CLIP backbone (e.g. to run it with adapters bypassed).
        hook_inputs: by module ``attribute``, the features its feature hook received.
        hook_states: by module ``attribute``, the second value its feature hook returned.
    """

    images: Tensor
    features: Tensor
    rectified: Tensor
    guidance: List[Tensor]
    text: Tensor
    targets: Tensor
    class_names: Sequence[str]
    iteration: int
    backbone: nn.Module
    hook_inputs: Dict[str, Tensor] = dataclasses.field(default_factory=dict)
    hook_states: Dict[str, Any] = dataclasses.field(default_factory=dict)


class AHSModule(nn.Module):
    """Base class of the AHS modules: the class attributes describe it, the methods plug it in.

    Class attributes (set by every subclass):
        attribute: name of the submodule inside the model, hence the prefix of its checkpoint
            keys (e.g. ``"prototype_alignment"``); never rename one that has shipped.
        short_name: name in tables and logs (e.g. ``"HPA"``).
        switch: the ``MODEL.SEM_SEG_HEAD`` key that builds it when true.
        loss_weight_keys: its ``MODEL.SEM_SEG_HEAD`` keys that weight a loss (must be >= 0;
            checked before any work by :func:`cat_seg.config_checks.check_config`).
    """

    attribute: ClassVar[str]
    short_name: ClassVar[str]
    switch: ClassVar[str]
    loss_weight_keys: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def add_config(cls, cfg) -> None:
        """Add this module's keys (switch included, default off) to ``cfg.MODEL.SEM_SEG_HEAD``."""
        setattr(cfg.MODEL.SEM_SEG_HEAD, cls.switch, False)

    @classmethod
    def is_enabled(cls, cfg) -> bool:
        return bool(cfg.MODEL.SEM_SEG_HEAD.get(cls.switch, False))

    @classmethod
    def build(cls, cfg, backbone: nn.Module, train_dataset: Optional[str]) -> "AHSModule":
        """The module for this config and backbone (default: ``cls(cfg)``, via ``@configurable``).

        ``train_dataset`` is the name of the training dataset, or None when the model cannot
        train (an evaluation-only config)."""
        return cls(cfg)

    @classmethod
    def has_feature_hook(cls) -> bool:
        """Whether the module rewrites the features (and so also runs at inference)."""
        return cls.feature_hook is not AHSModule.feature_hook

    def feature_hook(self, features: Tensor) -> Tuple[Tensor, Any]:
        """(B,D,h,w) dense embeddings -> (B,D,h,w) new embeddings, state for :meth:`losses`.

        Not overridden: the module leaves the features alone and is skipped at inference."""
        return features, None

    def losses(self, context: AHSContext) -> Dict[str, Tensor]:
        """Weighted training losses, each a scalar under its own ``loss_*`` name."""
        return {}


def build_ahs_modules(cfg, backbone: nn.Module, train_dataset: Optional[str]
                      ) -> Dict[str, AHSModule]:
    """The modules ``cfg`` switches on, by ``attribute``, in registration order."""
    modules = {}
    for cls in ahs_module_classes():
        if cls.is_enabled(cfg):
            modules[cls.attribute] = cls.build(cfg, backbone, train_dataset)
    return modules


def ahs_module_classes() -> List[type]:
    """Every registered AHS module class, in registration order."""
    return [cls for _, cls in AHS_MODULE_REGISTRY]


def add_ahs_module_configs(cfg) -> None:
    """Add the keys of every registered AHS module (see :meth:`AHSModule.add_config`)."""
    for cls in ahs_module_classes():
        cls.add_config(cfg)
