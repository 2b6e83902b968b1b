"""The generalized protocol: its metrics on hand-made label maps, its evaluator, and the splits of
the synthetic world it is scored on (disjoint, deterministic, none in the CLIP pretraining bank)."""
import hashlib
import math
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.data.synthetic import storage
from cat_seg.data.synthetic.classes import (
    ALL_CLASSES,
    SEEN_CLASSES,
    SELECTION_CLASSES,
    SELECTION_TRAINING_CLASSES,
    UNSEEN_CLASSES,
)
from cat_seg.data.synthetic.image_text import SceneCropStream
from cat_seg.evaluation.build import build_sem_seg_evaluator
from cat_seg.evaluation.generalized import (
    GeneralizedSemSegEvaluator,
    format_generalized_table,
    generalized_metrics,
    harmonic_mean,
)

SMALL = {"seen_train": 3, "seen_val": 2, "unseen_val": 2, "mixed_val": 3}


def _confusion(gt, pred, k):
    gt, pred = np.asarray(gt).ravel(), np.asarray(pred).ravel()
    return np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)


def test_metrics_on_hand_made_label_maps():
    # classes 0, 1 seen; 2, 3 held out; class 3 is in neither the ground truth nor the prediction
    gt = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 0, 0, 1, 1, 1, 2, 2, 0, 1]
    m = generalized_metrics(_confusion(gt, pred, 4), [False, False, True, True])
    iou0, iou1, iou2 = 3 / 5, 2 / 4, 2 / 4  # tp / (gt + pred - tp)
    assert m.miou_seen == pytest.approx(100 * (iou0 + iou1) / 2)
    assert m.miou_unseen == pytest.approx(100 * iou2)  # the absent class 3 does not count
    s, u = 100 * (iou0 + iou1) / 2, 100 * iou2
    assert m.hiou == pytest.approx(2 * s * u / (s + u))
    assert m.unseen_as_seen == pytest.approx(100 * 2 / 4)  # two of the four held-out pixels
    assert m.seen_as_unseen == pytest.approx(0.0)


def test_a_group_that_never_occurs_gives_nan_not_zero():
    m = generalized_metrics(_confusion([0, 1], [0, 1], 3), [False, False, True])
    assert m.miou_seen == pytest.approx(100.0)
    assert math.isnan(m.miou_unseen) and math.isnan(m.hiou) and math.isnan(m.unseen_as_seen)
    assert harmonic_mean(0.0, 0.0) == 0.0 and harmonic_mean(50.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="some but not all"):
        generalized_metrics(np.eye(2), [True, True])


def test_evaluator_reports_the_figures_and_a_grouped_csv(tmp_path):
    name = "test_generalized_toy"
    label = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    path = str(tmp_path / "label.png")
    Image.fromarray(label).save(path)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c"], ignore_label=255,
                                  evaluator_type="sem_seg", unseen_classes=["c"])
    evaluator = build_sem_seg_evaluator(name, output_dir=str(tmp_path), distributed=False)
    assert isinstance(evaluator, GeneralizedSemSegEvaluator)
    scores = torch.zeros(3, 1, 4)
    scores[0, 0, 0] = scores[1, 0, 1] = scores[0, 0, 2] = 1  # the held-out pixel taken for "a"
    evaluator.process([{"sem_seg_file_name": path}], [{"sem_seg": scores}])
    res = evaluator.evaluate()["sem_seg"]
    assert res["mIoU_unseen"] == 0.0 and res["unseen_as_seen"] == 100.0
    assert res["mIoU_seen"] == pytest.approx(100 * (1 / 2 + 1) / 2)
    rows = [line for line in open(tmp_path / f"sem_seg_per_class_{name}.csv")
            if not line.startswith("#")]
    assert rows[0].startswith("class,group,IoU") and rows[3].startswith("c,unseen,")
    table = format_generalized_table({"Toy": {"sem_seg": res}})
    assert "| Toy | 75.0 | 0.0 | 0.0 | 100.0 |" in table
    assert format_generalized_table({"Toy": {"sem_seg": {"mIoU": 1.0}}}) == ""
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c"], ignore_label=255,
                                  evaluator_type="sem_seg", unseen_classes=["c", "zebra"])
    with pytest.raises(ValueError, match="zebra"):
        GeneralizedSemSegEvaluator(name, distributed=False)


