"""CAT-Seg's training loss, computed a few classes at a time: BCE-with-logits of upsampled scores.

The loss of logits ``L`` (B, T, h, w) against labels ``y`` (B, H, W) is

    U = bilinear(L, (H, W)),    Y[b, c, p] = 1 if y[b, p] == c (and p is not ignored) else 0,
    loss = mean over (b, c, p) of  softplus(U) − U·Y,

which is ``F.binary_cross_entropy_with_logits(U, Y)`` written with ``softplus(x) = log(1 + eˣ)``.
Its gradient is ``∂loss/∂U = (σ(U) − Y) / N`` with N = B·T·H·W, carried back to ``L`` by the
bilinear upsampling's adjoint.

Written out plainly, the loss allocates a dozen (B, T, H, W) tensors, 100 MB per image each at
171 classes and 384²: the upsampled logits and the float one-hot targets, kept for the backward
pass, and the temporaries of the BCE and of its gradient. On a CPU, where freed memory is kept for
reuse (:mod:`cat_seg.utils.allocator`), such blocks leave holes in the heap that later requests do
not fit, and the resident peak grows (docs/benchmarks.md, third sitting: −0.3 to −0.8 GB with
activation checkpointing). :class:`UpsampledBCEWithLogits` keeps only ``L`` and the labels, and
computes the loss and its gradient over chunks of classes, re-upsampling each chunk in the
backward pass (the upsampling is a small part of the step). The values are the same up to the
order of summation.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Elements of one (B, classes, H, W) chunk: 4 Mi fp32 values, 16 MiB per temporary.
CHUNK_ELEMENTS = 1 << 22


def classes_per_chunk(batch: int, height: int, width: int,
                      chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """How many classes one chunk holds: ``chunk_elements // (B·H·W)``, at least one."""
    return max(1, chunk_elements // max(1, batch * height * width))


class UpsampledBCEWithLogits(torch.autograd.Function):
    """``(L (B,T,h,w), labels (B,H,W) int, ignore_value, chunk) -> mean BCE`` (0-dim).

    See the module docstring for the formula. Pixels labelled ``ignore_value`` have target 0 for
    every class and stay in the mean, as in CAT-Seg. The arithmetic is in fp32, or fp64 for fp64
    logits, whatever autocast says (it is off inside): autocast runs
    ``binary_cross_entropy_with_logits`` in fp32 too.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_value: int,
                chunk: int) -> torch.Tensor:
        ctx.save_for_backward(logits, labels)
        ctx.ignore_value, ctx.chunk = ignore_value, chunk
        total = torch.zeros((), dtype=_compute_dtype(logits), device=logits.device)
        with torch.autocast(logits.device.type, enabled=False):
            for start, upsampled, targets in _chunks(logits, labels, ignore_value, chunk):
                # softplus(U) − U·Y, summed; the one-hot's product is a masked sum of U.
                total += F.softplus(upsampled).sum() - upsampled[targets].sum()
        return total / (labels.numel() * logits.shape[1])

    @staticmethod
    @once_differentiable  # the loss is differentiated once, by the training step
    def backward(ctx, grad_loss: torch.Tensor):
        logits, labels = ctx.saved_tensors
        scale = grad_loss.to(_compute_dtype(logits)) / (labels.numel() * logits.shape[1])
        grad_logits = torch.empty_like(logits)
        size = list(labels.shape[-2:])
        with torch.autocast(logits.device.type, enabled=False):
            for start, upsampled, targets in _chunks(logits, labels, ctx.ignore_value, ctx.chunk):
                grad_upsampled = upsampled.sigmoid_().sub_(targets.to(upsampled.dtype)).mul_(scale)
                logits_size = [*upsampled.shape[:2], *logits.shape[-2:]]  # the chunk's (B, k, h, w)
                grad_chunk = torch.ops.aten.upsample_bilinear2d_backward(
                    grad_upsampled, size, logits_size, False)
                grad_logits[:, start:start + grad_chunk.shape[1]] = grad_chunk
        return grad_logits, None, None, None


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """fp32 for half-precision logits, else their own dtype (fp32 or fp64)."""
    return torch.promote_types(logits.dtype, torch.float32)


def _chunks(logits: torch.Tensor, labels: torch.Tensor, ignore_value: int, chunk: int):
    """Yield ``(first class, U chunk (B,k,H,W), one-hot chunk (B,k,H,W) bool)``."""
    valid = (labels != ignore_value).unsqueeze(1)  # (B, 1, H, W)
    labels = labels.unsqueeze(1)
    for start in range(0, logits.shape[1], chunk):
        part = logits[:, start:start + chunk].to(_compute_dtype(logits))
        upsampled = F.interpolate(part, size=labels.shape[-2:], mode="bilinear",
                                  align_corners=False)
        classes = torch.arange(start, start + part.shape[1], device=labels.device)
        targets = (labels == classes.view(1, -1, 1, 1)) & valid
        yield start, upsampled, targets


def upsampled_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor, ignore_value: int,
                              chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """CAT-Seg's loss (module docstring) of ``logits`` (B,T,h,w) against ``labels`` (B,H,W)."""
    batch, height, width = labels.shape
    chunk = classes_per_chunk(batch, height, width, chunk_elements)
    return UpsampledBCEWithLogits.apply(logits, labels, ignore_value, chunk)
