#!/usr/bin/env python
"""Validate datasets of your own before any training (``ahs-seg check-data``).

    python tools/check_data.py path/to/mydata.yaml [more.yaml ...]
    python tools/check_data.py --config-file my_config.yaml

Exit status 0 when every dataset is ready, 1 when any has a problem (each named with its file).
The work is cat_seg.cli.check_data's (docs/custom_datasets.md).
"""
import sys

from cat_seg.cli.check_data import main
from cat_seg.utils.console import prepare_entry_point

if __name__ == "__main__":
    prepare_entry_point(allocator=False)  # the report on stdout, the failure count on stderr
    sys.exit(main())
