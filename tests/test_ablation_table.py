"""tools/ablation_table.py: results.json reading, the table, and a run on two tiny configs."""
import json

import pytest

import ablation_table  # noqa: E402
from cat_seg.analysis import ablations
from helpers.logs import cat_seg_logs

import cat_seg  # noqa: E402,F401  (registers the model, head and datasets)


def write_results(root, name, miou):
    folder = root / name
    folder.mkdir(parents=True)
    results = {bench: {"sem_seg": {"mIoU": value, "fwIoU": 50.0}} for bench, value in miou.items()}
    (folder / "results.json").write_text(json.dumps(results))


def cost(total_params, median_s):
    return {"params": {"total": total_params}, "inference": {"median_s": median_s}}


def test_table_rows_mean_added_params_and_time_ratio(tmp_path):
    write_results(tmp_path, "baseline", {"A-150": 30.0, "PC-59": 50.0})
    write_results(tmp_path, "afr_only", {"A-150": 31.0, "PC-59": 52.0})
    write_results(tmp_path, "partial", {"A-150": 29.0})
    names = ["baseline", "afr_only", "partial"]
    miou = ablations.read_results(str(tmp_path), names)
    assert miou["afr_only"] == {"A-150": 31.0, "PC-59": 52.0}
    table = ablations.markdown_table(
        names, miou, [cost(1000, 0.200), cost(50861, 0.202), cost(1000, 0.199)])
    assert table.splitlines() == [
        "| ablation | A-150 | PC-59 | mean | added params | inference time |",
        "|---|---|---|---|---|---|",
        "| baseline | 30.0 | 50.0 | 40.0 | 0 | ×1.000 |",
        "| afr_only | 31.0 | 52.0 | 41.5 | +49,861 | ×1.010 |",
        "| partial | 29.0 | - | - | 0 | ×0.995 |",  # no mean over a different benchmark set
    ]


def test_missing_or_malformed_results_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"full[/\\]results.json does not exist"):
        ablations.read_results(str(tmp_path), ["full"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text(json.dumps({"A-150": {"mIoU": 3}}))
    with pytest.raises(ValueError, match="eval_benchmarks.py's format"):
        ablations.read_results(str(tmp_path), ["bad"])
    with pytest.raises(SystemExit):
        ablation_table.parse_args(["--root", "r", "--names", "a", "b", "--configs", "a.yaml",
                                   "--output", "o.md"])


def test_cli_measures_every_config_in_one_run(tmp_path, caplog, write_tiny_config):
    base = write_tiny_config(tmp_path / "base.yaml")
    deeper = tmp_path / "deeper.yaml"
    deeper.write_text(open(base).read().replace("NUM_LAYERS: 1", "NUM_LAYERS: 2"))
    write_results(tmp_path, "baseline", {"Syn-seen": 40.0, "Syn-unseen": 20.0})
    write_results(tmp_path, "deeper", {"Syn-seen": 42.0, "Syn-unseen": 21.0})
    out = tmp_path / "ablations.md"
    # As run_ahs_ablations.sh calls it, with the training overrides after --opts.
    with cat_seg_logs(caplog):  # the table is logged, as lines
        ablation_table.main(["--root", str(tmp_path), "--names", "baseline", "deeper",
                             "--configs", base, str(deeper), "--output", str(out),
                             "--num-classes", "4", "--iters", "2", "--warmup", "1",
                             "--opts", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "5"])
    text = out.read_text()
    assert "2 interleaved runs" in text and "64 px, 4 classes" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0][:4] == ["| ablation", "Syn-seen", "Syn-unseen", "mean"]
    assert rows[1][1:5] == ["40.0", "20.0", "30.0", "0"] and rows[1][5] == "×1.000 |"
    assert rows[2][1:4] == ["42.0", "21.0", "31.5"]
    added = int(rows[2][4].replace(",", ""))
    assert added > 0  # the second aggregation layer's parameters
    assert float(rows[2][5].strip(" |×")) > 0
    assert "ablations.md" in caplog.text


def _seeded_run(root, name, seed, seen, unseen, s_per_iter):
    write_results(root / name, f"seed{seed}", {"Syn-seen": seen, "Syn-unseen": unseen})
    (root / name / f"seed{seed}" / "log.txt").write_text(
        "[12/01 10:00:00 d2.engine.hooks]: Overall training speed: 398 iterations in 0:02:30 "
        f"({s_per_iter} s / it)\n")


def test_seeded_table_mean_std_harmonic_mean_and_speed_ratio(tmp_path):
    _seeded_run(tmp_path, "baseline", 0, 60.0, 20.0, 0.40)
    _seeded_run(tmp_path, "baseline", 1, 62.0, 30.0, 0.42)
    _seeded_run(tmp_path, "full", 0, 64.0, 32.0, 0.60)
    _seeded_run(tmp_path, "full", 1, 66.0, 32.0, 0.66)
    text = ablation_table.main(["--root", str(tmp_path), "--names", "baseline", "full",
                                "--configs", "unused.yaml", "unused.yaml", "--seeds", "0", "1",
                                "--output", str(tmp_path / "table.md")])
    # baseline harmonic means: 2·60·20/80 = 30.0 and 2·62·30/92 = 40.43 -> 35.2 ± 7.4
    # full: 2·64·32/96 = 42.67 and 2·66·32/98 = 43.10 -> 42.9 ± 0.3; speed 0.63 / 0.41 = 1.54
    assert text.splitlines()[-4:] == [
        "| ablation | Syn-seen | Syn-unseen | harmonic mean | s / iter | train time |",
        "|---|---|---|---|---|---|",
        "| baseline | 61.0 ± 1.4 | 25.0 ± 7.1 | 35.2 ± 7.4 | 0.410 | ×1.00 |",
        "| full | 65.0 ± 1.4 | 32.0 ± 0.0 | 42.9 ± 0.3 | 0.630 | ×1.54 |",
    ]
    assert (tmp_path / "table.md").read_text() == text
    (tmp_path / "full" / "seed1" / "log.txt").write_text("crashed\n")
    with pytest.raises(ValueError, match="Overall training speed"):
        ablation_table.main(["--root", str(tmp_path), "--names", "baseline", "full",
                             "--configs", "a", "b", "--seeds", "0", "1",
                             "--output", str(tmp_path / "table.md")])
