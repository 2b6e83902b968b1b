"""CLIP's residual attention blocks with separate q, k, v and output projections.

open_clip's blocks keep q, k and v packed in one ``nn.MultiheadAttention.in_proj_weight``. The
backbone swaps that module for :class:`SplitQKVSelfAttention`, which holds four ``nn.Linear`` layers,
so that each projection can be rotated by its own OFT matrix, trained on its own (CAT-Seg's q/v
fine-tuning), or replaced by folded weights, and so that the parameter names say what they are
(``attn.q_proj.weight`` ...). The block's LayerNorms, MLP and LayerScales stay open_clip's modules.

Every forward takes the four projection weights explicitly (:class:`ProjectionWeights`): the
module's own, adapter-rotated ones, or folded ones. Biases are always the module's own (OFT rotates
weights only, as H-CLIP does).

Shapes: B batch, N tokens, W width; tensors are batch-first (B, N, W).
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionWeights(NamedTuple):
    """The (W, W) weights of one attention layer, ``nn.Linear`` layout (out_features, in_features)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor


class SplitQKVSelfAttention(nn.Module):
    """Multi-head self-attention ``softmax(q kᵀ / √d_head [+ causal mask]) v``, split projections.

    Numerically the same function as ``nn.MultiheadAttention`` with packed in-projection:
    ``q = x W_qᵀ + b_q`` (likewise k, v), heads of width d_head = W / heads, output ``a W_oᵀ + b_o``.
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"attention width {width} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    @classmethod
    def from_multihead_attention(cls, attention: nn.MultiheadAttention) -> "SplitQKVSelfAttention":
        """The same attention with its packed in-projection split into q, k, v (values copied)."""
        if not attention._qkv_same_embed_dim or attention.in_proj_bias is None:
            raise ValueError("expected a self-attention with packed in-projection weights and biases")
        split = cls(attention.embed_dim, attention.num_heads)
        with torch.no_grad():
            for proj, weight, bias in zip(
                (split.q_proj, split.k_proj, split.v_proj),
                attention.in_proj_weight.chunk(3, dim=0),
                attention.in_proj_bias.chunk(3, dim=0),
            ):
                proj.weight.copy_(weight)
                proj.bias.copy_(bias)
            split.out_proj.weight.copy_(attention.out_proj.weight)
            split.out_proj.bias.copy_(attention.out_proj.bias)
        return split

    def projection_weights(self) -> ProjectionWeights:
        """The module's own weights (the pretrained ones, unless fine-tuned in ``attention`` mode)."""
        return ProjectionWeights(self.q_proj.weight, self.k_proj.weight, self.v_proj.weight,
                                 self.out_proj.weight)

    def forward(self, x: torch.Tensor, weights: Optional[ProjectionWeights] = None,
                causal: bool = False) -> torch.Tensor:
        """(B, N, W) -> (B, N, W); ``causal``: token i attends to tokens ≤ i only (CLIP's text)."""
        w = weights if weights is not None else self.projection_weights()
        batch, tokens, width = x.shape
        heads = self.num_heads

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, W) -> (B, heads, N, W / heads)
            return t.view(batch, tokens, heads, width // heads).transpose(1, 2)

        q = split_heads(F.linear(x, w.q, self.q_proj.bias))
        k = split_heads(F.linear(x, w.k, self.k_proj.bias))
        v = split_heads(F.linear(x, w.v, self.v_proj.bias))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        attended = attended.transpose(1, 2).reshape(batch, tokens, width)
        return F.linear(attended, w.out, self.out_proj.bias)

    def value_path(self, x: torch.Tensor, weights: Optional[ProjectionWeights] = None) -> torch.Tensor:
        """Each token's value through the output projection, unmixed: ``(x W_vᵀ + b_v) W_oᵀ + b_o``."""
        w = weights if weights is not None else self.projection_weights()
        return F.linear(F.linear(x, w.v, self.v_proj.bias), w.out, self.out_proj.bias)


def residual_block_forward(block: nn.Module, x: torch.Tensor, weights: ProjectionWeights,
                           causal: bool = False) -> torch.Tensor:
    """CLIP's pre-norm block: ``x + ls_1(attn(ln_1 x))``, then ``+ ls_2(mlp(ln_2 ·))``. (B, N, W)."""
    x = x + block.ls_1(block.attn(block.ln_1(x), weights, causal=causal))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def dense_block_forward(block: nn.Module, x: torch.Tensor, weights: ProjectionWeights) -> torch.Tensor:
    """The last vision block in CAT-Seg's "dense" mode, for the patch tokens only.

    ``y_i = ls_1(out(v(ln_1 x_i))) + x_cls``: every patch keeps its own value through the output
    projection, with no attention, and takes the class token's residual; then the usual MLP,
    ``y_i + ls_2(mlp(ln_2 y_i))``. (B, 1 + N, W) -> (B, N, W); the class token's own output is not
    used by the dense features, so it is not computed.
    """
    cls_token, patches = x[:, :1], x[:, 1:]
    y = block.ls_1(block.attn.value_path(block.ln_1(patches), weights)) + cls_token
    return y + block.ls_2(block.mlp(block.ln_2(y)))
