"""The reporting half of tools/analyze_model.py: readable summaries and markdown tables of the
plain dicts :mod:`cat_seg.analysis.measure` returns, and the JSON / markdown files."""
import json
import os
from typing import Any, Dict, Optional, Sequence

from .measure import _get, ratios


def _cell(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown_table(results: Sequence[Dict[str, Any]]) -> str:
    """One row per result: parameters (total, trainable, added to the first row's), GFLOPs,
    inference latency and training step (median wall seconds, and the ratios to the first row of
    the median wall time and of the median process CPU time), peak memory (and its growth
    during the measured step)."""
    header = ["config", "params", "trainable", "added", "GFLOPs", "inference (s)", "× wall",
              "× CPU", "train step (s)", "× wall", "× CPU", "peak inference", "peak train"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = results[0]
    for result in results:
        params = result["params"]
        added = params["total"] - base["params"]["total"]
        ratio = ratios(base, result)
        rows.append("| " + " | ".join([
            str(result["label"]), f"{params['total']:,}", f"{params['trainable']:,}",
            f"{added:+,}" if added else "0",
            _cell(_get(result, ("flops", "gflops")), ".2f"),
            _cell(_get(result, ("inference", "median_s")), ".2f"),
            _cell(ratio["inference latency"], ".3f"),
            _cell(ratio["inference CPU time"], ".3f"),
            _cell(_get(result, ("train", "median_s")), ".1f"),
            _cell(ratio["training step"], ".3f"),
            _cell(ratio["training step CPU time"], ".3f"),
            _memory_cell(_get(result, ("inference", "memory"))),
            _memory_cell(_get(result, ("train", "memory")))]) + " |")
    return "\n".join(rows)


def _mb(n: Optional[float]) -> str:
    return "-" if n is None else f"{n / 2 ** 20:.0f} MiB"


def _memory_cell(memory: Optional[Dict[str, Any]]) -> str:
    """"peak (+growth during the measured step)": on CPU the peak is the process's resident set,
    which counts every model alive at the time, so the growth is what the step itself needs."""
    if memory is None:
        return "-"
    return f"{_mb(memory['peak_bytes'])} (+{memory['delta_bytes'] / 2 ** 20:.0f})"


def format_result(result: Dict[str, Any]) -> str:
    """A readable summary of one :func:`analyze` result."""
    config, params = result["config"], result["params"]
    on = [m for m, v in config["modules"].items() if v] or ["none"]
    lines = [f"== {result['label']}: {config['clip']} @ {config['clip_resolution']}, "
             f"{config['clip_finetune']}, AHS modules: {', '.join(on)}; input "
             f"{config['image_size']}x{config['image_size']}, {config['num_classes']} classes, "
             f"{config['test_path']}",
             f"parameters: total {params['total']:,}, trainable {params['trainable']:,}, "
             f"used at inference {params['inference']:,}"]
    lines += [f"  {part:<9} {c['total']:>13,} ({c['trainable']:,} trainable"
              + (f", {c['buffers']:,} buffer values" if c["buffers"] else "") + ")"
              for part, c in params["by_part"].items() if c["total"] or c["buffers"]]
    flops = result.get("flops")
    if flops and flops.get("gflops") is not None:
        parts = ", ".join(f"{p} {g:.2f}" for p, g in flops["by_part_gflops"].items() if g)
        lines.append(f"FLOPs: {flops['gflops']:.2f} G ({parts})")
        if flops["skipped_ops"]:
            lines.append("  skipped (no fvcore formula): "
                         + ", ".join(f"{op} x{n}" for op, n in flops["skipped_ops"].items()))
    elif flops:
        lines.append(f"FLOPs: not counted ({flops['error']})")
    inference = result.get("inference")
    if inference:
        lines.append(
            f"inference: median {inference['median_s'] * 1e3:.1f} ms (min "
            f"{inference['min_s'] * 1e3:.1f}; process CPU {inference['cpu_median_s']:.2f} s; "
            f"{inference['iters']} runs after {inference['warmup']} warm-up); new vocabulary "
            f"{inference['vocabulary_encoding_s']:.2f} s once; peak memory "
            f"{_mb(inference['memory']['peak_bytes'])} (+{_mb(inference['memory']['delta_bytes'])})")
    train = result.get("train")
    if train:
        lines.append(f"training step: median {train['median_s']:.2f} s (process CPU "
                     f"{train['cpu_median_s']:.1f} s; batch "
                     f"{train['batch_size']} x {train['crop'][0]}x{train['crop'][1]}, "
                     f"{train['num_classes']} classes); peak memory "
                     f"{_mb(train['memory']['peak_bytes'])} (+{_mb(train['memory']['delta_bytes'])})")
    measured = inference or train
    if measured:
        lines.append(f"memory: {measured['memory']['method']}")
    machine = result["machine"]
    lines.append(f"machine: {machine['date']}, {machine.get('gpu', machine['cpu'])}, "
                 f"{machine['cpu_count']} CPUs ({machine['torch_threads']} torch threads), "
                 f"torch {machine['torch']}, load average {machine.get('load_average_1min', '-')}")
    return "\n".join(lines)


def format_ratios(label: str, base_label: str, ratio: Dict[str, Optional[float]]) -> str:
    """The ratios ``label / base_label`` of :func:`cat_seg.analysis.measure.ratios`, one a line."""
    lines = [f"== ratios {label} / {base_label}"]
    for name, value in ratio.items():
        lines.append(f"  {name:<22} {'-' if value is None else f'{value:.4f}'}")
    return "\n".join(lines)


def write_markdown(results: Sequence[Dict[str, Any]], path: str) -> str:
    """:func:`markdown_table` of ``results`` written to ``path`` (folders created); returns it."""
    table = markdown_table(results)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(table + "\n")
    return table


def write_json(output: Dict[str, Any], path: str) -> None:
    """Every number of ``output`` to ``path`` (folders created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(output, f, indent=2)
