"""The shared pieces of the AHS modules (geodesic angle, area-fraction patch labels) and their config keys."""
import math

import pytest
import torch

from cat_seg.modeling.hyperspherical_innovations import (
    AFR,
    HPA,
    PATCH_IGNORE,
    SDR,
    geodesic_angle,
    patch_labels,
)


# ---------------------------------------------------------------------------------------- geodesic


def test_geodesic_angle_hand_values():
    a = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, -5.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, -2.0], [1.0, 1.0], [2.0, 4.0], [0.0, 1.0]])
    expected = torch.tensor([math.pi / 2, math.pi / 2, math.pi / 4, 0.0, math.pi])
    torch.testing.assert_close(geodesic_angle(a, b), expected, atol=1e-6, rtol=0)


def test_geodesic_angle_matches_acos_on_random_pairs():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 16, generator=generator, dtype=torch.float64)
    b = torch.randn(64, 16, generator=generator, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    torch.testing.assert_close(geodesic_angle(a, b), torch.acos(cos), atol=1e-12, rtol=0)
    a.requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: geodesic_angle(x, y), (a[:4], b[:4]))


def test_geodesic_angle_keeps_small_angles_where_acos_loses_them():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([1.0, 1e-4])
    assert torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=0)).item() == 0.0  # float32 acos: lost
    assert geodesic_angle(a, b).item() == pytest.approx(math.atan(1e-4), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_geodesic_angle_gradients_finite_for_equal_opposite_and_near_pairs(dtype):
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(8, 512, generator=generator)
    noise = 1e-3 * torch.randn(8, 512, generator=generator)
    ones = torch.ones(8, 512)  # exactly representable: the cosine rounds to exactly ±1
    pairs = {
        "equal": (base, base.clone()),
        "equal ones": (ones, ones.clone()),
        "opposite ones": (ones, -ones),
        "opposite": (base, -base),
        "near-identical": (base, base + noise),
        "near-antipodal": (base, -base + noise),
        "scaled": (base, 7.0 * base),
        "zero vector": (torch.zeros(8, 512), base),
    }
    for name, (a, b) in pairs.items():
        a = a.to(dtype).clone().requires_grad_(True)
        b = b.to(dtype).clone().requires_grad_(True)
        angle = geodesic_angle(a, b)
        assert angle.dtype == torch.float32
        angle.sum().backward()
        assert torch.isfinite(angle).all(), name
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), name
        assert a.grad.dtype == dtype
        if name != "zero vector":  # |∂θ/∂a| = 1/‖a‖ wherever θ is differentiable, 0 at θ = 0 or π
            bound = 1.05 / a.detach().float().norm(dim=-1)
            assert (a.grad.float().norm(dim=-1) <= bound).all(), name
    equal = torch.ones(3, 4, dtype=dtype)
    assert geodesic_angle(equal, equal).abs().max().item() == 0.0
    assert geodesic_angle(equal, -equal).sub(math.pi).abs().max().item() < 1e-6


# ----------------------------------------------------------------------------------- patch labels


def test_patch_labels_area_fraction_with_purity_and_ignored_pixels():
    labels = torch.tensor(
        [
            [[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 255, 255], [2, 0, 255, 255]],
            # right column of patches: one labelled pixel (fraction 1) / a 1:1 mix of the labelled ones
            [[1, 1, 1, 255], [1, 1, 255, 255], [0, 0, 1, 2], [0, 0, 255, 255]],
        ]
    )
    at_75 = patch_labels(labels, (2, 2), num_classes=3, purity=0.75, ignore_value=255)
    assert at_75.tolist() == [[[0, 1], [2, PATCH_IGNORE]], [[1, 1], [0, PATCH_IGNORE]]]
    at_80 = patch_labels(labels, (2, 2), num_classes=3, purity=0.8, ignore_value=255)
    assert at_80.tolist() == [[[PATCH_IGNORE, 1], [PATCH_IGNORE, PATCH_IGNORE]], [[1, 1], [0, PATCH_IGNORE]]]
    assert at_75.dtype == torch.long


def test_patch_labels_non_divisible_grid_uses_adaptive_windows():
    # 3×3 → 2×2: windows are rows/cols {0,1} and {1,2} (they overlap on the middle line)
    labels = torch.tensor([[[0, 0, 0], [0, 0, 1], [2, 2, 1]]])
    result = patch_labels(labels, (2, 2), num_classes=3, purity=0.75, ignore_value=255)
    assert result.tolist() == [[[0, 0], [PATCH_IGNORE, PATCH_IGNORE]]]


