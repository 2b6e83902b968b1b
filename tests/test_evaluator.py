"""Evaluator against hand-computed confusion matrices.

Every expected number below is worked out by hand in the comments (confusion[gt, pred]).
"""
import csv
import math
import socket
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.evaluation import (
    BackgroundSemSegEvaluator,
    SemSegEvaluator,
    build_sem_seg_evaluator,
    compute_metrics,
    merge_confusion_matrices,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# ----------------------------------------------------------------------------- helpers

def _register(classes, ignore_label=255, **extra):
    name = f"test_eval_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        stuff_classes=list(classes), ignore_label=ignore_label, evaluator_type="sem_seg", **extra
    )
    return name


def _write_label(path, array):
    array = np.asarray(array)
    dtype = np.uint8 if array.max() <= 255 else np.uint16
    Image.fromarray(array.astype(dtype)).save(path)
    return str(path)


def _scores(pred, num_scores, device="cpu"):
    """(T, H, W) scores whose argmax is ``pred``."""
    pred = torch.as_tensor(np.asarray(pred), dtype=torch.int64)
    return torch.nn.functional.one_hot(pred, num_scores).permute(2, 0, 1).float().to(device)


def _run(evaluator, cases, num_scores, tmp_path, device="cpu"):
    evaluator.reset()
    for i, (gt, pred) in enumerate(cases):
        label = _write_label(tmp_path / f"{uuid.uuid4().hex}_{i}.png", gt)
        evaluator.process([{"file_name": f"img{i}.jpg", "sem_seg_file_name": label}],
                          [{"sem_seg": _scores(pred, num_scores, device)}])
    return evaluator.evaluate()["sem_seg"]


CLASSES5 = ["sky", "grass", "water", "road", "snow"]
# 'road' (3) is predicted but absent from the GT; 'water' (2) is in the GT, never predicted;
# 'snow' (4) is in neither; one pixel carries the ignore label 255.
GT5 = [[0, 0, 1, 1],
       [2, 255, 0, 1]]
PRED5 = [[0, 1, 1, 1],
         [3, 3, 0, 0]]
# Confusion[gt, pred]: (0,0)x2 (0,1)x1 (1,1)x2 (1,0)x1 (2,3)x1; the ignored pixel is dropped.
#   gt  = [3, 3, 1, 0, 0]   pred = [3, 3, 0, 1, 0]   tp = [2, 2, 0, 0, 0]
#   union = [4, 4, 1, 1, 0] -> IoU = [1/2, 1/2, 0, 0, NaN]
#   mIoU (d2 0.6)  = (1/2 + 1/2 + 0) / #{union>0}=4 = 25 %
#   mIoU_gt        = (1/2 + 1/2 + 0) / #{gt>0}=3    = 33.333 %
#   fwIoU = 3/7*1/2 + 3/7*1/2 + 1/7*0 = 3/7 = 42.857 %
#   mACC  = (2/3 + 2/3 + 0) / 3 = 4/9 = 44.444 %
#   pACC  = 4/7 = 57.143 %
EXPECTED5 = {"mIoU": 25.0, "mIoU_gt": 100 / 3, "fwIoU": 300 / 7, "mACC": 400 / 9,
             "pACC": 400 / 7, "IoU-sky": 50.0, "IoU-grass": 50.0, "IoU-water": 0.0,
             "IoU-road": 0.0, "ACC-sky": 200 / 3, "ACC-grass": 200 / 3, "ACC-water": 0.0}


def _assert_results(res, expected):
    for key, value in expected.items():
        assert res[key] == pytest.approx(value, abs=1e-9), key


# ----------------------------------------------------------------------------- formulas

@pytest.mark.parametrize("device", DEVICES)
def test_absent_classes_and_ignore_label(tmp_path, device):
    evaluator = SemSegEvaluator(_register(CLASSES5), distributed=False)
    res = _run(evaluator, [(GT5, PRED5)], 5, tmp_path, device)
    _assert_results(res, EXPECTED5)
    assert math.isnan(res["IoU-snow"]) and math.isnan(res["ACC-snow"])
    assert math.isnan(res["ACC-road"])
    assert list(res)[:5] == ["mIoU", "mIoU_gt", "fwIoU", "mACC", "pACC"]
    expected_conf = torch.zeros(5, 5, dtype=torch.int64)
    for (g, p), n in {(0, 0): 2, (0, 1): 1, (1, 1): 2, (1, 0): 1, (2, 3): 1}.items():
        expected_conf[g, p] = n
    assert torch.equal(evaluator.confusion.cpu(), expected_conf)
    assert evaluator.confusion.device.type == device


