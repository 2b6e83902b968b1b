#!/usr/bin/env python
"""How big and how fast is a model: ``ahs-seg analyze`` (cat_seg/cli/analyze.py), same arguments.

    python tools/analyze_model.py --config-file configs/vitb_384_ahs.yaml [--compare CFG2 ...]
"""
from cat_seg.cli.analyze import main, parse_args, run  # noqa: F401  (main: tests' entry)

if __name__ == "__main__":
    run()
