#!/usr/bin/env python
"""One markdown table of an ablation study: mIoU per benchmark, their mean, and the cost of each
variant relative to the first (the baseline).

    python tools/ablation_table.py --root output/ablations \\
        --names baseline hpa_only sdr_only afr_only full \\
        --configs configs/ablations/vitb_384_ahs_{baseline,hpa_only,sdr_only,afr_only,full}.yaml \\
        --output output/ablations/ablations.md [--opts KEY VALUE ...]

(run_ahs_ablations.sh calls it so after training and evaluating every variant.)

With ``--seeds 0 1 2`` the runs are ROOT/<name>/seed<k> (run_ahs_ablations.sh with SEEDS="0 1 2",
as the synthetic ablation does) and the table reports every benchmark and the harmonic mean of
the benchmarks as mean ± std over the seeds, with the training time per iteration (from each
run's log.txt) relative to the first row, instead of the measured inference costs.

mIoU comes from ROOT/<name>/results.json as tools/eval_benchmarks.py writes it
(``{benchmark: {"sem_seg": {"mIoU": ...}}}``). The cost columns are measured here, in one process,
by tools/analyze_model.py with random CLIP weights (cost depends only on the architecture):
parameters added to the baseline's, and the ratio of the median inference time of one
test-time forward (CLIP resolution, ``--num-classes`` classes, text embeddings cached) to the
baseline's, the variants' runs interleaved so that machine load affects all alike.
"""
import argparse
import json
import os
import re
import statistics
import sys
from typing import Dict, List, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import analyze_model  # noqa: E402


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
    """analyze_model's parameters and inference latency of every config, in one process."""
    cfgs = [analyze_model.load_config(c, opts) for c in configs]
    return analyze_model.analyze_many(cfgs, labels=names, num_classes=num_classes, warmup=warmup,
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


def main_seeded(args) -> str:
    runs = read_seeded_results(args.root, args.names, args.seeds)
    speeds = {name: [read_training_speed(os.path.join(args.root, name, f"seed{k}"))
                     for k in args.seeds] for name in args.names}
    table = seeded_table(args.names, runs, speeds)
    text = (f"# Ablations ({args.root}), seeds {', '.join(map(str, args.seeds))}\n\n"
            f"mIoU (%) per benchmark from `<name>/seed<k>/results.json` and their harmonic mean "
            f"(computed per seed), as mean ± sample standard deviation over the {len(args.seeds)} "
            f"seeds; training seconds per iteration (detectron2's 'Overall training speed', hooks "
            f"excluded, mean over seeds) and its ratio to the first row ({args.names[0]}).\n\n"
            f"{table}\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(table)
    print(f"[ablations] wrote {args.output}")
    return text


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.seeds:
        return main_seeded(args)
    miou = read_results(args.root, args.names)
    costs = measure_costs(args.configs, args.names, args.opts, args.num_classes, args.warmup,
                          args.iters)
    table = markdown_table(args.names, miou, costs)
    base = costs[0]
    machine = base["machine"]
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['cpu_count']} CPUs)"
    text = (f"# Ablations ({args.root})\n\n"
            f"mIoU (%) per benchmark from `<name>/results.json`, and their mean. Cost relative to "
            f"the first row ({args.names[0]}), measured {machine['date']} in one process on "
            f"{where}, torch {machine['torch']}: parameters added, and the ratio of the median "
            f"inference time of one forward ({base['config']['image_size']} px, "
            f"{base['config']['num_classes']} classes, {base['config']['test_path']}, "
            f"{base['inference']['iters']} interleaved runs; baseline "
            f"{base['inference']['median_s'] * 1e3:.1f} ms).\n\n{table}\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(table)
    print(f"[ablations] wrote {args.output}")
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--root", required=True, help="folder holding <name>/results.json")
    parser.add_argument("--names", nargs="+", required=True, help="ablation names; first = baseline")
    parser.add_argument("--configs", nargs="+", required=True, help="their configs, same order")
    parser.add_argument("--output", required=True, help="markdown file to write")
    parser.add_argument("--num-classes", type=int, default=171, help="vocabulary size timed")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per model")
    parser.add_argument("--iters", type=int, default=10, help="timed forwards per model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[],
                        help="runs are ROOT/<name>/seed<k>: report mean ± std over these seeds "
                             "and the training-time ratio instead of the measured costs")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... applied to every config (last)")
    args = parser.parse_args(argv)
    if len(args.names) != len(args.configs):
        parser.error(f"{len(args.names)} --names but {len(args.configs)} --configs; give one "
                     "config per name, in the same order")
    if len(set(args.names)) != len(args.names):
        parser.error(f"--names must be distinct, got {args.names}")
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"[ablations] {error}")
