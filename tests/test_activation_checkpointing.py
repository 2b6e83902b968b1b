"""MODEL.SEM_SEG_HEAD.CLIP_ACTIVATION_CHECKPOINTING: same losses and gradients, fewer tensors kept."""
import torch

from helpers.clip import perturb_adapter, random_images, tiny_backbone


def _training_pass(checkpointing: bool):
    """Loss of a tiny H-CLIP backbone's image and text paths, its gradients, and the number of
    tensors autograd kept for the backward pass."""
    backbone = tiny_backbone(activation_checkpointing=checkpointing).train()
    perturb_adapter(backbone)
    images = random_images(backbone)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t,
                                                  lambda t: t):
        dense, guidance = backbone.encode_image(images)
        text = backbone.encode_text(["cat", "dog", "sky"])
        loss = (dense.square().mean() + sum(g.square().mean() for g in guidance)
                + text.sum(dim=1).square().mean())
    loss.backward()
    grads = {name: p.grad.clone() for name, p in backbone.named_parameters()
             if p.grad is not None}
    return loss.detach(), grads, sum(kept)


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
