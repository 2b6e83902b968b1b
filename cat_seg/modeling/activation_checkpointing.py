"""Activation checkpointing: training memory traded for recomputation in the backward pass.

Autograd keeps, for the backward pass, the tensors each operation needs (a linear layer's input,
a normalisation's input, an activation's output). Three modes decide what a checkpointed region
(a CLIP block, a Swin block, a class-aggregation block, a decoder stage) keeps:

* ``"none"``: everything, as without checkpointing.
* ``"selective"``: the region's inputs and the outputs of its costly operations — matrix products,
  convolutions, attention — and nothing else. In the backward pass the region's forward runs again
  but these operations return their kept outputs, so only the cheap ones are recomputed:
  normalisations, activations, additions, copies. It drops the activation tensors of the 4x-wide
  MLPs (the GELU outputs), of every LayerNorm / GroupNorm and of every layout copy. Cheap where
  element-wise work is cheap (GPUs); on a CPU its recomputation costs 6-26 % of a ViT-B step
  and, with glibc keeping freed memory, saves less than it drops (docs/benchmarks.md).
* ``"full"``: the region's inputs only; the whole region runs again, matrix products included
  (about one more forward of it).

Gradients are the same in every mode: the recomputation repeats the same operations on the same
values. One rule follows for the code inside a region: an operation must not modify in place a
tensor that selective mode keeps (the output of a matrix product, a convolution or an attention),
or the kept value would no longer be the one computed; PyTorch raises an error if it happens.
"""
import functools
from typing import Any, Callable

import torch
from torch.utils.checkpoint import (CheckpointPolicy, checkpoint,
                                    create_selective_checkpoint_contexts)

MODES = ("none", "selective", "full")

_aten = torch.ops.aten
# The operations whose outputs selective mode keeps: those that cost multiply-adds.
KEPT_OPERATIONS = frozenset({
    _aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default,
    _aten.convolution.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
})


def check_mode(mode: str, key: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a ValueError naming the config ``key``."""
    if mode not in MODES:
        raise ValueError(f"{key} = {mode!r}: expected one of {', '.join(map(repr, MODES))}")
    return mode


def _keep_costly_outputs(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    if op in KEPT_OPERATIONS:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def run_checkpointed(mode: str, fn: Callable[..., Any], *inputs: Any) -> Any:
    """``fn(*inputs)``, its activations kept as ``mode`` says (module docstring).

    Outside autograd (inference, ``torch.no_grad()``) every mode is a plain call.
    """
    check_mode(mode, "activation checkpointing mode")
    if mode == "none" or not torch.is_grad_enabled():
        return fn(*inputs)
    if mode == "full":
        return checkpoint(fn, *inputs, use_reentrant=False)
    return checkpoint(fn, *inputs, use_reentrant=False, context_fn=functools.partial(
        create_selective_checkpoint_contexts, _keep_costly_outputs))  # "selective"