def test_splits_are_disjoint_and_the_stream_codes_distinct():
    names = lambda classes: {c.name for c in classes}  # noqa: E731
    assert not names(SELECTION_CLASSES) & names(UNSEEN_CLASSES)
    assert names(SELECTION_CLASSES) <= names(SEEN_CLASSES)
    assert names(SELECTION_TRAINING_CLASSES) == names(SEEN_CLASSES) - names(SELECTION_CLASSES)
    assert [c.name for c in ALL_CLASSES] == [c.name for c in SEEN_CLASSES + UNSEEN_CLASSES]
    codes = [code for _, code in storage.RENDERED_SPLITS.values()]
    assert len(set(codes)) == len(codes) and storage.BANK_STREAM not in codes
    assert MetadataCatalog.get("synthetic_selection_val").unseen_classes == \
        [c.name for c in SELECTION_CLASSES]
    assert MetadataCatalog.get("synthetic_generalized_val").unseen_classes == \
        [c.name for c in UNSEEN_CLASSES]


def _digests(root):
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith((".jpg", ".png")):
                with open(os.path.join(folder, f), "rb") as handle:
                    out[os.path.relpath(os.path.join(folder, f), root)] = \
                        hashlib.sha256(handle.read()).hexdigest()
    return out


def test_generated_benchmarks_are_deterministic_and_well_labelled(tmp_path):
    a = storage.ensure_synthetic_dataset(str(tmp_path / "a"), SMALL)
    storage.ensure_synthetic_dataset(str(tmp_path / "b"), SMALL)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    root = str(tmp_path / "a")
    unseen_index = {i for i, c in enumerate(ALL_CLASSES) if c in UNSEEN_CLASSES}
    for i in range(SMALL["mixed_val"]):  # every mixed scene shows seen and held-out classes
        label = np.array(Image.open(storage.label_path(root, "mixed_val", i)))
        present = set(np.unique(label[label != 255]).tolist())
        assert present & unseen_index and present - unseen_index
    # held-out labels move to the 22-name vocabulary; selection classes are never supervised
    raw = np.array(Image.open(storage.label_path(root, "unseen_val", 0)))
    moved = np.array(Image.open(storage.derived_label_path(root, "generalized_val",
                                                           "unseen_val", 0)))
    assert np.array_equal(moved[raw != 255], raw[raw != 255] + len(SEEN_CLASSES))
    train = [np.array(Image.open(storage.derived_label_path(root, "selection_train",
                                                            "seen_train", i)))
             for i in range(SMALL["seen_train"])]
    source = [np.array(Image.open(storage.label_path(root, "seen_train", i)))
              for i in range(SMALL["seen_train"])]
    selection = [i for i, c in enumerate(SEEN_CLASSES) if c in SELECTION_CLASSES]
    for t, s in zip(train, source):
        assert (t[np.isin(s, selection)] == 255).all()
        assert t[t != 255].max(initial=0) < len(SELECTION_TRAINING_CLASSES)
    assert len(a["sizes"]["mixed_val"]) == SMALL["mixed_val"]


def test_no_validation_image_is_in_the_clip_pretraining_bank(tmp_path):
    storage.ensure_synthetic_dataset(str(tmp_path), SMALL)
    bank = SceneCropStream(num_scenes=20, scene_size=64, crop_size=32)
    bank_labels = {hashlib.sha256(label.tobytes()).hexdigest() for label in bank.labels}
    for split in ("seen_val", "unseen_val", "mixed_val"):
        for i in range(SMALL[split]):
            label = np.array(Image.open(storage.label_path(str(tmp_path), split, i)))
            # the bank renders stream BANK_STREAM; a split image drawn from it would share the
            # label map of a bank scene of its size: rendering that scene again must differ
            scene = storage.render_scene(ALL_CLASSES,
                                         np.random.default_rng([storage.SEED,
                                                                storage.BANK_STREAM, i]),
                                         *storage.IMAGE_SIZE_RANGE)[1]
            assert scene.shape != label.shape or not np.array_equal(scene, label)
            assert hashlib.sha256(label.tobytes()).hexdigest() not in bank_labels


def test_the_generalized_benchmarks_are_evaluated_by_name():
    # eval_ahs.sh's BENCHMARKS and TEST.BENCHMARKS take these short names.
    from cat_seg.data import ALL_BENCHMARK_DATASETS

    assert ALL_BENCHMARK_DATASETS["Syn-gen"] == "synthetic_generalized_val"
    assert ALL_BENCHMARK_DATASETS["Syn-sel"] == "synthetic_selection_val"
    for name in ("Syn-gen", "Syn-sel"):
        evaluator = build_sem_seg_evaluator(ALL_BENCHMARK_DATASETS[name], distributed=False)
        assert isinstance(evaluator, GeneralizedSemSegEvaluator)
    for name in ("Syn-seen", "Syn-unseen"):
        evaluator = build_sem_seg_evaluator(ALL_BENCHMARK_DATASETS[name], distributed=False)
        assert not isinstance(evaluator, GeneralizedSemSegEvaluator)
