"""tools/soak_resume.py in miniature: a run killed with SIGKILL and resumed ends with the same
weights as an uninterrupted one (the resumable data stream, cat_seg/data/resumable_stream.py),
and every checkpoint stays readable. The 2,000-iteration soak is run by hand (output/note14.md)."""
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import soak_resume  # noqa: E402
from cat_seg.engine import soak

TINY = ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "1",
        "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.CROP.SIZE", "(64, 64)", "INPUT.SIZE_DIVISIBILITY", "64", "SOLVER.WARMUP_ITERS", "2"]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    code = soak_resume.main(["--iters", "10", "--kill-at", "4", "--checkpoint-period", "3",
                             "--jitter", "0", "--seed", "3", "--output", str(tmp_path), *TINY])
    report = json.loads((tmp_path / "soak_report.json").read_text())
    assert code == 0, report
    # Killed after iteration 4 or 5: resumed from model_0000002 or _0000005, steps left to run.
    assert len(report["kills"]) == 1
    assert report["kills"][0]["last_checkpoint"] in ("model_0000002.pth", "model_0000005.pth")
    assert report["final"]["iterations"] == [9, 9]
    assert report["final"]["max_abs_diff"] <= 1e-5


def test_soak_checks_flag_an_unreadable_checkpoint_and_a_nan_tag(tmp_path):
    import torch

    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "model_0000001.pth")
    (tmp_path / "model_0000002.pth").write_bytes(b"truncated")
    torch.save({"model": {"w": torch.tensor([1.0, float("nan")])}}, tmp_path / "model_0000003.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    state = soak.check_checkpoints(str(tmp_path))
    assert state["checkpoints_loaded"] == 2
    assert any("model_0000002.pth unreadable" in p for p in state["problems"])
    assert any("not finite" in p for p in state["problems"])
