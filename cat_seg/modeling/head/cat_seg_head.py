"""CATSegHead: CAT-Seg's cost aggregation head (Cho et al., CVPR 2024).

    dense (B,D,h,w), text (B,T,P,D)
      -> cost volume cos(dense, text)                       (B,P,T,h,w)
      -> [T > CLASS_PAD_LEN: keep each image's top classes]
      -> 7x7 conv over the P templates                      (B,T,C,h,w)
      -> NUM_LAYERS x (spatial aggregation, class aggregation)
      -> decoder guided by intermediate CLIP layers          (B,T,4h,4w) logits
      -> [classes that were not kept: logit -100]

At inference (no autograd) a long vocabulary goes through in pieces of about
:data:`INFERENCE_CLASS_CHUNK` classes' worth: the spatial aggregation and the decoder treat each
class on its own and run that many classes at a time; the class aggregation mixes all classes but
at each position on its own, so it runs groups of positions. Memory then grows by such pieces, not
by every temporary of every name at once; the logits are the same.

Parameter shapes are CAT-Seg's, so its checkpoints convert by renaming alone
(``tools/convert_checkpoint.py``).
"""
import functools
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..activation_checkpointing import check_mode, run_checkpointed
from .chunking import in_chunks
from .class_aggregation import ClassAggregation
from .cost_volume import cosine_cost_volume, gather_classes, scatter_classes, select_top_classes
from .decoder import GuidedDecoder
from .spatial_aggregation import SpatialAggregation

# Classes per chunk of the per-class parts at inference (module docstring). Every benchmark's
# vocabulary (up to A-847) fits one chunk, so the benchmarks are computed exactly as before.
INFERENCE_CLASS_CHUNK = 1024


class AggregationLayer(nn.Module):
    """One spatial aggregation followed by one class aggregation."""

    def __init__(self, dim: int, appearance_guidance_dim: int, text_guidance_dim: int,
                 grid_size: Tuple[int, int], num_heads: int, window_size: int,
                 pooling_size: Sequence[int], pad_len: int):
        super().__init__()
        self.spatial = SpatialAggregation(dim, appearance_guidance_dim, grid_size, num_heads,
                                          window_size)
        self.classwise = ClassAggregation(dim, text_guidance_dim, num_heads, pooling_size,
                                          pad_len)

    def forward(self, x: torch.Tensor, appearance_guidance: torch.Tensor,
                text_guidance: torch.Tensor,
                run: Optional[Callable[..., torch.Tensor]] = None,
                class_chunk: Optional[int] = None) -> torch.Tensor:
        """x: (B,T,C,h,w), appearance_guidance: (B,G_a,h,w), text_guidance: (B,T,G_t).

        ``run(block, *inputs)`` runs each Swin block and the class aggregation (default: a call);
        the head passes its activation checkpointing here. ``class_chunk``: the spatial
        aggregation (per class) runs that many classes at a time, the class aggregation groups
        of positions holding about as much (None: all at once).
        """
        x = in_chunks(lambda part: self.spatial(part, appearance_guidance, run=run), x, class_chunk)
        classwise = functools.partial(self.classwise, class_chunk=class_chunk)
        return run(classwise, x, text_guidance) if run else classwise(x, text_guidance)


