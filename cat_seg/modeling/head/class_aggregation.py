"""Class aggregation: linear attention across the classes at every (pooled) patch.

At each patch position the cost features of all classes form a sequence; attention along it lets
classes compete and share evidence (e.g. "cat" vs "dog" at the same place). The queries and keys
also see the projected text embeddings ("text guidance"). The sequence has no order, so the layer
is permutation-equivariant in the classes. The vocabulary size varies; CAT-Seg pads it to a
fixed length with learned tokens so that training and testing see sequences of the same length.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import in_chunks
from .feed_forward import FeedForward


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     eps: float = 1e-6) -> torch.Tensor:
    """Linear attention of "Transformers are RNNs" (Katharopoulos et al., 2020).

    ``out_l = φ(q_l)ᵀ Σ_s φ(k_s) v_sᵀ / (φ(q_l)ᵀ Σ_s φ(k_s) + eps)``, ``φ(x) = elu(x) + 1``.
    Cost O(L·d²) instead of O(L²·d).

    Args:
        q: (N, L, H, d) queries; k, v: (N, S, H, d) keys and values.

    Returns:
        (N, L, H, d).
    """
    q, k = F.elu(q) + 1, F.elu(k) + 1
    length = v.shape[1]
    # v / S then · S: the same value, but the sum over S stays in range in float16.
    kv = torch.einsum("nshd,nshe->nhde", k, v / length)
    normaliser = 1.0 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + eps)
    return torch.einsum("nlhd,nhde,nlh->nlhe", q, kv, normaliser) * length


class GuidedLinearAttention(nn.Module):
    """``q = W_q [x ‖ g]``, ``k = W_k [x ‖ g]``, ``v = W_v x``, multi-head linear attention.

    No output projection (as in CAT-Seg). A class's guidance is the same at every position, so
    its share ``W^g g`` is computed once per image and class and broadcast over the positions.
    """

    def __init__(self, dim: int, guidance_dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"HIDDEN_DIMS={dim} is not divisible by NUM_HEADS={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """x: (B, S, T, dim) at S positions, guidance: (B, T, guidance_dim) -> (B, S, T, dim)."""
        B, S, T, c = x.shape
        q = F.linear(x, self.q.weight[:, :c], self.q.bias)
        k = F.linear(x, self.k.weight[:, :c], self.k.bias)
        q = q + F.linear(guidance, self.q.weight[:, c:]).unsqueeze(1)
        k = k + F.linear(guidance, self.k.weight[:, c:]).unsqueeze(1)
        q, k, v = (t.reshape(B * S, T, self.num_heads, -1) for t in (q, k, self.v(x)))
        return linear_attention(q, k, v).reshape(B, S, T, c)


class ClassAggregation(nn.Module):
    """Pre-norm transformer layer across classes, on an average-pooled grid.

    ``p = AvgPool(x)`` (pooling only saves compute), classes padded to ``pad_len`` with learned
    tokens, ``p += Attn(LN(p), g)``, ``p += MLP(LN(p))``, then
    ``x += Upsample_bilinear(p)`` (padding removed).
    """

    def __init__(self, dim: int, guidance_dim: int, num_heads: int,
                 pooling_size: Sequence[int], pad_len: int):
        super().__init__()
        self.pooling_size = tuple(pooling_size)
        self.pad_len = pad_len
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GuidedLinearAttention(dim, guidance_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, ratio=4, act_layer=nn.ReLU)
        if pad_len > 0:
            # Shapes (1, 1, ·) as CAT-Seg's, so its checkpoints load unchanged.
            self.padding_tokens = nn.Parameter(torch.zeros(1, 1, dim))
            self.padding_guidance = nn.Parameter(torch.zeros(1, 1, guidance_dim))
        else:
            self.padding_tokens = self.padding_guidance = None

    def forward(self, x: torch.Tensor, guidance: torch.Tensor,
                class_chunk: Optional[int] = None) -> torch.Tensor:
        """
        Args:
            x: (B, T, C, h, w) cost features.
            guidance: (B, T, G) projected text guidance.
            class_chunk: for T > class_chunk, the positions go through the layer in
                ``ceil(T / class_chunk)`` groups. Attention runs along the classes at each
                position on its own, so the result is the same; the layer's temporaries (its
                4x-wide MLP above all) then hold about class_chunk classes' worth at a time.

        Returns:
            (B, T, C, h, w).
        """
        B, T, C, H, W = x.shape
        pooled = F.avg_pool2d(x.reshape(B * T, C, H, W), self.pooling_size)
        Hp, Wp = pooled.shape[-2:]
        pooled = pooled.view(B, T, C, Hp, Wp)
        padding = self.pad_len - T if self.padding_tokens is not None else 0
        if padding > 0:
            pooled = torch.cat([pooled, self.padding_tokens.view(1, 1, C, 1, 1).expand(
                B, padding, C, Hp, Wp)], dim=1)
            guidance = torch.cat([guidance, self.padding_guidance.expand(
                B, padding, -1)], dim=1)
        length = T + max(padding, 0)
        tokens = pooled.permute(0, 3, 4, 1, 2).reshape(B, Hp * Wp, length, C)
        # ceil(T / class_chunk) groups of positions (one when the classes fit a chunk).
        step = None if class_chunk is None else \
            math.ceil(Hp * Wp / min(Hp * Wp, math.ceil(T / class_chunk)))
        tokens = in_chunks(lambda part: self._across_classes(part, guidance), tokens, step)
        tokens = tokens.view(B, Hp, Wp, length, C)[:, :, :, :T].permute(0, 3, 4, 1, 2)
        update = F.interpolate(tokens.reshape(B * T, C, Hp, Wp), size=(H, W), mode="bilinear",
                               align_corners=True)
        return x + update.view(B, T, C, H, W)

    def _across_classes(self, tokens: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """(B, S, L, C) tokens at S positions -> the pre-norm transformer layer along L."""
        tokens = tokens + self.attn(self.norm1(tokens), guidance)
        return tokens + self.mlp(self.norm2(tokens))