def test_matches_installed_detectron2_formula(tmp_path):
    """detectron2 0.7.2's own SemSegEvaluator (numpy) gives our mIoU_gt, fwIoU, mACC, pACC."""
    from detectron2.evaluation import SemSegEvaluator as D2SemSegEvaluator

    rng = np.random.default_rng(0)
    name = _register([f"class{i}" for i in range(7)])
    records = []
    for i in range(3):
        gt = rng.integers(0, 6, size=(12, 9))  # class 6 never in the GT
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, np.clip(gt, 0, 6), rng.integers(0, 7, gt.shape))
        records.append({"file_name": f"im{i}.jpg",
                        "sem_seg_file_name": _write_label(tmp_path / f"d2_{i}.png", gt),
                        "pred": pred})
    DatasetCatalog.register(name, lambda: [{k: r[k] for k in ("file_name", "sem_seg_file_name")}
                                           for r in records])
    ours, theirs = SemSegEvaluator(name, distributed=False), D2SemSegEvaluator(name, distributed=False)
    for ev in (ours, theirs):
        ev.reset()
        for r in records:
            ev.process([r], [{"sem_seg": _scores(r["pred"], 7)}])
    a, b = ours.evaluate()["sem_seg"], theirs.evaluate()["sem_seg"]
    assert a["mIoU_gt"] == pytest.approx(b["mIoU"], abs=1e-9)
    for key in ("fwIoU", "mACC", "pACC"):
        assert a[key] == pytest.approx(b[key], abs=1e-9)
    assert a["mIoU"] < a["mIoU_gt"]  # class 6 is predicted but absent from the GT


def test_1001_classes_with_16bit_labels(tmp_path):
    """More classes than ADE20K-847, ignore label 65535 (as A-847), labels in a 16-bit PNG."""
    names = [f"thing{i}" for i in range(1001)]
    evaluator = SemSegEvaluator(_register(names, ignore_label=65535), distributed=False)
    gt = [[0, 0, 300, 1000], [1000, 1000, 65535, 300]]
    pred = [[0, 999, 300, 1000], [1000, 0, 5, 300]]
    # pairs: (0,0) (0,999) (300,300)x2 (1000,1000)x2 (1000,0); the 65535 pixel is ignored.
    #   gt: 0->2 300->2 1000->3      pred: 0->2 300->2 1000->2 999->1
    #   IoU: 0 -> 1/3, 300 -> 2/2, 1000 -> 2/3, 999 -> 0/1 (predicted only)
    #   mIoU = 2/4 = 50 %, mIoU_gt = 2/3, fwIoU = 2/7*1/3 + 2/7 + 3/7*2/3 = 2/3,
    #   mACC = (1/2 + 1 + 2/3)/3 = 13/18, pACC = 5/7
    res = _run(evaluator, [(gt, pred)], 1001, tmp_path)
    _assert_results(res, {"mIoU": 50.0, "mIoU_gt": 200 / 3, "fwIoU": 200 / 3,
                          "mACC": 1300 / 18, "pACC": 500 / 7, "IoU-thing0": 100 / 3,
                          "IoU-thing300": 100.0, "IoU-thing1000": 200 / 3, "IoU-thing999": 0.0})
    assert sum(not math.isnan(res[f"IoU-{n}"]) for n in names) == 4


def test_one_class_vocabulary(tmp_path):
    # 3 labelled pixels of the only class, all predicted right; one ignored pixel.
    evaluator = SemSegEvaluator(_register(["sky"]), distributed=False)
    res = _run(evaluator, [([[0, 0, 0, 255]], [[0, 0, 0, 0]])], 1, tmp_path)
    _assert_results(res, {"mIoU": 100.0, "mIoU_gt": 100.0, "fwIoU": 100.0, "mACC": 100.0,
                          "pACC": 100.0, "IoU-sky": 100.0})


# ----------------------------------------------------------------------------- merging

def test_merging_two_evaluators_equals_one_pass(tmp_path):
    name = _register(CLASSES5)
    gt, pred = np.array(GT5), np.array(PRED5)
    halves = [(gt[:, :2], pred[:, :2]), (gt[:, 2:], pred[:, 2:])]
    a, b = (SemSegEvaluator(name, distributed=False) for _ in range(2))
    _run(a, [halves[0]], 5, tmp_path)
    _run(b, [halves[1]], 5, tmp_path)
    merged = merge_confusion_matrices([a.confusion, b.confusion])
    whole = SemSegEvaluator(name, distributed=False)
    _run(whole, [(gt, pred)], 5, tmp_path)
    assert torch.equal(merged, whole.confusion)
    # evaluate() merges the gathered matrices with the same function: feed it both.
    a._gather_confusions = lambda: [a.confusion, b.confusion]
    _assert_results(a.evaluate()["sem_seg"], EXPECTED5)
    with pytest.raises(ValueError, match="different shapes"):
        merge_confusion_matrices([a.confusion, torch.zeros(3, 3, dtype=torch.int64)])


