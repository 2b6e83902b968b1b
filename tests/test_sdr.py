"""SDR: cosine weight schedule, geodesic loss against hand values, teacher pass and its text cache."""
import contextlib
import math

import pytest
import torch
from torch import nn

from cat_seg.modeling.hyperspherical_innovations import SDR


def test_weight_schedule_at_start_middle_end_and_beyond():
    sdr = SDR(max_iter=1000, weight_init=0.1, weight_final=0.01)
    assert sdr.weight(0) == pytest.approx(0.1)
    assert sdr.weight(500) == pytest.approx(0.055)
    assert sdr.weight(250) == pytest.approx(0.01 + 0.045 * (1 + math.cos(math.pi / 4)))
    assert sdr.weight(1000) == pytest.approx(0.01)
    assert sdr.weight(5000) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="iteration"):
        sdr.weight(-1)


def test_loss_matches_hand_computation():
    sdr = SDR(max_iter=100, weight_init=0.2, weight_final=0.0, distill_text=True)
    # (B=1, D=2, h=1, w=2) maps from two patch vectors each
    student = torch.tensor([[1.0, 0.0], [1.0, 2.0]]).t().reshape(1, 2, 1, 2)
    teacher = torch.tensor([[0.0, 5.0], [3.0, 0.0]]).t().reshape(1, 2, 1, 2)
    student_text = torch.tensor([[[1.0, 0.0]]])
    teacher_text = torch.tensor([[[-2.0, 0.0]]])
    loss = sdr(student, teacher, 0, student_text, teacher_text)
    expected = 0.2 * ((math.pi / 2 + math.atan2(2.0, 1.0)) / 2 + math.pi)
    # patch 0: (1,0) vs (0,5) = π/2; patch 1: (1,2) vs (3,0) = atan2(2, 1); text: opposite = π
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert sdr(student, teacher, 50, student_text, teacher_text).item() == pytest.approx(expected / 2, rel=1e-6)
    assert sdr(student, teacher, 100, student_text, teacher_text).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identical_student_and_teacher_give_zero_loss_and_finite_gradient(dtype):
    sdr = SDR(max_iter=10, distill_text=False)
    teacher = torch.randn(2, 16, 3, 3).to(dtype)
    student = teacher.clone().requires_grad_(True)
    loss = sdr(student, teacher, 0)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(student.grad).all()


def test_has_no_parameters_and_checks_its_inputs():
    sdr = SDR(max_iter=10)
    assert sum(p.numel() for p in sdr.parameters()) == 0 and len(sdr.state_dict()) == 0
    features = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match="require grad"):
        sdr(features, features.clone().requires_grad_(True), 0, torch.randn(2, 1, 4), torch.randn(2, 1, 4))
    with pytest.raises(ValueError, match="DISTILL_TEXT"):
        sdr(features, features, 0)
    with pytest.raises(ValueError, match="differ in shape"):
        sdr(features, features[:, :3], 0, torch.randn(2, 1, 4), torch.randn(2, 1, 4))
    with pytest.raises(ValueError, match="DISTILL_TEXT is off"):
        SDR(max_iter=10, distill_text=False)(features, features, 0, torch.randn(2, 1, 4), torch.randn(2, 1, 4))


class FakeBackbone(nn.Module):
    """The CLIPBackbone contract: adapters_bypassed(), encode_image, encode_text."""

    has_adapters = True

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()), requires_grad=False)  # pretrained, frozen
        self.adapter = nn.Parameter(torch.ones(()))  # trainable
        self.bypassed = False
        self.text_calls = []

    @contextlib.contextmanager
    def adapters_bypassed(self):
        self.bypassed = True
        try:
            yield
        finally:
            self.bypassed = False

    def encode_image(self, images):
        dense = self.weight * images[:, :2] * (1.0 if self.bypassed else self.adapter)
        return dense, [self.weight * images]

    def encode_text(self, names):
        assert self.bypassed
        self.text_calls.append(tuple(names))
        return self.weight * torch.ones(len(names), 1, 2)


def test_teacher_pass_bypasses_adapters_without_grad_and_caches_text_per_vocabulary():
    backbone = FakeBackbone()
    sdr = SDR(max_iter=10)
    images = torch.randn(2, 3, 4, 4)
    dense, text = sdr.teacher_pass(backbone, images, ["cat", "dog"])
    torch.testing.assert_close(dense, images[:, :2])  # the bypassed (teacher) forward
    assert not dense.requires_grad and not text.requires_grad and not backbone.bypassed
    again = sdr.teacher_pass(backbone, images, ["cat", "dog"])[1]
    assert again is text and backbone.text_calls == [("cat", "dog")]
    sdr.teacher_pass(backbone, images, ["cat", "sky"])
    assert backbone.text_calls == [("cat", "dog"), ("cat", "sky")]
    with torch.no_grad():  # an optimiser step on the adapters: the teacher is unchanged
        backbone.adapter.add_(1.0)
    sdr.teacher_pass(backbone, images, ["cat", "sky"])
    assert len(backbone.text_calls) == 2
    backbone.load_state_dict(backbone.state_dict())  # may change the pretrained weights: recomputed
    sdr.teacher_pass(backbone, images, ["cat", "sky"])
    assert len(backbone.text_calls) == 3
    with pytest.raises(ValueError, match="class names"):
        sdr.teacher_pass(backbone, images)
    no_text = SDR(max_iter=10, distill_text=False).teacher_pass(backbone, images)
    assert no_text[1] is None
    backbone.has_adapters = False
    with pytest.raises(ValueError, match="student itself"):
        sdr.teacher_pass(backbone, images, ["cat"])


def test_with_the_clip_backbone_teacher_is_pretrained_clip_and_student_guidance_untouched():
    from cat_seg.modeling.clip import CLIPBackbone

    torch.manual_seed(0)
    backbone = CLIPBackbone(
        architecture="AHS-Tiny/16", weights="random", resolution=64, guidance_layers=(1,),
        finetune="oft_both", oft_block_size=32,
    ).train()
    images = torch.randn(2, 3, 64, 64)
    names = ["cat", "dog", "sky"]
    sdr = SDR(max_iter=100, weight_init=1.0, weight_final=1.0)
    with torch.no_grad():  # move the adapters away from identity, as training does
        for param in backbone.adapter.parameters():
            param.add_(0.05 * torch.randn_like(param))
    dense, guidance = backbone.encode_image(images)
    text = backbone.encode_text(names)
    guidance_before = [g.detach().clone() for g in guidance]
    teacher_dense, teacher_text = sdr.teacher_pass(backbone, images, names)
    assert all(torch.equal(g, before) for g, before in zip(guidance, guidance_before))
    with backbone.adapters_bypassed(), torch.no_grad():
        torch.testing.assert_close(teacher_dense, backbone.encode_image(images)[0])
    loss = sdr(dense, teacher_dense, 0, text, teacher_text)
    assert loss.item() > 0
    loss.backward()
    adapter_ids = {id(p) for p in backbone.adapter.parameters()}
    assert all(p.grad is not None for p in backbone.adapter.parameters())
    assert all(p.grad is None for p in backbone.parameters() if id(p) not in adapter_ids)
    with torch.no_grad():  # an optimiser step: the cached teacher text stays valid
        for param in backbone.adapter.parameters():
            param.add_(0.01)
    assert sdr.teacher_pass(backbone, images, names)[1] is teacher_text
