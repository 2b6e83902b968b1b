#!/usr/bin/env python
"""Training curves of one or several runs as one PNG: every loss, the learning rate, mIoU.

    python tools/plot_logs.py output/quickstart --output curves.png
    python tools/plot_logs.py output/ablations/baseline output/ablations/full --output curves.png
    python tools/plot_logs.py output/a/metrics.json output/b --labels A B --smooth 5

Each argument is a training output folder (``OUTPUT_DIR`` of train_net.py) or its
``metrics.json`` file: detectron2's ``JSONWriter`` appends one JSON object per logged iteration,
``{"iteration": i, "total_loss": ..., "loss_sem_seg": ..., "lr": ..., ...}``, and the periodic
evaluation adds ``<dataset>/sem_seg/mIoU`` (or ``sem_seg/mIoU`` with one test set) at its
iteration. One panel per loss, one for the learning rate and one per evaluated metric and test
set; several runs are overlaid in every panel with one colour per run and a shared legend.

A resumed run appends to the same file starting again from its last checkpoint: records logged
after that checkpoint by the interrupted run are dropped, so each curve is the one the model
actually followed.
The reading and drawing are cat_seg.utils.training_curves'; this script parses the arguments.
"""
import argparse
from collections import OrderedDict

from cat_seg.utils.training_curves import (
    DEFAULT_DPI, load_metrics, plot_runs, resolve_metrics_file, run_labels, summary)
from cat_seg.utils.console import prepare_entry_point


def main(argv=None) -> str:
    args = parse_args(argv)
    files = [resolve_metrics_file(p) for p in args.runs]
    labels = run_labels(args.runs, args.labels)
    runs = OrderedDict((label, load_metrics(f)) for label, f in zip(labels, files))
    panels = plot_runs(runs, args.output, metrics=args.metric, smooth=args.smooth, dpi=args.dpi)
    for line in summary(runs, args.metric):
        print(f"[plot_logs] {line}")
    print(f"[plot_logs] wrote {args.output} ({len(panels)} panels: {', '.join(panels)})")
    return args.output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="training output folders or metrics.json files")
    parser.add_argument("--output", default="curves.png", help="PNG to write")
    parser.add_argument("--labels", nargs="+", help="legend label per run (default: folder names)")
    parser.add_argument("--metric", action="append",
                        help="evaluation metric to plot per test set, repeatable (default: mIoU)")
    parser.add_argument("--smooth", type=int, default=1,
                        help="trailing mean over this many logged points, losses only")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI)
    args = parser.parse_args(argv)
    args.metric = args.metric or ["mIoU"]
    if args.smooth < 1:
        parser.error("--smooth must be >= 1 (1: no smoothing)")
    return args


if __name__ == "__main__":
    prepare_entry_point(allocator=False)
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"[plot_logs] {error}")
