"""CLIP_ACTIVATION_CHECKPOINTING and the head's ACTIVATION_CHECKPOINTING ("none", "selective",
"full"): same losses and gradients; what each mode keeps and what it recomputes."""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cat_seg.modeling.activation_checkpointing import MODES, check_mode, run_checkpointed
from cat_seg.modeling.head.cat_seg_head import CATSegHead
from helpers.clip import perturb_adapter, random_images, tiny_backbone
from helpers.head import TINY, randomized, tiny_inputs

_aten = torch.ops.aten
MATRIX_PRODUCTS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default,
                   _aten.convolution.default}
NORMALISATIONS = {_aten.native_layer_norm.default, _aten.native_group_norm.default}


class _OperationCounter(TorchDispatchMode):
    """Counts the aten operations run inside it."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func] += 1
        return func(*args, **(kwargs or {}))

    def total(self, ops) -> int:
        return sum(self.counts[op] for op in ops)


def _kept_while(fn):
    """fn()'s result and the number of elements autograd kept for the backward pass (tensors kept
    by a selective checkpoint's cache are not seen here, only those saved through autograd)."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t,
                                                  lambda t: t):
        out = fn()
    return out, sum(kept)


def _clip_training_pass(mode: str):
    """Loss of a tiny H-CLIP backbone's image and text paths, its gradients, the number of
    elements autograd kept, and the operations its backward pass ran."""
    backbone = tiny_backbone(activation_checkpointing=mode).train()
    perturb_adapter(backbone)
    images = random_images(backbone)

    def loss_of_both_paths():
        dense, guidance = backbone.encode_image(images)
        text = backbone.encode_text(["cat", "dog", "sky"])
        return (dense.square().mean() + sum(g.square().mean() for g in guidance)
                + text.sum(dim=1).square().mean())

    loss, kept = _kept_while(loss_of_both_paths)
    with _OperationCounter() as backward_ops:
        loss.backward()
    grads = {name: p.grad.clone() for name, p in backbone.named_parameters()
             if p.grad is not None}
    return loss.detach(), grads, kept, backward_ops


def _head_training_pass(mode: str):
    dense, text, guidance = tiny_inputs()
    head = randomized(CATSegHead(**TINY, activation_checkpointing=mode)).train()
    logits, kept = _kept_while(lambda: head(dense, text, guidance))
    with _OperationCounter() as backward_ops:
        logits.square().mean().backward()
    grads = {n: p.grad for n, p in head.named_parameters()}
    return logits.detach(), grads, kept, backward_ops


@pytest.mark.parametrize("training_pass", [_clip_training_pass, _head_training_pass],
                         ids=["clip", "head"])
def test_every_mode_gives_the_same_outputs_and_gradients(training_pass):
    out, grads, _, _ = training_pass("none")
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    for mode in ("selective", "full"):
        out_mode, grads_mode, _, _ = training_pass(mode)
        torch.testing.assert_close(out_mode, out)
        assert grads_mode.keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grads_mode[name], grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("training_pass", [_clip_training_pass, _head_training_pass],
                         ids=["clip", "head"])
def test_selective_recomputes_the_cheap_operations_only(training_pass):
    *_, kept, ops = training_pass("none")
    *_, kept_selective, ops_selective = training_pass("selective")
    *_, kept_full, ops_full = training_pass("full")
    # "none" recomputes nothing; "selective" recomputes the normalisations but not one matrix
    # product or convolution more than the gradients need; "full" recomputes those too.
    assert ops.total(NORMALISATIONS) == 0
    assert ops_selective.total(NORMALISATIONS) > 0
    assert ops_selective.total(MATRIX_PRODUCTS) == ops.total(MATRIX_PRODUCTS)
    assert ops_full.total(MATRIX_PRODUCTS) > ops.total(MATRIX_PRODUCTS)
    # Autograd's own saved tensors: the regions' are replaced by what the checkpoints keep.
    assert kept_full < 0.6 * kept and kept_selective < 0.6 * kept


def test_checkpointing_changes_nothing_without_autograd():
    plain = tiny_backbone(activation_checkpointing="none").eval()
    images = random_images(plain)
    for mode in ("selective", "full"):
        backbone = tiny_backbone(activation_checkpointing=mode).eval()
        with torch.no_grad(), _OperationCounter() as ops:
            dense = backbone.encode_image(images)[0]
        torch.testing.assert_close(dense, plain.encode_image(images)[0].detach())
        assert _aten.native_layer_norm.default in ops.counts


def test_an_unknown_mode_is_refused_with_the_key_and_the_choices():
    assert check_mode("selective", "KEY") == "selective" and MODES == ("none", "selective", "full")
    for bad in ("partial", True, "Full"):
        with pytest.raises(ValueError,
                           match=r"MODEL\.SEM_SEG_HEAD\.ACTIVATION_CHECKPOINTING.*'none'"):
            CATSegHead(**TINY, activation_checkpointing=bad)
    with pytest.raises(ValueError, match="CLIP_ACTIVATION_CHECKPOINTING"):
        tiny_backbone(activation_checkpointing=False)
    with pytest.raises(ValueError, match="'none', 'selective', 'full'"):
        run_checkpointed("sometimes", torch.neg, torch.ones(1, requires_grad=True))
