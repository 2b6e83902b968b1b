"""The semantic-segmentation dataset mapper: each transform, the output contract, bad input."""
import colorsys
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import MetadataCatalog
from PIL import Image

from cat_seg.data.dataset_mapper import ResizeWithExactLabels, SemanticDatasetMapper
from cat_seg.data.photometric_distortion import (
    PhotometricDistortion,
    PhotometricDistortionTransform,
    hsv_to_rgb,
    rgb_to_hsv,
)
from helpers.configs import make_cfg

IGNORE = 255


def _dataset(num_classes=10, ignore_label=IGNORE):
    name = f"test_mapper_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(stuff_classes=[f"c{i}" for i in range(num_classes)],
                                  ignore_label=ignore_label, evaluator_type="sem_seg")
    return name


def _cfg(dataset, *, min_size=(64,), max_size=1000, crop=None, max_area=1.0, ssd=False,
         divisibility=-1):
    """The mapper's knobs as config keys, on the defaults + AHS keys (``helpers.configs``)."""
    return make_cfg(opts={
        "DATASETS.TRAIN": (dataset,),
        "INPUT.MIN_SIZE_TRAIN": min_size,
        "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",
        "INPUT.MAX_SIZE_TRAIN": max_size,
        "INPUT.CROP.ENABLED": crop is not None,
        "INPUT.CROP.TYPE": "absolute",
        "INPUT.CROP.SIZE": crop or (64, 64),
        "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA": max_area,
        "INPUT.COLOR_AUG_SSD": ssd,
        "INPUT.SIZE_DIVISIBILITY": divisibility,
    })


def _record(tmp_path, image, label=None, **extra):
    stem = uuid.uuid4().hex
    image_path = tmp_path / f"{stem}.png"
    Image.fromarray(image).save(image_path)
    record = {"file_name": str(image_path), **extra}
    if label is not None:
        label_path = tmp_path / f"{stem}_label.png"
        Image.fromarray(label).save(label_path)
        record["sem_seg_file_name"] = str(label_path)
    return record


def _column_coded(height, width):
    """Image whose red channel and label both encode the column band (label = column // 8)."""
    label = np.broadcast_to((np.arange(width) // 8).astype(np.uint8), (height, width)).copy()
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = label * 20
    image[..., 1] = 100
    return image, label


# ----------------------------------------------------------------------------- resize

def test_label_resize_matches_pil_nearest_and_keeps_16bit_values():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 200, size=(37, 53)).astype(np.uint8)
    for new_h, new_w in [(80, 115), (20, 29)]:
        tfm = ResizeWithExactLabels(37, 53, new_h, new_w)
        ours = tfm.apply_segmentation(label)
        pil = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.NEAREST))
        assert np.array_equal(ours, pil)
    wide = rng.choice(np.array([0, 846, 65535]), size=(37, 53))
    resized = ResizeWithExactLabels(37, 53, 80, 115).apply_segmentation(wide)
    assert resized.dtype == wide.dtype and set(np.unique(resized)) <= {0, 846, 65535}


def test_shortest_edge_resize_and_longest_edge_cap(tmp_path):
    image, label = _column_coded(40, 60)
    record = _record(tmp_path, image, label)
    out = SemanticDatasetMapper(_cfg(_dataset(), min_size=(80,)), is_train=True)(record)
    assert out["image"].shape == (3, 80, 120) and out["sem_seg"].shape == (80, 120)
    out = SemanticDatasetMapper(_cfg(_dataset(), min_size=(80,), max_size=100), is_train=True)(record)
    assert out["image"].shape == (3, 67, 100)  # 80x120 capped: scale 100/120
    assert (out["height"], out["width"]) == (40, 60)


# ----------------------------------------------------------------------------- crop

def test_crop_with_single_category_max_area(tmp_path):
    """A 100x100 label of class 0 with a 20-column stripe of class 1: half of the 30x30 crops
    are ≥ 75% one class; with SINGLE_CATEGORY_MAX_AREA 0.75 the mapper retries (up to 10 times)
    until no class covers 75% of the crop's labelled pixels."""
    label = np.zeros((100, 100), np.uint8)
    label[:, 40:60] = 1
    label[:10] = IGNORE  # ignored pixels do not count towards the area
    image = np.full((100, 100, 3), 128, np.uint8)
    record = _record(tmp_path, image, label)

    def fraction_valid(max_area):
        mapper = SemanticDatasetMapper(_cfg(_dataset(), min_size=(100,), crop=(30, 30),
                                            max_area=max_area), is_train=True)
        valid = 0
        for seed in range(20):
            np.random.seed(seed)
            crop = mapper(record)["sem_seg"]
            assert crop.shape == (30, 30)
            counts = torch.bincount(crop[crop != IGNORE], minlength=2)
            valid += int(counts.max() < 0.75 * counts.sum())
        return valid / 20

    assert fraction_valid(0.75) == 1.0
    assert fraction_valid(1.0) <= 0.7


