"""Inference in pieces along one axis: the head's per-class parts run a chunk of classes at a
time, its class aggregation a group of positions at a time (:mod:`.cat_seg_head`)."""
from typing import Callable, Optional

import torch


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              chunk: Optional[int]) -> torch.Tensor:
    """``fn(x)`` for an ``fn`` that treats each index of ``x``'s dim 1 on its own, run ``chunk``
    indices at a time (None, or dim 1 no longer than ``chunk``: one call) and concatenated
    along dim 1."""
    length = x.shape[1]
    if chunk is None or length <= chunk:
        return fn(x)
    return torch.cat([fn(x[:, start:start + chunk]) for start in range(0, length, chunk)], dim=1)
