"""``python -m cat_seg.cli SUBCOMMAND ...`` is the ``ahs-seg`` command."""
import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
