"""The real trainer end to end on CPU: train the tiny full AHS model on the synthetic dataset,
checkpoint, resume, evaluate."""
import argparse
import json
import math
import os

import pytest
import torch

from cat_seg.engine.launch import train_or_evaluate
from cat_seg.data import register_synthetic_datasets

CONFIG = "configs/synthetic/quickstart.yaml"


@pytest.fixture()
def tiny_synthetic(tmp_path):
    register_synthetic_datasets(str(tmp_path / "data"), num_train=8, num_val=3, num_unseen_val=3)
    yield
    register_synthetic_datasets()  # back to the default location for other tests


def _args(output, *opts, resume=False, eval_only=False):
    return argparse.Namespace(
        config_file=CONFIG, resume=resume, eval_only=eval_only, num_gpus=1, num_machines=1,
        machine_rank=0, dist_url="auto",
        opts=["OUTPUT_DIR", str(output), "MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2",
              "DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "2",
              "TEST.EVAL_PERIOD", "0", *opts])


def _metrics(output):
    with open(os.path.join(output, "metrics.json")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_train_checkpoint_resume_evaluate(tmp_path, tiny_synthetic):
    out = tmp_path / "run"
    train_or_evaluate(_args(out, "SOLVER.MAX_ITER", "3"))
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    rows = [r for r in _metrics(out) if "total_loss" in r]
    for name in ("loss_sem_seg", "loss_proto", "loss_distill", "loss_rectify", "lr"):
        assert all(math.isfinite(r[name]) for r in rows if name in r), name
        assert any(name in r for r in rows), f"{name} not logged"

    first = torch.load(out / "model_final.pth", weights_only=True)
    assert first["iteration"] == 2
    prototypes = first["model"]["prototype_alignment.prototypes"]

    # Resume: continues at iteration 3 from the last checkpoint, prototypes included.
    train_or_evaluate(_args(out, "SOLVER.MAX_ITER", "5", resume=True))
    iterations = [r["iteration"] for r in _metrics(out) if "total_loss" in r]
    assert iterations[-2:] == [2, 4]  # metrics are written at the end of each run
    second = torch.load(out / "model_final.pth", weights_only=True)
    assert second["iteration"] == 4
    trainer_state = second["trainer"]
    assert trainer_state["hooks"]["LRScheduler"]["last_epoch"] == 5
    assert trainer_state["_trainer"]["optimizer"]["state"]  # AdamW moments came back and went on
    assert not torch.equal(second["model"]["prototype_alignment.prototypes"], prototypes)

    # Evaluate the checkpoint on the seen and held-out vocabularies.
    results = train_or_evaluate(_args(out, "MODEL.WEIGHTS", str(out / "model_final.pth"),
                                   "DATASETS.TEST", "('synthetic_seen_val', 'synthetic_unseen_val')",
                                   eval_only=True))
    for name in ("synthetic_seen_val", "synthetic_unseen_val"):
        assert 0.0 <= results[name]["sem_seg"]["mIoU"] <= 100.0
    assert (out / "eval_results.json").is_file()
