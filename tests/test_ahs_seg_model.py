"""AHSSeg meta-architecture: loss, vocabularies, whole-image and sliding-window inference.

A tiny CLIP (``AHS-Tiny/16`` at 64 px: 4x4 grid) and a narrow head keep every test fast; the
real ViT-B/16 shapes run once (random weights) in the slow test at the end.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from cat_seg.ahs_seg_model import AHSSeg

TRAIN_SET = "test_ahs_model_train"
TEST_SET = "test_ahs_model_test"
if TRAIN_SET not in MetadataCatalog.list():
    MetadataCatalog.get(TRAIN_SET).set(stuff_classes=["road", "tree, bush", "sky"])
    MetadataCatalog.get(TEST_SET).set(stuff_classes=["car", "person", "building", "grass"])
CLASS_NAMES = Path(__file__).resolve().parents[1] / "cat_seg" / "data" / "class_names"


# The tiny model, on the defaults + AHS keys (conftest.make_cfg).
_HEAD = "MODEL.SEM_SEG_HEAD."
TINY_MODEL = {
    _HEAD + "CLIP_PRETRAINED": "AHS-Tiny/16",
    _HEAD + "CLIP_WEIGHTS": "random",
    _HEAD + "CLIP_RESOLUTION": 64,
    _HEAD + "CLIP_GUIDANCE_LAYERS": [0, 1],
    _HEAD + "HIDDEN_DIMS": 32,
    _HEAD + "TEXT_GUIDANCE_PROJ_DIM": 16,
    _HEAD + "APPEARANCE_GUIDANCE_PROJ_DIM": 16,
    _HEAD + "DECODER_DIMS": [32, 16],
    _HEAD + "DECODER_GUIDANCE_DIMS": [16, 8],
    _HEAD + "DECODER_GUIDANCE_PROJ_DIMS": [8, 4],
    "DATASETS.TRAIN": (TRAIN_SET,),
    "DATASETS.TEST": (TEST_SET,),
    "MODEL.DEVICE": "cpu",
}


@pytest.fixture(scope="module")
def model(make_cfg):
    torch.manual_seed(0)
    return build_model(make_cfg(opts=TINY_MODEL)).eval()


def image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def test_built_by_detectron2_from_config(model):
    assert isinstance(model, AHSSeg)
    assert model.backbone.grid_size == (4, 4)
    assert model.sem_seg_head.grid_size == (4, 4)
    assert model.train_dataset == TRAIN_SET
    assert model.device == torch.device("cpu")


def test_training_step_gives_the_bce_loss_and_trains_head_and_adapters(make_cfg):
    torch.manual_seed(0)
    net = build_model(make_cfg(opts=TINY_MODEL)).train()
    labels = torch.randint(0, 3, (2, 48, 48))
    labels[:, :5] = 255
    batch = [{"image": image(48, 48, i), "sem_seg": labels[i]} for i in range(2)]
    losses = net(batch)
    assert set(losses) == {"loss_sem_seg"} and torch.isfinite(losses["loss_sem_seg"])
    losses["loss_sem_seg"].backward()
    assert net.sem_seg_head.cost_embed.weight.grad.abs().sum() > 0
    assert net.backbone.adapter.layer_relation.grad.abs().sum() > 0


def test_loss_is_catsegs_bce_with_ignored_pixels_as_negatives(model):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    targets = torch.randint(0, 3, (2, 8, 8))
    targets[0, 0, :3] = 255
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    one_hot = torch.zeros(2, 3, 8, 8)
    for b in range(2):
        for y in range(8):
            for x in range(8):
                if targets[b, y, x] != 255:
                    one_hot[b, targets[b, y, x], y, x] = 1
    p = up.sigmoid()
    expected = -(one_hot * p.log() + (1 - one_hot) * (1 - p).log()).mean()
    torch.testing.assert_close(model.losses(logits, targets)["loss_sem_seg"], expected)
    targets[1, 2, 2] = 7
    with pytest.raises(ValueError, match="label value 7"):
        model.losses(logits, targets)


def test_vocabulary_comes_from_the_dataset_or_the_override(model):
    assert model.vocabulary([{"dataset_name": TEST_SET}]) == ["car", "person", "building",
                                                               "grass"]
    out = model([{"image": image(48, 64), "dataset_name": TEST_SET}])
    assert out[0]["sem_seg"].shape == (4, 48, 64)
    with pytest.raises(ValueError, match="set_vocabulary"):
        model([{"image": image(48, 64)}])
    with pytest.raises(ValueError, match="mixes datasets"):
        model.vocabulary([{"dataset_name": TEST_SET}, {"dataset_name": TRAIN_SET}])
    with pytest.raises(ValueError, match="stuff_classes"):
        model.vocabulary([{"dataset_name": "test_ahs_model_unregistered"}])
    model.set_vocabulary(["cat", "dog"])
    try:
        out = model([{"image": image(48, 64), "dataset_name": TEST_SET}])
        assert out[0]["sem_seg"].shape == (2, 48, 64)
    finally:
        model.set_vocabulary(None)
    model.train()
    try:
        assert model.vocabulary([{}]) == ["road", "tree, bush", "sky"]
    finally:
        model.eval()


def test_whole_image_scores_are_the_sigmoid_resized_to_the_output_size(model):
    x = image(64, 96, seed=3)  # a multiple of 32: nothing padded
    with torch.no_grad():
        out = model([{"image": x, "height": 30, "width": 40, "dataset_name": TEST_SET}])
        clip_input = F.interpolate(((x.float() - model.pixel_mean) / model.pixel_std)[None],
                                   size=(64, 64), mode="bilinear", align_corners=False)
        text = model.backbone.encode_text(MetadataCatalog.get(TEST_SET).stuff_classes)
        logits = model.segment(clip_input, text)
    expected = F.interpolate(logits.sigmoid(), size=(30, 40), mode="bilinear",
                             align_corners=False)[0]
    torch.testing.assert_close(out[0]["sem_seg"], expected)


def test_whole_image_of_a_padded_batch_crops_each_image(model):
    small, large = image(40, 50, seed=1), image(64, 64, seed=2)
    with torch.no_grad():
        results = model([{"image": small, "dataset_name": TEST_SET},
                         {"image": large, "dataset_name": TEST_SET}])
        clip_input, sizes, padded = model.preprocess([small, large])
        scores = model.segment(clip_input, model.backbone.encode_text(
            MetadataCatalog.get(TEST_SET).stuff_classes)).sigmoid()
    assert sizes == [(40, 50), (64, 64)] and padded == (64, 64)
    full = F.interpolate(scores[:1], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(results[0]["sem_seg"], full[0, :, :40, :50])
    assert results[1]["sem_seg"].shape == (4, 64, 64)


def test_sliding_window_averages_crops_and_the_global_view(model):
    model.sliding_window, model.sliding_window_crop = True, 32
    model.sliding_window_overlap, model.sliding_window_out_res = 0.5, (48, 48)
    try:
        x = image(60, 80, seed=4)
        with torch.no_grad():
            out = model([{"image": x, "height": 30, "width": 20, "dataset_name": TEST_SET}])
            # independent computation: explicit crops at offsets 0 and 16 (stride 32·0.5)
            text = model.backbone.encode_text(MetadataCatalog.get(TEST_SET).stuff_classes)
            resized = F.interpolate(x[None].float(), size=(48, 48), mode="bilinear",
                                    align_corners=False)
            offsets = [(0, 0), (0, 16), (16, 0), (16, 16)]
            views = [resized[..., y:y + 32, x0:x0 + 32] for y, x0 in offsets]
            views.append(F.interpolate(x[None].float(), size=(32, 32), mode="bilinear",
                                       align_corners=False))
            views = (torch.cat(views) - model.pixel_mean) / model.pixel_std
            views = F.interpolate(views, size=(64, 64), mode="bilinear", align_corners=False)
            scores = F.interpolate(model.segment(views, text), size=(32, 32), mode="bilinear",
                                   align_corners=False).sigmoid()
        total, count = torch.zeros(4, 48, 48), torch.zeros(1, 48, 48)
        for (y, x0), s in zip(offsets, scores[:4]):
            total[:, y:y + 32, x0:x0 + 32] += s
            count[:, y:y + 32, x0:x0 + 32] += 1
        global_scores = F.interpolate(scores[4:], size=(48, 48), mode="bilinear",
                                      align_corners=False)[0]
        merged = (total / count + global_scores) / 2
        expected = F.interpolate(merged[None], size=(30, 20), mode="bilinear",
                                 align_corners=False)[0]
        torch.testing.assert_close(out[0]["sem_seg"], expected)

        model.sliding_window_out_res = (50, 50)  # crops at 0 and 16 end at 48 < 50
        with pytest.raises(ValueError, match="do not cover"):
            model([{"image": x, "dataset_name": TEST_SET}])
    finally:
        model.sliding_window, model.sliding_window_crop = False, 384
        model.sliding_window_overlap, model.sliding_window_out_res = 0.333, (640, 640)


@pytest.mark.slow
def test_real_vitb16_at_384_with_171_and_847_classes(make_cfg):
    cfg = make_cfg(Path(__file__).resolve().parents[1] / "configs" / "vitb_384_hclip.yaml",
                   MODEL__SEM_SEG_HEAD__CLIP_WEIGHTS="random", MODEL__DEVICE="cpu")
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    head = net.sem_seg_head
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == 4_668_641
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 12_536_465
    for vocabulary, kept in (("coco", 171), ("ade847", 256)):
        names = json.loads((CLASS_NAMES / f"{vocabulary}.json").read_text())
        net.set_vocabulary(names)
        captured = []
        hook = head.register_forward_hook(lambda m, i, o: captured.append(o))
        with torch.no_grad():
            out = net([{"image": image(240, 320, seed=5), "height": 120, "width": 160}])
        hook.remove()
        scores = out[0]["sem_seg"]
        assert scores.shape == (len(names), 120, 160)
        assert torch.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1
        logits = captured[0]
        assert logits.shape == (1, len(names), 96, 96)
        # beyond CLASS_PAD_LEN only each image's top classes are segmented, the rest get -100
        assert int((logits[0, :, 0, 0] != -100).sum()) == kept
    # CAT-Seg trains the q/v projections of both encoders instead of the adapters.
    del net
    cfg.MODEL.SEM_SEG_HEAD.CLIP_FINETUNE = "attention"
    catseg = AHSSeg(cfg)
    assert sum(p.numel() for p in catseg.parameters() if p.requires_grad) == 25_115_873
