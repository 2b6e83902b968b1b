"""Ablation tables (tools/ablation_table.py, run_ahs_ablations.sh): mIoU per benchmark of every
variant from its results.json, their mean (or, over seeds, the harmonic mean as mean ± std), and the
cost of each variant relative to the first (the baseline): parameters and inference time measured
by :mod:`cat_seg.analysis.measure`, or the training time per iteration from each run's log.txt.
tools/ablation_table.py's docstring describes the table.
"""
import json
import logging
import os
import re
import statistics
from typing import Dict, List, Sequence

from .measure import analyze_many, load_config

logger = logging.getLogger(__name__)


def read_results(root: str, names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """name -> {benchmark: mIoU} from ROOT/<name>/results.json; fails naming a missing or
    malformed file."""
    table = {}
    for name in names:
        path = os.path.join(root, name, "results.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} does not exist: the '{name}' run has not been evaluated (run_ahs.sh trains "
                "and evaluates it; eval_ahs.sh CONFIG WEIGHTS OUTPUT evaluates a trained one)")
        with open(path) as f:
            try:
                results = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON ({error}); re-run eval_ahs.sh") from error
        try:
            table[name] = {bench: float(r["sem_seg"]["mIoU"]) for bench, r in results.items()}
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not tools/eval_benchmarks.py's format "
                             '{benchmark: {"sem_seg": {"mIoU": ...}}} (missing ' f"{error})") from error
        if not table[name]:
            raise ValueError(f"{path} holds no benchmark")
    return table


def read_seeded_results(root: str, names: Sequence[str], seeds: Sequence[int]
                        ) -> Dict[str, List[Dict[str, float]]]:
    """name -> per seed {benchmark: mIoU} from ROOT/<name>/seed<k>/results.json."""
    return {name: list(read_results(os.path.join(root, name), [f"seed{k}" for k in seeds]).values())
            for name in names}


def read_training_speed(run_dir: str) -> float:
    """Seconds per training iteration of a run, from detectron2's "Overall training speed" line
    in RUN/log.txt (iterations only: hooks such as checkpointing and evaluation excluded)."""
    path = os.path.join(run_dir, "log.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: the run has no training log (was it "
                                "trained here, by run_ahs.sh?)")
    speeds = re.findall(r"Overall training speed: \d+ iterations in \S+ \(([0-9.]+) s / it\)",
                        open(path).read())
    if not speeds:
        raise ValueError(f"{path} has no 'Overall training speed' line: the training did not "
                         "finish; re-run it")
    return float(speeds[-1])


