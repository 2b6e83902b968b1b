"""Spatial aggregation: Swin blocks over each class's cost map, guided by the image's appearance.

Every class slice of the embedded cost volume is an image of ``C`` channels on the CLIP patch
grid. Two Swin blocks (regular windows, then windows shifted by half a window) refine it; the
queries and keys also see the projected CLIP image embeddings ("appearance guidance"), so that
patches that look alike exchange matching evidence, while the values carry cost features only.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .feed_forward import FeedForward

# Additive attention bias between tokens of a shifted window that were not neighbours in the
# image (CAT-Seg / Swin use -100, not -inf; kept for identical outputs).
_MASKED_BIAS = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, H, W, C) -> (N·nW, window², C), windows in row-major order within each image."""
    N, H, W, C = x.shape
    x = x.view(N, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Attention bias (nW, window², window²) of the cyclically shifted windows.

    After rolling the grid by ``-shift``, a window at the border holds patches from up to four
    image regions; tokens of different regions must not attend to each other: bias 0 within a
    region, ``-100`` across.
    """
    region = torch.zeros(1, height, width, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bands:
        for cols in bands:
            region[:, rows, cols, :] = label
            label += 1
    region = window_partition(region, window).squeeze(-1)  # (nW, window²)
    different = region[:, None, :] != region[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, _MASKED_BIAS)


def window_order(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(H·W,) grid index of every token when the grid, rolled by ``-shift``, is read window by
    window (:func:`window_partition`'s order): ``tokens[:, order]`` lays a (.., H·W, C) map out
    as consecutive windows of window² tokens, ``out[:, order] = windows`` puts it back."""
    grid = torch.arange(height * width).view(1, height, width, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, window).flatten()


class GuidedWindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with guidance in the queries and keys.

    With cost features ``c`` and appearance guidance ``g`` of a token:
    ``q = W_q [c ‖ g]``, ``k = W_k [c ‖ g]``, ``v = W_v c``,
    ``out = W_o softmax(q kᵀ / sqrt(d_head) + bias) v``.

    ``W_q [c ‖ g] = W_q^c c + W_q^g g``: the guidance is the same for the T class maps of an
    image, so its share is computed once per image and broadcast, never concatenated T times.
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
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """Per-token q, k, v.

        Args:
            x: (B, T, L, dim) normalised cost features of the T class maps of B images.
            guidance: (B, L, guidance_dim) normalised appearance guidance.

        Returns:
            (B, T, L, 3·dim): [q ‖ k ‖ v].
        """
        c = self.dim
        weight = torch.cat([self.q.weight[:, :c], self.k.weight[:, :c], self.v.weight])
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        shared = F.linear(guidance, torch.cat([self.q.weight[:, c:], self.k.weight[:, c:]]))
        if torch.is_grad_enabled():
            # Out of place: selective activation checkpointing keeps the matrix product's output
            # as computed, so it must not be modified. (B, 1, L, 3·dim) per-token share + biases.
            return torch.add(F.linear(x, weight), (F.pad(shared, (0, c)) + bias).unsqueeze(1))
        # Without autograd, in place: no second (B, T, L, 3·dim) tensor (0.75 GB for the five
        # views of a test-protocol image at 171 classes).
        qkv = F.linear(x, weight, bias)
        qkv[..., :2 * c] += shared.unsqueeze(1)
        return qkv

    def forward(self, x: torch.Tensor, guidance: torch.Tensor, window_len: int,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: (B, T, L, dim) normalised cost features, laid out as consecutive windows of
                ``window_len`` tokens (L = nW · window_len).
            guidance: (B, L, guidance_dim) normalised appearance guidance, in the same order.
            bias: (nW, window_len, window_len) additive attention bias, or None.

        Returns:
            (B, T, L, dim).
        """
        B, T, L, C = x.shape
        num_windows = L // window_len
        # (3, B·T, nW, heads, window_len, d): q, k, v of every window, as strided views.
        qkv = self.project(x, guidance).view(B * T, num_windows, window_len, 3, self.num_heads,
                                             C // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        # scaled_dot_product_attention takes its fused (flash) CPU path only for 4-D inputs with
        # a mask that broadcasts over the batch (a 5-D call falls back to the unfused math, 4x
        # slower): one call for all windows when they are unmasked, else one per window.
        if bias is None:
            q, k, v = qkv.flatten(1, 2).unbind(0)  # (B·T·nW, heads, window_len, d)
            out = F.scaled_dot_product_attention(q, k, v).view(
                B * T, num_windows, self.num_heads, window_len, -1)
        else:
            bias = bias.to(qkv.dtype)
            out = torch.stack([F.scaled_dot_product_attention(*qkv[:, :, w].unbind(0),
                                                              attn_mask=bias[w])
                               for w in range(num_windows)], dim=1)
        # (B·T, nW, heads, window_len, d) -> (B, T, L, C), heads concatenated per token.
        return self.proj(out.transpose(2, 3).reshape(B, T, L, C))


class GuidedSwinBlock(nn.Module):
    """Pre-norm Swin block: ``x += WindowAttn(LN(x), g)``, ``x += MLP(LN(x))``.

    Queries and keys see the guidance of the same patch; the windows are shifted (cyclic roll by
    ``-shift``) for the attention. Every step but the attention is per token, so the block runs
    on the tokens gathered window by window (:func:`window_order`) and scatters its result back:
    two copies of the C-wide tokens instead of rolling and partitioning the 3C-wide q, k, v.
    """

    def __init__(self, dim: int, guidance_dim: int, grid_size: Tuple[int, int], num_heads: int,
                 window: int, shift: int):
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GuidedWindowAttention(dim, guidance_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, ratio=4, act_layer=nn.GELU)
        H, W = self.grid_size
        mask = shifted_window_mask(H, W, window, shift) if shift > 0 else None
        order = window_order(H, W, window, shift)
        if torch.equal(order, torch.arange(H * W)):
            order = None  # one window covers the grid: nothing to gather
        # Derived from the grid; not learned quantities, so not part of checkpoints.
        self.register_buffer("attn_bias", mask, persistent=False)
        self.register_buffer("order", order, persistent=False)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, T, h·w, C) cost features of the T class maps of B images.
            guidance: (B, h·w, G) normalised appearance guidance.

        Returns:
            (B, T, h·w, C).
        """
        if self.order is not None:
            x, guidance = x[:, :, self.order], guidance[:, self.order]
        x = x + self.attn(self.norm1(x), guidance, self.window ** 2, self.attn_bias)
        x = x + self.mlp(self.norm2(x))
        if self.order is None:
            return x
        return torch.empty_like(x).index_copy_(2, self.order, x)


class SpatialAggregation(nn.Module):
    """Two guided Swin blocks (shift 0, then shift window/2) applied to every class's cost map.

    When the grid is not larger than the window (tiny models), one window covers the grid and
    nothing is shifted, as in CAT-Seg.
    """

    def __init__(self, dim: int, guidance_dim: int, grid_size: Tuple[int, int], num_heads: int,
                 window_size: int):
        super().__init__()
        H, W = grid_size
        window, shift = window_size, window_size // 2
        if min(H, W) <= window:
            window, shift = min(H, W), 0
        if H % window or W % window:
            raise ValueError(
                f"the CLIP patch grid {H}x{W} is not divisible by the Swin window {window}; set "
                "MODEL.SEM_SEG_HEAD.WINDOW_SIZES to a divisor of the grid (12 for a 24x24 grid)")
        self.blocks = nn.ModuleList([
            GuidedSwinBlock(dim, guidance_dim, grid_size, num_heads, window, shift=0),
            GuidedSwinBlock(dim, guidance_dim, grid_size, num_heads, window, shift=shift),
        ])
        self.guidance_norm = nn.LayerNorm(guidance_dim)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor,
                run: Optional[Callable[..., torch.Tensor]] = None) -> torch.Tensor:
        """
        Args:
            x: (B, T, C, h, w) embedded cost volume.
            guidance: (B, G, h, w) projected appearance guidance.
            run: ``run(block, tokens, g)`` runs a Swin block (default: ``block(tokens, g)``).

        Returns:
            (B, T, C, h, w).
        """
        B, T, C, H, W = x.shape
        tokens = x.permute(0, 1, 3, 4, 2).reshape(B, T, H * W, C)
        g = self.guidance_norm(guidance.flatten(2).transpose(1, 2))  # (B, h·w, G)
        for block in self.blocks:
            tokens = run(block, tokens, g) if run else block(tokens, g)
        return tokens.view(B, T, H, W, C).permute(0, 1, 4, 2, 3)
