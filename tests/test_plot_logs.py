"""tools/plot_logs.py on hand-written metrics.json files (detectron2's JSONWriter format)."""
import json

import numpy as np
import pytest
from PIL import Image

import plot_logs  # noqa: E402
from cat_seg.utils import training_curves


def write_metrics(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.json", "w") as f:
        for line in lines:
            f.write(line if isinstance(line, str) else json.dumps(line) + "\n")
    return folder


def training_records(offset, iterations=range(19, 200, 20), with_proto=True):
    records = []
    for it in iterations:
        record = {"iteration": it, "total_loss": 2.0 - it / 200 + offset, "loss_sem_seg": 1.0 - it / 400,
                  "lr": 1e-4 * (1 - it / 200), "time": 0.2, "data_time": 0.01}
        if with_proto:
            record["loss_proto"] = 0.1
        records.append(record)
        if it % 100 == 99:
            records.append({"iteration": it, "synthetic_seen_val/sem_seg/mIoU": 30.0 + it / 10 + offset,
                            "synthetic_unseen_val/sem_seg/mIoU": 10.0 + it / 20})
    return records


def test_two_runs_overlaid_with_every_loss_lr_and_miou(tmp_path, capsys):
    a = write_metrics(tmp_path / "baseline", training_records(0.0, with_proto=False))
    b = write_metrics(tmp_path / "full", training_records(0.5))
    out = tmp_path / "curves.png"
    plot_logs.main([str(a), str(b / "metrics.json"), "--output", str(out), "--smooth", "3"])

    image = Image.open(out)
    # 6 panels -> 3 columns x 2 rows of 4.5 x 3.2 inches at 100 dpi.
    assert image.size == (3 * 450, 2 * 320)
    runs = {"baseline": training_curves.load_metrics(str(a / "metrics.json")),
            "full": training_curves.load_metrics(str(b / "metrics.json"))}
    drawn = training_curves.plot_runs(runs, str(tmp_path / "again.png"))
    assert list(drawn) == ["total_loss", "loss_proto", "loss_sem_seg", "learning rate",
                           "mIoU synthetic_seen_val", "mIoU synthetic_unseen_val"]
    assert drawn["total_loss"] == ["baseline", "full"]
    assert drawn["loss_proto"] == ["full"]  # only the run that logged it
    printed = capsys.readouterr().out
    assert "best mIoU synthetic_seen_val 49.90" in printed  # baseline: 30 + 199 / 10
    assert "best mIoU synthetic_seen_val 50.40" in printed  # full: + 0.5


def test_single_test_set_metric_and_pixel_content(tmp_path):
    records = [{"iteration": 9, "total_loss": 1.0, "lr": 0.1},
               {"iteration": 19, "total_loss": 0.5, "lr": 0.05},
               {"iteration": 19, "sem_seg/mIoU": 42.0, "sem_seg/fwIoU": 50.0}]
    run = write_metrics(tmp_path / "run", records)
    out = tmp_path / "c.png"
    drawn = training_curves.plot_runs({"run": training_curves.load_metrics(str(run / "metrics.json"))}, str(out),
                                metrics=["mIoU", "fwIoU"])
    assert list(drawn) == ["total_loss", "learning rate", "mIoU", "fwIoU"]
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape == (2 * 320, 3 * 450, 3)  # 4 panels -> 3 columns x 2 rows
    # Matplotlib's first cycle colour (#1f77b4) draws the run's curves.
    assert (np.abs(pixels.astype(int) - [0x1F, 0x77, 0xB4]).sum(axis=2) < 10).sum() > 50


def test_resume_drops_abandoned_iterations_and_bad_lines(tmp_path):
    lines = [{"iteration": 9, "total_loss": 3.0}, {"iteration": 19, "total_loss": 2.0},
             {"iteration": 29, "total_loss": 1.0},
             # resumed from the checkpoint at iteration 19: 24 and 29 are logged again
             {"iteration": 24, "total_loss": 1.5}, {"iteration": 29, "total_loss": 0.9},
             '{"iteration": 39, "total_l\n']  # the half-written last line of a killed job
    run = write_metrics(tmp_path / "r", lines)
    records = training_curves.load_metrics(str(run / "metrics.json"))
    iterations, values = training_curves.series(records, "total_loss")
    assert iterations.tolist() == [9, 19, 24, 29]
    assert values.tolist() == [3.0, 2.0, 1.5, 0.9]


def test_moving_average_is_a_trailing_mean():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(training_curves.moving_average(values, 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(training_curves.moving_average(values, 1), values)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        training_curves.resolve_metrics_file(str(tmp_path / "nothing"))
    empty = write_metrics(tmp_path / "empty", [{"iteration": 0, "time": 0.1}])
    with pytest.raises(ValueError, match="nothing to plot"):
        training_curves.plot_runs({"e": training_curves.load_metrics(str(empty / "metrics.json"))},
                            str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="one per run"):
        training_curves.run_labels(["a", "b"], ["only-one"])
    assert training_curves.run_labels(["x/a/output", "y/b/output"], None) == ["x/a/output", "y/b/output"]
