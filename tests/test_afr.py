"""AFR: exact identity at init, parameter count, gradient flow, certainty target, bf16 autocast."""
import math

import pytest
import torch

from cat_seg.modeling.hyperspherical_innovations import AFR


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_identity_at_init_is_bit_exact():
    torch.manual_seed(0)
    afr = AFR(64)
    features = torch.randn(2, 64, 6, 5) * 3
    rectified, certainty_logits = afr(features)
    assert torch.equal(rectified, features)
    assert certainty_logits.shape == (2, 6, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for x in (features, features.to(torch.bfloat16)):
            out, _ = afr(x)
            assert out.dtype == x.dtype and torch.equal(out, x)


@pytest.mark.parametrize("dim, expected", [(512, 49_861), (768, 74_693)])
def test_parameter_count(dim, expected):
    r, k = 32, 7
    formula = (2 * dim * r + r + dim) + (2 * k * k + 1) + (dim * r + 2 * r + 1) + 1
    assert count(AFR(dim, hidden_dim=r)) == formula == expected


def _combined_loss(afr, features, text, labels):
    rectified, certainty_logits = afr(features)
    main = rectified.square().mean()  # stands in for the segmentation loss downstream of f'
    return main + afr.loss(certainty_logits, features, text, labels)


def test_every_parameter_is_in_the_graph_of_the_losses():
    torch.manual_seed(0)
    afr = AFR(16, hidden_dim=4)
    features, text = torch.randn(2, 16, 4, 4), torch.randn(3, 2, 16)
    labels = torch.randint(0, 3, (2, 4, 4)).repeat_interleave(4, 1).repeat_interleave(4, 2)  # pure patches
    _combined_loss(afr, features, text, labels).backward()
    grads = {name: p.grad for name, p in afr.named_parameters()}
    assert all(g is not None for g in grads.values())  # no unused parameter (DDP-safe)
    assert grads["alpha"].abs() > 0 and grads["certainty_head.2.weight"].abs().sum() > 0
    assert grads["channel_attention.0.weight"].abs().sum() == 0  # α = 0: gated path muted at init
    afr.zero_grad()
    with torch.no_grad():
        afr.alpha.fill_(0.5)
    _combined_loss(afr, features, text, labels).backward()
    assert all(p.grad.abs().sum() > 0 for p in afr.parameters())


def test_certainty_target_and_loss_match_hand_computation():
    afr = AFR(2, hidden_dim=2, loss_weight=0.5, purity=0.75)
    # classes along +x and +y; class 0 has two templates averaging to (1, 1)/√2·…, still nearer +x
    text = torch.tensor([[[1.0, 0.0], [1.0, 0.2]], [[0.0, 1.0], [0.0, 1.0]]])  # (T=2, P=2, D=2)
    vectors = [[1.0, 0.1], [0.1, 1.0], [1.0, 0.0], [0.2, 1.0]]  # predictions 0, 1, 0, 1
    features = torch.tensor(vectors).t().reshape(1, 2, 1, 4)
    # labels 2×8 → grid 1×4 (2×2 windows): 0 pure, 0 pure, ignored, 1 at 3/4
    labels = torch.tensor([[[0, 0, 0, 0, 255, 255, 1, 1], [0, 0, 0, 0, 255, 255, 1, 0]]])
    target, labelled = afr.certainty_target(features, text, labels)
    assert target.tolist() == [[[1.0, 0.0, 0.0, 1.0]]] and labelled.tolist() == [[[True, True, False, True]]]
    batched_target, _ = afr.certainty_target(features, text.unsqueeze(0), labels)
    assert torch.equal(batched_target, target)
    logits = torch.tensor([[[0.0, 2.0, 5.0, -1.0]]])
    loss = afr.loss(logits, features, text, labels)
    # BCE(σ(0), 1) = log 2; BCE(σ(2), 0) = log(1 + e²); BCE(σ(−1), 1) = log(1 + e)
    expected = 0.5 * (math.log(2) + math.log1p(math.exp(2)) + math.log1p(math.e)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_unlabelled_batch_gives_zero_loss():
    afr = AFR(8, hidden_dim=2)
    features = torch.randn(1, 8, 2, 2)
    _, logits = afr(features)
    loss = afr.loss(logits, features, torch.randn(3, 1, 8), torch.full((1, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0 and afr.certainty_head[0].weight.grad is not None


def test_bfloat16_autocast_no_nan():
    torch.manual_seed(0)
    afr = AFR(512)
    with torch.no_grad():
        afr.alpha.fill_(0.7)
    features = (torch.randn(2, 512, 24, 24) * 5).requires_grad_(True)
    text = torch.randn(171, 1, 512)
    labels = torch.randint(0, 171, (2, 24, 24)).repeat_interleave(16, 1).repeat_interleave(16, 2)
    labels[:, :100] = 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rectified, logits = afr(features)
        loss = rectified.float().square().mean() + afr.loss(logits, features, text, labels)
    loss.backward()
    assert torch.isfinite(rectified).all() and torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in afr.parameters())


def test_rejects_mismatched_inputs():
    afr = AFR(8)
    with pytest.raises(ValueError, match="dense embeddings"):
        afr(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="spatial_kernel_size"):
        AFR(8, spatial_kernel_size=4)
    features = torch.randn(1, 8, 2, 2)
    with pytest.raises(ValueError, match="feature grid"):
        afr.loss(torch.zeros(1, 3, 3), features, torch.randn(2, 1, 8), torch.zeros(1, 2, 2, dtype=torch.long))
