"""cat_seg.modeling.segmentation_loss: CAT-Seg's BCE of upsampled scores, by chunks of classes."""
import pytest
import torch
import torch.nn.functional as F

from cat_seg.modeling.segmentation_loss import (CHUNK_ELEMENTS, UpsampledBCEWithLogits,
                                                classes_per_chunk, upsampled_bce_with_logits)

IGNORE = 255


def plain_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss written out as CAT-Seg writes it: upsample, one-hot, BCE-with-logits."""
    upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
                              align_corners=False)
    classes = torch.arange(logits.shape[1]).view(1, -1, 1, 1)
    one_hot = (labels.unsqueeze(1) == classes) & (labels != IGNORE).unsqueeze(1)
    return F.binary_cross_entropy_with_logits(upsampled, one_hot.to(upsampled.dtype))


def example(dtype=torch.float64, batch=2, classes=7):
    torch.manual_seed(0)
    logits = (3 * torch.randn(batch, classes, 5, 6, dtype=dtype)).requires_grad_()
    labels = torch.randint(0, classes, (batch, 13, 11))
    labels[0, :3] = IGNORE
    return logits, labels


@pytest.mark.parametrize("classes_per_step", [1, 3, 7, 100])
def test_value_and_gradient_are_the_plain_losses_for_every_chunking(classes_per_step):
    logits, labels = example()
    expected = plain_loss(logits, labels)
    expected_grad, = torch.autograd.grad(2.5 * expected, logits)
    loss = UpsampledBCEWithLogits.apply(logits, labels, IGNORE, classes_per_step)
    grad, = torch.autograd.grad(2.5 * loss, logits)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-17)


def test_gradcheck():
    logits, labels = example(batch=1, classes=3)
    assert torch.autograd.gradcheck(
        lambda x: UpsampledBCEWithLogits.apply(x, labels, IGNORE, 2), (logits,))


def test_chunk_size_follows_the_element_budget():
    assert classes_per_chunk(1, 384, 384) == CHUNK_ELEMENTS // (384 * 384) == 28
    assert classes_per_chunk(64, 1024, 1024) == 1  # never zero classes
    assert classes_per_chunk(1, 2, 2, chunk_elements=12) == 3


def test_no_full_size_tensor_is_kept_for_the_backward_pass():
    """Only the low-resolution logits and the labels are saved, not (B, T, H, W) tensors."""
    logits, labels = example(dtype=torch.float32)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        upsampled_bce_with_logits(logits, labels, IGNORE)
    assert saved and max(saved) == logits.numel()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        saved.clear()
        plain_loss(logits, labels)
    assert max(saved) == labels.numel() * logits.shape[1]  # what the plain form keeps


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_scored_in_fp32(dtype):
    logits, labels = example(dtype=torch.float32)
    half = logits.detach().to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = upsampled_bce_with_logits(half, labels, IGNORE)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == dtype
    expected = plain_loss(half.detach().float(), labels)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    assert torch.isfinite(half.grad).all() and half.grad.abs().sum() > 0
