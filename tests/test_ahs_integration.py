"""The AHS modules inside AHSSeg: off = baseline exactly, every combination trains, configs."""
import itertools
import math

import pytest
import torch
from detectron2.modeling import build_model

import cat_seg  # noqa: F401  (registrations)

QUICKSTART = "configs/synthetic/quickstart_baseline.yaml"
SWITCHES = ("USE_PROTOTYPE_ALIGNMENT", "USE_SELF_DISTILLATION", "USE_FEATURE_RECTIFICATION")
AHS_LOSSES = {"USE_PROTOTYPE_ALIGNMENT": "loss_proto", "USE_SELF_DISTILLATION": "loss_distill",
              "USE_FEATURE_RECTIFICATION": "loss_rectify"}


def _on_cpu(hpa=False, sdr=False, afr=False):
    """Overrides for conftest.make_cfg: the CPU and the three AHS switches."""
    switches = {f"MODEL.SEM_SEG_HEAD.{key}": on for key, on in zip(SWITCHES, (hpa, sdr, afr))}
    return {"MODEL.DEVICE": "cpu", **switches}


def _build(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def _batch(seed=0, size=128, num_classes=16):
    g = torch.Generator().manual_seed(seed)
    # Labels constant over 32 px blocks, so every patch of the 8x8 grid is pure.
    blocks = torch.randint(0, num_classes, (2, 4, 4), generator=g)
    labels = blocks.repeat_interleave(size // 4, 1).repeat_interleave(size // 4, 2)
    labels[:, :3, :] = 255  # some ignored pixels
    images = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
    return [{"image": images[i], "sem_seg": labels[i]} for i in range(2)]


def test_modules_off_build_nothing(make_cfg):
    base = _build(make_cfg(QUICKSTART, _on_cpu()))
    assert not any(hasattr(base, m) for m in
                   ("prototype_alignment", "self_distillation", "feature_rectification"))
    assert base.ahs_modules == {}


@pytest.mark.parametrize("hpa, sdr, afr", [(True, False, False), (False, True, False),
                                           (False, False, True), (True, True, True)])
def test_modules_keep_the_baseline_at_init(hpa, sdr, afr, make_cfg):
    """Same seed: shared parameters equal, inference equal (AFR is the identity at init, HPA/SDR
    are training-only), and the segmentation loss equal; only the module's own losses are added."""
    base = _build(make_cfg(QUICKSTART, _on_cpu()))
    model = _build(make_cfg(QUICKSTART, _on_cpu(hpa=hpa, sdr=sdr, afr=afr)))
    base_state = base.state_dict()
    for name, value in model.state_dict().items():
        if name in base_state:
            assert torch.equal(value, base_state[name]), name
        else:
            assert name.split(".")[0] in ("prototype_alignment", "feature_rectification"), name
    batch = _batch()
    base.train(), model.train()
    base_losses, losses = base(batch), model(batch)
    assert torch.equal(losses["loss_sem_seg"], base_losses["loss_sem_seg"])
    expected = {"loss_sem_seg"} | {AHS_LOSSES[k] for k, on in zip(SWITCHES, (hpa, sdr, afr)) if on}
    assert set(losses) == expected
    base.eval(), model.eval()
    inputs = [{"image": batch[0]["image"], "dataset_name": "synthetic_seen_val"}]
    with torch.no_grad():
        torch.testing.assert_close(model(inputs)[0]["sem_seg"], base(inputs)[0]["sem_seg"],
                                   rtol=0, atol=0)


@pytest.mark.parametrize("hpa, sdr, afr", list(itertools.product((False, True), repeat=3)))
def test_every_trainable_parameter_is_used(hpa, sdr, afr, make_cfg):
    """DDP with find_unused_parameters=False needs every trainable parameter in the graph."""
    model = _build(make_cfg(QUICKSTART, _on_cpu(hpa=hpa, sdr=sdr, afr=afr)))
    model.train()
    losses = model(_batch())
    assert all(math.isfinite(float(v)) for v in losses.values())
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_sdr_needs_adapters(make_cfg):
    cfg = make_cfg(QUICKSTART, _on_cpu(sdr=True))
    cfg.MODEL.SEM_SEG_HEAD.CLIP_FINETUNE = "attention"
    with pytest.raises(ValueError, match="adapters"):
        build_model(cfg)


def test_sdr_weight_follows_the_trainer_iteration(make_cfg):
    model = _build(make_cfg(QUICKSTART, _on_cpu(sdr=True)))
    model.train()
    # Make the student differ from the teacher, so the distillation loss is non-zero.
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    batch = _batch()
    model.set_iteration(0)
    first = float(model(batch)["loss_distill"])
    model.set_iteration(model.self_distillation.max_iter)
    last = float(model(batch)["loss_distill"])
    assert first > 0
    ratio = model.self_distillation.weight(model.self_distillation.max_iter) / model.self_distillation.weight(0)
    assert last == pytest.approx(first * ratio, rel=1e-4)


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


ABLATION_SETS = {"vitb_384": "configs/ablations/vitb_384_ahs_{}.yaml",
                 "vitl_336": "configs/ablations/vitl_336_ahs_{}.yaml",
                 "synthetic": "configs/synthetic/ablations/quickstart_{}.yaml"}


@pytest.mark.parametrize("prefix", list(ABLATION_SETS))
def test_ablation_configs_differ_only_in_their_switches(prefix, make_cfg):
    names = ("baseline", "hpa_only", "sdr_only", "afr_only", "full")
    flat = {}
    for n in names:
        flat[n] = _flatten(make_cfg(ABLATION_SETS[prefix].format(n)))
    expected = {"baseline": (False, False, False), "hpa_only": (True, False, False),
                "sdr_only": (False, True, False), "afr_only": (False, False, True),
                "full": (True, True, True)}
    for n in names:
        diff = {k for k in flat[n] if flat[n][k] != flat["baseline"][k]}
        assert diff <= {f"MODEL.SEM_SEG_HEAD.{s}" for s in SWITCHES}, (n, diff)
        assert tuple(flat[n][f"MODEL.SEM_SEG_HEAD.{s}"] for s in SWITCHES) == expected[n]
    if prefix == "synthetic":
        # The quick start is the full model, with more iterations than the 15-run ablation.
        quick = make_cfg("configs/synthetic/quickstart.yaml")
        diff = {k for k, v in _flatten(quick).items() if v != flat["full"][k]}
        assert diff == {"SOLVER.MAX_ITER", "OUTPUT_DIR"}, diff
        return
    # The main config is the full model; the baseline is the H-CLIP config.
    main, hclip = make_cfg(f"configs/{prefix}_ahs.yaml"), make_cfg(f"configs/{prefix}_hclip.yaml")
    assert _flatten(main) == flat["full"]
    assert _flatten(hclip) == flat["baseline"]