def test_image_smaller_than_crop_is_padded_to_the_crop(tmp_path):
    image = np.full((50, 70, 3), 200, np.uint8)
    label = np.full((50, 70), 3, np.uint8)
    record = _record(tmp_path, image, label)
    np.random.seed(0)
    out = SemanticDatasetMapper(_cfg(_dataset(), min_size=(50,), crop=(64, 64)),
                                is_train=True)(record)
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    assert (out["image"][:, :50] == 200).all() and (out["image"][:, 50:] == 0).all()
    assert (out["sem_seg"][:50] == 3).all() and (out["sem_seg"][50:] == IGNORE).all()


# ----------------------------------------------------------------------------- padding

def test_padding_to_size_divisibility(tmp_path):
    image, label = _column_coded(50, 70)
    out = SemanticDatasetMapper(_cfg(_dataset(), min_size=(50,), divisibility=32),
                                is_train=True)(_record(tmp_path, image, label))
    assert out["image"].shape == (3, 64, 96) and out["sem_seg"].shape == (64, 96)
    assert (out["image"][:, 50:, :] == 0).all() and (out["image"][:, :, 70:] == 0).all()
    assert (out["sem_seg"][50:, :] == IGNORE).all() and (out["sem_seg"][:, 70:] == IGNORE).all()
    assert (out["sem_seg"][:50, :70] != IGNORE).all()


# ----------------------------------------------------------------------------- flip

def test_flip_moves_image_and_label_together(tmp_path):
    image, label = _column_coded(64, 96)
    record = _record(tmp_path, image, label)
    mapper = SemanticDatasetMapper(_cfg(_dataset(num_classes=12), min_size=(64,), crop=(48, 48)),
                                   is_train=True)
    flipped = 0
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(record)
        red, sem = out["image"][0].long(), out["sem_seg"]
        assert torch.equal(red, sem * 20), "image and label stay aligned"
        flipped += int(sem[0, 0] > sem[0, -1])  # columns decrease after a flip
        np.random.seed(seed)
        assert torch.equal(mapper(record)["image"], out["image"]), "deterministic given the seed"
    assert 0 < flipped < 8


# ----------------------------------------------------------------------------- SSD colour

def test_hsv_conversion_matches_colorsys():
    rng = np.random.default_rng(1)
    rgb = rng.random((500, 3))
    rgb[:5] = rgb[:5, :1]  # grays
    ours = rgb_to_hsv(rgb)
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in rgb]) * [360, 1, 1]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    np.testing.assert_allclose(hsv_to_rgb(ours), rgb, atol=1e-9)


def test_each_photometric_distortion():
    image = np.array([[[200, 50, 50], [10, 120, 240]]], np.uint8)
    t = PhotometricDistortionTransform
    assert t(30, None, True, None, None).apply_image(image).tolist() == [[[230, 80, 80], [40, 150, 255]]]
    assert t(None, 1.5, True, None, None).apply_image(image).tolist() == [[[255, 75, 75], [15, 180, 255]]]
    gray = t(None, None, True, 0.0, None).apply_image(image)
    assert gray.tolist() == [[[200, 200, 200], [240, 240, 240]]]  # saturation 0: r = g = b = v
    rotated = t(None, None, True, None, 120.0).apply_image(image)
    assert rotated.tolist()[0][0] == [50, 200, 50]  # red hue + 120° = green
    # Contrast first or last differs once a channel clips at 255:
    #   first: [200, 50, 50] x1.5 -> [255, 75, 75], saturation x0.5 -> [255, 165, 165]
    #   last:  saturation x0.5 -> [200, 125, 125], x1.5 -> [255, 187.5, 187.5]
    before = t(None, 1.5, True, 0.5, None).apply_image(image)[0, 0].astype(int)
    after = t(None, 1.5, False, 0.5, None).apply_image(image)[0, 0].astype(int)
    assert np.abs(before - [255, 165, 165]).max() <= 1
    assert np.abs(after - [255, 188, 188]).max() <= 1
    label = np.arange(2).reshape(1, 2)
    assert t(30, 1.5, True, 0.5, 20.0).apply_segmentation(label) is label


def test_photometric_distortion_sampling():
    np.random.seed(0)
    aug = PhotometricDistortion()
    draws = [aug.get_transform(None) for _ in range(400)]
    for field, low, high in [("brightness", -32, 32), ("contrast", 0.5, 1.5),
                             ("saturation", 0.5, 1.5), ("hue", -36, 36)]:
        values = [getattr(d, field) for d in draws if getattr(d, field) is not None]
        assert 0.4 < len(values) / 400 < 0.6, field
        assert low <= min(values) and max(values) <= high, field
    np.random.seed(0)
    again = PhotometricDistortion().get_transform(None)
    assert vars(again) == vars(draws[0])


