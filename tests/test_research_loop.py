"""The research loop's bookkeeping (plans, figures read back from metrics.json, Welch's table) and
the mechanism figure's drawing, on hand-made numbers (no training)."""
import json
import math

import pytest

from cat_seg.analysis.mechanisms import draw
from cat_seg.analysis.research_loop import last_figures, load_plan, tabulate, welch


def test_plan_is_checked(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("config: c.yaml\nseeds: [0]\nreference: base\nrows:\n  base: []\n"
                    "  odd: [MODEL.X]\n")
    with pytest.raises(ValueError, match="KEY VALUE"):
        load_plan(str(path))
    path.write_text("config: c.yaml\nseeds: [0]\nreference: nope\nrows:\n  base: []\n")
    with pytest.raises(ValueError, match="reference row 'nope'"):
        load_plan(str(path))
    for shipped in ("ablation", "calibration", "sdr_dose"):
        plan = load_plan(f"configs/synthetic/research/{shipped}.yaml")
        assert plan["reference"] in plan["rows"]


def test_figures_and_sdr_dose_are_read_from_metrics_json(tmp_path):
    lines = [{"iteration": 19, "sdr/weight": 0.1, "sdr/angle_dense_deg": 1.5, "total_loss": 1},
             {"iteration": 39, "sdr/weight": 0.05, "sdr/angle_dense_deg": 3.0},
             {"iteration": 39, "synthetic_generalized_val/sem_seg/hIoU": 40.0}]
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    figures = last_figures(str(path))
    assert figures["synthetic_generalized_val/sem_seg/hIoU"] == 40.0
    assert figures["sdr/weight"] == 0.05
    assert figures["sdr_curve"] == [[19, 0.1, 1.5, None], [39, 0.05, 3.0, None]]


def test_table_has_spreads_and_welch_p():
    key = "synthetic_generalized_val/sem_seg/hIoU"
    runs = {"base": [{key: v, "seconds_per_iteration": 0.3} for v in (40.0, 41.0, 42.0)],
            "better": [{key: v, "seconds_per_iteration": 0.3} for v in (50.0, 51.0, 52.0)],
            "same": [{key: v, "seconds_per_iteration": 0.3} for v in (39.0, 41.0, 43.0)]}
    table = tabulate(runs, "base")
    assert "| base | 3 | 41.0 ± 1.0 | 0.300 |" in table
    assert "+10.0, p=0.00 (p < 0.05)" in table and "+0.0, p=1.00 |" in table
    assert welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(welch([1.0], [2.0, 3.0]))  # one seed has no variance: no test


def test_mechanism_figure_draws_each_panel_or_says_off(tmp_path):
    figures = {"drift_unseen_deg": 10.0, "drift_seen_deg": 8.0,
               "clip_zero_shot_pretrained": {"Syn-unseen mIoU": 25.0},
               "clip_zero_shot_finetuned": {"Syn-unseen mIoU": 30.0},
               "hpa": {"cosines": [[1.0, 0.2], [0.2, 1.0]], "min_pairwise_deg": 78.0,
                       "moved_from_text_deg": [5.0, 6.0]},
               "afr": None, "sdr_curve": [[19, 0.1, 2.0, 1.0], [39, 0.05, 3.0, 1.5]]}
    draw(figures, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").stat().st_size > 10_000
