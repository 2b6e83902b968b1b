"""The miniature research loop (tools/research_loop.py): train every row of a study plan once per
seed, score it in the same process, and tabulate mean ± std over seeds with Welch's t-test
against a reference row.

A *plan* is a YAML file (configs/synthetic/research/*.yaml)::

    config: configs/synthetic/research/fast.yaml    # the protocol every row shares
    seeds: [0, 1, 2]
    reference: baseline                              # the row the t-tests compare with
    rows:
      baseline: []                                   # config overrides, KEY VALUE ...
      hpa_only: [MODEL.SEM_SEG_HEAD.USE_PROTOTYPE_ALIGNMENT, "True"]

Each run is ``train_net.py --config-file CONFIG SEED k OUTPUT_DIR ROOT/<row>/seed<k> <row's
overrides>``; the protocol's config evaluates once, at its last iteration (TEST.EVAL_PERIOD =
SOLVER.MAX_ITER), on its DATASETS.TEST, so training and scoring are one process. The figures are
read back from the run's metrics.json (detectron2's EvalHook writes them there as
``<dataset>/sem_seg/<metric>``), together with SDR's logged dose (``sdr/*``) and the seconds per
iteration. A run whose ``figures.json`` exists is not trained again (delete it to redo).

Welch's t-test (unequal variances) compares each row's per-seed values with the reference row's:
two-sided p. With three seeds per row it only resolves differences of about two standard
deviations; the table says "within noise" for p ≥ 0.05.
"""
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import yaml
from scipy import stats

from .ablations import read_training_speed

logger = logging.getLogger(__name__)

# (dataset, metric) pairs of the tables, with their column titles.
COLUMNS = (
    ("synthetic_seen_val", "mIoU", "Syn-seen"),
    ("synthetic_unseen_val", "mIoU", "Syn-unseen (unseen-only)"),
    ("synthetic_generalized_val", "mIoU_seen", "Syn-gen mIoU(S)"),
    ("synthetic_generalized_val", "mIoU_unseen", "Syn-gen mIoU(U)"),
    ("synthetic_generalized_val", "hIoU", "Syn-gen hIoU"),
    ("synthetic_generalized_val", "unseen_as_seen", "held-out px → seen %"),
    ("synthetic_selection_val", "mIoU_unseen", "Syn-sel mIoU(U)"),
    ("synthetic_selection_val", "hIoU", "Syn-sel hIoU"),
)
FIGURES = "figures.json"


def load_plan(path: str) -> dict:
    """The plan at ``path``, checked: config, seeds, reference and rows (name -> overrides)."""
    with open(path) as f:
        plan = yaml.safe_load(f)
    missing = [k for k in ("config", "seeds", "reference", "rows") if k not in (plan or {})]
    if missing:
        raise ValueError(f"plan {path} lacks the keys {missing} (see cat_seg/analysis/research_loop.py)")
    if plan["reference"] not in plan["rows"]:
        raise ValueError(f"plan {path}: reference row {plan['reference']!r} is not among its rows "
                         f"{list(plan['rows'])}")
    for name, overrides in plan["rows"].items():
        if len(overrides or []) % 2:
            raise ValueError(f"plan {path}: row {name!r} needs KEY VALUE pairs, got {overrides}")
    return plan


def last_figures(metrics_path: str) -> Dict[str, float]:
    """The evaluation figures (keys ``<dataset>/sem_seg/<metric>``) and the last ``sdr/*`` values
    of a run's metrics.json; ``sdr_curve`` lists (iteration, weight, dense angle) over training."""
    figures: Dict[str, float] = {}
    curve = []
    with open(metrics_path) as f:
        for line in f:
            record = json.loads(line)
            for key, value in record.items():
                if "/sem_seg/" in key or key.startswith("sdr/"):
                    figures[key] = value
            if "sdr/weight" in record:
                curve.append([record["iteration"], record["sdr/weight"],
                              record.get("sdr/angle_dense_deg"), record.get("sdr/angle_text_deg")])
    figures["sdr_curve"] = curve
    return figures


