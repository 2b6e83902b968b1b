"""CLIP_ACTIVATION_CHECKPOINTING and the head's ACTIVATION_CHECKPOINTING: same losses and
gradients, fewer tensors kept for the backward pass."""
import torch

from cat_seg.modeling.head.cat_seg_head import CATSegHead
from helpers.clip import perturb_adapter, random_images, tiny_backbone
from test_head import TINY, randomized, tiny_inputs


def _kept_while(fn):
    """fn()'s result and the number of elements autograd kept for the backward pass."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t,
                                                  lambda t: t):
        out = fn()
    return out, sum(kept)


def _training_pass(checkpointing: bool):
    """Loss of a tiny H-CLIP backbone's image and text paths, its gradients, and the number of
    tensors autograd kept for the backward pass."""
    backbone = tiny_backbone(activation_checkpointing=checkpointing).train()
    perturb_adapter(backbone)
    images = random_images(backbone)

    def loss_of_both_paths():
        dense, guidance = backbone.encode_image(images)
        text = backbone.encode_text(["cat", "dog", "sky"])
        return (dense.square().mean() + sum(g.square().mean() for g in guidance)
                + text.sum(dim=1).square().mean())

    loss, kept = _kept_while(loss_of_both_paths)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in backbone.named_parameters()
             if p.grad is not None}
    return loss.detach(), grads, kept


def test_checkpointed_clip_gives_the_same_loss_and_gradients_and_keeps_less():
    loss, grads, kept = _training_pass(checkpointing=False)
    loss_ckpt, grads_ckpt, kept_ckpt = _training_pass(checkpointing=True)
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys() and any("adapter" in name for name in grads)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7)
    assert kept_ckpt < 0.6 * kept  # the blocks' activations are recomputed, not stored


def test_checkpointing_changes_nothing_without_autograd():
    backbone = tiny_backbone(activation_checkpointing=True).eval()
    plain = tiny_backbone(activation_checkpointing=False).eval()
    images = random_images(backbone)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_image(images)[0], plain.encode_image(images)[0])


def test_checkpointed_head_gives_the_same_logits_and_gradients_and_keeps_less():
    dense, text, guidance = tiny_inputs()
    results = {}
    for checkpointing in (False, True):
        head = randomized(CATSegHead(**TINY, activation_checkpointing=checkpointing)).train()
        logits, kept = _kept_while(lambda: head(dense, text, guidance))
        logits.square().mean().backward()
        results[checkpointing] = (logits.detach(), kept,
                                  {n: p.grad for n, p in head.named_parameters()})
    (logits, kept, grads), (logits_ckpt, kept_ckpt, grads_ckpt) = results[False], results[True]
    torch.testing.assert_close(logits_ckpt, logits)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6)
    assert kept_ckpt < 0.6 * kept
