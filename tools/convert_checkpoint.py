#!/usr/bin/env python
"""Convert an official CAT-Seg checkpoint: ``ahs-seg convert`` (cat_seg/cli/convert.py), same
arguments.

    python tools/convert_checkpoint.py SOURCE OUTPUT.pth [--config-file configs/vitb_384_catseg.yaml]
"""
from cat_seg.cli.convert import main, parse_args, run  # noqa: F401  (the tests use main, parse_args)

if __name__ == "__main__":
    run()