def run_one(repo: str, config: str, overrides: Sequence[str], seed: int, out: str,
            python: str = sys.executable) -> dict:
    """Train and score one (row, seed); returns and writes OUT/figures.json."""
    path = os.path.join(out, FIGURES)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    command = [python, os.path.join(repo, "train_net.py"), "--config-file", config,
               "SEED", str(seed), "OUTPUT_DIR", out, *map(str, overrides)]
    start = time.perf_counter()
    logger.info("+ " + " ".join(command))
    done = subprocess.run(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"training {out} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    figures = last_figures(os.path.join(out, "metrics.json"))
    figures["wall_seconds"] = round(time.perf_counter() - start, 1)
    figures["seconds_per_iteration"] = read_training_speed(out)
    with open(path + ".tmp", "w") as f:
        json.dump(figures, f, indent=1)
    os.replace(path + ".tmp", path)
    return figures


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of Welch's t-test of samples a and b (NaN when it is undefined)."""
    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _mean_std(values: List[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def tabulate(runs: Dict[str, List[dict]], reference: str) -> str:
    """Markdown: per row mean ± std over seeds of every column present; then, per column, the
    difference to the reference and Welch's p."""
    columns = [(d, m, title) for d, m, title in COLUMNS
               if any(f"{d}/sem_seg/{m}" in r for rows in runs.values() for r in rows)]
    header = "| row | seeds | " + " | ".join(t for _, _, t in columns) + " | s / iter |"
    lines = [header, "|" + "---|" * (len(columns) + 3)]
    for name, seeds in runs.items():
        cells = [_mean_std([float(r.get(f"{d}/sem_seg/{m}", float("nan"))) for r in seeds])
                 for d, m, _ in columns]
        speed = [r["seconds_per_iteration"] for r in seeds if r.get("seconds_per_iteration")]
        speed_cell = f"{statistics.mean(speed):.3f}" if speed else "–"
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + f" | {speed_cell} |")
    lines += ["", f"Difference to `{reference}` (mean) and Welch's two-sided p:", "",
              "| row | " + " | ".join(t for _, _, t in columns) + " |",
              "|" + "---|" * (len(columns) + 1)]
    base = runs[reference]
    for name, seeds in runs.items():
        if name == reference:
            continue
        cells = []
        for d, m, _ in columns:
            key = f"{d}/sem_seg/{m}"
            a = [float(r[key]) for r in seeds if key in r]
            b = [float(r[key]) for r in base if key in r]
            if not a or not b:
                cells.append("–")
                continue
            p = welch(a, b)
            verdict = "" if math.isnan(p) else (" (p < 0.05)" if p < 0.05 else "")
            cells.append(f"{statistics.mean(a) - statistics.mean(b):+.1f}, p={p:.2f}{verdict}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_plan(plan_path: str, root: str, repo: str, rows: Sequence[str] = (),
             seeds: Sequence[int] = (), python: str = sys.executable) -> str:
    """Every (row, seed) of the plan into ROOT/<row>/seed<k>, then ROOT/table.md and
    ROOT/summary.json; returns the table. ``rows`` / ``seeds`` restrict the plan."""
    plan = load_plan(plan_path)
    names = list(rows) or list(plan["rows"])
    unknown = sorted(set(names) - set(plan["rows"]))
    if unknown:
        raise ValueError(f"rows {unknown} are not in plan {plan_path}: {list(plan['rows'])}")
    seeds = list(seeds) or list(plan["seeds"])
    start = time.perf_counter()
    runs = {}
    for name in names:
        runs[name] = [run_one(repo, plan["config"], plan["rows"][name] or [], seed,
                              os.path.join(root, name, f"seed{seed}"), python) for seed in seeds]
    wall = time.perf_counter() - start
    reference = plan["reference"] if plan["reference"] in runs else names[0]
    table = tabulate(runs, reference)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump({"plan": plan, "seeds": seeds, "wall_seconds_this_call": round(wall, 1),
                   "runs": runs}, f, indent=1)
    with open(os.path.join(root, "table.md"), "w") as f:
        f.write(f"Plan {plan_path}, seeds {seeds}; mean ± sample std over seeds.\n\n{table}\n")
    return table