@pytest.mark.parametrize(
    "size, grid", [((16, 16), (4, 4)), ((17, 23), (5, 7)), ((9, 9), (9, 9)), ((100, 37), (24, 24))]
)
def test_patch_labels_equal_average_pooled_one_hot(size, grid):
    """Against the literal definition: one-hot map → adaptive_avg_pool2d → fractions."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 4, (3, 1) + grid, generator=generator).float()
    labels = torch.nn.functional.interpolate(coarse, size=size, mode="nearest")[:, 0].long()
    noise = torch.rand((3,) + size, generator=generator)
    labels = torch.where(noise < 0.15, torch.randint(0, 4, (3,) + size, generator=generator), labels)
    labels[noise > 0.9] = 255
    labelled = labels != 255
    one_hot = torch.nn.functional.one_hot(torch.where(labelled, labels, 4), 5)[..., :4].permute(0, 3, 1, 2)
    class_area = torch.nn.functional.adaptive_avg_pool2d(one_hot.double(), grid)
    labelled_area = torch.nn.functional.adaptive_avg_pool2d(labelled[:, None].double(), grid)[:, 0]
    fraction, majority = (class_area / labelled_area.clamp(min=1e-12)[:, None]).max(dim=1)
    for purity in (0.51, 0.75, 1.0):
        expected = torch.where((labelled_area > 0) & (fraction >= purity - 1e-9), majority, PATCH_IGNORE)
        assert torch.equal(patch_labels(labels, grid, 4, purity, 255), expected), purity


def test_patch_labels_rejects_bad_input():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="purity"):
        patch_labels(labels, (2, 2), 3, purity=0.5, ignore_value=255)
    with pytest.raises(ValueError, match="outside"):
        patch_labels(labels + 3, (2, 2), 3, purity=0.75, ignore_value=255)
    with pytest.raises(ValueError, match="integer class map"):
        patch_labels(labels.float(), (2, 2), 3, purity=0.75, ignore_value=255)
    with pytest.raises(ValueError, match="finer"):
        patch_labels(labels, (8, 8), 3, purity=0.75, ignore_value=255)
    all_ignored = torch.full((1, 4, 4), 255)
    assert (patch_labels(all_ignored, (2, 2), 3, 0.75, 255) == PATCH_IGNORE).all()


# ------------------------------------------------------------------------ every config key matters


def _hpa_loss_and_update(cfg, steps=1):
    torch.manual_seed(0)
    text = torch.randn(3, 2, 8)
    hpa = HPA(cfg, class_text_embeddings=text)
    features = torch.randn(2, 8, 2, 2)
    labels = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2], [2, 1, 2, 2]]).repeat(2, 1, 1)
    loss = hpa(features, labels)
    loss.backward()
    return loss.detach(), hpa.prototypes.clone(), hpa.temperature_logits.grad.clone()


def _afr_loss(cfg, labels=None):
    torch.manual_seed(0)
    afr = AFR(cfg, embed_dim=8)
    features = torch.randn(2, 8, 2, 2)
    text = torch.randn(3, 1, 8)
    if labels is None:
        labels = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2], [2, 1, 2, 2]]).repeat(2, 1, 1)
    rectified, certainty_logits = afr(features)
    return afr.loss(certainty_logits, features, text, labels).detach(), afr


def _sdr_loss(cfg, iteration=500):
    sdr = SDR(cfg)
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)
    text = (torch.randn(4, 2, 8), torch.randn(4, 2, 8)) if sdr.distill_text else (None, None)
    return sdr(student, teacher, iteration, *text)


HEAD = "MODEL__SEM_SEG_HEAD__"


def test_prototype_keys_change_behaviour(make_cfg):
    base_loss, base_prototypes, base_grad = _hpa_loss_and_update(make_cfg())
    loss, _, _ = _hpa_loss_and_update(make_cfg(**{HEAD + "PROTOTYPE_LOSS_WEIGHT": 0.3}))
    torch.testing.assert_close(loss, 3 * base_loss)
    _, prototypes, _ = _hpa_loss_and_update(make_cfg(**{HEAD + "PROTOTYPE_MOMENTUM": 0.5}))
    assert not torch.allclose(prototypes, base_prototypes)
    loss, _, _ = _hpa_loss_and_update(make_cfg(**{HEAD + "PROTOTYPE_TEMPERATURE_INIT": 0.2}))
    assert not torch.allclose(loss, base_loss)
    # The bounds leave τ_init (hence the first loss) unchanged but change how τ moves.
    for key, value in (("PROTOTYPE_TEMPERATURE_MIN", 0.03), ("PROTOTYPE_TEMPERATURE_MAX", 0.5)):
        loss, _, grad = _hpa_loss_and_update(make_cfg(**{HEAD + key: value}))
        torch.testing.assert_close(loss, base_loss)
        assert not torch.allclose(grad, base_grad), key
    loss, _, _ = _hpa_loss_and_update(make_cfg(**{HEAD + "PATCH_LABEL_PURITY": 1.0}))
    assert not torch.allclose(loss, base_loss)


def test_purity_and_ignore_keys_change_afr_loss(make_cfg):
    base, _ = _afr_loss(make_cfg())
    pure_only, _ = _afr_loss(make_cfg(**{HEAD + "PATCH_LABEL_PURITY": 1.0}))
    assert not torch.allclose(base, pure_only)
    labels = torch.tensor([[0, 0, 1, 7], [0, 1, 7, 7], [2, 2, 2, 2], [2, 1, 2, 2]]).repeat(2, 1, 1)
    with pytest.raises(ValueError, match="outside"):
        _afr_loss(make_cfg(), labels)
    ignoring_7, _ = _afr_loss(make_cfg(**{HEAD + "IGNORE_VALUE": 7}), labels)
    assert torch.isfinite(ignoring_7)


def test_rectify_keys_change_behaviour(make_cfg):
    base, afr = _afr_loss(make_cfg())
    heavier, _ = _afr_loss(make_cfg(**{HEAD + "RECTIFY_LOSS_WEIGHT": 0.5}))
    torch.testing.assert_close(heavier, 10 * base)
    _, narrow = _afr_loss(make_cfg(**{HEAD + "RECTIFY_HIDDEN_DIM": 4}))
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in afr.parameters())


def test_distill_keys_change_behaviour(make_cfg):
    base = _sdr_loss(make_cfg(SOLVER__MAX_ITER=1000))
    for key, value in (
        (HEAD + "DISTILL_LOSS_WEIGHT", 0.5),
        (HEAD + "DISTILL_LOSS_WEIGHT_FINAL", 0.2),
        (HEAD + "DISTILL_TEXT", False),
        ("SOLVER__MAX_ITER", 4000),
    ):
        overrides = {"SOLVER__MAX_ITER": 1000, key: value}
        assert not torch.allclose(_sdr_loss(make_cfg(**overrides)), base), key
