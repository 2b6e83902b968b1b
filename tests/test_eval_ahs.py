"""eval_ahs.sh end to end: a tiny model on miniature prepared copies of all six benchmarks."""
import json
import os
import subprocess

import pytest
import torch
from detectron2.modeling import build_model

import cat_seg  # noqa: F401
from cat_seg.data import OVSS_BENCHMARKS
from cat_seg.engine import AtomicCheckpointer


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/synthetic/quickstart.yaml"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, make_cfg):
    cfg = make_cfg(os.path.join(ROOT, CONFIG), MODEL__DEVICE="cpu")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    AtomicCheckpointer(build_model(cfg), save_dir=str(folder)).save("tiny")
    return str(folder / "tiny.pth")


def _eval(tmp_path, weights, data_root, *opts, **env):
    out = tmp_path / "eval"
    result = subprocess.run(
        ["bash", "eval_ahs.sh", CONFIG, weights, str(out), "MODEL.DEVICE", "cpu", *opts],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DETECTRON2_DATASETS": str(data_root), **env})
    return result, out


@pytest.mark.slow
def test_eval_ahs_on_all_six_miniature_benchmarks(tmp_path, tiny_weights,
                                                  write_prepared_benchmarks):
    data = tmp_path / "data"
    write_prepared_benchmarks(data, num_images=1, size=(24, 32))
    # Whole-image inference keeps the 1,594 classes of the six sets cheap on CPU; the sliding
    # window itself is tested in test_ahs_seg_model.py.
    result, out = _eval(tmp_path, tiny_weights, data, "TEST.SLIDING_WINDOW", "False",
                        BENCHMARKS=",".join(OVSS_BENCHMARKS))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results) == list(OVSS_BENCHMARKS)
    for name in OVSS_BENCHMARKS:
        assert 0.0 <= results[name]["sem_seg"]["mIoU"] <= 100.0
        speed = results[name]["throughput"]  # every image of the benchmark, timed
        assert speed["images"] == 1 and speed["seconds"] > 0 and speed["images_per_s"] > 0
        # The speed is a result (logged at INFO: stdout); the progress bar stays on stderr.
        assert f"[eval] {name}: 1 images in" in result.stdout
    assert "[eval] A-847: 100%" in result.stderr  # the progress bar reached the end
    assert "| mIoU |" in result.stdout  # the table
    table = (out / "results.md").read_text()
    assert "Evaluation speed (images/s" in table and "A-847 " in table
    assert "| metric | A-847 | PC-459 | A-150 | PC-59 | PAS-20 | PAS-20b | mean |" in table
    assert "| mIoU |" in table and "| mIoU_gt |" in table
    csvs = sorted(p.name for p in out.glob("sem_seg_per_class_*.csv"))
    assert len(csvs) == 6
    # A-847 scores its 847 classes; PAS-20b its 21 (prompted with 59 names).
    # Each table starts with "#" lines stating the run (weights, config, dates, complete).
    a847 = (out / "sem_seg_per_class_ade20k_full_sem_seg_freq_val_all.csv").read_text()
    assert len([l for l in a847.strip().splitlines() if not l.startswith("#")]) == 1 + 847
    assert "# state: COMPLETE (6 of 6" in a847 and "sha256 " in a847
    pas20b = (out / "sem_seg_per_class_voc_2012_test_background_sem_seg.csv").read_text()
    assert len([l for l in pas20b.strip().splitlines() if not l.startswith("#")]) == 1 + 21
    assert not (out / "results.partial.json").exists()  # replaced by results.json at the end


def test_eval_ahs_stops_on_a_missing_benchmark(tmp_path, tiny_weights, write_prepared_benchmarks,
                                               make_cfg):
    data = tmp_path / "data"
    write_prepared_benchmarks(data, num_images=1, size=(24, 32),
                              dataset_names=["voc_2012_test_sem_seg"])
    result, out = _eval(tmp_path, tiny_weights, data, BENCHMARKS="PAS-20,A-150")
    assert result.returncode != 0
    assert "MISSING A-150" in result.stderr and "prepare_ade20k_150.py" in result.stderr
    assert not (out / "results.json").exists()

    # Evaluating into the training run's folder (as run_ahs.sh does) keeps its config.yaml.
    training_config = "# the training run's config\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(training_config)
    result, out = _eval(tmp_path, tiny_weights, data, BENCHMARKS="PAS-20,A-150", SKIP_MISSING="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(json.loads((out / "results.json").read_text())) == ["PAS-20"]
    assert "WARNING: [eval] MISSING A-150" in result.stderr  # a warning, on stderr
    assert "[eval] skipped (missing): A-150" in result.stdout  # the table's footnote, on stdout
    assert (out / "config.yaml").read_text() == training_config
    eval_config = make_cfg(out / "config_eval.yaml")
    assert eval_config.TEST.SLIDING_WINDOW and list(eval_config.MODEL.SEM_SEG_HEAD.POOLING_SIZES) == [1, 1]
