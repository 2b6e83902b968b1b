"""The built-in synthetic dataset: content, determinism, registration, atomic generation."""
import json
import multiprocessing
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.data.label_io import read_image_rgb, read_label
from cat_seg.data.synthetic import (
    SEEN_CLASSES,
    SYNTHETIC_DATASETS,
    UNSEEN_CLASSES,
    ensure_synthetic_dataset,
    register_synthetic_datasets,
    render_scene,
)
from cat_seg.data.synthetic import register as register_module
from cat_seg.data.synthetic import storage

SMALL = {"seen_train": 4, "seen_val": 2, "unseen_val": 2, "mixed_val": 2}


@pytest.fixture
def restore_registration():
    """Tests that re-register the global names put the original registration back."""
    dataset_dir, counts = register_module._registered["synthetic_seen_train"]
    yield
    register_synthetic_datasets(
        os.path.dirname(dataset_dir), num_train=counts["seen_train"],
        num_val=counts["seen_val"], num_unseen_val=counts["unseen_val"],
        num_mixed_val=counts["mixed_val"],
    )


def _scenes(classes, n, seed=7):
    return [render_scene(classes, np.random.default_rng([seed, i]), 160, 256) for i in range(n)]


# ----------------------------------------------------------------------------- content

def test_vocabularies():
    seen, unseen = [c.name for c in SEEN_CLASSES], [c.name for c in UNSEEN_CLASSES]
    assert len(seen) >= 12 and len(unseen) >= 4
    assert not set(seen) & set(unseen)
    assert "brick wall" in seen and all(name.replace(" ", "").isalpha() for name in seen + unseen)


@pytest.mark.parametrize("classes", [SEEN_CLASSES, UNSEEN_CLASSES], ids=["seen", "unseen"])
def test_scenes_have_learnable_class_statistics(classes):
    """Every class appears, labels are class indices or 255 on thin borders, and each class's
    measured mean colour is closest to its own specified colour (so colour alone separates them)."""
    k = len(classes)
    sums, pixels, ignored = np.zeros((k, 3)), np.zeros(k), []
    for image, label in _scenes(classes, 40):
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        assert image.shape == label.shape + (3,)
        assert 160 <= label.shape[0] <= 256 and 160 <= label.shape[1] <= 256
        assert set(np.unique(label)) <= set(range(k)) | {255}
        ignored.append(np.mean(label == 255))
        for c in range(k):
            mask = label == c
            sums[c] += image[mask].sum(axis=0)
            pixels[c] += mask.sum()
    assert (pixels > 0).all(), "every class appears in 40 scenes"
    assert 0.005 < np.mean(ignored) < 0.05, "ignore pixels are thin borders"
    measured = sums / pixels[:, None]
    spec = np.array([c.color for c in classes], dtype=float)
    distance = np.linalg.norm(measured[:, None] - spec[None], axis=2)
    assert (distance.argmin(axis=1) == np.arange(k)).all()
    assert np.abs(measured - spec).max() < 20


def test_scenes_are_deterministic():
    a = _scenes(SEEN_CLASSES, 3)
    b = _scenes(SEEN_CLASSES, 3)
    for (ia, la), (ib, lb) in zip(a, b):
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a[0][0], _scenes(SEEN_CLASSES, 1, seed=8)[0][0])


# ----------------------------------------------------------------------------- on disk

def test_generation_layout_and_independence_of_counts(tmp_path):
    manifest = ensure_synthetic_dataset(str(tmp_path / "a"), SMALL)
    assert manifest["counts"] == SMALL
    more = dict(SMALL, seen_train=6)
    ensure_synthetic_dataset(str(tmp_path / "b"), more)
    for i in range(SMALL["seen_train"]):  # image i does not depend on how many are generated
        for path in (storage.image_path, storage.label_path):
            assert (open(path(str(tmp_path / "a"), "seen_train", i), "rb").read()
                    == open(path(str(tmp_path / "b"), "seen_train", i), "rb").read())
    label = read_label(storage.label_path(str(tmp_path / "a"), "unseen_val", 0))
    image = read_image_rgb(storage.image_path(str(tmp_path / "a"), "unseen_val", 0))
    assert image.shape[:2] == label.shape == tuple(manifest["sizes"]["unseen_val"][0])
    assert set(np.unique(label)) <= set(range(len(UNSEEN_CLASSES))) | {255}
    # train and val are different images
    train0 = read_label(storage.label_path(str(tmp_path / "a"), "seen_train", 0))
    val0 = read_label(storage.label_path(str(tmp_path / "a"), "seen_val", 0))
    assert train0.shape != val0.shape or not np.array_equal(train0, val0)


