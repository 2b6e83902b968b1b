"""A 3x3 convolution of a 2x-upsampled map, computed on the map before upsampling.

CAT-Seg's decoder upsamples every class map with a transposed convolution (kernel 2, stride 2)
and convolves the result with a 3x3 kernel. Both are linear, so their composition is one
convolution of the small map: with ``u = ConvT(x)`` (C_u channels, 2H x 2W) and ``y = conv3x3(u)``
(zero padding), the output pixel ``(2i+a, 2j+b)`` of phase ``(a, b) ∈ {0,1}²`` reads ``u`` rows
``2i+a-1 .. 2i+a+1``, i.e. ``x`` rows ``i+a-1`` and ``i+a`` only (``u`` row ``2m+P`` comes from
``x`` row ``m`` through the transposed kernel's row ``P``). Hence

    y[:, :, 2i+a, 2j+b] = Σ_{r,s∈{0,1}} E[a,b,:,:,r,s] · x_pad[:, i+a+r, j+b+s]  (+ bias term)
    E[a,b,o,c,r,s] = Σ_{u, d, e} K[o,u,d,e] · Wᵀ[c,u,P(a,d),P(b,e)] · [r = R(a,d)][s = R(b,e)]

with ``x_pad`` = ``x`` zero-padded by one pixel, ``d, e ∈ {0,1,2}`` the 3x3 taps,
``R(a,d) = ⌊(a+d-1)/2⌋ + 1 - a`` the row of the 2x2 window and ``P(a,d) = (a+d-1) mod 2`` the
transposed kernel's row. One 2x2 convolution of ``x_pad`` to ``4·C_out`` channels gives every
phase at once; it needs ``16·C_in`` multiply-adds per output pixel and channel instead of
``C_u·(C_in + 9)`` for the two layers (12.9 instead of 26.6 GMACs in a ViT-B decoder stage),
and ``u`` is never stored (less training memory).

The transposed convolution's bias ``β`` is the same at every ``u`` pixel but the 3x3 kernel
sees zero padding outside ``u``, so its share depends on the position near the border only:
``conv3x3(β·1_{2H x 2W})``, one (C_out, 2H, 2W) map shared by all class maps
(:func:`conv3x3_of_upsampled_bias`).
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def _phase_taps() -> torch.Tensor:
    """S[a, r, d, P] = 1 when 3x3 tap ``d`` of output phase ``a`` reads row ``r`` of the 2x2
    window on ``x_pad`` through row ``P`` of the transposed kernel (same table for columns)."""
    taps = torch.zeros(2, 2, 3, 2)
    for a in range(2):
        for d in range(3):
            offset = a + d - 1  # u row 2i + offset, offset ∈ {-1, 0, 1, 2}
            taps[a, offset // 2 + 1 - a, d, offset % 2] = 1
    return taps


# A constant of the geometry: built once, moved to the weights' device and dtype per call.
_PHASE_TAPS = _phase_taps()


def conv3x3_of_upsampled(x: torch.Tensor, up_weight: torch.Tensor,
                         conv_weight: torch.Tensor) -> torch.Tensor:
    """``conv2d(conv_transpose2d(x, up_weight, stride=2), conv_weight, padding=1)``, no biases.

    Args:
        x: (N, C_in, H, W).
        up_weight: (C_in, C_u, 2, 2) weight of the transposed convolution.
        conv_weight: (C_out, C_u, 3, 3) weight of the 3x3 convolution.

    Returns:
        (N, C_out, 2H, 2W), in channels-last memory format.
    """
    N, C_in, H, W = x.shape
    C_out = conv_weight.shape[0]
    if tuple(up_weight.shape[2:]) != (2, 2) or tuple(conv_weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected a 2x2 transposed kernel and a 3x3 kernel, got "
                         f"{tuple(up_weight.shape)} and {tuple(conv_weight.shape)}")
    taps = _PHASE_TAPS.to(conv_weight.device, conv_weight.dtype)
    # (C_out, C_in, 3, 3, 2, 2): every (3x3 tap, transposed-kernel tap) pair, then sorted into
    # the 2x2 windows of the four phases.
    pairs = torch.einsum("oude,cuPQ->ocdePQ", conv_weight, up_weight)
    kernel = torch.einsum("ocdePQ,ardP,bseQ->abocrs", pairs, taps, taps)
    # Channels-last: oneDNN's convolutions run 1.3-1.6x faster in it on the CPU, and it makes
    # the interleaving below a copy of contiguous C_out-vectors.
    x_pad = F.pad(x, (1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    phases = F.conv2d(x_pad, kernel.reshape(4 * C_out, C_in, 2, 2))  # (N, 4·C_out, H+1, W+1)
    phases = phases.permute(0, 2, 3, 1).reshape(N, H + 1, W + 1, 2, 2, C_out)  # a view
    # Interleave the phases: out[n, i, a, j, b, o] = phases[n, i + a, j + b, a, b, o].
    out = phases.new_empty(N, H, 2, W, 2, C_out)
    for a in range(2):
        for b in range(2):
            out[:, :, a, :, b] = phases[:, a:a + H, b:b + W, a, b]
    return out.view(N, 2 * H, 2 * W, C_out).permute(0, 3, 1, 2)


def conv3x3_of_upsampled_bias(up_bias: torch.Tensor, conv_weight: torch.Tensor,
                              size: Tuple[int, int]) -> torch.Tensor:
    """The share of the transposed convolution's bias in :func:`conv3x3_of_upsampled`'s output:
    ``conv2d(β·1, conv_weight, padding=1)`` on the (2H, 2W) = ``size`` grid -> (1, C_out, 2H, 2W).
    """
    kernel = torch.einsum("oude,u->ode", conv_weight, up_bias).unsqueeze(1)  # (C_out, 1, 3, 3)
    ones = conv_weight.new_ones(1, 1, *size)
    return F.conv2d(ones, kernel, padding=1)