def _distributed_worker(label_dir, out_file):
    from detectron2.utils import comm

    rank = comm.get_rank()
    MetadataCatalog.get("test_eval_ddp").set(stuff_classes=CLASSES5, ignore_label=255,
                                            evaluator_type="sem_seg")
    evaluator = SemSegEvaluator("test_eval_ddp", distributed=True)
    gt, pred = np.array(GT5), np.array(PRED5)
    half = slice(0, 2) if rank == 0 else slice(2, 4)
    label = _write_label(f"{label_dir}/rank{rank}.png", gt[:, half])
    evaluator.reset()
    evaluator.process([{"sem_seg_file_name": label}], [{"sem_seg": _scores(pred[:, half], 5)}])
    results = evaluator.evaluate()
    if rank == 0:
        torch.save(dict(results["sem_seg"]), out_file)
    else:
        assert results is None


@pytest.mark.slow
def test_merge_across_two_processes(tmp_path):
    """Two gloo processes through detectron2's launch, each evaluating half of the image."""
    from detectron2.engine import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "results.pth"
    launch(_distributed_worker, 2, dist_url=f"tcp://127.0.0.1:{port}",
           args=(str(tmp_path), str(out)))
    _assert_results(torch.load(out), EXPECTED5)


# ----------------------------------------------------------------------------- PAS-20b

VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor"]


def test_pas20b_maps_non_voc_predictions_to_background(tmp_path):
    """CAT-Seg's layout: 21 classes (background = 20), a 59-name vocabulary (VOC first)."""
    name = _register(VOC + ["background"], background_class=20)
    evaluator = build_sem_seg_evaluator(name, distributed=False)
    assert isinstance(evaluator, BackgroundSemSegEvaluator)
    gt = [[0, 0, 20, 20], [5, 20, 255, 19]]
    pred = [[0, 25, 20, 58], [5, 3, 40, 19]]
    # mapped prediction (>= 20 -> 20): [[0, 20, 20, 20], [5, 3, 20, 19]]
    # pairs: (0,0) (0,20) (20,20)x2 (5,5) (20,3) (19,19); the 255 pixel is ignored.
    #   gt: 0->2 20->3 5->1 19->1    pred: 0->1 20->3 5->1 3->1 19->1
    #   IoU: aeroplane 1/2, background 2/4, bus 1, tvmonitor 1, boat 0 (predicted only)
    #   mIoU = 3/5 = 60 %, mIoU_gt = 3/4 = 75 %, pACC = 5/7,
    #   mACC = (1/2 + 2/3 + 1 + 1)/4 = 19/24, fwIoU = (2/7*1/2 + 3/7*1/2 + 1/7 + 1/7) = 4.5/7
    res = _run(evaluator, [(gt, pred)], 59, tmp_path)
    _assert_results(res, {"mIoU": 60.0, "mIoU_gt": 75.0, "pACC": 500 / 7, "mACC": 1900 / 24,
                          "fwIoU": 450 / 7, "IoU-background": 50.0, "IoU-boat": 0.0,
                          "IoU-aeroplane": 50.0})
    # Without the mapping the plain evaluator refuses a 59-class output for 21 classes.
    with pytest.raises(ValueError, match="scored 59 classes"):
        _run(SemSegEvaluator(name, distributed=False), [(gt, pred)], 59, tmp_path)


def test_pas20b_background_first_and_background_prompt():
    """Background at index 0; a 'background' vocabulary entry and extra names both map to it."""
    name = _register(["background"] + VOC, background_class=0)
    evaluator = BackgroundSemSegEvaluator(name, distributed=False)
    pred = torch.tensor([[0, 1, 20, 21, 58]])
    mapped = evaluator.map_prediction(pred, 59, "x.png")
    assert mapped.tolist() == [[0, 1, 20, 0, 0]]
    with pytest.raises(ValueError, match="at least 21"):
        evaluator.map_prediction(pred, 20, "x.png")
    with pytest.raises(ValueError, match="background_class"):
        BackgroundSemSegEvaluator(_register(VOC, background_class=20), distributed=False)


# ----------------------------------------------------------------------------- bad input

def test_label_values_outside_the_classes_are_an_error(tmp_path):
    evaluator = SemSegEvaluator(_register(CLASSES5), distributed=False)
    gt = [[0, 7, 254, 255]]
    with pytest.raises(ValueError, match=r"values \[7, 254\] outside the 5 classes") as e:
        _run(evaluator, [(gt, [[0, 0, 0, 0]])], 5, tmp_path)
    assert ".png" in str(e.value)