def test_regenerated_when_the_generator_changes(tmp_path, monkeypatch):
    root = str(tmp_path / "synthetic")
    ensure_synthetic_dataset(root, SMALL)
    marker = os.path.join(root, "marker")
    open(marker, "w").close()
    ensure_synthetic_dataset(root, SMALL)  # up to date: left alone
    assert os.path.exists(marker)
    monkeypatch.setattr(storage, "GENERATOR_VERSION", storage.GENERATOR_VERSION + 1)
    manifest = ensure_synthetic_dataset(root, SMALL)
    assert not os.path.exists(marker)
    assert manifest["fingerprint"] == storage.generator_fingerprint()
    with open(os.path.join(root, storage.MANIFEST)) as f:
        assert json.load(f)["fingerprint"] == storage.generator_fingerprint()
    ensure_synthetic_dataset(root, dict(SMALL, seen_val=3))  # other counts: regenerated too
    assert len(os.listdir(os.path.join(root, "images", "seen_val"))) == 3
    assert sorted(os.listdir(tmp_path)) == ["synthetic"]  # no temporary folder left


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    (root / "my_notes.txt").write_text("not a dataset")
    with pytest.raises(RuntimeError, match="no synthetic-dataset manifest"):
        ensure_synthetic_dataset(str(root), SMALL)
    assert (root / "my_notes.txt").exists()
    with pytest.raises(ValueError, match="positive image count"):
        ensure_synthetic_dataset(str(tmp_path / "x"), dict(SMALL, seen_val=0))


def test_concurrent_generation_is_safe(tmp_path):
    """Four processes generate at once over an outdated copy: one complete dataset results."""
    root = str(tmp_path / "synthetic")
    ensure_synthetic_dataset(root, dict(SMALL, seen_train=2))  # outdated counts
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=ensure_synthetic_dataset, args=(root, SMALL)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert storage.read_manifest(root)["counts"] == SMALL
    for split, count in SMALL.items():
        assert len(os.listdir(os.path.join(root, "annotations", split))) == count
    assert sorted(os.listdir(tmp_path)) == ["synthetic"]


# ----------------------------------------------------------------------------- registration

def test_registered_at_import_with_the_metadata_contract():
    for name, (split, classes, benchmark, held_out) in SYNTHETIC_DATASETS.items():
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == [c.name for c in classes]
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
        assert meta.benchmark == benchmark and len(meta.stuff_colors) == len(classes)
        images = "images" if split in storage.DERIVED_SPLITS else os.path.join("images", split)
        assert meta.image_root.endswith(os.path.join("synthetic", images))
        assert meta.get("unseen_classes", []) == [c.name for c in held_out]
        assert meta.sem_seg_root.endswith(os.path.join("synthetic", "annotations", split))
    assert MetadataCatalog.get("synthetic_seen_val").benchmark == "Syn-seen"
    assert MetadataCatalog.get("synthetic_unseen_val").benchmark == "Syn-unseen"


def test_generated_on_first_use_under_detectron2_datasets(tmp_path, monkeypatch,
                                                          restore_registration):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    register_synthetic_datasets(num_train=3, num_val=2, num_unseen_val=2)
    register_synthetic_datasets(num_train=3, num_val=2, num_unseen_val=2)  # idempotent
    assert not (tmp_path / "d2").exists()  # registering generates nothing
    records = DatasetCatalog.get("synthetic_seen_train")
    assert len(records) == 3
    assert records[0]["file_name"].startswith(str(tmp_path / "d2" / "synthetic"))
    for r in records:
        with Image.open(r["file_name"]) as im:
            assert (im.height, im.width) == (r["height"], r["width"])
        assert os.path.isfile(r["sem_seg_file_name"])
    assert len(DatasetCatalog.get("synthetic_unseen_val")) == 2


def test_default_root_is_relative_to_the_working_directory(tmp_path, monkeypatch,
                                                           restore_registration):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()  # a ./datasets folder here is the root
    register_synthetic_datasets(num_train=2, num_val=1, num_unseen_val=1)
    assert MetadataCatalog.get("synthetic_seen_val").image_root == str(
        tmp_path / "datasets" / "synthetic" / "images" / "seen_val")
