"""Upsampling decoder: aggregated cost maps -> one logit map per class at 4x the patch grid.

Each stage doubles the resolution of every class's map with a transposed convolution and
concatenates features of an intermediate CLIP layer (upsampled to that resolution), which carry
the finer spatial detail that the last layer has lost.
"""
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .upsample_conv import conv3x3_of_upsampled, conv3x3_of_upsampled_bias


class GuidedUpsampling(nn.Module):
    """2x upsampling of every class map, guided: ``ConvT_2x2,s2`` then a GroupNorm double conv.

    ``u = ConvT(x)`` has ``in_channels - guidance_channels`` channels, so that ``[u ‖ g]`` has
    ``in_channels``; then ``y = ReLU(GN(conv3x3([u ‖ g])))``, ``y = ReLU(GN(conv3x3(y)))`` (convs
    without bias, GroupNorm with 16 channels per group).

    Two identities make this cheap without changing what it computes:

    * ``conv([u ‖ g]) = conv_u(u) + conv_g(g)`` (zero padding, no bias): the guidance is the same
      for the T class maps of an image, so its share is computed once per image and broadcast.
    * ``conv_u ∘ ConvT`` is itself a convolution of ``x``, computed without forming ``u``
      (:mod:`.upsample_conv`): half the multiply-adds of the two layers.
    """

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int):
        super().__init__()
        if not 0 < guidance_channels < in_channels:
            raise ValueError(f"decoder guidance projection width {guidance_channels} must be "
                             f"positive and below the stage input width {in_channels}; fix "
                             "DECODER_GUIDANCE_PROJ_DIMS")
        if out_channels % 16:
            raise ValueError(f"decoder width {out_channels} must be a multiple of 16 "
                             "(GroupNorm with 16 channels per group); fix DECODER_DIMS")
        self.up_channels = in_channels - guidance_channels
        self.up = nn.ConvTranspose2d(in_channels, self.up_channels, 2, stride=2)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(out_channels // 16, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(out_channels // 16, out_channels)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """x: (B·T, C_in, H, W) class maps; guidance: (B, G, 2H, 2W) -> (B·T, C_out, 2H, 2W)."""
        weight = self.conv1.weight
        y = conv3x3_of_upsampled(x, self.up.weight, weight[:, :self.up_channels])
        # Per image: the guidance's share and the upsampling bias's share, (B, C_out, 2H, 2W).
        shared = F.conv2d(guidance, weight[:, self.up_channels:], padding=1)
        if self.up.bias is not None:
            shared = shared + conv3x3_of_upsampled_bias(self.up.bias, weight[:, :self.up_channels],
                                                        y.shape[-2:])
        shared = shared.contiguous(memory_format=torch.channels_last)  # y's layout
        y = y.unflatten(0, (guidance.shape[0], -1)).add_(shared.unsqueeze(1)).flatten(0, 1)
        # In place: GroupNorm's backward reads its input, not its output, so autograd allows it,
        # and a (B·T, C, 2H, 2W) map is not allocated twice.
        y = F.relu(self.norm1(y), inplace=True)
        y = self.conv2(y.contiguous(memory_format=torch.channels_last))
        return F.relu(self.norm2(y), inplace=True)


class GuidedDecoder(nn.Module):
    """Stages ``i = 0, 1, ...``, each at ``2^(i+1)`` times the patch grid.

    Guidance of stage i: CLIP tokens of guidance layer i (B, W, h, w) ->
    ``ConvT`` (kernel = stride = 2^(i+1)) to ``guidance_dims[i]`` channels ->
    3x3 conv + ReLU to ``guidance_proj_dims[i]`` channels. After the last stage a 3x3 conv gives
    one logit per pixel and class.
    """

    def __init__(self, in_channels: int, clip_width: int, dims: Sequence[int],
                 guidance_dims: Sequence[int], guidance_proj_dims: Sequence[int]):
        super().__init__()
        if not len(dims) == len(guidance_dims) == len(guidance_proj_dims):
            raise ValueError(
                f"DECODER_DIMS {list(dims)}, DECODER_GUIDANCE_DIMS {list(guidance_dims)} and "
                f"DECODER_GUIDANCE_PROJ_DIMS {list(guidance_proj_dims)} need one entry per "
                "decoder stage each")
        self.guidance_upsamplers = nn.ModuleList([
            nn.ConvTranspose2d(clip_width, d, kernel_size=2 ** (i + 1), stride=2 ** (i + 1))
            for i, d in enumerate(guidance_dims)])
        self.guidance_projections = nn.ModuleList([
            nn.Conv2d(d, p, 3, padding=1) for d, p in zip(guidance_dims, guidance_proj_dims)])
        widths = [in_channels, *dims]
        self.stages = nn.ModuleList([
            GuidedUpsampling(widths[i], widths[i + 1], p)
            for i, p in enumerate(guidance_proj_dims)])
        self.predictor = nn.Conv2d(widths[-1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor, clip_guidance: List[torch.Tensor],
                run: Optional[Callable[..., torch.Tensor]] = None) -> torch.Tensor:
        """
        Args:
            x: (B, T, C, h, w) aggregated cost features.
            clip_guidance: one (B, W, h, w) map of CLIP tokens per stage.
            run: ``run(stage, y, g)`` runs a stage (default: ``stage(y, g)``); the head passes
                its activation checkpointing here.

        Returns:
            (B, T, 2^S·h, 2^S·w) logits, S the number of stages.
        """
        if len(clip_guidance) != len(self.stages):
            raise ValueError(f"the decoder has {len(self.stages)} stages but got "
                             f"{len(clip_guidance)} CLIP guidance maps; CLIP_GUIDANCE_LAYERS "
                             "needs one layer per entry of DECODER_DIMS")
        B, T = x.shape[:2]
        y = x.flatten(0, 1)
        for stage, upsample, project, g in zip(self.stages, self.guidance_upsamplers,
                                               self.guidance_projections, clip_guidance):
            g = F.relu(project(upsample(g)))
            y = run(stage, y, g) if run is not None else stage(y, g)
        y = self.predictor(y)
        return y.view(B, T, *y.shape[-2:])
