"""The two CLIP forward passes the backbone needs, on an open_clip ``CLIP`` with split attention.

Both take each layer's projection weights explicitly (pretrained, adapter-rotated or folded) and
return their intermediate results as values: no hooks, no state kept on the modules.

* :func:`encode_image_tokens` — patch embedding, class token, positional embeddings resampled to the
  input's grid, ``ln_pre``, blocks 0 … L−2 (returning the tokens of the requested layers), the last
  block in CAT-Seg's dense mode, ``ln_post`` and ``proj`` on every patch.
* :func:`encode_text_tokens` — CLIP's causal text transformer, run only over the first
  ``n = max(end-of-text position) + 1`` positions of the batch. With the causal mask, position t sees
  positions ≤ t only, so the end-of-text features are those of the full 77-token run.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..activation_checkpointing import run_checkpointed
from .blocks import ProjectionWeights, dense_block_forward, residual_block_forward


def run_block(block: nn.Module, x: torch.Tensor, weights: ProjectionWeights, causal: bool = False,
              checkpointing: str = "none") -> torch.Tensor:
    """:func:`residual_block_forward`, its activations kept for the backward pass as the
    ``checkpointing`` mode says (:mod:`cat_seg.modeling.activation_checkpointing`)."""
    return run_checkpointed(checkpointing, residual_block_forward, block, x, weights, causal)

# Prompts per text-transformer call: bounds the activation memory of large vocabularies x templates
# (A-847 x 80 templates = 67,760 prompts) without changing any result.
TEXT_CHUNK = 4096


def resample_position_embedding(position_embedding: torch.Tensor,
                                grid: Tuple[int, int]) -> torch.Tensor:
    """(1 + g·g, W) learned embeddings on a square g x g grid -> (1 + h·w, W) for ``grid`` = (h, w).

    Bicubic, ``align_corners=False``, class-token embedding kept, as CAT-Seg resizes them.
    """
    # Python ints (not traced sizes), so that jit tracing (fvcore's FLOP count) sees constants.
    patches, width = (int(n) for n in position_embedding.shape)
    patches -= 1
    side = math.isqrt(patches)
    grid = (int(grid[0]), int(grid[1]))
    if side * side != patches:
        raise ValueError(f"positional embedding of {patches} patches is not a square grid")
    if (side, side) == grid:
        return position_embedding
    resized = position_embedding[1:].reshape(1, side, side, width).permute(0, 3, 1, 2)
    resized = F.interpolate(resized, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([position_embedding[:1], resized.reshape(width, -1).T], dim=0)


def embed_patches(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens entering the first block: ``ln_pre([cls; patches] + positions)``, (B, 1 + h·w, W),
    the positional embeddings resampled to the images' grid."""
    x = visual.conv1(images)  # (B, W, h, w)
    grid = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)  # (B, h·w, W)
    cls_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls_token, x], dim=1)
    x = x + resample_position_embedding(visual.positional_embedding, grid).to(x.dtype)
    return visual.ln_pre(x)


def encode_image_global_and_dense(
    visual: nn.Module,
    images: torch.Tensor,
    weights: Sequence[ProjectionWeights],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """CLIP's image embedding and the dense patch embeddings, from one pass over blocks 0 … L−2.

    Returns global (B, D): the class token through the full last block, ``ln_post``, ``proj`` (what
    CLIP's contrastive pretraining aligns with text); dense (B, h·w, D): as
    :func:`encode_image_tokens`. Neither is normalised.
    """
    x = embed_patches(visual, images)
    blocks = visual.transformer.resblocks
    for block, block_weights in zip(blocks[:-1], weights[:-1]):
        x = residual_block_forward(block, x, block_weights)
    # The class token attends to every token of the last block: the full block on the sequence.
    cls_out = residual_block_forward(blocks[-1], x, weights[-1])[:, 0]
    dense = dense_block_forward(blocks[-1], x, weights[-1])
    return visual.ln_post(cls_out) @ visual.proj, visual.ln_post(dense) @ visual.proj


def encode_image_tokens(
    visual: nn.Module,
    images: torch.Tensor,
    weights: Sequence[ProjectionWeights],
    guidance_layers: Sequence[int],
    checkpointing: str = "none",
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Dense patch embeddings and intermediate tokens of an open_clip ``VisionTransformer``.

    Args:
        images: (B, 3, H, W), CLIP-normalised, H and W multiples of the patch size.
        weights: one :class:`ProjectionWeights` per block.
        guidance_layers: block indices in [0, L−2] whose output patch tokens are returned.
        checkpointing: activation checkpointing mode of blocks 0 … L−2 (:func:`run_block`).
    Returns:
        dense (B, h·w, D): the last block in dense mode, ``ln_post``, ``proj`` (not normalised);
        guidance: per requested layer, (B, h·w, W) patch tokens (class token dropped), in that order.
    """
    x = embed_patches(visual, images)
    blocks = visual.transformer.resblocks
    wanted = {layer: None for layer in guidance_layers}
    for index, (block, block_weights) in enumerate(zip(blocks[:-1], weights[:-1])):
        x = run_block(block, x, block_weights, checkpointing=checkpointing)
        if index in wanted:
            wanted[index] = x[:, 1:]
    dense = dense_block_forward(blocks[-1], x, weights[-1])
    dense = visual.ln_post(dense) @ visual.proj
    return dense, [wanted[layer] for layer in guidance_layers]


def encode_text_tokens(
    clip: nn.Module,
    tokens: torch.Tensor,
    weights: Sequence[ProjectionWeights],
    truncate: bool = True,
    checkpointing: str = "none",
) -> torch.Tensor:
    """Text embeddings (N, D), not normalised, of tokenized prompts (N, context_length).

    The end-of-text token has the largest id of OpenAI's vocabulary, so its position is the argmax.
    ``truncate=False`` runs all context positions (only to check the truncation);
    ``checkpointing``: activation checkpointing mode of every block (:func:`run_block`).
    """
    outputs = []
    for chunk in tokens.split(TEXT_CHUNK):
        end_of_text = chunk.argmax(dim=-1)  # (n,)
        length = int(end_of_text.max()) + 1 if truncate else chunk.shape[1]
        x = clip.token_embedding(chunk[:, :length]) + clip.positional_embedding[:length]
        for block, block_weights in zip(clip.transformer.resblocks, weights):
            x = run_block(block, x, block_weights, causal=True, checkpointing=checkpointing)
        # ln_final is per token: normalising the end-of-text tokens only gives the same values.
        x = clip.ln_final(x[torch.arange(x.shape[0], device=x.device), end_of_text])
        outputs.append(x @ clip.text_projection)
    return torch.cat(outputs, dim=0)
