"""HPA: prototype initialisation, loss and momentum update against hand computations; DDP all-reduce."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cat_seg.modeling.hyperspherical_innovations import HPA

# Three classes on the unit circle: P0 = +x, P1 = +y, P2 = −x.
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def set_temperatures(hpa, taus):
    low, high = hpa.log_temperature_min, hpa.log_temperature_max
    fraction = (torch.tensor(taus, dtype=torch.float64).log() - low) / (high - low)
    with torch.no_grad():
        hpa.temperature_logits.copy_(torch.log(fraction / (1 - fraction)))


def grid(*vectors):
    """(1, D, 1, N) feature map from N D-vectors."""
    return torch.tensor(vectors).t().reshape(1, len(vectors[0]), 1, len(vectors))


def test_init_reduces_templates_and_normalises():
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [5.0, 0.0]]])  # (C=2, P=2, D=2)
    hpa = HPA(text)
    s = math.sqrt(0.5)
    torch.testing.assert_close(hpa.prototypes, torch.tensor([[s, s], [1.0, 0.0]]))
    assert hpa.prototypes.dtype == torch.float32 and "prototypes" in hpa.state_dict()
    assert [name for name, _ in hpa.named_parameters()] == ["temperature_logits"]
    hpa.init_prototypes(torch.tensor([[0.0, 3.0], [0.0, -1.0]]))  # (C, D) also accepted
    torch.testing.assert_close(hpa.prototypes, torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="training classes"):
        hpa.init_prototypes(torch.randn(3, 2))


def test_temperatures_start_at_init_and_stay_bounded():
    hpa = HPA(torch.randn(171, 512), temperature_init=0.07, temperature_min=0.01, temperature_max=1.0)
    torch.testing.assert_close(hpa.temperatures(), torch.full((171,), 0.07))
    with torch.no_grad():
        hpa.temperature_logits[:2] = torch.tensor([-1e4, 1e4])
    assert hpa.temperatures()[0].item() == pytest.approx(0.01)
    assert hpa.temperatures()[1].item() == pytest.approx(1.0)
    assert hpa.prototypes.numel() == 171 * 512 and hpa.temperature_logits.numel() == 171
    with pytest.raises(ValueError, match="MIN < INIT < MAX"):
        HPA(torch.randn(3, 4), temperature_init=0.5, temperature_max=0.4)


def test_loss_matches_hand_computation_with_per_class_temperatures():
    hpa = HPA(PROTOTYPES, loss_weight=0.5, purity=0.75).eval()
    taus = [0.1, 0.2, 0.5]
    set_temperatures(hpa, taus)
    f = [[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]]  # patch 2 will be unlabelled
    # labels 2×6 → grid 1×3, 2×2 windows: [0 0;0 1] → 0 (0.75), [1 1;1 1] → 1, [1 2;2 255] → 2/3 < 0.75
    labels = torch.tensor([[[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 255]]])
    expected = 0.0
    for vector, y in ((f[0], 0), (f[1], 1)):
        norm = math.hypot(*vector)
        unit = [v / norm for v in vector]
        logits = [(unit[0] * p[0] + unit[1] * p[1]) / tau for p, tau in zip(PROTOTYPES.tolist(), taus)]
        expected += -logits[y] + math.log(sum(math.exp(z) for z in logits))
    expected = 0.5 * expected / 2
    loss = hpa(grid(*f), labels)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_momentum_update_after_loss_matches_hand_computation():
    hpa = HPA(PROTOTYPES, momentum=0.5, purity=0.75)
    # Patches (grid 1×5, one pixel each): class 0 twice along +y, class 1 along +x and +y,
    # one unlabelled patch that must not count.
    features = grid([0.0, 1.0], [0.0, 2.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0])
    labels = torch.tensor([[[0, 0, 1, 1, 255]]])
    loss_before = hpa.eval()(features, labels)
    torch.testing.assert_close(hpa.prototypes, PROTOTYPES)  # eval mode: no update
    features.requires_grad_(True)
    loss = hpa.train()(features, labels)
    torch.testing.assert_close(loss, loss_before)  # the loss saw the prototypes from before the step
    s = math.sqrt(0.5)
    p1 = [0.5 * 0 + 0.5 * s, 0.5 * 1 + 0.5 * s]  # mean of +x, +y is normalised to (s, s) first
    n1 = math.hypot(*p1)
    expected = torch.tensor([[s, s], [p1[0] / n1, p1[1] / n1], [-1.0, 0.0]])  # class 2 absent: kept
    torch.testing.assert_close(hpa.prototypes, expected)
    loss.backward()  # the in-place update did not invalidate autograd's saved tensors
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    frozen = HPA(PROTOTYPES, momentum=1.0)
    frozen(features.detach(), labels)
    torch.testing.assert_close(frozen.prototypes, PROTOTYPES)


def test_batch_without_pure_patch_gives_zero_loss_still_in_graph():
    hpa = HPA(PROTOTYPES)
    loss = hpa(torch.randn(2, 2, 2, 2), torch.full((2, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert hpa.temperature_logits.grad is not None
    torch.testing.assert_close(hpa.prototypes, PROTOTYPES)


def test_bfloat16_autocast_loss_is_float32_and_finite():
    torch.manual_seed(0)
    hpa = HPA(torch.randn(5, 16))
    features = torch.randn(2, 16, 4, 4, requires_grad=True)
    labels = torch.randint(0, 5, (2, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = hpa(features.to(torch.bfloat16), labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()
    assert torch.isfinite(hpa.prototypes).all()
    torch.testing.assert_close(hpa.prototypes.norm(dim=1), torch.ones(5))


def test_forward_rejects_wrong_width():
    with pytest.raises(ValueError, match="dense embeddings"):
        HPA(PROTOTYPES)(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


# ------------------------------------------------------------------------------ DDP (two CPU ranks)


def _ddp_data():
    generator = torch.Generator().manual_seed(3)
    text = torch.randn(6, 2, 8, generator=generator)
    features = torch.randn(4, 8, 2, 2, generator=generator)
    labels = torch.randint(0, 4, (4, 8, 8), generator=generator)
    labels[:2, :4] = 255
    labels[3, :, :] = 5  # class 5 only in the last image (i.e. only on rank 1)
    return text, features, labels


def _ddp_worker(rank, world_size, init_file, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        text, features, labels = _ddp_data()
        hpa = HPA(text, momentum=0.6).train()
        shard = slice(2 * rank, 2 * rank + 2)
        hpa(features[shard], labels[shard])
        torch.save(hpa.prototypes, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduced_update_is_identical_on_ranks_and_equals_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert torch.equal(rank0, rank1)
    text, features, labels = _ddp_data()
    single = HPA(text, momentum=0.6).train()
    initial = single.prototypes.clone()
    single(features, labels)
    torch.testing.assert_close(rank0, single.prototypes)
    moved = (single.prototypes - initial).norm(dim=1) > 0
    assert moved[5] and moved.tolist() != [True] * 6  # class 5 (rank 1 only) moved on both; some absent
