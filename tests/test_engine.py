"""Training machinery: gradient clipping, atomic checkpoints, AMP step, config validation."""
import os

import pytest
import torch
from torch import nn

from cat_seg import check_config
from cat_seg.engine.checkpointer import AtomicCheckpointer
from cat_seg.engine.optimizer import with_full_model_gradient_clipping


def test_full_model_gradient_clipping_scales_the_global_norm():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(10)), nn.Parameter(torch.randn(3, 3))
    a.grad, b.grad = torch.full((10,), 3.0), torch.full((3, 3), 4.0)
    norm = torch.sqrt(a.grad.square().sum() + b.grad.square().sum())
    expected_a = a.detach() - 0.5 * (a.grad * 0.01 / norm)  # SGD lr 0.5 on clipped grads
    optimizer = with_full_model_gradient_clipping(torch.optim.SGD, 0.01)([a, b], lr=0.5)
    optimizer.step()
    torch.testing.assert_close(a.detach(), expected_a)
    clipped = torch.sqrt(a.grad.square().sum() + b.grad.square().sum())
    assert abs(clipped.item() - 0.01) < 1e-6


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = nn.Linear(4, 4)
    ckpt = AtomicCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_0000009")
    good = (tmp_path / "model_0000009.pth").read_bytes()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"

    # A crash in the middle of writing (what a SIGKILL does) must leave the old files intact.
    def crash(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000009")
    assert (tmp_path / "model_0000009.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]


# Defaults + AHS keys (conftest.make_cfg) on the CPU, with a training set.
CPU_TRAINING = {"MODEL.DEVICE": "cpu", "DATASETS.TRAIN": ("synthetic_seen_train",)}


@pytest.mark.parametrize("key, value, message", [
    ("MODEL.SEM_SEG_HEAD.CLIP_FINETUNE", "lora", "CLIP_FINETUNE"),
    ("SOLVER.BASE_LR", -1.0, "negative"),
    ("MODEL.SEM_SEG_HEAD.NUM_LAYERS", 0, "positive integer"),
    ("TEST.SLIDING_WINDOW_OVERLAP", 1.0, "OVERLAP"),
    ("SOLVER.AMP.PRECISION", "int8", "PRECISION"),
])
def test_check_config_rejects_bad_values(key, value, message, make_cfg):
    cfg = make_cfg(opts=CPU_TRAINING)
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


def test_check_config_accepts_defaults(make_cfg):
    check_config(make_cfg(opts=CPU_TRAINING))


def test_unknown_config_key_is_rejected(make_cfg):
    # yacs names the key (AssertionError from --opts, KeyError from a YAML file).
    with pytest.raises((KeyError, AssertionError), match="Non-existent key.*NOT_A_KEY"):
        make_cfg(opts=CPU_TRAINING).merge_from_list(["MODEL.SEM_SEG_HEAD.NOT_A_KEY", 1])


def test_both_padding_parameters_get_the_embedding_weight_decay(tmp_path, write_tiny_config,
                                                                make_cfg):
    """SOLVER.WEIGHT_DECAY_EMBED reaches the class aggregation's padding tokens and their twin,
    the padding guidance, alike; the other weights get SOLVER.WEIGHT_DECAY."""
    from detectron2.modeling import build_model

    from cat_seg.engine.optimizer import build_param_groups

    cfg = make_cfg(write_tiny_config(tmp_path / "tiny.yaml"), MODEL__SEM_SEG_HEAD__CLASS_PAD_LEN=8)
    model = build_model(cfg)
    groups = build_param_groups(model, base_lr=1.0, weight_decay=0.25, weight_decay_norm=0.0,
                                weight_decay_embed=0.5, clip_multiplier=1.0)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    by_name = {name: decay[id(p)] for name, p in model.named_parameters() if id(p) in decay}
    padding = {n: d for n, d in by_name.items() if ".padding_" in n}
    assert sorted(n.rsplit(".", 1)[1] for n in padding) == ["padding_guidance", "padding_tokens"]
    assert set(padding.values()) == {0.5}, padding
    assert by_name["sem_seg_head.cost_embed.weight"] == 0.25
