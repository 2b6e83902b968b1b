"""Training curves of runs from detectron2's ``metrics.json``: reading (a resumed run's records
after its last checkpoint dropped), series and smoothing, one PNG of panels (every loss, the
learning rate, each evaluated metric per test set) and a text summary. tools/plot_logs.py's
command line; its docstring describes the figure.
"""
import json
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# Pixels of one panel at the default dpi; the figure is a grid of 3 panels per row.
PANEL_SIZE_INCHES = (4.5, 3.2)
DEFAULT_DPI = 100
PANELS_PER_ROW = 3


def resolve_metrics_file(path: str) -> str:
    """``path`` itself if it is a file, else ``path/metrics.json``; fails naming what is missing."""
    candidate = path if os.path.isfile(path) else os.path.join(path, "metrics.json")
    if not os.path.isfile(candidate):
        raise FileNotFoundError(
            f"no metrics file at {candidate}: pass a training output folder (train_net.py's "
            "OUTPUT_DIR, which holds metrics.json once the first iterations are logged) or the "
            "path of a metrics.json file")
    return candidate


def load_metrics(path: str) -> List[dict]:
    """The records of one metrics.json, in logging order, as the model followed them.

    A line that is not a JSON object with an integer ``iteration`` (e.g. the half-written last
    line of a killed job) is skipped with a warning. When the iterations go back (a resume from
    an earlier checkpoint), the records of the abandoned iterations are dropped.
    """
    records: List[dict] = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning(f"[plot_logs] {path}:{number}: not valid JSON, skipped")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
                logger.warning(f"[plot_logs] {path}:{number}: no integer 'iteration', skipped")
                continue
            iteration = record["iteration"]
            if records and iteration < records[-1]["iteration"]:
                records = [r for r in records if r["iteration"] < iteration]
            records.append(record)
    return records


def series(records: Sequence[dict], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of ``key`` over the records that logged it as a number."""
    points = [(r["iteration"], float(r[key])) for r in records
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    if not points:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    iterations, values = zip(*points)
    return np.asarray(iterations), np.asarray(values)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start); 1 leaves the values as is."""
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, values.size + 1)
    start = np.maximum(0, end - window)
    return (cumulative[end] - cumulative[start]) / (end - start)


def panel_keys(runs: Dict[str, List[dict]], metrics: Sequence[str]) -> "OrderedDict[str, List[str]]":
    """Panel title -> the metrics.json keys drawn in it, in display order.

    Losses: ``total_loss`` first, then every ``loss_*`` key any run logged. Then ``lr``. Then, for
    each name in ``metrics`` (e.g. ``mIoU``), one panel per test set that logged
    ``[<dataset>/]sem_seg/<name>``.
    """
    keys = set()
    for records in runs.values():
        for record in records:
            keys.update(k for k, v in record.items() if isinstance(v, (int, float)))
    panels: "OrderedDict[str, List[str]]" = OrderedDict()
    if "total_loss" in keys:
        panels["total_loss"] = ["total_loss"]
    for key in sorted(k for k in keys if k.startswith("loss")):
        panels[key] = [key]
    if "lr" in keys:
        panels["learning rate"] = ["lr"]
    for metric in metrics:
        for key in sorted(k for k in keys if k.split("/")[-1] == metric):
            dataset = [part for part in key.split("/")[:-1] if part != "sem_seg"]
            panels[" ".join([metric] + dataset)] = [key]
    return panels


def plot_runs(runs: Dict[str, List[dict]], output: str, metrics: Sequence[str] = ("mIoU",),
              smooth: int = 1, dpi: int = DEFAULT_DPI) -> "OrderedDict[str, List[str]]":
    """Draw every panel of :func:`panel_keys` with all ``runs`` (label -> records) overlaid.

    The PNG is ``cols * 4.5`` by ``rows * 3.2`` inches at ``dpi`` (``cols`` = up to
    ``PANELS_PER_ROW`` panels per row); the run legend sits inside the top band of the figure.
    Losses are smoothed by a trailing mean over ``smooth`` logged points; the learning rate and
    evaluation metrics never are.
    Returns panel title -> labels of the runs drawn in it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = panel_keys(runs, metrics)
    if not panels:
        raise ValueError("nothing to plot: the metrics files hold no loss, 'lr' or "
                         f"{'/'.join(metrics)} values yet (has the run logged its first iterations?)")
    cols = min(PANELS_PER_ROW, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(PANEL_SIZE_INCHES[0] * cols, PANEL_SIZE_INCHES[1] * rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: "OrderedDict[str, List[str]]" = OrderedDict()
    handles = {}
    for ax, (title, keys) in zip(axes.flat, panels.items()):
        drawn[title] = []
        for index, (label, records) in enumerate(runs.items()):
            for key in keys:
                iterations, values = series(records, key)
                if iterations.size == 0:
                    continue
                is_loss = key.startswith("loss") or key == "total_loss"
                if is_loss:
                    values = moving_average(values, smooth)
                marker = "o" if not is_loss and key != "lr" else None
                (line,) = ax.plot(iterations, values, color=colors[index % len(colors)],
                                  marker=marker, markersize=3, linewidth=1.2, label=label)
                handles.setdefault(label, line)
                drawn[title].append(label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    # One iteration axis for every panel, so an evaluation point lines up with the losses.
    last = max((r["iteration"] for records in runs.values() for r in records), default=0)
    for ax in list(axes.flat)[:len(panels)]:
        ax.set_xlim(0, max(last, 1) * 1.03)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="upper center",
               ncol=min(len(handles), 5), fontsize=8, frameon=False)
    top = 1.0 - 0.35 / (PANEL_SIZE_INCHES[1] * rows)
    fig.tight_layout(rect=(0, 0, 1, top))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=dpi)
    plt.close(fig)
    return drawn


def run_labels(paths: Sequence[str], labels: Optional[Sequence[str]]) -> List[str]:
    """The legend label of each run: ``labels`` if given, else the folder names, made unique."""
    if labels:
        if len(labels) != len(paths):
            raise ValueError(f"--labels gives {len(labels)} labels for {len(paths)} runs; "
                             "give one per run or none")
        if len(set(labels)) != len(labels):
            raise ValueError(f"--labels must be distinct, got {list(labels)}")
        return list(labels)
    names = []
    for path in paths:
        folder = os.path.dirname(path) if os.path.isfile(path) else path
        names.append(os.path.basename(os.path.normpath(folder)) or folder)
    if len(set(names)) != len(names):  # e.g. a/output and b/output: fall back to the paths
        names = [os.path.normpath(os.path.dirname(p) if os.path.isfile(p) else p) for p in paths]
    return names


def summary(runs: Dict[str, List[dict]], metrics: Sequence[str]) -> List[str]:
    """One line per run: last iteration, last total loss, best value of each metric panel."""
    panels = panel_keys(runs, metrics)
    lines = []
    for label, records in runs.items():
        parts = [f"{label}: {len(records)} records, last iteration "
                 f"{records[-1]['iteration'] if records else '-'}"]
        _, loss = series(records, "total_loss")
        if loss.size:
            parts.append(f"last total_loss {loss[-1]:.4g}")
        for title, keys in panels.items():
            if title.split(" ")[0] in metrics:
                _, values = series(records, keys[0])
                if values.size:
                    parts.append(f"best {title} {np.nanmax(values):.2f}")
        lines.append(", ".join(parts))
    return lines