@SEM_SEG_HEADS_REGISTRY.register()
class CATSegHead(nn.Module):
    """Cost volume -> spatial/class aggregation -> guided upsampling decoder -> class logits."""

    @configurable
    def __init__(
        self,
        *,
        embed_dim: int,
        clip_width: int,
        grid_size: Tuple[int, int],
        num_templates: int,
        hidden_dim: int = 128,
        text_guidance_proj_dim: int = 128,
        appearance_guidance_proj_dim: int = 128,
        decoder_dims: Sequence[int] = (64, 32),
        decoder_guidance_dims: Sequence[int] = (256, 128),
        decoder_guidance_proj_dims: Sequence[int] = (32, 16),
        num_layers: int = 2,
        num_heads: int = 4,
        pooling_size: Sequence[int] = (2, 2),
        window_size: int = 12,
        class_pad_len: int = 256,
        activation_checkpointing: str = "none",
    ):
        """
        Args:
            embed_dim: D, width of CLIP's joint image-text embedding.
            clip_width: W, width of the CLIP vision tokens that guide the decoder.
            grid_size: (h, w), the CLIP patch grid.
            num_templates: P, prompt templates per class (channels of the cost volume).
            hidden_dim: C, width of the embedded cost volume.
            text_guidance_proj_dim / appearance_guidance_proj_dim: widths of the projected
                guidance concatenated into the queries and keys.
            decoder_dims / decoder_guidance_dims / decoder_guidance_proj_dims: per decoder stage,
                its output width, the width of the upsampled CLIP guidance and of its projection.
            num_layers: number of (spatial, class) aggregation layers.
            num_heads: attention heads of both aggregations.
            pooling_size: average pooling of the grid before class aggregation.
            window_size: Swin window (the second block shifts by half of it).
            class_pad_len: length of the class sequence (padding / top-k selection); 0 = off.
            activation_checkpointing: what each Swin block, class aggregation and decoder
                stage keeps for the backward pass in training: ``"none"`` (everything),
                ``"selective"`` (the outputs of its matrix products, convolutions and
                attention) or ``"full"`` (its inputs only); see
                :mod:`cat_seg.modeling.activation_checkpointing`. Same gradients in every mode.
        """
        super().__init__()
        if class_pad_len < 0:
            raise ValueError(f"CLASS_PAD_LEN={class_pad_len} must be >= 0 (0 disables padding "
                             "and top-k class selection)")
        for name, value in (("TEXT_GUIDANCE_PROJ_DIM", text_guidance_proj_dim),
                            ("APPEARANCE_GUIDANCE_PROJ_DIM", appearance_guidance_proj_dim)):
            if value <= 0:
                raise ValueError(f"MODEL.SEM_SEG_HEAD.{name}={value} must be positive")
        self.grid_size = tuple(grid_size)
        self.num_templates = num_templates
        self.class_pad_len = class_pad_len
        self.activation_checkpointing = check_mode(
            activation_checkpointing, "MODEL.SEM_SEG_HEAD.ACTIVATION_CHECKPOINTING")
        self.cost_embed = nn.Conv2d(num_templates, hidden_dim, kernel_size=7, padding=3)
        self.appearance_guidance_proj = nn.Conv2d(embed_dim, appearance_guidance_proj_dim, 3,
                                                  padding=1)
        self.text_guidance_proj = nn.Linear(embed_dim, text_guidance_proj_dim)
        self.layers = nn.ModuleList([
            AggregationLayer(hidden_dim, appearance_guidance_proj_dim, text_guidance_proj_dim,
                             self.grid_size, num_heads, window_size, pooling_size, class_pad_len)
            for _ in range(num_layers)])
        self.decoder = GuidedDecoder(hidden_dim, clip_width, decoder_dims, decoder_guidance_dims,
                                     decoder_guidance_proj_dims)

    @classmethod
    def from_config(cls, cfg, backbone):
        """``backbone``: the built CLIP backbone, source of every CLIP-dependent width."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "embed_dim": backbone.embed_dim,
            "clip_width": backbone.vision_width,
            "grid_size": tuple(backbone.grid_size),
            "num_templates": backbone.num_prompts,
            "hidden_dim": head.HIDDEN_DIMS,
            "text_guidance_proj_dim": head.TEXT_GUIDANCE_PROJ_DIM,
            "appearance_guidance_proj_dim": head.APPEARANCE_GUIDANCE_PROJ_DIM,
            "decoder_dims": tuple(head.DECODER_DIMS),
            "decoder_guidance_dims": tuple(head.DECODER_GUIDANCE_DIMS),
            "decoder_guidance_proj_dims": tuple(head.DECODER_GUIDANCE_PROJ_DIMS),
            "num_layers": head.NUM_LAYERS,
            "num_heads": head.NUM_HEADS,
            "pooling_size": tuple(head.POOLING_SIZES),
            "window_size": head.WINDOW_SIZES,
            "class_pad_len": head.CLASS_PAD_LEN,
            "activation_checkpointing": head.ACTIVATION_CHECKPOINTING,
        }

    def forward(self, dense: torch.Tensor, text: torch.Tensor,
                guidance: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            dense: (B, D, h, w) dense image embeddings entering the cost volume (these also give
                the appearance guidance).
            text: (T, P, D) text embeddings shared by the batch, or (B, T, P, D).
            guidance: CLIP tokens of the guidance layers, each (B, W, h, w), one per decoder
                stage.

        Returns:
            (B, T, 4h, 4w) logits (for 2 decoder stages); when T > CLASS_PAD_LEN the classes
            outside an image's top CLASS_PAD_LEN get -100.
        """
        B = dense.shape[0]
        if text.dim() == 3:
            text = text.unsqueeze(0).expand(B, *text.shape)
        if tuple(dense.shape[-2:]) != self.grid_size or text.shape[2] != self.num_templates:
            raise ValueError(
                f"CATSegHead was built for a {self.grid_size} grid and {self.num_templates} "
                f"prompt template(s), got dense {tuple(dense.shape)} and text "
                f"{tuple(text.shape)}; build the head from the same CLIP backbone")
        cost = cosine_cost_volume(dense, text)  # (B, P, T, h, w)
        num_classes = cost.shape[2]
        selected = None
        if 0 < self.class_pad_len < num_classes:
            selected = select_top_classes(cost, self.class_pad_len)
            cost = gather_classes(cost, selected, dim=2)
            text = gather_classes(text, selected, dim=1)
        x = self.embed_cost(cost)
        appearance = F.relu(self.appearance_guidance_proj(dense))
        # One text embedding per class: the normalised mean over the prompt templates.
        class_text = F.normalize(F.normalize(text, dim=-1).mean(dim=2), dim=-1)
        text_guidance = F.relu(self.text_guidance_proj(class_text))
        class_chunk = None if torch.is_grad_enabled() else INFERENCE_CLASS_CHUNK
        for layer in self.layers:
            x = layer(x, appearance, text_guidance, run=self._run, class_chunk=class_chunk)
        logits = in_chunks(lambda part: self.decoder(part, guidance, run=self._run), x, class_chunk)
        if selected is not None:
            logits = scatter_classes(logits, selected, num_classes)
        return logits

    def _run(self, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """``module(*inputs)`` with the configured activation checkpointing."""
        return run_checkpointed(self.activation_checkpointing, module, *inputs)

    def embed_cost(self, cost: torch.Tensor) -> torch.Tensor:
        """(B, P, T, h, w) cost volume -> (B, T, C, h, w): a 7x7 conv over each class's P maps."""
        B, P, T, H, W = cost.shape
        x = self.cost_embed(cost.transpose(1, 2).reshape(B * T, P, H, W))
        return x.view(B, T, -1, H, W)
