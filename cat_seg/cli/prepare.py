"""``ahs-seg prepare DATASET [ARGS]``: convert an official benchmark download into the layout the
benchmarks read (``datasets/README.md`` says where each download goes).

    ahs-seg prepare ade20k-150 [--root DIR] [--workers N] [--overwrite] [--expect KEY=N]
    ahs-seg prepare voc --help

Each dataset is one script of the repository's ``datasets/`` folder (``datasets/prepare_voc.py``
...), run here with the same arguments; ``python datasets/prepare_voc.py`` is the same command.
"""
import argparse
import importlib
import os
import sys

from ..utils.paths import repository_root

# name on the command line -> script datasets/<script>.py (its main(argv) does the work)
DATASETS = {
    "ade20k-150": "prepare_ade20k_150",
    "ade20k-847": "prepare_ade20k_847",
    "coco-stuff": "prepare_coco_stuff",
    "pascal-context": "prepare_pascal_context",
    "voc": "prepare_voc",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="ahs-seg prepare", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("dataset", choices=list(DATASETS), help="which download to convert")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments (--help)")
    args = parser.parse_args(argv[:1])
    folder = os.path.join(repository_root(), "datasets")
    script = os.path.join(folder, DATASETS[args.dataset] + ".py")
    if not os.path.isfile(script):
        raise FileNotFoundError(f"{script} is missing: 'ahs-seg prepare' runs the scripts of the "
                                "repository checkout (install the project with pip install -e .)")
    # The scripts import their shared module (datasets/preparation.py) as a sibling, and their
    # worker processes find the conversion functions by module name: import them as such.
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.argv = [f"ahs-seg prepare {args.dataset}"] + argv[1:]
    return importlib.import_module(DATASETS[args.dataset]).main(argv[1:])
