"""Optimizer construction: parameter groups and full-model gradient clipping.

Parameter groups (one per distinct (lr, weight_decay) pair):

- CLIP parameters that train (OFT adapters, or CAT-Seg's q/v projections) get
  ``lr = BASE_LR * SOLVER.CLIP_MULTIPLIER``; everything else gets ``BASE_LR``.
- No weight decay on normalisation layers, biases and other 1-D / scalar parameters
  (learnable temperatures, gates), since decaying them towards 0 changes what they mean.
- Positional / class / padding embeddings get ``SOLVER.WEIGHT_DECAY_EMBED`` (names in
  ``_EMBEDDING_NAMES``): in the models built here these are the class aggregation's two padding
  parameters, ``padding_tokens`` and its twin ``padding_guidance`` (CLIP's own embeddings never
  train). Until 2026-12-02 only ``padding_tokens`` matched, so the twins decayed differently;
  that changes nothing where ``CLASS_PAD_LEN`` is 0 (the quick start). CAT-Seg's optimizer gives
  ``WEIGHT_DECAY_EMBED`` to ``nn.Embedding`` modules only, so both get ``WEIGHT_DECAY`` there:
  set ``SOLVER.WEIGHT_DECAY_EMBED`` equal to ``SOLVER.WEIGHT_DECAY`` to train as it does.
"""
from typing import Dict, List, Type

import torch
from detectron2.solver.build import maybe_add_gradient_clipping
from torch import nn

from ..modeling.clip import CLIPBackbone

_NORM_TYPES = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm2d,
)
# SOLVER.OPTIMIZER values.
OPTIMIZERS = ("ADAMW", "SGD")
# SOLVER.CLIP_GRADIENTS.CLIP_TYPE values: the whole model at once, or detectron2's per-parameter
# types.
CLIP_GRADIENT_TYPES = ("full_model", "value", "norm")
# Substrings of parameter names that are embeddings rather than weights of a layer.
_EMBEDDING_NAMES = ("positional_embedding", "class_embedding", "pos_embed", "cls_token",
                    "relative_position_bias_table", "padding_tokens", "padding_guidance")


def clip_parameter_ids(model: nn.Module) -> set:
    """ids of every parameter that belongs to a :class:`CLIPBackbone` inside ``model``."""
    ids = set()
    for module in model.modules():
        if isinstance(module, CLIPBackbone):
            ids.update(id(p) for p in module.parameters())
    return ids


def build_param_groups(model: nn.Module, base_lr: float, weight_decay: float,
                       weight_decay_norm: float, weight_decay_embed: float,
                       clip_multiplier: float) -> List[Dict]:
    """Split the trainable parameters of ``model`` into optimizer groups (see module doc)."""
    clip_ids = clip_parameter_ids(model)
    groups: Dict[tuple, List[nn.Parameter]] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr = base_lr * clip_multiplier if id(param) in clip_ids else base_lr
            full_name = f"{module_name}.{name}" if module_name else name
            if isinstance(module, _NORM_TYPES):
                wd = weight_decay_norm
            elif any(key in full_name for key in _EMBEDDING_NAMES):
                wd = weight_decay_embed
            elif param.ndim <= 1:
                wd = 0.0
            else:
                wd = weight_decay
            groups.setdefault((lr, wd), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd}
            for (lr, wd), params in groups.items()]


def with_full_model_gradient_clipping(optimizer_cls: Type[torch.optim.Optimizer],
                                      max_norm: float) -> Type[torch.optim.Optimizer]:
    """Return a subclass of ``optimizer_cls`` whose ``step`` first clips the global grad norm.

    The norm is taken over all parameters of all groups together, ``‖g‖ = sqrt(Σ_p ‖g_p‖²)``,
    and every gradient is scaled by ``min(1, max_norm / ‖g‖)`` (H-CLIP and CAT-Seg clip the
    whole model at 0.01). Done inside ``step`` so that a GradScaler's unscale comes first.
    """

    class FullModelGradientClipping(optimizer_cls):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = optimizer_cls.__name__ + "WithFullModelGradientClip"
    return FullModelGradientClipping


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (or SGD) over :func:`build_param_groups`, with the configured gradient clipping."""
    groups = build_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        clip_multiplier=cfg.SOLVER.CLIP_MULTIPLIER,
    )
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(f"SOLVER.OPTIMIZER={cfg.SOLVER.OPTIMIZER!r} is not supported; "
                         f"use {' or '.join(map(repr, OPTIMIZERS))}")
    if name == "ADAMW":
        optimizer_cls, kwargs = torch.optim.AdamW, {}
    else:
        optimizer_cls, kwargs = torch.optim.SGD, {"momentum": cfg.SOLVER.MOMENTUM}
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_cls = with_full_model_gradient_clipping(optimizer_cls, clip.CLIP_VALUE)
    elif clip.ENABLED:
        # detectron2's per-parameter "value" / "norm" clipping.
        optimizer_cls = maybe_add_gradient_clipping(cfg, optimizer_cls)
    return optimizer_cls(groups, lr=cfg.SOLVER.BASE_LR, **kwargs)