def test_ssd_jitter_in_the_mapper_changes_colours_not_labels(tmp_path):
    image, label = _column_coded(64, 64)
    record = _record(tmp_path, image, label)
    plain = SemanticDatasetMapper(_cfg(_dataset(), min_size=(64,)), is_train=True)
    jitter = SemanticDatasetMapper(_cfg(_dataset(), min_size=(64,), ssd=True), is_train=True)
    changed = 0
    for seed in range(5):
        np.random.seed(seed)
        a = plain(record)
        np.random.seed(seed)
        b = jitter(record)
        changed += int(not torch.equal(a["image"], b["image"]))
        # the flip draw comes after the jitter draws, so compare labels up to a flip
        assert torch.equal(a["sem_seg"], b["sem_seg"]) or torch.equal(a["sem_seg"].flip(-1), b["sem_seg"])
    assert changed >= 4


# ----------------------------------------------------------------------------- contract

def test_output_contract_train_and_test(tmp_path):
    image, label = _column_coded(40, 60)
    record = _record(tmp_path, image, label, height=40, width=60, dataset_name="x", image_id=7)
    np.random.seed(0)
    out = SemanticDatasetMapper(_cfg(_dataset(), min_size=(80,)), is_train=True)(record)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 80, 120)
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (80, 120)
    assert (out["dataset_name"], out["image_id"], out["height"], out["width"]) == ("x", 7, 40, 60)
    assert out["sem_seg_file_name"] == record["sem_seg_file_name"]
    assert "image" not in record, "the input record is not modified"

    cfg = _cfg(_dataset())
    cfg.INPUT.MIN_SIZE_TEST = 100
    test_record = {"file_name": record["file_name"], "dataset_name": "x",
                   "sem_seg_file_name": str(tmp_path / "not_read.png")}
    out = SemanticDatasetMapper(cfg, is_train=False)(test_record)
    assert out["image"].shape == (3, 100, 150) and "sem_seg" not in out
    assert (out["height"], out["width"], out["dataset_name"]) == (40, 60, "x")
    # benchmark default: shortest edge 640
    out = SemanticDatasetMapper(_cfg(_dataset()), is_train=False)(test_record)
    assert out["image"].shape == (3, 640, 960)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16bit_images(tmp_path, mode):
    if mode == "L":
        pil = Image.fromarray(np.full((20, 30), 77, np.uint8))
    elif mode == "RGBA":
        pil = Image.fromarray(np.full((20, 30, 4), (10, 20, 30, 0), np.uint8), mode="RGBA")
    else:
        pil = Image.fromarray(np.full((20, 30), 65535, np.uint16))
    path = tmp_path / "img.png"
    pil.save(path)
    cfg = _cfg(_dataset())
    cfg.INPUT.MIN_SIZE_TEST = 20
    out = SemanticDatasetMapper(cfg, is_train=False)({"file_name": str(path)})
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 20, 30)
    expected = {"L": [77, 77, 77], "RGBA": [10, 20, 30], "I;16": [255, 255, 255]}[mode]
    assert out["image"][:, 5, 5].tolist() == expected


# ----------------------------------------------------------------------------- bad input

def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    mapper = SemanticDatasetMapper(_cfg(_dataset()), is_train=False)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="garbage.jpg.*corrupt"):
        mapper({"file_name": str(garbage)})
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ValueError, match="truncated.jpg"):
        mapper({"file_name": str(truncated)})


def test_label_problems_are_errors(tmp_path):
    image, label = _column_coded(40, 60)
    mapper = SemanticDatasetMapper(_cfg(_dataset(num_classes=7)), is_train=True)
    wrong_size = _record(tmp_path, image, label[:, :50])
    with pytest.raises(ValueError, match="40x50 but image .* is 40x60"):
        mapper(wrong_size)
    with pytest.raises(ValueError, match=r"values \[7\] outside the training classes \[0, 7\)"):
        mapper(_record(tmp_path, image, label))  # the label's column bands reach 7
    with pytest.raises(KeyError, match="sem_seg_file_name"):
        mapper({"file_name": _record(tmp_path, image)["file_name"]})
    missing = dict(_record(tmp_path, image), sem_seg_file_name=str(tmp_path / "missing.png"))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        mapper(missing)
    with pytest.raises(ValueError, match="record says 41x60"):
        mapper(_record(tmp_path, image, label, height=41, width=60))


def test_config_errors():
    cfg = _cfg(_dataset())
    cfg.INPUT.FORMAT = "BGR"
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        SemanticDatasetMapper(cfg, is_train=True)
    with pytest.raises(ValueError, match="IGNORE_VALUE"):
        SemanticDatasetMapper(_cfg(_dataset(ignore_label=65535)), is_train=True)
    with pytest.raises(ValueError, match="registered"):
        SemanticDatasetMapper(_cfg(f"unregistered_{uuid.uuid4().hex[:6]}"), is_train=True)
    cfg = _cfg(_dataset(num_classes=3))
    cfg.DATASETS.TRAIN = (cfg.DATASETS.TRAIN[0], _dataset(num_classes=4))
    with pytest.raises(ValueError, match="different class lists"):
        SemanticDatasetMapper(cfg, is_train=True)
