"""PatchTextMatchingHead: the one-stage feature-matching baseline, no cost aggregation.

    dense (B,D,h,w), text (T,P,D)
      -> f = dense + proj(dense)            1x1 conv, zero-initialised: f = dense at the start
      -> logits[b, c] = s · mean_p cos(f[b], text[c, p]) + β      (B,T,h,w)

Each patch is classified by comparing its CLIP feature with each class's text embedding, as in
ZegCLIP's "one-stage baseline" (Zhou et al., CVPR 2023, its Fig. 2: "matching text and patch
embeddings from CLIP") and the *feature* side of CAT-Seg's motivation figure (Cho et al., CVPR
2024: feature vs cost aggregation, frozen vs fine-tuned CLIP). Both papers report that such a model
keeps the seen classes and loses the unseen ones once CLIP's image encoder is fine-tuned, while
CAT-Seg's cost aggregation gains on both. This head lets the miniature test that finding with the
same CLIP, data and schedule as :class:`CATSegHead` (docs/benchmarks.md, "Is the miniature
faithful?"), and serves as a plain baseline head: ``MODEL.SEM_SEG_HEAD.NAME PatchTextMatchingHead``.

It reads no aggregation key (``NUM_LAYERS``, ``HIDDEN_DIMS``, ``DECODER_*``, ...): those configure
:class:`CATSegHead`. The learnable parts are the projection (D x D + D), the scale s (kept as
log s, initialised to CLIP's initial temperature 1/0.07) and the shared bias β (initialised to 0).
With the projection at zero the logits are an increasing affine map of CLIP's own dense
zero-shot cosine, so an untrained head with a frozen CLIP ranks the classes exactly as the dense
zero-shot readout (:func:`cat_seg.evaluation.zero_shot.dense_zero_shot`) does.

The logits stay at the patch grid: the loss and inference upsample them bilinearly, as they do
the CAT-Seg head's 4h x 4w output.
"""
import math
from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from .cost_volume import cosine_cost_volume

# CLIP's initial temperature (Radford et al. 2021): logits = cos / 0.07 at the start of training.
INITIAL_TEMPERATURE = 0.07


@SEM_SEG_HEADS_REGISTRY.register()
class PatchTextMatchingHead(nn.Module):
    """Per-patch cosine between (projected) CLIP features and class text embeddings."""

    @configurable
    def __init__(self, *, embed_dim: int):
        """
        Args:
            embed_dim: D, width of CLIP's joint image-text embedding.
        """
        super().__init__()
        self.proj = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        # Zero-initialised residual: at the start f = dense, CLIP's own features.
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / INITIAL_TEMPERATURE)))
        self.bias = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, cfg, backbone):
        """``backbone``: the built CLIP backbone (its joint embedding width)."""
        return {"embed_dim": backbone.embed_dim}

    def forward(self, dense: torch.Tensor, text: torch.Tensor,
                guidance: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            dense: (B, D, h, w) dense image embeddings.
            text: (T, P, D) text embeddings shared by the batch, or (B, T, P, D).
            guidance: CLIP's intermediate tokens; not used (the signature is the heads' common
                one, see :class:`CATSegHead`).

        Returns:
            (B, T, h, w) logits.
        """
        if text.dim() == 3:
            text = text.unsqueeze(0).expand(dense.shape[0], *text.shape)
        # The cost volume's cosine, averaged over the prompt templates: (B, T, h, w).
        cosine = cosine_cost_volume(dense + self.proj(dense), text).mean(dim=1)
        return self.log_scale.exp() * cosine + self.bias
