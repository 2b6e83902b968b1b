"""The CAT-Seg head's rewritten computations equal the plain ones they replace (float64).

The head computes CAT-Seg's layers in cheaper but equivalent ways (issue 13): the decoder's
transposed convolution and 3x3 convolution as one convolution of the small map, and the Swin
blocks on tokens gathered window by window. Each is checked here against the textbook
computation, written out independently: ConvT -> concat guidance -> conv -> GroupNorm; roll ->
window partition -> softmax attention -> merge -> roll back.
"""
import pytest
import torch
import torch.nn.functional as F

from cat_seg.modeling.head.decoder import GuidedUpsampling
from cat_seg.modeling.head.spatial_aggregation import (GuidedSwinBlock, shifted_window_mask,
                                                      window_order, window_partition)
from cat_seg.modeling.head.upsample_conv import conv3x3_of_upsampled, conv3x3_of_upsampled_bias
from helpers.head import randomized, window_merge


@pytest.mark.parametrize("shape", [(3, 8, 5, 4, 4, 6), (1, 6, 3, 16, 5, 3)])
def test_conv3x3_of_upsampled_equals_transposed_then_3x3_convolution(shape):
    N, C_in, C_u, C_out, H, W = shape
    g = torch.Generator().manual_seed(0)
    x, up_w, up_b, k = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
                        for s in ((N, C_in, H, W), (C_in, C_u, 2, 2), (C_u,), (C_out, C_u, 3, 3)))
    expected = F.conv2d(F.conv_transpose2d(x, up_w, up_b, stride=2), k, padding=1)
    fused = conv3x3_of_upsampled(x, up_w, k) + conv3x3_of_upsampled_bias(up_b, k, (2 * H, 2 * W))
    torch.testing.assert_close(fused, expected)
    upstream = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(fused, (x, up_w, up_b, k), upstream),
                    torch.autograd.grad(expected, (x, up_w, up_b, k), upstream)):
        torch.testing.assert_close(a, b)


def test_guided_upsampling_equals_concatenated_guidance_then_double_conv():
    stage = randomized(GuidedUpsampling(24, 16, 8), scale=0.5).double()
    x, guidance = torch.randn(2 * 3, 24, 5, 4).double(), torch.randn(2, 8, 10, 8).double()
    u = stage.up(x)
    concatenated = torch.cat([u, guidance.repeat_interleave(3, dim=0)], dim=1)  # (B·T, 24, ..)
    y = F.relu(stage.norm1(F.conv2d(concatenated, stage.conv1.weight, padding=1)))
    expected = F.relu(stage.norm2(stage.conv2(y)))
    torch.testing.assert_close(stage(x, guidance), expected)


@pytest.mark.parametrize("shift", [0, 2])
def test_window_order_is_roll_then_window_partition(shift):
    x = torch.randn(2, 8, 12, 3)
    expected = window_partition(torch.roll(x, (-shift, -shift), dims=(1, 2)), 4)
    order = window_order(8, 12, 4, shift)
    gathered = x.flatten(1, 2)[:, order].reshape(-1, 16, 3)
    torch.testing.assert_close(gathered, expected)


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_equals_rolled_window_attention(shift):
    torch.manual_seed(0)
    H, W, window, C, G, heads = 8, 8, 4, 16, 6, 2
    block = GuidedSwinBlock(C, G, (H, W), heads, window, shift)
    block = randomized(block, scale=0.5).double().eval()
    B, T = 2, 3
    x, guidance = torch.randn(B, T, H * W, C).double(), torch.randn(B, H * W, G).double()
    # Textbook: concatenate the guidance, roll, partition, attend, merge, roll back.
    attn = block.attn
    h = torch.cat([block.norm1(x), guidance[:, None].expand(B, T, -1, -1)], dim=-1)
    q, k = attn.q(h), attn.k(h)
    v = attn.v(block.norm1(x))
    qkv = torch.cat([q, k, v], dim=-1).view(B * T, H, W, 3 * C)
    qkv = torch.roll(qkv, (-shift, -shift), dims=(1, 2))
    windows = window_partition(qkv, window)  # (B·T·nW, window², 3C)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in windows.chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / (C // heads) ** 0.5
    if shift:
        mask = shifted_window_mask(H, W, window, shift).double()
        scores = (scores.unflatten(0, (B * T, -1)) + mask[:, None]).flatten(0, 1)
    out = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    out = window_merge(attn.proj(out), window, H, W)
    out = torch.roll(out, (shift, shift), dims=(1, 2)).reshape(B, T, H * W, C)
    y = x + out
    expected = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x, guidance), expected)
