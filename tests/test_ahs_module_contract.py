"""The AHS plug-in contract: a fourth module is one new class (here, in this file) and its keys.

``FeatureGain`` below is what a researcher would write in a new file under
``cat_seg/modeling/hyperspherical/``: registered, it is built by its switch, its feature hook runs
in training and at inference, its loss is logged, its weight is checked before any work, and
nothing else in the code base names it.
"""
import math
from typing import Dict, Tuple

import pytest
import torch
from detectron2.modeling import build_model
from torch import Tensor, nn

import cat_seg  # noqa: F401  (registrations)
from cat_seg import check_config
from cat_seg.analysis.measure import count_parameters
from cat_seg.analysis.parts import enabled_modules, not_used_at_inference
from cat_seg.modeling.hyperspherical import (
    AHS_MODULE_REGISTRY,
    AHSContext,
    AHSModule,
    ahs_module_classes,
)

QUICKSTART = "configs/synthetic/quickstart_baseline.yaml"


class FeatureGain(AHSModule):
    """Scale the dense embeddings by a learnable gain g = exp(s), s = 0 at init (identity), and
    pull the mean patch norm of the scaled features towards that of the input:

        f' = g·f,   L = λ · (mean ‖f'‖ / mean ‖f‖ − 1)²
    """

    attribute = "feature_gain"
    short_name = "GAIN"
    switch = "USE_FEATURE_GAIN"
    loss_weight_keys = ("FEATURE_GAIN_LOSS_WEIGHT",)
    seen_contexts = []  # what losses() received, for the test to inspect

    def __init__(self, loss_weight: float):
        super().__init__()
        self.loss_weight = loss_weight
        self.log_gain = nn.Parameter(torch.zeros(()))

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.MODEL.SEM_SEG_HEAD.USE_FEATURE_GAIN = False
        cfg.MODEL.SEM_SEG_HEAD.FEATURE_GAIN_LOSS_WEIGHT = 0.1

    @classmethod
    def build(cls, cfg, backbone, train_dataset):
        return cls(cfg.MODEL.SEM_SEG_HEAD.FEATURE_GAIN_LOSS_WEIGHT)

    def feature_hook(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        return features * self.log_gain.exp(), features.norm(dim=1).mean()

    def losses(self, context: AHSContext) -> Dict[str, Tensor]:
        type(self).seen_contexts.append(context)
        input_norm = context.hook_states[self.attribute]
        ratio = context.rectified.norm(dim=1).mean() / input_norm
        return {"loss_gain": self.loss_weight * (ratio - 1) ** 2}


@pytest.fixture
def feature_gain():
    """FeatureGain registered for one test (the registry is global: leave it as it was)."""
    AHS_MODULE_REGISTRY.register(FeatureGain)
    FeatureGain.seen_contexts.clear()
    try:
        yield FeatureGain
    finally:
        AHS_MODULE_REGISTRY._obj_map.pop(FeatureGain.__name__)


@pytest.fixture
def quickstart_cfg(make_cfg):
    """The quick start's baseline config on the CPU, with ``MODEL.SEM_SEG_HEAD`` keys set."""
    def build(**head_keys):
        return make_cfg(QUICKSTART, MODEL__DEVICE="cpu",
                        **{f"MODEL__SEM_SEG_HEAD__{k}": v for k, v in head_keys.items()})
    return build


def _build(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def _batch(size=128, num_classes=16):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_classes, (2, 4, 4), generator=g)
    labels = labels.repeat_interleave(size // 4, 1).repeat_interleave(size // 4, 2)
    images = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
    return [{"image": images[i], "sem_seg": labels[i]} for i in range(2)]


def test_the_registry_holds_hpa_sdr_afr_in_build_order_with_their_keys(quickstart_cfg):
    classes = ahs_module_classes()
    assert [c.short_name for c in classes] == ["HPA", "SDR", "AFR"]
    assert [c.attribute for c in classes] == [
        "prototype_alignment", "self_distillation", "feature_rectification"]
    # Only AFR rewrites the features, so only AFR runs at inference.
    assert [c.has_feature_hook() for c in classes] == [False, False, True]
    head = quickstart_cfg().MODEL.SEM_SEG_HEAD
    for cls in classes:
        assert head[cls.switch] is False  # every module is off by default
        for key in cls.loss_weight_keys:
            assert key in head, (cls.__name__, key)


def test_a_fourth_module_trains_and_runs_at_inference(feature_gain, quickstart_cfg):
    base = _build(quickstart_cfg())
    model = _build(quickstart_cfg(USE_FEATURE_GAIN=True))
    assert isinstance(model.feature_gain, FeatureGain)
    assert list(model.ahs_modules) == ["feature_gain"]
    assert "feature_gain.log_gain" in model.state_dict()

    model.train()
    model.set_iteration(7)
    losses = model(_batch())
    assert set(losses) == {"loss_sem_seg", "loss_gain"}
    assert all(math.isfinite(float(v)) for v in losses.values())
    (context,) = FeatureGain.seen_contexts
    assert context.iteration == 7 and len(context.class_names) == 16
    assert context.backbone is model.backbone and context.targets.shape == (2, 128, 128)
    assert torch.equal(context.hook_inputs["feature_gain"], context.features)
    sum(losses.values()).backward()
    assert model.feature_gain.log_gain.grad is not None

    # At init the hook is the identity: inference equals the baseline's exactly...
    inputs = [{"image": _batch()[0]["image"], "dataset_name": "synthetic_seen_val"}]
    base.eval(), model.eval()
    with torch.no_grad():
        scores = model(inputs)[0]["sem_seg"]
        torch.testing.assert_close(scores, base(inputs)[0]["sem_seg"], rtol=0, atol=0)
        # ... and the hook is on the inference path: a gain changes the scores.
        model.feature_gain.log_gain.fill_(1.0)
        assert not torch.allclose(model(inputs)[0]["sem_seg"], scores)


def test_the_model_analysis_measures_it_without_being_told(feature_gain, quickstart_cfg):
    cfg = quickstart_cfg(USE_FEATURE_GAIN=True)
    assert enabled_modules(cfg) == {"HPA": False, "SDR": False, "AFR": False, "GAIN": True}
    # It has a feature hook, so it runs at inference (unlike HPA and SDR).
    assert not_used_at_inference() == ("adapters", "HPA", "SDR")
    by_part = count_parameters(_build(cfg), cfg)["by_part"]
    assert by_part["GAIN"]["total"] == 1 and by_part["other"]["total"] == 0


def test_a_registered_module_that_is_off_leaves_the_model_as_without_it(feature_gain, quickstart_cfg):
    model = _build(quickstart_cfg())
    assert not hasattr(model, "feature_gain") and model.ahs_modules == {}
    assert not any(k.startswith("feature_gain") for k in model.state_dict())


def test_its_loss_weight_is_checked_before_any_work(feature_gain, quickstart_cfg):
    cfg = quickstart_cfg(USE_FEATURE_GAIN=True, FEATURE_GAIN_LOSS_WEIGHT=-1.0)
    with pytest.raises(ValueError, match="FEATURE_GAIN_LOSS_WEIGHT=-1.0 is negative"):
        check_config(cfg)


def test_a_loss_name_taken_by_another_part_is_an_error(feature_gain, quickstart_cfg, monkeypatch):
    model = _build(quickstart_cfg(USE_FEATURE_GAIN=True))
    model.train()
    monkeypatch.setattr(FeatureGain, "losses",
                        lambda self, context: {"loss_sem_seg": context.rectified.sum()})
    with pytest.raises(ValueError, match="FeatureGain returns loss 'loss_sem_seg'"):
        model(_batch())
