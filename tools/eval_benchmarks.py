#!/usr/bin/env python
"""Evaluate one model on several benchmarks: ``ahs-seg eval`` (cat_seg/cli/evaluate.py), same
arguments.

    python tools/eval_benchmarks.py --config-file CFG --weights W --output OUT \\
        [--benchmarks A-847,PC-459,...] [--skip-missing] [--vis N] [--num-gpus N] [KEY VALUE ...]
"""
from cat_seg.cli.evaluate import main, parse_args  # noqa: F401
from cat_seg.utils.console import prepare_entry_point

if __name__ == "__main__":
    prepare_entry_point()
    main()
