#!/usr/bin/env python
"""Convert an official CAT-Seg checkpoint: ``ahs-seg convert`` (cat_seg/cli/convert.py), same
arguments.

    python tools/convert_checkpoint.py SOURCE OUTPUT.pth [--config-file CFG] [--sha256 HEX]
"""
from cat_seg.cli.convert import main, parse_args, run  # noqa: F401  (tests: main, parse_args)

if __name__ == "__main__":
    run()
