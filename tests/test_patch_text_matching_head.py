"""PatchTextMatchingHead: the formula, its start at CLIP's dense zero-shot ranking, and the head
driven by the meta-architecture (training step, inference, the config's choice of head)."""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY, build_model

from cat_seg.config_checks import check_config
from cat_seg.modeling.head import PatchTextMatchingHead
from helpers.head import randomized, tiny_inputs

TRAIN_SET = "test_matching_head_train"
MetadataCatalog.get(TRAIN_SET).set(stuff_classes=["road", "tree", "sky"])
_HEAD = "MODEL.SEM_SEG_HEAD."
TINY_MATCHING_MODEL = {
    _HEAD + "NAME": "PatchTextMatchingHead",
    _HEAD + "CLIP_PRETRAINED": "AHS-Tiny/16",
    _HEAD + "CLIP_WEIGHTS": "random",
    _HEAD + "CLIP_RESOLUTION": 64,
    _HEAD + "CLIP_GUIDANCE_LAYERS": [0, 1],
    "DATASETS.TRAIN": (TRAIN_SET,),
    "DATASETS.TEST": (TRAIN_SET,),
    "MODEL.DEVICE": "cpu",
}


def test_logits_are_the_scaled_template_mean_cosine_of_the_projected_features():
    head = randomized(PatchTextMatchingHead(embed_dim=16))
    dense, text, guidance = tiny_inputs(B=2, T=5, P=2)
    logits = head(dense, text, guidance)
    assert logits.shape == (2, 5, 8, 8)
    feature = dense[1, :, 3, 6] + head.proj.weight[:, :, 0, 0] @ dense[1, :, 3, 6] + head.proj.bias
    cosine = torch.stack([F.cosine_similarity(feature, text[4, p], dim=0) for p in range(2)]).mean()
    expected = head.log_scale.exp() * cosine + head.bias
    torch.testing.assert_close(logits[1, 4, 3, 6], expected)
    per_image = head(dense, text.unsqueeze(0).expand(2, -1, -1, -1), guidance)
    torch.testing.assert_close(per_image, logits)


def test_an_untrained_head_ranks_classes_as_clips_dense_zero_shot():
    head = PatchTextMatchingHead(embed_dim=16)
    dense, text, guidance = tiny_inputs(B=2, T=5, P=2)
    logits = head(dense, text, guidance)
    zero_shot = torch.einsum("bdhw,tpd->bpthw", F.normalize(dense, dim=1),
                             F.normalize(text, dim=-1)).mean(dim=1)
    torch.testing.assert_close(logits, zero_shot / 0.07)
    assert torch.equal(logits.argmax(dim=1), zero_shot.argmax(dim=1))
    assert math.isclose(head.log_scale.exp().item(), 1 / 0.07, rel_tol=1e-6)


def test_gradients_reach_every_parameter():
    head = PatchTextMatchingHead(embed_dim=16)
    dense, text, guidance = tiny_inputs(T=5)
    head(dense, text, guidance).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_registered_and_driven_by_the_meta_architecture(make_cfg):
    assert SEM_SEG_HEADS_REGISTRY.get("PatchTextMatchingHead") is PatchTextMatchingHead
    torch.manual_seed(0)
    cfg = make_cfg(opts={**TINY_MATCHING_MODEL, _HEAD + "CLIP_FINETUNE": "attention"})
    check_config(cfg, needs_data=False)
    net = build_model(cfg).train()
    assert isinstance(net.sem_seg_head, PatchTextMatchingHead)
    labels = torch.randint(0, 3, (2, 48, 48))
    labels[:, :4] = 255
    batch = [{"image": torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8), "sem_seg": labels[i]}
             for i in range(2)]
    losses = net(batch)
    assert set(losses) == {"loss_sem_seg"} and torch.isfinite(losses["loss_sem_seg"])
    losses["loss_sem_seg"].backward()
    assert net.sem_seg_head.proj.weight.grad.abs().sum() > 0
    # CLIP learns through the head: every trained weight gets a gradient but the last vision
    # layer's query, which only the class token uses (the dense path skips that attention, as
    # with the CAT-Seg head).
    trained = {n for n, p in net.backbone.named_parameters() if p.requires_grad}
    no_grad = {n for n, p in net.backbone.named_parameters() if p.requires_grad and p.grad is None}
    assert len(trained) > 1 and no_grad <= {"clip.visual.transformer.resblocks.3.attn.q_proj.weight"}
    net.eval()
    with torch.no_grad():
        out = net([{"image": batch[0]["image"], "height": 40, "width": 30,
                    "dataset_name": TRAIN_SET}])
    assert out[0]["sem_seg"].shape == (3, 40, 30)
    assert ((out[0]["sem_seg"] >= 0) & (out[0]["sem_seg"] <= 1)).all()


def test_an_unknown_head_name_is_refused_with_the_choices(make_cfg):
    cfg = make_cfg(opts={**TINY_MATCHING_MODEL, _HEAD + "NAME": "MatchingHead"})
    with pytest.raises(ValueError, match="NAME='MatchingHead' is invalid.*PatchTextMatchingHead"):
        check_config(cfg, needs_data=False)
