#!/usr/bin/env python
"""Run a study plan of the miniature research loop and print its table.

    python tools/research_loop.py configs/synthetic/research/ablation.yaml --output output/research/ablation
    python tools/research_loop.py PLAN --output ROOT --rows baseline full --seeds 0 1

Each (row, seed) trains and scores in one process (ROOT/<row>/seed<k>; done runs are kept);
ROOT/table.md gets mean ± std over seeds and Welch's p against the plan's reference row. The
work is cat_seg.analysis.research_loop's; its docstring describes plans.
"""
import argparse
import os
import sys
import time

from cat_seg.analysis.research_loop import run_plan
from cat_seg.utils.console import prepare_entry_point

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="a plan YAML (configs/synthetic/research/*.yaml)")
    parser.add_argument("--output", required=True, help="root folder of the runs and the table")
    parser.add_argument("--rows", nargs="*", default=[], help="only these rows")
    parser.add_argument("--seeds", nargs="*", type=int, default=[], help="only these seeds")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        table = run_plan(os.path.abspath(args.plan), os.path.abspath(args.output), REPO,
                         args.rows, args.seeds)
    except (OSError, ValueError, RuntimeError) as error:
        raise SystemExit(f"[research_loop] {error}")
    print(table)
    print(f"[research_loop] wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    prepare_entry_point(allocator=False)  # the runs it starts are entry points of their own
    main()