def test_size_mismatch_nonfinite_scores_and_missing_label_path(tmp_path):
    evaluator = SemSegEvaluator(_register(CLASSES5), distributed=False)
    label = _write_label(tmp_path / "l.png", GT5)
    # The record gives the image's size and the prediction is not at it: the model's fault.
    height, width = np.asarray(GT5).shape
    with pytest.raises(ValueError, match="the original image size"):
        evaluator.process([{"sem_seg_file_name": label, "height": height, "width": width}],
                          [{"sem_seg": torch.zeros(5, 3, 3)}])
    # No size in the record (the prediction is taken as the image's): the data's fault.
    with pytest.raises(ValueError, match="the data is inconsistent, not the model"):
        evaluator.process([{"sem_seg_file_name": label}], [{"sem_seg": torch.zeros(5, 3, 3)}])
    bad = _scores(PRED5, 5)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        evaluator.process([{"sem_seg_file_name": label}], [{"sem_seg": bad}])
    with pytest.raises(KeyError, match="sem_seg_file_name"):
        evaluator.process([{"file_name": "a.jpg"}], [{"sem_seg": _scores(PRED5, 5)}])
    with pytest.raises(FileNotFoundError):
        evaluator.process([{"sem_seg_file_name": str(tmp_path / "missing.png")}],
                          [{"sem_seg": _scores(PRED5, 5)}])


def test_all_ignored_dataset_is_an_error(tmp_path):
    evaluator = SemSegEvaluator(_register(CLASSES5), distributed=False)
    with pytest.raises(ValueError, match="no labelled pixel"):
        _run(evaluator, [([[255, 255]], [[0, 1]])], 5, tmp_path)


def test_bad_metadata_is_an_error():
    with pytest.raises(ValueError, match="duplicate|more than once"):
        SemSegEvaluator(_register(["sky", "sky"]), distributed=False)
    unregistered = f"test_eval_missing_{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValueError, match="stuff_classes"):
        SemSegEvaluator(unregistered, distributed=False)
    with pytest.raises(ValueError, match="evaluator_type"):
        build_sem_seg_evaluator(unregistered)


# ----------------------------------------------------------------------------- outputs

def test_per_class_csv(tmp_path):
    name = _register(CLASSES5)
    evaluator = SemSegEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    _run(evaluator, [(GT5, PRED5)], 5, tmp_path)
    with open(tmp_path / "out" / f"sem_seg_per_class_{name}.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == CLASSES5
    assert rows[0] == {"class": "sky", "IoU": "50.0000", "ACC": "66.6667",
                       "gt_pixels": "3", "pred_pixels": "3"}
    assert rows[3]["IoU"] == "0.0000" and rows[3]["ACC"] == ""  # road: predicted, not in GT
    assert rows[4]["IoU"] == "" and rows[4]["gt_pixels"] == "0"  # snow: nowhere


def test_compute_metrics_on_a_matrix():
    # Perfect prediction of 2 of 3 classes, the third absent everywhere.
    m = compute_metrics(np.array([[4, 0, 0], [0, 6, 0], [0, 0, 0]]))
    assert (m.miou, m.miou_gt, m.pacc, m.macc, m.fwiou) == (100.0, 100.0, 100.0, 100.0, 100.0)
    assert math.isnan(m.iou[2])


def test_chance_miou_by_hand_and_by_simulation():
    from cat_seg.evaluation.metrics import chance_miou

    # Two classes, equal areas: IoU of a random guesser = (1/4) / (1/2 + 1/2 - 1/4) = 1/3.
    assert chance_miou([50, 50]) == pytest.approx(100 / 3)
    # K = 4, one class owns everything: its IoU is 1/4; the other three are never right (0).
    assert chance_miou([10, 0, 0, 0]) == pytest.approx(100 * 0.25 / 4)
    with pytest.raises(ValueError):
        chance_miou([0, 0])

    # Against uniformly random predictions on skewed labels (K = 5, q = .5 .2 .15 .1 .05).
    rng = np.random.default_rng(0)
    gt_pixels = np.array([500_000, 200_000, 150_000, 100_000, 50_000])
    gt = np.repeat(np.arange(5), gt_pixels)
    pred = rng.integers(0, 5, size=gt.size)
    confusion = np.bincount(gt * 5 + pred, minlength=25).reshape(5, 5)
    simulated = compute_metrics(confusion)
    assert simulated.chance_miou == pytest.approx(chance_miou(gt_pixels))
    assert simulated.miou == pytest.approx(chance_miou(gt_pixels), abs=0.2)
