"""Contrastive pretraining of a CLIP from scratch (the miniature CLIP of the synthetic world).

The model is the backbone's own CLIP (open_clip's ``CLIP`` with split q/k/v attention, the forward
passes of :mod:`.encoders`), so the pretrained weights are exercised through exactly the code the
segmentation model runs, at the resolution it runs at (the stored positional embeddings stay at the
architecture's native grid and are resampled in every forward, as in segmentation).

Loss (CLIP's symmetric InfoNCE with a learnable temperature ``τ = 1 / exp(s)``): with L2-normalised
image embeddings ``u_i`` and caption embeddings ``v_j`` of a batch of B pairs,

    ℓ_ij = exp(s) · u_i · v_j,      s ≤ log 100
    L = ½ [ CE_rows(ℓ, Y) + CE_cols(ℓ, Yᵀ) ],     CE_rows(ℓ, Y) = −1/B Σ_i Σ_j Y_ij log softmax_j(ℓ_i)

where ``Y_ij = 1/|{k : same(i, k)}|`` when captions i and j name the same set of classes, else 0:
with a vocabulary of a few dozen words many pairs of a batch say the same thing, and calling them
negatives of each other would push apart what should coincide (``Y = I`` when every caption
differs, which is CLIP's loss exactly).

An optional *dense* term applies the same loss to the mean of the normalised patch embeddings
(the dense path CAT-Seg's cost volume reads), ``u'_i = normalise(mean_n normalise(f_in))``: it still
uses only the captions, no pixel label.
"""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import encode_image_global_and_dense, encode_text_tokens

# CLIP caps its learnable logit scale at 100 (temperature 0.01).
MAX_LOGIT_SCALE = 100.0


def own_weights(tower: nn.Module) -> list:
    """The module's own projection weights of every block of a transformer tower."""
    return [block.attn.projection_weights() for block in tower.resblocks]


def clip_embeddings(clip: nn.Module, images: torch.Tensor, tokens: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised embeddings of a batch of pairs.

    Args:
        clip: open_clip ``CLIP`` with split attention (``CLIPBackbone.clip``).
        images: (B, 3, R, R) CLIP-normalised; tokens: (B, context) caption token ids.
    Returns:
        image (B, D) (class token), dense (B, D) (mean of the normalised patch embeddings,
        renormalised), text (B, D).
    """
    pooled, dense = encode_image_global_and_dense(clip.visual, images,
                                                  own_weights(clip.visual.transformer))
    text = encode_text_tokens(clip, tokens, own_weights(clip.transformer))
    dense = F.normalize(F.normalize(dense, dim=-1).mean(dim=1), dim=-1)
    return F.normalize(pooled, dim=-1), dense, F.normalize(text, dim=-1)


def same_caption_targets(present: torch.Tensor) -> torch.Tensor:
    """(B, K) bool class sets -> (B, B) target rows ``Y`` (see the module docstring)."""
    p = present.float()
    same = (p @ p.T == p.sum(1, keepdim=True)) & (p @ p.T == p.sum(1)[None, :])
    same = same.float()
    return same / same.sum(dim=1, keepdim=True)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets; image, text (B, D) normalised, targets (B, B)
    symmetric, rows summing to 1; ``logit_scale`` the log of the inverse temperature."""
    logits = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * image @ text.T
    rows = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    cols = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (rows + cols) / 2


def to_open_clip_state_dict(clip: nn.Module, dtype: torch.dtype = torch.float16
                            ) -> Dict[str, torch.Tensor]:
    """open_clip's layout of a CLIP with split attention: ``attn.{q,k,v}_proj.{weight,bias}`` are
    packed back into ``attn.in_proj_{weight,bias}`` (the inverse of
    :func:`.checkpoint.convert_clip_state_dict`); floating tensors cast to ``dtype``."""
    state = clip.state_dict()
    packed: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".attn.")
        if prefix and leaf in ("q_proj.weight", "q_proj.bias"):
            kind = leaf.split(".")[1]
            packed[f"{prefix}.attn.in_proj_{kind}"] = torch.cat(
                [state[f"{prefix}.attn.{n}_proj.{kind}"] for n in "qkv"])
        elif prefix and leaf in ("k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"):
            continue
        else:
            packed[key] = value
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone()
            for k, v in packed.items()}


def parameter_groups(clip: nn.Module, weight_decay: float):
    """AdamW groups: weight decay on matrices only (no decay on norms, biases, embeddings,
    positional embeddings, the class token and the logit scale, as in CLIP)."""
    decay, no_decay = [], []
    for name, param in clip.named_parameters():
        if not param.requires_grad:
            continue
        embedding = "embedding" in name or name.endswith("logit_scale")
        (no_decay if param.ndim < 2 or embedding else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]

