"""The two-layer position-wise MLP of the transformer blocks of the aggregator."""
from typing import Type

import torch
from torch import nn


class FeedForward(nn.Module):
    """``y = fc2(act(fc1(x)))``, widths ``dim -> ratio·dim -> dim``, on the last axis of ``x``."""

    def __init__(self, dim: int, ratio: int = 4, act_layer: Type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.act = act_layer()
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
