"""``ahs-seg check-data``: validate datasets of your own before any training.

    ahs-seg check-data path/to/mydata.yaml [more.yaml ...]
    ahs-seg check-data --config-file my_config.yaml      # every file of DATASETS.FOLDER_DATASETS
    python tools/check_data.py path/to/mydata.yaml       # the same command

Reads every image and label map of every split a description file (docs/custom_datasets.md)
describes and lists every problem, each naming its file: absent or empty folders, images without
a label and labels without an image, unreadable or corrupt files, image/label size mismatches,
label values that are neither a class (after the label offset) nor the ignore value. Exit status
0 when every dataset is ready, 1 when any has a problem.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional

from ..data.folder_dataset import check_folder_dataset, config_folder_dataset_paths
from ..utils.paths import require_file

logger = logging.getLogger(__name__)


def _config_descriptions(config_file: str) -> List[str]:
    """The description files a config names (DATASETS.FOLDER_DATASETS)."""
    from ..config import build_config_or_explain

    cfg = build_config_or_explain(config_file)
    paths = config_folder_dataset_paths(cfg)
    if not paths:
        raise ValueError(f"{config_file} names no dataset description (DATASETS.FOLDER_DATASETS "
                         "is empty); pass the description files themselves")
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ahs-seg check-data",
        description="Validate datasets of your own (description files) before any training.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("descriptions", nargs="*", metavar="DESCRIPTION",
                        help="dataset description files (.yaml / .json)")
    parser.add_argument("--config-file", default="",
                        help="check the descriptions this config names in DATASETS.FOLDER_DATASETS")
    parser.add_argument("--max-problems", type=int, default=50,
                        help="problems listed per description (all are counted); default 50")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="threads reading the files")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Check the descriptions of ``argv``; log a report per file (INFO; the count of failed
    files as an ERROR); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    paths = list(args.descriptions)
    try:  # a config or a path that is no file at all stops at once, in one line
        if args.config_file:
            paths += _config_descriptions(args.config_file)
        for path in paths:
            require_file(path, "dataset description", "give the path of a .yaml or .json file "
                         "(docs/custom_datasets.md)")
    except (OSError, ValueError) as error:
        raise SystemExit(f"[check-data] {error}") from None
    if not paths:
        parser.error("name at least one dataset description file (or --config-file)")
    failed = 0
    for path in paths:
        report = check_folder_dataset(path, workers=args.workers)
        logger.info(report.format(max_problems=args.max_problems))
        failed += not report.ok
    if failed:
        logger.error(f"[check-data] {failed} of {len(paths)} dataset description(s) have problems")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