def harmonic_mean(values: Sequence[float]) -> float:
    """``n / Σ 1/v`` (0 when a value is 0): the usual summary of seen and unseen mIoU."""
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def _mean_std(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {std:.1f}"


def seeded_table(names: Sequence[str], runs: Dict[str, List[Dict[str, float]]],
                 speeds: Dict[str, List[float]]) -> str:
    """One row per name: each benchmark's mIoU and the harmonic mean of the benchmarks (per
    seed, then averaged) as mean ± sample std over seeds, and the training time per iteration
    relative to the first row (means over seeds)."""
    benchmarks: List[str] = []
    for name in names:
        for run in runs[name]:
            benchmarks += [b for b in run if b not in benchmarks]
    header = (["ablation"] + benchmarks + ["harmonic mean", "s / iter", "train time"])
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_speed = statistics.fmean(speeds[names[0]])
    for name in names:
        cells = []
        for bench in benchmarks:
            values = [run[bench] for run in runs[name] if bench in run]
            cells.append(_mean_std(values) if len(values) == len(runs[name]) else "-")
        complete = all(all(b in run for b in benchmarks) for run in runs[name])
        hmean = (_mean_std([harmonic_mean([run[b] for b in benchmarks]) for run in runs[name]])
                 if complete else "-")
        speed = statistics.fmean(speeds[name])
        rows.append("| " + " | ".join([name] + cells + [hmean, f"{speed:.3f}",
                                                        f"×{speed / base_speed:.2f}"]) + " |")
    return "\n".join(rows)


def measure_costs(configs: Sequence[str], names: Sequence[str], opts: Sequence[str] = (),
                  num_classes: int = 171, warmup: int = 2, iters: int = 10) -> List[dict]:
    """cat_seg.analysis.measure's parameters and inference latency of every config, in one process."""
    cfgs = [load_config(c, opts) for c in configs]
    return analyze_many(cfgs, labels=names, num_classes=num_classes, warmup=warmup,
                        iters=iters, flops=False, train=False)


def markdown_table(names: Sequence[str], miou: Dict[str, Dict[str, float]],
                   costs: Sequence[dict]) -> str:
    """The table: one row per name, benchmarks in order of first appearance, then the mean (only
    when a row has every benchmark), the added parameters and the inference-time ratio."""
    benchmarks: List[str] = []
    for name in names:
        benchmarks += [b for b in miou[name] if b not in benchmarks]
    base_params = costs[0]["params"]["total"]
    base_time = costs[0]["inference"]["median_s"]
    header = ["ablation"] + benchmarks + ["mean", "added params", "inference time"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, cost in zip(names, costs):
        values = [miou[name].get(b) for b in benchmarks]
        cells = ["-" if v is None else f"{v:.1f}" for v in values]
        mean = statistics.fmean(values) if None not in values else None
        added = cost["params"]["total"] - base_params
        rows.append("| " + " | ".join(
            [name] + cells + ["-" if mean is None else f"{mean:.1f}",
                              f"{added:+,}" if added else "0",
                              f"×{cost['inference']['median_s'] / base_time:.3f}"]) + " |")
    return "\n".join(rows)


def _publish(text: str, table: str, output: str) -> str:
    """Write ``text`` to ``output`` (folders made), log the table and where it went."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        f.write(text)
    logger.info(table)
    logger.info(f"[ablations] wrote {output}")
    return text


def write_seeded_report(root: str, names: Sequence[str], seeds: Sequence[int], output: str) -> str:
    """The seeded ablation table (:func:`seeded_table`) of ROOT/<name>/seed<k> runs written to
    ``output`` as markdown with its explanation; logged; returns the file's text."""
    runs = read_seeded_results(root, names, seeds)
    speeds = {name: [read_training_speed(os.path.join(root, name, f"seed{k}"))
                     for k in seeds] for name in names}
    table = seeded_table(names, runs, speeds)
    text = (f"# Ablations ({root}), seeds {', '.join(map(str, seeds))}\n\n"
            f"mIoU (%) per benchmark from `<name>/seed<k>/results.json` and their harmonic mean "
            f"(computed per seed), as mean ± sample standard deviation over the {len(seeds)} "
            f"seeds; training seconds per iteration (detectron2's 'Overall training speed', hooks "
            f"excluded, mean over seeds) and its ratio to the first row ({names[0]}).\n\n"
            f"{table}\n")
    return _publish(text, table, output)


def write_report(root: str, names: Sequence[str], configs: Sequence[str], output: str,
                 opts: Sequence[str] = (), num_classes: int = 171, warmup: int = 2,
                 iters: int = 10) -> str:
    """The ablation table (:func:`markdown_table`: mIoU from ROOT/<name>/results.json, costs
    measured here) written to ``output`` as markdown with its explanation; logged; returns the
    file's text."""
    miou = read_results(root, names)
    costs = measure_costs(configs, names, opts, num_classes, warmup, iters)
    table = markdown_table(names, miou, costs)
    base = costs[0]
    machine = base["machine"]
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['cpu_count']} CPUs)"
    text = (f"# Ablations ({root})\n\n"
            f"mIoU (%) per benchmark from `<name>/results.json`, and their mean. Cost relative to "
            f"the first row ({names[0]}), measured {machine['date']} in one process on "
            f"{where}, torch {machine['torch']}: parameters added, and the ratio of the median "
            f"inference time of one forward ({base['config']['image_size']} px, "
            f"{base['config']['num_classes']} classes, {base['config']['test_path']}, "
            f"{base['inference']['iters']} interleaved runs; baseline "
            f"{base['inference']['median_s'] * 1e3:.1f} ms).\n\n{table}\n")
    return _publish(text, table, output)
